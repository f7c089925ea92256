//! Segment-style event objects (Segment's tracking spec, not segment rules) read into [`Event`]s.
//!
//! Fields read per event: `type` (track, identify, page, screen, group, alias), `messageId`,
//! `userId`, `anonymousId`, `event` (track), `name` (page, screen), `timestamp`,
//! `properties`, `traits`, `context.traits`, `category` (page), `groupId` (group) and
//! `previousId` (alias), by the same rules as the host's tracking API (a test sends the same
//! calls both ways and compares what is stored). `traits.email`, `traits.phone` and the same
//! under `context.traits` become identities. A group's traits
//! describe the group, so they travel in `properties.traits`, never onto the contact.
//!
//! Ids, numbers included, are read as text; an empty string or `null` counts as absent.
//! An event without `messageId` takes the id its connector derives (for instance from the
//! raw body, so that a redelivery gets the same ids):
//!
//! ```
//! use tessera_sdk::json::json;
//! use tessera_sdk::segment;
//!
//! let items = [json!({"type": "track", "userId": 7, "event": "Signed Up"})];
//! let events = segment::events(&items, |index| format!("acme-{index}")).unwrap();
//! assert_eq!(events[0].id, "acme-0");
//! assert_eq!(events[0].contact.user_id.as_deref(), Some("7"));
//! ```

use crate::json::{self, Map, Value};
use crate::types::{ConnectorError, ContactRef, Event, EventKind};

/// Every event in `items`, in order. `missing_id(index)` gives the id of the event at
/// `index` when it has no `messageId`; it is not called otherwise.
///
/// The first event that cannot be read fails the whole list with a `bad-request` naming
/// its index, for instance ``event 2: missing `type` ``.
pub fn events(
    items: &[Value],
    mut missing_id: impl FnMut(usize) -> String,
) -> Result<Vec<Event>, ConnectorError> {
    items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            event(item, || missing_id(index))
                .map_err(|why| ConnectorError::BadRequest(format!("event {index}: {why}")))
        })
        .collect()
}

/// One event; `missing_id` is called only when it has no `messageId`.
fn event(item: &Value, missing_id: impl FnOnce() -> String) -> Result<Event, String> {
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
        None => missing_id(),
    };

    let mut properties = object_field(fields, "properties")?;
    let own_traits = object_field(fields, "traits")?;
    let context_traits = match fields.get("context").and_then(|c| c.get("traits")) {
        Some(Value::Object(t)) => t.clone(),
        _ => Map::new(),
    };
    // The host's tracking API reads traits the same way: an identify's come from
    // `context.traits` (where RudderStack puts them) and `traits`, the latter winning; a
    // group's describe the group; other calls carry `context.traits`.
    let mut traits = match kind {
        EventKind::Identify => {
            let mut merged = context_traits;
            merged.extend(own_traits);
            merged
        }
        EventKind::Group => own_traits,
        _ => context_traits,
    };
    if kind == EventKind::Page
        && let Some(category) = string_field(fields, "category")?
    {
        properties
            .entry("category")
            .or_insert(Value::String(category));
    }
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

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::json::json;
    use crate::testing::expect_bad_request;
    use crate::types::Identity;

    /// The events of a JSON array (or of one event object); a missing id is `derived-<index>`.
    fn map(items: &Value) -> Result<Vec<Event>, ConnectorError> {
        match items {
            Value::Array(items) => events(items, |index| format!("derived-{index}")),
            one => events(std::slice::from_ref(one), |index| {
                format!("derived-{index}")
            }),
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
        // As through the tracking API: a call's context.traits are its traits.
        assert_eq!(
            events[0].traits_value(),
            json!({"email": "bob@example.com"})
        );
    }

    #[test]
    fn missing_message_ids_are_asked_for_by_index() {
        let mut asked = Vec::new();
        let items = [
            json!({"type": "track", "userId": "u1", "event": "A"}),
            json!({"type": "track", "messageId": "m1", "userId": "u1", "event": "A"}),
            json!({"type": "track", "messageId": "", "userId": "u1", "event": "A"}),
        ];
        let mapped = events(&items, |index| {
            asked.push(index);
            format!("derived-{index}")
        })
        .unwrap();
        let ids: Vec<_> = mapped.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["derived-0", "m1", "derived-2"]);
        assert_eq!(asked, [0, 2], "only events without messageId ask");
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
        let why = expect_bad_request(map(&json!([ok, {"type": "track", "event": "A"}])));
        assert_eq!(why, "event 1: needs `userId` or `anonymousId`");
        let why = expect_bad_request(map(&json!({"type": "purchase", "userId": "u"})));
        assert!(why.starts_with("event 0: unknown type `purchase`"), "{why}");
        let why = expect_bad_request(map(&json!([ok, ok, {"userId": "u"}])));
        assert_eq!(why, "event 2: missing `type`");
        let why = expect_bad_request(map(&json!({"type": "track", "userId": "u"})));
        assert_eq!(why, "event 0: a track event needs `event`");
        let why = expect_bad_request(map(
            &json!({"type": "track", "userId": "u", "event": "A", "properties": [1]}),
        ));
        assert_eq!(why, "event 0: `properties` must be an object, not an array");
        assert!(expect_bad_request(map(&json!([1]))).starts_with("event 0: must be a JSON object"));
    }
}
