//! The host's own types for what it exchanges with plugins, independent of any contract version.
//!
//! Everything outside the runtime (plugins, ingest, the HTTP API, storage) speaks these types;
//! only `runtime::contract::vX_Y` knows the generated bindings and converts at the call. Their
//! serde shape is the one the generated types had when they were persisted and shown (Rust
//! field names, variants by their Rust names: `{"BadRequest": "..."}`, `"Track"`), so kept
//! failure inputs and API answers read as before. A new contract version adds conversions to
//! and from these types; it does not change them unless the host's model itself changes.

use serde::{Deserialize, Serialize};

/// One way to recognise a person: `("email", "ada@example.com")`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// `email`, `phone`, or `vendor:object`.
    pub kind: String,
    /// The value as the source spelled it.
    pub value: String,
}

/// Who an event is about, as its source knows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactRef {
    /// The source's stable id for a known user.
    pub user_id: Option<String>,
    /// A device or session id for someone not yet known.
    pub anonymous_id: Option<String>,
    /// Further identities.
    pub identities: Vec<Identity>,
}

/// A contact profile as a plugin sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    /// The host's id for the contact.
    pub id: String,
    /// Every identity known for it.
    pub identities: Vec<Identity>,
    /// Its traits, a JSON object as text.
    pub traits: String,
}

/// The kind of an event, after Segment's spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventKind {
    /// The contact did something.
    Track,
    /// Traits about the contact.
    Identify,
    /// A web page view.
    Page,
    /// An app screen view.
    Screen,
    /// Group membership.
    Group,
    /// Two identities are one person.
    Alias,
}

/// An event as a segment rule receives it (JSON fields as text).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Unique id at its source.
    pub id: String,
    /// What kind of event.
    pub kind: EventKind,
    /// Event, page or screen name.
    pub name: Option<String>,
    /// Who it is about.
    pub contact: ContactRef,
    /// When it happened, RFC 3339.
    pub timestamp: Option<String>,
    /// Properties, a JSON object as text.
    pub properties: String,
    /// Traits, a JSON object as text.
    pub traits: String,
}

/// An inbound webhook request, untouched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpRequest {
    /// `POST`, `GET`, ...
    pub method: String,
    /// The path under the connector's webhook route.
    pub path: String,
    /// The raw query string, without `?`.
    pub query: String,
    /// Header names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    /// The raw body.
    pub body: Vec<u8>,
}

/// Why a connector refused a request or a poll failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConnectorError {
    /// Missing, wrong or stale signature.
    Unauthorized(String),
    /// The payload cannot be understood.
    BadRequest(String),
    /// Not handled by this connector.
    Unsupported(String),
    /// A remote system failed.
    Upstream(String),
}

impl ConnectorError {
    /// The connector's message.
    pub fn message(&self) -> &str {
        match self {
            Self::Unauthorized(m)
            | Self::BadRequest(m)
            | Self::Unsupported(m)
            | Self::Upstream(m) => m,
        }
    }
}

/// How many times a contact did something.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventCount {
    /// The event name.
    pub name: String,
    /// How many such events.
    pub count: u64,
}

/// One contact a segment rule is asked about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleInput {
    /// The contact.
    pub contact: Contact,
    /// The event that caused the evaluation, if one did.
    pub event: Option<Event>,
    /// Per-event-name counters.
    pub counts: Vec<EventCount>,
    /// Whether the contact is in the segment now.
    pub member: bool,
    /// The contact's events the rule's [`RuleNeeds`] ask for (contract 0.2 and later; empty
    /// for 0.1 rules), oldest first by event time.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<PastEvent>,
    /// The host's clock for this evaluation, Unix milliseconds (0 in records kept before it
    /// existed). Rules judge windows against it, not against their own clock.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub now_ms: i64,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// One of a contact's past events, as a segment rule that asked for it sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PastEvent {
    /// What kind of event.
    pub kind: EventKind,
    /// Event, page or screen name.
    pub name: Option<String>,
    /// When it happened (the source's timestamp), Unix milliseconds.
    pub timestamp_ms: i64,
    /// Properties, a JSON object as text.
    pub properties: String,
}

/// A segment rule's decision about one contact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// Whether the contact is in the segment.
    pub member: bool,
    /// When time alone may change the decision (an event ageing out of the rule's window, a
    /// date in a trait passing), Unix milliseconds: the host evaluates the contact again then.
    pub recheck_at_ms: Option<i64>,
    /// The past events (indices into [`RuleInput::events`]) the rule needs to see again;
    /// none: the whole window every time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep: Option<Vec<u32>>,
}

impl From<bool> for Decision {
    fn from(member: bool) -> Self {
        Self {
            member,
            recheck_at_ms: None,
            keep: None,
        }
    }
}

/// What a segment's rule depends on, so the host asks it only when something it reads
/// changed. `"*"` in a list means any name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleNeeds {
    /// Event names (track, page or screen) whose arrival may change membership; the host
    /// hands the contact's events of these names, within `window_ms`, in [`RuleInput::events`].
    pub events: Vec<String>,
    /// Trait names whose change may change membership.
    pub traits: Vec<String>,
    /// How far back, by event time, the rule looks at `events`; none: it reads no past events.
    pub window_ms: Option<u64>,
}

impl RuleNeeds {
    /// Depends on everything and reads no past events: what a 0.1 rule, which cannot say,
    /// is taken to need.
    pub fn everything() -> Self {
        Self {
            events: vec!["*".into()],
            traits: vec!["*".into()],
            window_ms: None,
        }
    }
}

/// A message for a channel to deliver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Idempotency key.
    pub id: String,
    /// `email`, `sms`, `webhook`, ...
    pub channel: String,
    /// The recipient.
    pub to: String,
    /// The sender, when the channel has one.
    pub sender: Option<String>,
    /// The subject, for channels that have one.
    pub subject: Option<String>,
    /// The rendered body.
    pub body: String,
    /// The media type of `body`.
    pub content_type: String,
    /// Context, a JSON object as text.
    pub metadata: String,
    /// The HTML alternative (`body` is then the text part); contract 0.2 and later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
    /// Headers for channels that have them (`List-Unsubscribe`, `Reply-To`); contract 0.2
    /// and later.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<Header>,
}

/// A header a message asks its channel to set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// The name as written (`List-Unsubscribe`).
    pub name: String,
    /// The value, ready to write.
    pub value: String,
}

/// Where a message is, as a provider's status callback reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// The provider accepted it.
    Sent,
    /// It reached the recipient.
    Delivered,
    /// It could not be delivered.
    Failed,
    /// A hard bounce.
    Bounced,
    /// Marked as spam.
    Complained,
    /// Unsubscribed through the provider.
    Unsubscribed,
}

impl DeliveryStatus {
    /// `delivered`: how the API and records name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
            Self::Bounced => "bounced",
            Self::Complained => "complained",
            Self::Unsubscribed => "unsubscribed",
        }
    }
}

/// One status a provider reported about one message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusUpdate {
    /// The host's idempotency key, when the provider echoes it.
    pub message_id: Option<String>,
    /// The provider's id for the message.
    pub provider_id: Option<String>,
    /// What happened.
    pub status: DeliveryStatus,
    /// The provider's own words.
    pub detail: Option<String>,
}

/// A message the provider accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The provider's id for the message.
    pub provider_id: Option<String>,
    /// A short note.
    pub detail: Option<String>,
}

/// A failed send that may succeed later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retry {
    /// What went wrong.
    pub message: String,
    /// The provider's `Retry-After`, milliseconds.
    pub after_ms: Option<u64>,
}

/// Why a send failed, and whether to try again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SendError {
    /// A transient failure.
    Retryable(Retry),
    /// A failure that will not heal.
    Permanent(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Kept failure inputs hold rule batches and messages as JSON: these are the shapes
    /// records written before the host had its own types carry, and they must still read.
    #[test]
    fn records_kept_before_read_and_write_the_same_json() {
        let batch = json!([{
            "contact": {"id": "c1", "identities": [{"kind": "email", "value": "a@b.c"}],
                        "traits": "{\"plan\":\"pro\"}"},
            "event": {"id": "e1", "kind": "Track", "name": "Order Completed",
                      "contact": {"user_id": "u1", "anonymous_id": null, "identities": []},
                      "timestamp": null, "properties": "{}", "traits": "{}"},
            "counts": [{"name": "Order Completed", "count": 3}],
            "member": false
        }]);
        let read: Vec<RuleInput> = serde_json::from_value(batch.clone()).unwrap();
        assert_eq!(read[0].event.as_ref().unwrap().kind, EventKind::Track);
        assert_eq!(serde_json::to_value(&read).unwrap(), batch);
        let message = json!({"id": "m1", "channel": "webhook", "to": "https://x.example/",
            "sender": null, "subject": "Hi", "body": "{}", "content_type": "application/json",
            "metadata": "{}"});
        let read: Message = serde_json::from_value(message.clone()).unwrap();
        assert_eq!(serde_json::to_value(&read).unwrap(), message);
        assert_eq!(
            serde_json::to_value(ConnectorError::BadRequest("no id".into())).unwrap(),
            json!({"BadRequest": "no id"})
        );
        let retry = SendError::Retryable(Retry {
            message: "503".into(),
            after_ms: Some(100),
        });
        assert_eq!(
            serde_json::to_value(retry).unwrap(),
            json!({"Retryable": {"message": "503", "after_ms": 100}})
        );
    }
}
