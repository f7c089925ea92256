//! What the profile stage reads of a logged event: who it is about, its name, time and
//! traits, decoded straight from the log's JSON while skipping the properties and context
//! the stage never uses (most of an event's bytes, and most of the allocations of decoding it).

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::Value;

use crate::ingest::event::identities_named;
use crate::ingest::{EventType, Identity, StoredEvent};

/// The fields of a [`StoredEvent`] that profiles use. A record decodes as this exactly when it
/// decodes as a `StoredEvent` from the host (the fields a stored event requires are required
/// here too).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ProfileEvent {
    /// Message id.
    pub message_id: String,
    /// Event type.
    #[serde(rename = "type")]
    pub kind: EventType,
    /// Track event name, or page/screen name.
    #[serde(default)]
    pub event: Option<String>,
    /// Segment `userId`.
    #[serde(default)]
    pub user_id: Option<String>,
    /// Segment `anonymousId`.
    #[serde(default)]
    pub anonymous_id: Option<String>,
    /// Further identities.
    #[serde(default)]
    pub identities: Vec<Identity>,
    /// When it happened (RFC 3339).
    pub timestamp: String,
    /// Traits (identify, group; any call may carry them).
    #[serde(default)]
    pub traits: Value,
    /// Previous id (alias calls).
    #[serde(default)]
    pub previous_id: Option<String>,
    /// The contact the host wrote the event about.
    #[serde(default)]
    pub contact_id: Option<String>,
    /// Required in a stored event, unused here.
    #[allow(dead_code)]
    received_at: IgnoredAny,
    /// Required in a stored event, unused here.
    #[allow(dead_code)]
    source: IgnoredAny,
}

impl ProfileEvent {
    /// Decodes a logged event.
    pub fn decode(bytes: &[u8]) -> serde_json::Result<Self> {
        serde_json::from_slice(bytes)
    }

    /// Every identity the event names (as [`StoredEvent::all_identities`]).
    pub fn all_identities(&self) -> Vec<Identity> {
        identities_named(
            self.kind,
            self.user_id.as_deref(),
            self.anonymous_id.as_deref(),
            self.previous_id.as_deref(),
            &self.identities,
        )
    }
}

impl From<&StoredEvent> for ProfileEvent {
    fn from(e: &StoredEvent) -> Self {
        Self {
            message_id: e.message_id.clone(),
            kind: e.kind,
            event: e.event.clone(),
            user_id: e.user_id.clone(),
            anonymous_id: e.anonymous_id.clone(),
            identities: e.identities.clone(),
            timestamp: e.timestamp.clone(),
            traits: e.traits.clone(),
            previous_id: e.previous_id.clone(),
            contact_id: e.contact_id.clone(),
            received_at: IgnoredAny,
            source: IgnoredAny,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_logged_event_reads_the_same_as_the_stored_event_it_was() {
        let stored: StoredEvent = serde_json::from_value(serde_json::json!({
            "message_id": "m\"1", "type": "alias", "event": "Linked", "user_id": "u1",
            "anonymous_id": "a1", "previous_id": "old", "timestamp": "2030-01-01T00:00:00Z",
            "received_at": "2030-01-01T00:00:01Z", "source": "source:test",
            "identities": [{"kind": "email", "value": "ada@example.com"}],
            "traits": {"plan": "pro"}, "properties": {"a": [1, 2, {"b": null}]},
            "context": {"ip": "203.0.113.9"}, "contact_id": "ct_1",
        }))
        .expect("stored");
        let bytes = serde_json::to_vec(&stored).expect("json");
        let read = ProfileEvent::decode(&bytes).expect("decode");
        let from = ProfileEvent::from(&stored);
        for e in [&read, &from] {
            assert_eq!(e.message_id, stored.message_id);
            assert_eq!(e.kind, stored.kind);
            assert_eq!(e.event, stored.event);
            assert_eq!(e.timestamp, stored.timestamp);
            assert_eq!(e.traits, stored.traits);
            assert_eq!(e.contact_id, stored.contact_id);
            assert_eq!(e.all_identities(), stored.all_identities());
        }
        let without_source =
            br#"{"message_id":"m","type":"track","timestamp":"t","received_at":"t"}"#;
        assert!(serde_json::from_slice::<StoredEvent>(without_source).is_err());
        assert!(ProfileEvent::decode(without_source).is_err(), "as strict");
    }
}
