//! One call's input as data ([`CallInput`]), running it on a version ([`run_input`]), and a
//! sandbox outside any host ([`LocalSandbox`]) for `tessera plugin test` and `replay`.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::runtime::types::{HttpRequest, Message, RuleInput};
use crate::runtime::{
    AddressGrants, CallEnv, CallError, EngineLimits, KvNamespace, Runtime, SandboxedPlugin,
};

use super::{Manifest, OperatorLimits, PluginError, sha256_hex};

/// A webhook request as data: text body, or `body_base64` for bytes that are not UTF-8.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookInput {
    /// HTTP method.
    #[serde(default = "post")]
    pub method: String,
    /// Path below the connector's webhook route.
    #[serde(default = "root")]
    pub path: String,
    /// Query string, without `?`.
    #[serde(default)]
    pub query: String,
    /// Headers, names lower-case; given as `[[name, value], ...]` or `{"name": value}`.
    #[serde(default, deserialize_with = "header_pairs")]
    pub headers: Vec<(String, String)>,
    /// The body when it is UTF-8.
    #[serde(default)]
    pub body: String,
    /// The body, base64, when it is not UTF-8 (then `body` is empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_base64: Option<String>,
}

fn post() -> String {
    "POST".into()
}

fn root() -> String {
    "/".into()
}

/// Headers as pairs or as an object (a value that is not text is taken as its JSON), with
/// names in lower case as the host hands them to a connector.
fn header_pairs<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<(String, String)>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Headers {
        Pairs(Vec<(String, String)>),
        Object(Map<String, Value>),
    }
    let pairs = match Headers::deserialize(deserializer)? {
        Headers::Pairs(pairs) => pairs,
        Headers::Object(map) => map
            .into_iter()
            .map(|(k, v)| (k, v.as_str().map_or_else(|| v.to_string(), str::to_string)))
            .collect(),
    };
    Ok(pairs
        .into_iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), value))
        .collect())
}

impl WebhookInput {
    /// The request as the guest receives it.
    pub fn to_request(&self) -> Result<HttpRequest, String> {
        let body = match &self.body_base64 {
            Some(b64) => base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|e| format!("body_base64: {e}"))?,
            None => self.body.clone().into_bytes(),
        };
        Ok(HttpRequest {
            method: self.method.clone(),
            path: self.path.clone(),
            query: self.query.clone(),
            headers: self.headers.clone(),
            body,
        })
    }

    /// The request as data.
    pub fn from_request(request: &HttpRequest) -> Self {
        let (body, body_base64) = match std::str::from_utf8(&request.body) {
            Ok(text) => (text.to_string(), None),
            Err(_) => (
                String::new(),
                Some(base64::engine::general_purpose::STANDARD.encode(&request.body)),
            ),
        };
        Self {
            method: request.method.clone(),
            path: request.path.clone(),
            query: request.query.clone(),
            headers: request.headers.clone(),
            body,
            body_base64,
        }
    }
}

/// The input of one plugin call, as stored with a failure and replayed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "call", rename_all = "kebab-case", deny_unknown_fields)]
pub enum CallInput {
    /// A connector's `handle-webhook`.
    Webhook {
        /// The request.
        request: WebhookInput,
    },
    /// A connector's `poll`.
    Poll {
        /// The cursor passed in.
        #[serde(default)]
        cursor: Option<String>,
    },
    /// A segment rule's `evaluate`.
    Evaluate {
        /// The segment's parameters (JSON text).
        params: String,
        /// The contacts.
        batch: Vec<RuleInput>,
    },
    /// A segment rule's `describe` (contract 0.2; a 0.1 rule decides an empty batch).
    Describe {
        /// The segment's parameters (JSON text).
        params: String,
    },
    /// A channel's `send`.
    Send {
        /// The message.
        message: Message,
    },
    /// The version's `self-test`.
    SelfTest,
}

impl CallInput {
    /// The call's name, as failures and metrics label it.
    pub fn name(&self) -> &'static str {
        match self {
            CallInput::Webhook { .. } => "handle-webhook",
            CallInput::Poll { .. } => "poll",
            CallInput::Evaluate { .. } => "evaluate",
            CallInput::Describe { .. } => "describe",
            CallInput::Send { .. } => "send",
            CallInput::SelfTest => "self-test",
        }
    }
}

/// What one call did and cost.
#[derive(Debug, Clone, Serialize)]
pub struct CallReport {
    /// True when the call returned `ok`.
    pub ok: bool,
    /// `{"ok": ...}`, `{"err": ...}` (the plugin's own error) or `{"failure": {code, message}}`
    /// (trap, deadline, limit).
    pub outcome: Value,
    /// Wall time, microseconds.
    pub micros: u64,
    /// Largest linear memory the version has used so far, bytes.
    pub peak_memory_bytes: u64,
    /// Fuel (about one unit per wasm instruction) the call used, when metered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
}

/// A call's result as `{"ok"}`, `{"err"}` or `{"failure"}` JSON, and whether it was ok.
pub(super) fn outcome_json<T: Serialize, E: Serialize>(
    result: &Result<Result<T, E>, CallError>,
) -> (bool, Value) {
    match result {
        Ok(Ok(v)) => (true, json!({ "ok": readable(json!(v)) })),
        Ok(Err(e)) => (false, json!({ "err": readable_error(json!(e)) })),
        Err(e) => (
            false,
            json!({ "failure": { "code": e.cause.code(), "message": e.to_string() } }),
        ),
    }
}

/// Fields the WIT contract carries as JSON text.
const JSON_TEXT_FIELDS: &[&str] = &["traits", "properties", "metadata", "params"];

/// A plugin's output as people read it: fields the contract carries as JSON text are parsed,
/// and an event's `kind` is in lower case (`track`), as the tracking API spells it.
pub fn readable(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(key, value)| {
                    let value = match value {
                        Value::String(text) if JSON_TEXT_FIELDS.contains(&key.as_str()) => {
                            serde_json::from_str(&text).unwrap_or(Value::String(text))
                        }
                        Value::String(kind) if key == "kind" => Value::String(kind.to_lowercase()),
                        other => readable(other),
                    };
                    (key, value)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(readable).collect()),
        other => other,
    }
}

/// A WIT error variant as `{"code": "bad_request", "message": "..."}` (a text payload) or
/// `{"code": "retryable", ...fields}` (a record payload), instead of `{"BadRequest": "..."}`.
pub fn readable_error(value: Value) -> Value {
    let Value::Object(map) = value else {
        return value;
    };
    if map.len() != 1 {
        return readable(Value::Object(map));
    }
    let (name, payload) = map.into_iter().next().expect("one entry");
    let mut code = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            code.push('_');
        }
        code.extend(c.to_lowercase());
    }
    match readable(payload) {
        Value::Object(mut fields) => {
            fields.insert("code".into(), Value::String(code));
            Value::Object(fields)
        }
        Value::Null => json!({ "code": code }),
        message => json!({ "code": code, "message": message }),
    }
}

/// Runs `input` on `plugin` with `env` and reports the outcome and its cost.
pub async fn run_input(plugin: &SandboxedPlugin, env: &CallEnv, input: &CallInput) -> CallReport {
    let fuel_before = plugin.stats().fuel_consumed.unwrap_or(0);
    let started = Instant::now();
    let (ok, outcome) = match input {
        CallInput::Webhook { request } => match request.to_request() {
            Ok(request) => outcome_json(&plugin.handle_webhook(env, &request).await),
            Err(e) => (
                false,
                json!({ "failure": { "code": "bad_input", "message": e } }),
            ),
        },
        CallInput::Poll { cursor } => outcome_json(&plugin.poll(env, cursor.as_deref()).await),
        CallInput::Evaluate { params, batch } => {
            outcome_json(&plugin.evaluate(env, params, batch).await)
        }
        CallInput::Describe { params } => outcome_json(&plugin.describe(env, params).await),
        CallInput::Send { message } => outcome_json(&plugin.send(env, message).await),
        CallInput::SelfTest => outcome_json(&plugin.self_test(env).await),
    };
    let micros = started.elapsed().as_micros() as u64;
    let stats = plugin.stats();
    CallReport {
        ok,
        outcome,
        micros,
        peak_memory_bytes: stats.peak_memory_bytes,
        fuel: stats.fuel_consumed.map(|f| f.saturating_sub(fuel_before)),
    }
}

/// The host's sandbox without a host: same engine settings (plus fuel metering, so each run
/// reports the instructions it used), same limits from the manifest, an in-memory kv, no
/// network grants beyond the manifest's allowlist.
pub struct LocalSandbox {
    runtime: Runtime,
    limits: OperatorLimits,
    kv: Arc<dyn KvNamespace>,
}

impl LocalSandbox {
    /// A sandbox caching compiled code under `cache_dir`.
    pub fn new(cache_dir: &Path) -> Result<Self, PluginError> {
        let engine = EngineLimits {
            max_instances: 4,
            fuel: true,
            ..EngineLimits::default()
        };
        let runtime =
            Runtime::new(&engine, AddressGrants::default(), cache_dir).map_err(|source| {
                PluginError::Load {
                    plugin: "(local)".into(),
                    source,
                }
            })?;
        Ok(Self {
            runtime,
            limits: OperatorLimits::default(),
            // The host's kv (ledger and default quotas) on an engine in memory.
            kv: super::kv::namespace(
                &crate::store::MemoryEngine::new(),
                "local",
                &crate::store::KvLedger::new(crate::store::KvQuota::default(), []),
            )
            .map_err(PluginError::Store)?,
        })
    }

    /// Compiles a component and checks it implements its manifest's world.
    pub fn load(
        &self,
        manifest_text: &str,
        wasm: &[u8],
    ) -> Result<Arc<SandboxedPlugin>, PluginError> {
        let manifest = Manifest::parse(manifest_text)?;
        let spec = self.limits.sandbox(&manifest, &sha256_hex(wasm));
        let plugin = self
            .runtime
            .prepare(spec, || Ok(wasm.to_vec()))
            .map_err(|source| PluginError::Load {
                plugin: manifest.id.clone(),
                source,
            })?;
        Ok(Arc::new(plugin))
    }

    /// Runs one input with `config` and reports outcome and cost.
    pub async fn run(
        &self,
        plugin: &SandboxedPlugin,
        config: Map<String, Value>,
        input: &CallInput,
    ) -> CallReport {
        let env = CallEnv {
            config: Arc::new(Value::Object(config)),
            kv: self.kv.clone(),
            read_only: false,
            effects: crate::runtime::Effects::Live,
            logs: None,
        };
        run_input(plugin, &env, input).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_read_as_the_api_spells_them() {
        assert_eq!(
            readable_error(json!({ "BadRequest": "no id" })),
            json!({ "code": "bad_request", "message": "no id" })
        );
        assert_eq!(
            readable_error(json!({ "Retryable": { "reason": "503", "after_ms": 100 } })),
            json!({ "code": "retryable", "reason": "503", "after_ms": 100 })
        );
        assert_eq!(readable_error(json!("plain")), json!("plain"));
        let event = json!([{ "kind": "Track", "properties": "{\"total\":42}", "traits": "not json",
                             "name": "{\"left\":\"alone\"}" }]);
        assert_eq!(
            readable(event),
            json!([{ "kind": "track", "properties": { "total": 42 }, "traits": "not json",
                     "name": "{\"left\":\"alone\"}" }])
        );
    }

    #[test]
    fn inputs_round_trip_as_tagged_json() {
        let text = r#"{"call":"webhook","request":{"headers":[["x-a","1"]],"body":"{}"}}"#;
        let input: CallInput = serde_json::from_str(text).unwrap();
        let CallInput::Webhook { request } = &input else {
            panic!("webhook expected")
        };
        assert_eq!(request.method, "POST");
        let again: CallInput =
            serde_json::from_value(serde_json::to_value(&input).unwrap()).unwrap();
        assert_eq!(again.name(), "handle-webhook");
        let self_test: CallInput = serde_json::from_str(r#"{"call":"self-test"}"#).unwrap();
        assert_eq!(self_test.name(), "self-test");
    }

    /// Inputs kept with failures before the host had its own types (written through the
    /// generated contract 0.1 types) read back and write the same JSON.
    #[test]
    fn inputs_kept_by_earlier_hosts_still_read() {
        let kept = [
            r#"{"call":"evaluate","params":"{}","batch":[{"contact":{"id":"c1","identities":[],"traits":"{}"},"event":{"id":"e1","kind":"Identify","name":null,"contact":{"user_id":"u1","anonymous_id":null,"identities":[{"kind":"email","value":"a@b.c"}]},"timestamp":"2024-01-01T00:00:00Z","properties":"{}","traits":"{\"plan\":\"pro\"}"},"counts":[{"name":"Signed Up","count":1}],"member":true}]}"#,
            r#"{"call":"send","message":{"id":"m1","channel":"webhook","to":"https://x.example/","sender":null,"subject":null,"body":"{}","content_type":"application/json","metadata":"{}"}}"#,
        ];
        for text in kept {
            let input: CallInput = serde_json::from_str(text).unwrap();
            let again = serde_json::to_value(&input).unwrap();
            assert_eq!(again, serde_json::from_str::<Value>(text).unwrap());
        }
    }

    #[test]
    fn binary_bodies_survive_as_base64() {
        let request = HttpRequest {
            method: "POST".into(),
            path: "/".into(),
            query: String::new(),
            headers: vec![],
            body: vec![0xff, 0x00, 0x80],
        };
        let input = WebhookInput::from_request(&request);
        assert!(input.body.is_empty());
        assert_eq!(input.to_request().unwrap().body, request.body);
    }
}
