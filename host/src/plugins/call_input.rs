//! One plugin call's input as data: what failures keep, `replay` and `tessera plugin test`
//! read, and the sandbox runner takes.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::runtime::types::{HttpRequest, Message, RuleInput};

/// A webhook input that cannot become a request.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// `body_base64` is not base64.
    #[error("body_base64: {0}")]
    BodyBase64(#[from] base64::DecodeError),
}

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
    pub fn to_request(&self) -> Result<HttpRequest, InputError> {
        let body = match &self.body_base64 {
            Some(b64) => base64::engine::general_purpose::STANDARD.decode(b64)?,
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
    /// A channel's `status` (a provider's status callback; contract 0.2).
    Status {
        /// The request.
        request: WebhookInput,
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
            CallInput::Status { .. } => "status",
            CallInput::SelfTest => "self-test",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
