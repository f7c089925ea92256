//! A native stand-in for the host, so plugin logic runs under plain `cargo test`.
//!
//! Outside a component, [`config`](crate::config), [`kv`](crate::kv), [`log`](crate::log)
//! and [`http`](crate::http) talk to a per-thread [`Harness`] instead of the host. Every
//! test runs on its own thread, so tests never see each other's state.
//!
//! ```
//! use tessera_sdk::http::{Request, Response};
//! use tessera_sdk::testing::Harness;
//!
//! let harness = Harness::new();
//! harness.set_config("secret", "s3cret");
//! harness.respond(Response::new(200).with_body("ok"));
//!
//! assert_eq!(tessera_sdk::config::get("secret").as_deref(), Some("s3cret"));
//! let response = Request::get("https://api.example.com/").send().unwrap();
//! assert_eq!(response.text(), "ok");
//! assert_eq!(harness.sent_requests()[0].url(), "https://api.example.com/");
//! ```

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::marker::PhantomData;

use serde_json::{Map, Value};

use crate::http::{HttpError, Request, Response, Url};
use crate::types::{ConnectorError, KvError, Level};

/// One record a plugin logged.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRecord {
    /// Its severity.
    pub level: Level,
    /// The message.
    pub message: String,
    /// The key/value fields.
    pub fields: Vec<(String, String)>,
}

impl LogRecord {
    /// The value of field `key`, if the record has it.
    pub fn field(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct State {
    config: Map<String, Value>,
    kv: BTreeMap<String, Vec<u8>>,
    kv_read_only: bool,
    logs: Vec<LogRecord>,
    http_script: VecDeque<Result<Response, HttpError>>,
    http_sent: Vec<Request>,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
}

fn with<R>(f: impl FnOnce(&mut State) -> R) -> R {
    STATE.with(|state| f(&mut state.borrow_mut()))
}

/// The host as a test sees it: config to set, kv and logs to inspect, HTTP answers to script.
///
/// Creating one resets this thread's state; dropping it leaves the state in place.
pub struct Harness {
    // State is per thread; a handle must not wander to another one.
    _thread_bound: PhantomData<*const ()>,
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}

impl Harness {
    /// A fresh host for this thread: no config, empty kv, no logs, nothing scripted.
    pub fn new() -> Self {
        with(|state| *state = State::default());
        Self {
            _thread_bound: PhantomData,
        }
    }

    /// A fresh host whose config key `secret` is `secret`, as a connector checking
    /// signatures needs.
    pub fn with_secret(secret: impl Into<String>) -> Self {
        let harness = Self::new();
        harness.set_config("secret", secret.into());
        harness
    }

    /// Sets config key `key`; strings come back from `config::get` without quotes, other
    /// values as JSON text, as the host does.
    pub fn set_config(&self, key: impl Into<String>, value: impl Into<Value>) -> &Self {
        with(|state| state.config.insert(key.into(), value.into()));
        self
    }

    /// Removes config key `key`.
    pub fn remove_config(&self, key: &str) -> &Self {
        with(|state| state.config.remove(key));
        self
    }

    /// Replaces the whole config with `config`, which must be a JSON object.
    pub fn set_config_json(&self, config: Value) -> &Self {
        let Value::Object(map) = config else {
            panic!("the harness config must be a JSON object");
        };
        with(|state| state.config = map);
        self
    }

    /// The value stored under `key`.
    pub fn kv(&self, key: &str) -> Option<Vec<u8>> {
        with(|state| state.kv.get(key).cloned())
    }

    /// Every kv entry, by key.
    pub fn kv_entries(&self) -> BTreeMap<String, Vec<u8>> {
        with(|state| state.kv.clone())
    }

    /// Stores `value` under `key`, as a previous call would have.
    pub fn set_kv(&self, key: impl Into<String>, value: impl Into<Vec<u8>>) -> &Self {
        with(|state| state.kv.insert(key.into(), value.into()));
        self
    }

    /// Makes kv writes fail with `read-only`, as in a shadow run.
    pub fn set_kv_read_only(&self, read_only: bool) -> &Self {
        with(|state| state.kv_read_only = read_only);
        self
    }

    /// Everything logged so far.
    pub fn logs(&self) -> Vec<LogRecord> {
        with(|state| state.logs.clone())
    }

    /// True when some record's message contains `text`.
    pub fn logged(&self, text: &str) -> bool {
        with(|state| state.logs.iter().any(|r| r.message.contains(text)))
    }

    /// Queues `response` as the answer to the next outbound request.
    pub fn respond(&self, response: Response) -> &Self {
        with(|state| state.http_script.push_back(Ok(response)));
        self
    }

    /// Queues `error` as the outcome of the next outbound request.
    pub fn fail_http(&self, error: HttpError) -> &Self {
        with(|state| state.http_script.push_back(Err(error)));
        self
    }

    /// Every outbound request sent so far, in order.
    pub fn sent_requests(&self) -> Vec<Request> {
        with(|state| state.http_sent.clone())
    }
}

/// The reason of an `Unauthorized` error; panics, showing what came instead, on anything
/// else. For connector tests: `assert!(expect_unauthorized(result).contains("missing"))`.
pub fn expect_unauthorized<T: fmt::Debug>(result: Result<T, ConnectorError>) -> String {
    match result {
        Err(ConnectorError::Unauthorized(why)) => why,
        other => panic!("expected unauthorized, got {other:?}"),
    }
}

/// The reason of a `BadRequest` error; panics, showing what came instead, on anything
/// else. For connector tests: `assert!(expect_bad_request(result).contains("JSON"))`.
pub fn expect_bad_request<T: fmt::Debug>(result: Result<T, ConnectorError>) -> String {
    match result {
        Err(ConnectorError::BadRequest(why)) => why,
        other => panic!("expected bad-request, got {other:?}"),
    }
}

pub(crate) fn config_get(key: &str) -> Option<String> {
    with(|state| {
        state.config.get(key).map(|value| match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    })
}

pub(crate) fn config_get_all() -> String {
    with(|state| Value::Object(state.config.clone()).to_string())
}

pub(crate) fn kv_get(key: &str) -> Result<Option<Vec<u8>>, KvError> {
    Ok(with(|state| state.kv.get(key).cloned()))
}

pub(crate) fn kv_set(key: &str, value: &[u8]) -> Result<(), KvError> {
    with(|state| {
        if state.kv_read_only {
            return Err(KvError::ReadOnly);
        }
        state.kv.insert(key.to_string(), value.to_vec());
        Ok(())
    })
}

pub(crate) fn kv_delete(key: &str) -> Result<(), KvError> {
    with(|state| {
        if state.kv_read_only {
            return Err(KvError::ReadOnly);
        }
        state.kv.remove(key);
        Ok(())
    })
}

pub(crate) fn log(level: Level, message: &str, fields: Vec<(String, String)>) {
    with(|state| {
        state.logs.push(LogRecord {
            level,
            message: message.to_string(),
            fields,
        })
    });
}

pub(crate) fn answer_http(request: &Request, url: &Url) -> Result<Response, HttpError> {
    let scripted = with(|state| {
        state.http_sent.push(request.clone());
        state.http_script.pop_front()
    });
    let response = scripted.unwrap_or_else(|| {
        Err(HttpError::Other(format!(
            "no HTTP response scripted in the test harness for {} {url}; \
             call Harness::respond or Harness::fail_http first",
            request.method()
        )))
    })?;
    if response.body.len() as u64 > request.max_response_bytes {
        return Err(HttpError::TooLarge(format!(
            "the response from {url} is over {} bytes",
            request.max_response_bytes
        )));
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{config, kv, log};

    #[test]
    fn config_strings_come_back_without_quotes() {
        let harness = Harness::new();
        harness
            .set_config("secret", "s3cret")
            .set_config("retries", 3);
        assert_eq!(config::get("secret").as_deref(), Some("s3cret"));
        assert_eq!(config::get("retries").as_deref(), Some("3"));
        assert_eq!(config::get("missing"), None);
        assert_eq!(config::get_all()["retries"], 3);
    }

    #[test]
    fn with_secret_sets_only_the_secret() {
        Harness::new().set_config("tolerance_secs", 0);
        let _harness = Harness::with_secret("whsec_x");
        assert_eq!(config::get_all(), serde_json::json!({"secret": "whsec_x"}));
    }

    #[test]
    fn expect_unauthorized_gives_the_reason() {
        let result: Result<(), _> = Err(ConnectorError::Unauthorized("no key".into()));
        assert_eq!(expect_unauthorized(result), "no key");
    }

    #[test]
    #[should_panic(expected = "expected unauthorized, got Err(ConnectorError::BadRequest")]
    fn expect_unauthorized_panics_on_other_errors() {
        expect_unauthorized::<()>(Err(ConnectorError::BadRequest("bad".into())));
    }

    #[test]
    fn new_harness_starts_empty() {
        Harness::new().set_config("secret", "x").set_kv("k", "v");
        let harness = Harness::new();
        assert_eq!(config::get("secret"), None);
        assert_eq!(harness.kv("k"), None);
    }

    #[test]
    fn kv_round_trips_and_respects_read_only() {
        let harness = Harness::new();
        kv::set("cursor", "42").unwrap();
        assert_eq!(kv::get_string("cursor").unwrap().as_deref(), Some("42"));
        assert_eq!(harness.kv("cursor").as_deref(), Some(&b"42"[..]));
        harness.set_kv_read_only(true);
        assert_eq!(kv::set("cursor", "43"), Err(KvError::ReadOnly));
        harness.set_kv_read_only(false);
        kv::delete("cursor").unwrap();
        assert_eq!(kv::get("cursor").unwrap(), None);
    }

    #[test]
    fn logs_are_captured_with_fields() {
        let harness = Harness::new();
        log::warn("retrying", &[("attempt", &2), ("host", &"api.example.com")]);
        let logs = harness.logs();
        assert_eq!(logs.len(), 1);
        assert_eq!(logs[0].level, Level::Warn);
        assert_eq!(logs[0].field("attempt"), Some("2"));
        assert!(harness.logged("retry"));
    }
}
