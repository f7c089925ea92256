//! Segment's tracking API payloads: validated into [`StoredEvent`]s, following Segment's
//! published HTTP API spec (field names, limits, timestamp correction).

use serde_json::{Map, Value};
use time::OffsetDateTime;

use super::event::{EventType, Identity, StoredEvent, format_rfc3339, parse_time};

/// Largest single event, bytes (Segment: 32 KB).
pub const MAX_EVENT_BYTES: usize = 32 * 1024;
/// Largest batch request, bytes (Segment: 500 KB).
pub const MAX_BATCH_BYTES: usize = 500 * 1024;

/// Why a payload was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SegmentError {
    /// The body is not JSON, or not the expected shape.
    #[error("malformed JSON: {0}")]
    Malformed(String),
    /// One event of the request is invalid; `index` is its position in the batch (0 for a
    /// single-event call).
    #[error("event {index}: {reason}")]
    Invalid {
        /// Position in the batch.
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// The batch is over 500 KB.
    #[error("batch of {0} bytes is over the 500 KB limit")]
    BatchTooLarge(usize),
}

fn invalid(index: usize, reason: impl Into<String>) -> SegmentError {
    SegmentError::Invalid {
        index,
        reason: reason.into(),
    }
}

fn string_field(
    obj: &Map<String, Value>,
    name: &str,
    index: usize,
) -> Result<Option<String>, SegmentError> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        // Clients may send numeric ids; Segment stringifies them.
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(invalid(
            index,
            format!("`{name}` must be a string, not {}", kind_of(other)),
        )),
    }
}

fn object_field(obj: &Map<String, Value>, name: &str, index: usize) -> Result<Value, SegmentError> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(Value::Object(Map::new())),
        Some(v @ Value::Object(_)) => Ok(v.clone()),
        Some(other) => Err(invalid(
            index,
            format!("`{name}` must be an object, not {}", kind_of(other)),
        )),
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Parses the body of `POST /v1/{type}` (`kind` set) or `POST /v1/batch` / `/v1/import`
/// (`kind` is `None`) into events, received at `received_at`, from `source`.
pub fn parse(
    body: &[u8],
    kind: Option<EventType>,
    received_at: OffsetDateTime,
    source: &str,
) -> Result<Vec<StoredEvent>, SegmentError> {
    if kind.is_none() && body.len() > MAX_BATCH_BYTES {
        return Err(SegmentError::BatchTooLarge(body.len()));
    }
    if kind.is_some() && body.len() > MAX_EVENT_BYTES {
        return Err(invalid(
            0,
            format!("{} bytes is over the 32 KB event limit", body.len()),
        ));
    }
    let root: Value =
        serde_json::from_slice(body).map_err(|e| SegmentError::Malformed(e.to_string()))?;
    let Value::Object(root) = root else {
        return Err(SegmentError::Malformed(format!(
            "the body must be a JSON object, not {}",
            kind_of(&root)
        )));
    };
    let events = match kind {
        Some(kind) => vec![event(&root, Some(kind), 0, None, received_at, source)?],
        None => {
            let items = match root.get("batch") {
                Some(Value::Array(items)) => items,
                Some(other) => {
                    return Err(SegmentError::Malformed(format!(
                        "`batch` must be an array, not {}",
                        kind_of(other)
                    )));
                }
                None => {
                    return Err(SegmentError::Malformed(
                        "a batch needs a `batch` array".into(),
                    ));
                }
            };
            let batch_sent_at = root
                .get("sentAt")
                .and_then(Value::as_str)
                .and_then(parse_time);
            let mut events = Vec::with_capacity(items.len());
            for (index, item) in items.iter().enumerate() {
                let Value::Object(obj) = item else {
                    return Err(invalid(
                        index,
                        format!("must be an object, not {}", kind_of(item)),
                    ));
                };
                let size = serde_json::to_vec(item).map_or(0, |v| v.len());
                if size > MAX_EVENT_BYTES {
                    return Err(invalid(
                        index,
                        format!("{size} bytes is over the 32 KB event limit"),
                    ));
                }
                let mut event = event(obj, None, index, batch_sent_at, received_at, source)?;
                if event.context.is_null()
                    && let Some(ctx @ Value::Object(_)) = root.get("context")
                {
                    event.context = ctx.clone();
                }
                events.push(event);
            }
            events
        }
    };
    Ok(events)
}

fn event(
    obj: &Map<String, Value>,
    kind: Option<EventType>,
    index: usize,
    batch_sent_at: Option<OffsetDateTime>,
    received_at: OffsetDateTime,
    source: &str,
) -> Result<StoredEvent, SegmentError> {
    let kind = match (kind, obj.get("type").and_then(Value::as_str)) {
        (Some(k), _) => k,
        (None, Some(t)) => {
            EventType::parse(t).ok_or_else(|| invalid(index, format!("unknown type `{t}`")))?
        }
        (None, None) => return Err(invalid(index, "`type` is missing")),
    };
    let user_id = string_field(obj, "userId", index)?;
    let anonymous_id = string_field(obj, "anonymousId", index)?;
    let merged = match kind {
        EventType::Merge => merge_properties(obj, index)?,
        _ => Vec::new(),
    };
    if user_id.is_none() && anonymous_id.is_none() && merged.is_empty() {
        return Err(invalid(index, "needs a `userId` or an `anonymousId`"));
    }
    let event_name = match kind {
        EventType::Track => Some(
            string_field(obj, "event", index)?
                .ok_or_else(|| invalid(index, "a track call needs `event`"))?,
        ),
        EventType::Page | EventType::Screen => string_field(obj, "name", index)?,
        _ => None,
    };
    let group_id = string_field(obj, "groupId", index)?;
    if kind == EventType::Group && group_id.is_none() {
        return Err(invalid(index, "a group call needs `groupId`"));
    }
    let previous_id = string_field(obj, "previousId", index)?;
    if kind == EventType::Alias && (previous_id.is_none() || user_id.is_none()) {
        return Err(invalid(
            index,
            "an alias call needs `previousId` and `userId`",
        ));
    }
    let context = match obj.get("context") {
        None | Some(Value::Null) => Value::Null,
        Some(v @ Value::Object(_)) => v.clone(),
        Some(other) => {
            return Err(invalid(
                index,
                format!("`context` must be an object, not {}", kind_of(other)),
            ));
        }
    };
    let traits = match kind {
        // RudderStack's libraries send identify traits in `context.traits`; where both are
        // present the top-level ones win.
        EventType::Identify => {
            let mut traits = context
                .get("traits")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            if let Value::Object(top) = object_field(obj, "traits", index)? {
                traits.extend(top);
            }
            Value::Object(traits)
        }
        EventType::Group => object_field(obj, "traits", index)?,
        // Segment clients may put identify-style traits in context.traits on other calls.
        _ => context
            .get("traits")
            .filter(|t| t.is_object())
            .cloned()
            .unwrap_or_else(|| Value::Object(Map::new())),
    };
    let mut properties = object_field(obj, "properties", index)?;
    // A page's top-level `category` is kept in its properties, as Segment does.
    if kind == EventType::Page
        && let Some(category) = string_field(obj, "category", index)?
        && let Value::Object(props) = &mut properties
    {
        props.entry("category").or_insert(Value::String(category));
    }
    let message_id = string_field(obj, "messageId", index)?
        .unwrap_or_else(|| format!("tessera-{}", hex::encode(rand::random::<[u8; 16]>())));
    if message_id.len() > 256 {
        return Err(invalid(index, "`messageId` is longer than 256 characters"));
    }
    let timestamp = corrected_timestamp(obj, batch_sent_at, received_at, index)?;
    let mut identities = merged;
    for source in [&traits, context.get("traits").unwrap_or(&Value::Null)] {
        for key in ["email", "phone"] {
            if let Some(v) = source
                .get(key)
                .and_then(Value::as_str)
                .filter(|v| !v.is_empty())
            {
                let id = Identity::new(key, v);
                if !identities.contains(&id) {
                    identities.push(id);
                }
            }
        }
    }
    Ok(StoredEvent {
        message_id,
        kind,
        event: event_name,
        user_id,
        anonymous_id,
        identities,
        timestamp: format_rfc3339(timestamp),
        received_at: format_rfc3339(received_at),
        source: source.to_string(),
        properties,
        traits,
        context,
        integrations: obj
            .get("integrations")
            .filter(|v| v.is_object())
            .cloned()
            .unwrap_or(Value::Null),
        group_id,
        previous_id,
        contact_id: None,
    })
}

/// The identities of a RudderStack `merge` call: `mergeProperties` is a list of
/// `{"type", "value"}` pairs (`userId`, `anonymousId`, `email`, `phone` or any other kind).
fn merge_properties(obj: &Map<String, Value>, index: usize) -> Result<Vec<Identity>, SegmentError> {
    let Some(Value::Array(items)) = obj.get("mergeProperties") else {
        return Err(invalid(
            index,
            "a merge call needs a `mergeProperties` array",
        ));
    };
    let mut out: Vec<Identity> = Vec::with_capacity(items.len());
    for item in items {
        let kind = item.get("type").and_then(Value::as_str).unwrap_or_default();
        let value = match item.get("value") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => String::new(),
        };
        if kind.trim().is_empty() || value.trim().is_empty() || kind.len() > 64 {
            return Err(invalid(
                index,
                "each of `mergeProperties` needs a `type` and a non-empty `value`",
            ));
        }
        let kind = match kind {
            "userId" | "user_id" => "user_id",
            "anonymousId" | "anonymous_id" => "anonymous_id",
            other => other,
        };
        let id = Identity::new(kind, &value);
        if !out.contains(&id) {
            out.push(id);
        }
    }
    if out.len() < 2 {
        return Err(invalid(
            index,
            "a merge call needs two different identities in `mergeProperties`",
        ));
    }
    Ok(out)
}

/// Segment's rule: `timestamp + (receivedAt - sentAt)` corrects a client clock that is off;
/// without `sentAt` the client's timestamp stands; without a timestamp, `receivedAt`.
fn corrected_timestamp(
    obj: &Map<String, Value>,
    batch_sent_at: Option<OffsetDateTime>,
    received_at: OffsetDateTime,
    index: usize,
) -> Result<OffsetDateTime, SegmentError> {
    let parse = |name: &str| -> Result<Option<OffsetDateTime>, SegmentError> {
        match obj.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => parse_time(s).map(Some).ok_or_else(|| {
                invalid(
                    index,
                    format!("`{name}` is not an ISO 8601 / RFC 3339 time: `{s}`"),
                )
            }),
            Some(other) => Err(invalid(
                index,
                format!("`{name}` must be a string, not {}", kind_of(other)),
            )),
        }
    };
    let timestamp = parse("timestamp")?.or(parse("originalTimestamp")?);
    let sent_at = parse("sentAt")?.or(batch_sent_at);
    Ok(match (timestamp, sent_at) {
        (Some(ts), Some(sent)) => ts + (received_at - sent),
        (Some(ts), None) => ts,
        (None, _) => received_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-24 12:00:00 UTC);

    fn batch(items: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({ "batch": items })).unwrap()
    }

    #[test]
    fn a_track_call_becomes_a_stored_event() {
        let body = json!({ "userId": "u1", "event": "Order Completed", "properties": { "total": 30 },
                           "messageId": "m1", "context": { "traits": { "email": "Ada@Example.com" } } });
        let events = parse(
            &serde_json::to_vec(&body).unwrap(),
            Some(EventType::Track),
            NOW,
            "source:s",
        )
        .unwrap();
        let e = &events[0];
        assert_eq!(e.message_id, "m1");
        assert_eq!(e.event.as_deref(), Some("Order Completed"));
        assert_eq!(e.properties["total"], 30);
        assert_eq!(
            e.identities,
            vec![Identity::new("email", "ada@example.com")]
        );
        assert_eq!(e.timestamp, "2026-11-24T12:00:00Z");
    }

    #[test]
    fn timestamps_are_corrected_by_the_clock_skew() {
        // The client's clock is 10 minutes slow: it says it sent at 11:50 what we got at 12:00.
        let body = batch(json!([{ "type": "track", "event": "x", "userId": "u",
            "timestamp": "2026-11-24T11:45:00Z", "sentAt": "2026-11-24T11:50:00Z" }]));
        let events = parse(&body, None, NOW, "s").unwrap();
        assert_eq!(events[0].timestamp, "2026-11-24T11:55:00Z");
    }

    #[test]
    fn bad_events_are_named_by_index() {
        let cases = [
            (
                json!([{ "type": "track", "event": "x", "userId": "u" }, { "type": "track", "event": "x" }]),
                1,
                "userId",
            ),
            (
                json!([{ "type": "bogus", "userId": "u" }]),
                0,
                "unknown type",
            ),
            (
                json!([{ "type": "track", "userId": "u" }]),
                0,
                "needs `event`",
            ),
            (json!([{ "type": "group", "userId": "u" }]), 0, "groupId"),
            (json!([{ "type": "alias", "userId": "u" }]), 0, "previousId"),
            (
                json!([{ "type": "identify", "userId": "u", "traits": [1] }]),
                0,
                "must be an object",
            ),
            (
                json!([{ "type": "identify", "userId": "u", "timestamp": "yesterday" }]),
                0,
                "ISO 8601",
            ),
        ];
        for (items, want_index, want) in cases {
            match parse(&batch(items.clone()), None, NOW, "s") {
                Err(SegmentError::Invalid { index, reason }) => {
                    assert_eq!(index, want_index, "{items}");
                    assert!(reason.contains(want), "{reason} should mention {want}");
                }
                other => panic!("{items}: {other:?}"),
            }
        }
    }

    #[test]
    fn rudderstack_shapes_are_read() {
        // identify traits in context.traits (RudderStack), top level winning where both are set.
        let body = json!({ "userId": "u", "traits": { "plan": "pro" },
            "context": { "traits": { "plan": "free", "email": "r@example.com" } } });
        let e = &parse(
            &serde_json::to_vec(&body).unwrap(),
            Some(EventType::Identify),
            NOW,
            "s",
        )
        .unwrap()[0];
        assert_eq!(e.traits["plan"], "pro");
        assert_eq!(e.traits["email"], "r@example.com");
        // page category kept in properties.
        let body = json!({ "userId": "u", "name": "Home", "category": "Docs", "properties": { "path": "/" } });
        let e = &parse(
            &serde_json::to_vec(&body).unwrap(),
            Some(EventType::Page),
            NOW,
            "s",
        )
        .unwrap()[0];
        assert_eq!(e.properties["category"], "Docs");
        assert_eq!(e.properties["path"], "/");
        // merge: two identities from mergeProperties, no userId needed.
        let body = json!({ "type": "merge", "mergeProperties": [
            { "type": "email", "value": "A@example.com" }, { "type": "userId", "value": "u-9" } ] });
        let e = &parse(&batch(json!([body])), None, NOW, "s").unwrap()[0];
        assert_eq!(e.kind, EventType::Merge);
        let ids = e.all_identities();
        assert!(
            ids.contains(&Identity::new("email", "a@example.com")),
            "{ids:?}"
        );
        assert!(ids.contains(&Identity::new("user_id", "u-9")), "{ids:?}");
        for bad in [
            json!([]),
            json!([{ "type": "email", "value": "a@x.io" }]),
            json!("x"),
        ] {
            let body = json!({ "type": "merge", "userId": "u", "mergeProperties": bad });
            assert!(
                parse(&batch(json!([body])), None, NOW, "s").is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn size_limits_follow_segment() {
        let big = "x".repeat(MAX_EVENT_BYTES);
        let body = batch(
            json!([{ "type": "track", "event": "x", "userId": "u", "properties": { "p": big } }]),
        );
        assert!(matches!(
            parse(&body, None, NOW, "s"),
            Err(SegmentError::Invalid { index: 0, .. })
        ));
        let huge = vec![b' '; MAX_BATCH_BYTES + 1];
        assert!(matches!(
            parse(&huge, None, NOW, "s"),
            Err(SegmentError::BatchTooLarge(_))
        ));
        assert!(matches!(
            parse(b"{nope", None, NOW, "s"),
            Err(SegmentError::Malformed(_))
        ));
    }
}
