//! JSON helpers: parse request bodies with errors a sender can act on, read text fields, build payload objects.

use std::fmt;

pub use serde_json::{Map, Value, json};

/// Why a body is not the JSON expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    message: String,
}

impl JsonError {
    /// An error with `message`.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for JsonError {}

/// Parses `bytes` as JSON; the error says where parsing stopped and why.
pub fn parse(bytes: &[u8]) -> Result<Value, JsonError> {
    serde_json::from_slice(bytes).map_err(|e| {
        JsonError::new(format!(
            "body is not valid JSON (line {}, column {}): {e}",
            e.line(),
            e.column()
        ))
    })
}

/// Parses `bytes` as a JSON object.
pub fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, JsonError> {
    match parse(bytes)? {
        Value::Object(map) => Ok(map),
        other => Err(JsonError::new(format!(
            "body must be a JSON object, not {}",
            type_name(&other)
        ))),
    }
}

/// `value` when it is a string with something besides whitespace, trimmed; `None` for
/// anything else (a blank string, a number, `null`, ...).
pub fn text(value: &Value) -> Option<String> {
    value
        .as_str()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// Field `key` of `fields` read as [`text`]: `None` when it is missing, blank or not a string.
pub fn text_field(fields: &Map<String, Value>, key: &str) -> Option<String> {
    fields.get(key).and_then(text)
}

/// An object from key/value pairs: `json::object([("plan", "pro".into())])`.
pub fn object<K: Into<String>>(pairs: impl IntoIterator<Item = (K, Value)>) -> Value {
    Value::Object(pairs.into_iter().map(|(k, v)| (k.into(), v)).collect())
}

/// JSON text for a traits, properties or metadata field: `null` becomes `{}`.
pub fn to_text(value: &Value) -> String {
    match value {
        Value::Null => "{}".to_string(),
        other => other.to_string(),
    }
}

/// What kind of JSON value this is, for error messages: `an object`, `a string`, ...
pub fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_error_says_where() {
        let error = parse(b"{\"a\": }").unwrap_err();
        assert!(error.message().contains("line 1, column 7"), "{error}");
    }

    #[test]
    fn parse_object_rejects_arrays() {
        let error = parse_object(b"[1]").unwrap_err();
        assert_eq!(error.message(), "body must be a JSON object, not an array");
    }

    #[test]
    fn text_is_a_trimmed_non_blank_string() {
        assert_eq!(text(&json!("  cus_1 ")).as_deref(), Some("cus_1"));
        assert_eq!(text(&json!("   ")), None);
        assert_eq!(text(&json!(42)), None);
        assert_eq!(text(&Value::Null), None);
        let fields = parse_object(br#"{"email": " a@example.com", "name": ""}"#).unwrap();
        assert_eq!(
            text_field(&fields, "email").as_deref(),
            Some("a@example.com")
        );
        assert_eq!(text_field(&fields, "name"), None);
        assert_eq!(text_field(&fields, "missing"), None);
    }

    #[test]
    fn object_and_text_build_payloads() {
        let traits = object([("plan", json!("pro")), ("seats", json!(3))]);
        assert_eq!(traits, json!({"plan": "pro", "seats": 3}));
        assert_eq!(to_text(&Value::Null), "{}");
    }
}
