//! Maps one Calendly webhook onto a `Meeting Scheduled` or `Meeting Canceled` event.
//!
//! The body is `{"event": "invitee.created" | "invitee.canceled", "created_at": ...,
//! "payload": <invitee>}`, the invitee carrying its `scheduled_event`. Properties:
//! `event_type_name` (the scheduled event's name, which is its event type's), `event_type`
//! (the event type's URI), `start_time`, `end_time`, `scheduled_event_uri`, `invitee_uri`,
//! `location_type`, `timezone`, `rescheduled`, the reschedule links (`old_invitee`,
//! `new_invitee`) and non-empty `utm_*` tracking values; a cancellation adds
//! `cancel_reason`, `canceled_by` and `canceler_type`.
//!
//! The contact is the invitee's email and reminder phone number plus the invitee URI
//! (`calendly:invitee`); the traits are `email`, `name`, `firstName` and `lastName`. The
//! event id is `calendly:<invitee uri>:<event>`: one invitee is scheduled once and canceled
//! at most once, so a redelivery maps to the same id.

use tessera_sdk::json::{self, Map, Value, text_field};
use tessera_sdk::log;
use tessera_sdk::types::{ConnectorError, ContactRef, Event};

/// The webhook events this connector maps, with their event names.
const EVENTS: &[(&str, &str)] = &[
    ("invitee.created", "Meeting Scheduled"),
    ("invitee.canceled", "Meeting Canceled"),
];

/// The tracking fields copied into the properties when set.
const TRACKING: &[&str] = &[
    "utm_campaign",
    "utm_source",
    "utm_medium",
    "utm_content",
    "utm_term",
];

/// The event for one webhook; none for an event this connector does not map.
pub fn events(body: &[u8]) -> Result<Vec<Event>, ConnectorError> {
    let bad = |why: &str| ConnectorError::BadRequest(why.to_string());
    let envelope = json::parse_object(body).map_err(|e| bad(e.message()))?;
    let kind = text_field(&envelope, "event").ok_or_else(|| bad("the webhook has no `event`"))?;
    let Some(&(_, name)) = EVENTS.iter().find(|(e, _)| *e == kind) else {
        // Acknowledged, so Calendly does not retry it.
        log::info(
            "event not handled (expected invitee.created or invitee.canceled); acknowledged \
             without an event",
            &[("event", &kind)],
        );
        return Ok(Vec::new());
    };
    let invitee = envelope
        .get("payload")
        .and_then(Value::as_object)
        .ok_or_else(|| bad("the webhook has no `payload` object"))?;
    let uri = text_field(invitee, "uri").ok_or_else(|| bad("the invitee has no `uri`"))?;

    let mut contact = ContactRef::default().with_identity("calendly:invitee", uri.clone());
    if let Some(email) = text_field(invitee, "email") {
        contact = contact.with_email(email);
    }
    if let Some(phone) = text_field(invitee, "text_reminder_number") {
        contact = contact.with_phone(phone);
    }
    let mut event = Event::track(format!("calendly:{uri}:{kind}"), name, contact)
        .with_properties(properties(invitee, &uri))
        .with_traits(traits(invitee));
    event.timestamp = text_field(&envelope, "created_at");
    Ok(vec![event])
}

fn properties(invitee: &Map<String, Value>, uri: &str) -> Value {
    let scheduled = invitee.get("scheduled_event").and_then(Value::as_object);
    let from_event = |key: &str| scheduled.and_then(|event| text_field(event, key));
    let mut properties = Map::new();
    let mut put = |key: &str, value: Option<Value>| {
        if let Some(value) = value {
            properties.insert(key.to_string(), value);
        }
    };
    put("event_type_name", from_event("name").map(Value::String));
    put("event_type", from_event("event_type").map(Value::String));
    put("start_time", from_event("start_time").map(Value::String));
    put("end_time", from_event("end_time").map(Value::String));
    put(
        "scheduled_event_uri",
        from_event("uri")
            .or_else(|| text_field(invitee, "event"))
            .map(Value::String),
    );
    put("invitee_uri", Some(Value::String(uri.to_string())));
    put(
        "location_type",
        scheduled
            .and_then(|event| event.get("location"))
            .and_then(|location| location.get("type"))
            .and_then(json::text)
            .map(Value::String),
    );
    put(
        "timezone",
        text_field(invitee, "timezone").map(Value::String),
    );
    put(
        "rescheduled",
        invitee
            .get("rescheduled")
            .filter(|r| r.is_boolean())
            .cloned(),
    );
    put(
        "old_invitee",
        text_field(invitee, "old_invitee").map(Value::String),
    );
    put(
        "new_invitee",
        text_field(invitee, "new_invitee").map(Value::String),
    );
    // `cancellation` replaced the older top-level `cancel_reason` and `canceled_by`.
    let cancellation = invitee.get("cancellation").and_then(Value::as_object);
    let cancel_field = |key: &str, legacy: &str| {
        cancellation
            .and_then(|c| text_field(c, key))
            .or_else(|| text_field(invitee, legacy))
            .map(Value::String)
    };
    put("cancel_reason", cancel_field("reason", "cancel_reason"));
    put("canceled_by", cancel_field("canceled_by", "canceled_by"));
    put(
        "canceler_type",
        cancel_field("canceler_type", "canceler_type"),
    );
    if let Some(tracking) = invitee.get("tracking").and_then(Value::as_object) {
        for key in TRACKING {
            put(key, text_field(tracking, key).map(Value::String));
        }
    }
    Value::Object(properties)
}

fn traits(invitee: &Map<String, Value>) -> Value {
    let mut traits = Map::new();
    for (trait_name, field) in [
        ("email", "email"),
        ("name", "name"),
        ("firstName", "first_name"),
        ("lastName", "last_name"),
    ] {
        if let Some(value) = text_field(invitee, field) {
            traits.insert(trait_name.to_string(), Value::String(value));
        }
    }
    Value::Object(traits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_sdk::json::json;

    fn bad_request(body: Value) -> String {
        match events(body.to_string().as_bytes()) {
            Err(ConnectorError::BadRequest(why)) => why,
            other => panic!("expected bad-request, got {other:?}"),
        }
    }

    #[test]
    fn legacy_cancellation_fields_and_tracking_are_read() {
        let body = json!({
            "event": "invitee.canceled", "created_at": "2021-03-01T10:00:00.000000Z",
            "payload": {
                "uri": "https://api.calendly.com/scheduled_events/E1/invitees/I1",
                "email": "ada@example.com", "first_name": "Ada", "last_name": "Lovelace",
                "name": "Ada Lovelace", "cancel_reason": "Running late", "canceled_by": "Ada Lovelace",
                "text_reminder_number": "+1 404-555-1234",
                "tracking": {"utm_source": "newsletter", "utm_campaign": null}
            }
        });
        let event = events(body.to_string().as_bytes()).unwrap().remove(0);
        let properties = event.properties_value();
        assert_eq!(properties["cancel_reason"], "Running late");
        assert_eq!(properties["canceled_by"], "Ada Lovelace");
        assert_eq!(properties["utm_source"], "newsletter");
        assert!(properties.get("utm_campaign").is_none());
        // Neither `scheduled_event` nor the older `event` URI is in this payload.
        assert!(properties.get("scheduled_event_uri").is_none());
        assert_eq!(
            event.traits_value(),
            json!({"email": "ada@example.com", "name": "Ada Lovelace",
                   "firstName": "Ada", "lastName": "Lovelace"})
        );
        assert!(
            event
                .contact
                .identities
                .iter()
                .any(|i| i.kind == "phone" && i.value == "+1 404-555-1234")
        );
    }

    #[test]
    fn malformed_webhooks_are_bad_requests() {
        assert!(bad_request(json!({"payload": {}})).contains("`event`"));
        assert!(bad_request(json!({"event": "invitee.created"})).contains("`payload`"));
        assert!(bad_request(json!({"event": "invitee.created", "payload": {}})).contains("`uri`"));
        assert!(bad_request(json!([1])).contains("object"));
    }
}
