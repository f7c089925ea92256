//! Maps a webhook body of Segment-style events onto canonical events.
//!
//! The body is one event object, an array of them, or `{"batch": [...]}`. Each event is
//! read by [`tessera_sdk::segment`] (which lists the fields); one without `messageId` gets
//! `whk-<first 32 hex digits of the body's SHA-256>-<index>`, so a redelivered webhook gets
//! the same ids.

use tessera_sdk::hash;
use tessera_sdk::json::{self, Value};
use tessera_sdk::segment;
use tessera_sdk::types::{ConnectorError, Event};

/// Every event in `body`, in order.
pub fn events_from_body(body: &[u8]) -> Result<Vec<Event>, ConnectorError> {
    let payload = json::parse(body).map_err(|e| bad(e.to_string()))?;
    let items = match payload {
        Value::Object(mut object) if object.contains_key("batch") => match object.remove("batch") {
            Some(Value::Array(items)) => items,
            Some(other) => {
                return Err(bad(format!(
                    "`batch` must be an array, not {}",
                    json::type_name(&other)
                )));
            }
            None => Vec::new(),
        },
        Value::Object(object) => vec![Value::Object(object)],
        Value::Array(items) => items,
        other => {
            return Err(bad(format!(
                "body must be an event object, an array of events or {{\"batch\": [...]}}, not {}",
                json::type_name(&other)
            )));
        }
    };
    // Only needed when an event has no messageId; computed at most once.
    let mut body_digest = None;
    segment::events(&items, |index| {
        let digest = body_digest.get_or_insert_with(|| hash::sha256_hex(body));
        format!("whk-{}-{index}", &digest[..32])
    })
}

fn bad(message: String) -> ConnectorError {
    ConnectorError::BadRequest(message)
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use tessera_sdk::json::json;
    use tessera_sdk::testing::expect_bad_request;

    fn map(body: &Value) -> Result<Vec<Event>, ConnectorError> {
        events_from_body(body.to_string().as_bytes())
    }

    #[test]
    fn batch_and_array_forms_are_accepted() {
        let one = json!({"type": "page", "messageId": "p1", "userId": 7, "name": "Home"});
        for body in [
            json!({"batch": [one.clone(), one.clone()]}),
            json!([one.clone(), one]),
        ] {
            let events = map(&body).unwrap();
            assert_eq!(events.len(), 2);
            assert_eq!(events[0].name.as_deref(), Some("Home"));
            assert_eq!(events[0].contact.user_id.as_deref(), Some("7"));
        }
        assert!(map(&json!({"batch": []})).unwrap().is_empty());
    }

    #[test]
    fn missing_message_id_is_derived_stably_from_the_body() {
        let body = json!([
            {"type": "track", "userId": "u1", "event": "A"},
            {"type": "track", "userId": "u1", "event": "A"}
        ]);
        let first = map(&body).unwrap();
        let again = map(&body).unwrap();
        assert_eq!(first[0].id, again[0].id);
        assert_ne!(first[0].id, first[1].id);
        assert!(first[0].id.starts_with("whk-") && first[0].id.ends_with("-0"));
    }

    #[test]
    fn malformed_json_and_wrong_shapes_are_bad_requests() {
        assert!(expect_bad_request(events_from_body(b"{")).contains("not valid JSON"));
        assert!(expect_bad_request(map(&json!("hello"))).contains("not a string"));
        assert!(
            expect_bad_request(map(&json!({"batch": {}}))).contains("`batch` must be an array")
        );
    }
}
