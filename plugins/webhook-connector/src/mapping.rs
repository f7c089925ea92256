//! Maps a webhook body of Segment-style events onto canonical events.
//!
//! Fields read per event: `type` (track, identify, page, screen, group, alias), `messageId`,
//! `userId`, `anonymousId`, `event` (track), `name` (page, screen), `timestamp`,
//! `properties`, `traits`, `groupId` (group) and `previousId` (alias). `traits.email`,
//! `traits.phone` and the same under `context.traits` become identities. A group's traits
//! describe the group, so they travel in `properties.traits`, never onto the contact.

use tessera_sdk::hash;
use tessera_sdk::json::{self, Map, Value};
use tessera_sdk::types::{ConnectorError, ContactRef, Event, EventKind};

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
    items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            map_event(item, index, || {
                body_digest
                    .get_or_insert_with(|| hash::sha256_hex(body))
                    .clone()
            })
            .map_err(|why| bad(format!("event {index}: {why}")))
        })
        .collect()
}

fn bad(message: String) -> ConnectorError {
    ConnectorError::BadRequest(message)
}

fn map_event(
    item: &Value,
    index: usize,
    body_digest: impl FnOnce() -> String,
) -> Result<Event, String> {
    let Value::Object(fields) = item else {
        return Err(format!(
            "must be a JSON object, not {}",
            json::type_name(item)
        ));
    };
    let kind_name = string_field(fields, "type")?.ok_or("missing `type`")?;
    let kind = EventKind::parse(&kind_name).ok_or_else(|| {
        format!(
            "unknown type `{kind_name}` (expected track, identify, page, screen, group or alias)"
        )
    })?;
    let id = match string_field(fields, "messageId")? {
        Some(id) => id,
        // Derived from the exact bytes, so a redelivered webhook gets the same ids.
        None => format!("whk-{}-{index}", &body_digest()[..32]),
    };

    let mut properties = object_field(fields, "properties")?;
    let mut traits = object_field(fields, "traits")?;
    let name = match kind {
        EventKind::Track => {
            Some(string_field(fields, "event")?.ok_or("a track event needs `event`")?)
        }
        EventKind::Page | EventKind::Screen => string_field(fields, "name")?,
        _ => None,
    };
    match kind {
        EventKind::Group => {
            let group_id =
                string_field(fields, "groupId")?.ok_or("a group event needs `groupId`")?;
            properties.insert("groupId".into(), Value::String(group_id));
            if !traits.is_empty() {
                properties.insert("traits".into(), Value::Object(std::mem::take(&mut traits)));
            }
        }
        EventKind::Alias => {
            if let Some(previous_id) = string_field(fields, "previousId")? {
                properties.insert("previousId".into(), Value::String(previous_id));
            }
        }
        _ => {}
    }

    let contact = contact_ref(fields, kind)?;
    if contact.user_id.is_none() && contact.anonymous_id.is_none() {
        return Err("needs `userId` or `anonymousId`".into());
    }
    let mut event = Event::new(id, kind, contact)
        .with_properties(Value::Object(properties))
        .with_traits(Value::Object(traits));
    event.name = name;
    event.timestamp = string_field(fields, "timestamp")?;
    Ok(event)
}

fn contact_ref(fields: &Map<String, Value>, kind: EventKind) -> Result<ContactRef, String> {
    let mut contact = ContactRef {
        user_id: string_field(fields, "userId")?,
        anonymous_id: string_field(fields, "anonymousId")?,
        ..ContactRef::default()
    };
    let own_traits = (kind != EventKind::Group)
        .then(|| fields.get("traits"))
        .flatten();
    let context_traits = fields.get("context").and_then(|c| c.get("traits"));
    for traits in [own_traits, context_traits].into_iter().flatten() {
        for kind in ["email", "phone"] {
            if let Some(Value::String(value)) = traits.get(kind) {
                let value = value.trim();
                if !value.is_empty() {
                    contact = contact.with_identity(kind, value);
                }
            }
        }
    }
    Ok(contact)
}

/// A string field; numbers are accepted as their text (ids often are numbers). Empty
/// strings and `null` count as absent.
fn string_field(fields: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match fields.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(format!(
            "`{key}` must be a string, not {}",
            json::type_name(other)
        )),
    }
}

/// An object field; absent or `null` is an empty object.
fn object_field(fields: &Map<String, Value>, key: &str) -> Result<Map<String, Value>, String> {
    match fields.get(key) {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(object)) => Ok(object.clone()),
        Some(other) => Err(format!(
            "`{key}` must be an object, not {}",
            json::type_name(other)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_sdk::json::json;
    use tessera_sdk::types::Identity;

    fn map(body: &Value) -> Result<Vec<Event>, ConnectorError> {
        events_from_body(body.to_string().as_bytes())
    }

    fn bad_request(result: Result<Vec<Event>, ConnectorError>) -> String {
        match result {
            Err(ConnectorError::BadRequest(why)) => why,
            other => panic!("expected bad-request, got {other:?}"),
        }
    }

    #[test]
    fn identify_sets_traits_and_identities() {
        let events = map(&json!({
            "type": "identify", "messageId": "m1", "userId": "u1", "anonymousId": "a1",
            "timestamp": "2024-05-01T10:00:00Z",
            "traits": {"email": "ada@example.com", "phone": "+15550100", "plan": "pro"}
        }))
        .unwrap();
        let event = &events[0];
        assert_eq!(event.kind, EventKind::Identify);
        assert_eq!(event.contact.user_id.as_deref(), Some("u1"));
        assert_eq!(event.contact.anonymous_id.as_deref(), Some("a1"));
        assert_eq!(
            event.contact.identities,
            vec![
                Identity::new("email", "ada@example.com"),
                Identity::new("phone", "+15550100")
            ]
        );
        assert_eq!(event.traits_value()["plan"], "pro");
        assert_eq!(event.timestamp.as_deref(), Some("2024-05-01T10:00:00Z"));
    }

    #[test]
    fn context_traits_email_becomes_an_identity() {
        let events = map(&json!({
            "type": "track", "messageId": "m1", "anonymousId": "a1", "event": "Viewed",
            "context": {"traits": {"email": "bob@example.com"}}
        }))
        .unwrap();
        assert_eq!(
            events[0].contact.identities,
            vec![Identity::new("email", "bob@example.com")]
        );
        assert_eq!(events[0].traits, "{}");
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
    fn group_traits_stay_off_the_contact() {
        let events = map(&json!({
            "type": "group", "messageId": "g1", "userId": "u1", "groupId": "acme",
            "traits": {"name": "Acme", "email": "billing@acme.test"}
        }))
        .unwrap();
        let event = &events[0];
        assert_eq!(event.traits, "{}");
        assert!(event.contact.identities.is_empty());
        assert_eq!(event.properties_value()["groupId"], "acme");
        assert_eq!(event.properties_value()["traits"]["name"], "Acme");
    }

    #[test]
    fn alias_keeps_the_previous_id() {
        let events = map(&json!({
            "type": "alias", "messageId": "al1", "userId": "u1", "previousId": "a-old"
        }))
        .unwrap();
        assert_eq!(events[0].properties_value()["previousId"], "a-old");
    }

    #[test]
    fn errors_name_the_event_index() {
        let ok = json!({"type": "track", "userId": "u", "event": "A"});
        let why = bad_request(map(&json!([ok, {"type": "track", "event": "A"}])));
        assert_eq!(why, "event 1: needs `userId` or `anonymousId`");
        let why = bad_request(map(&json!({"type": "purchase", "userId": "u"})));
        assert!(why.starts_with("event 0: unknown type `purchase`"), "{why}");
        let why = bad_request(map(&json!([ok, ok, {"userId": "u"}])));
        assert_eq!(why, "event 2: missing `type`");
        let why = bad_request(map(&json!({"type": "track", "userId": "u"})));
        assert_eq!(why, "event 0: a track event needs `event`");
        let why = bad_request(map(
            &json!({"type": "track", "userId": "u", "event": "A", "properties": [1]}),
        ));
        assert_eq!(why, "event 0: `properties` must be an object, not an array");
    }

    #[test]
    fn malformed_json_and_wrong_shapes_are_bad_requests() {
        assert!(bad_request(events_from_body(b"{")).contains("not valid JSON"));
        assert!(bad_request(map(&json!("hello"))).contains("not a string"));
        assert!(bad_request(map(&json!({"batch": {}}))).contains("`batch` must be an array"));
        assert!(bad_request(map(&json!([1]))).starts_with("event 0: must be a JSON object"));
    }
}
