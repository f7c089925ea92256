//! One plugin call's outcome as the API and the command line show it: `{"ok"}`, `{"err"}` or
//! `{"failure"}` JSON with the contract's JSON text fields parsed, and what the call cost.

use serde::Serialize;
use serde_json::{Value, json};

use crate::runtime::CallError;

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
pub fn outcome_json<T: Serialize, E: Serialize>(
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
}
