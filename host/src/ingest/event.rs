//! The canonical stored event: what the event log holds, whatever the source.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// One identity of a contact: `("email", "ada@example.com")`, `("shopify:customer", "123")`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Identity {
    /// `user_id`, `anonymous_id`, `email`, `phone`, or `vendor:object`.
    pub kind: String,
    /// The value (emails lower-cased).
    pub value: String,
}

impl Identity {
    /// An identity, normalised: kinds lower-case, emails lower-case and trimmed.
    pub fn new(kind: &str, value: &str) -> Self {
        let kind = kind.trim().to_ascii_lowercase();
        let value = if kind == "email" {
            value.trim().to_lowercase()
        } else {
            value.trim().to_string()
        };
        Self { kind, value }
    }

    /// The key under which the identity is indexed: `kind:value`.
    pub fn key(&self) -> String {
        format!("{}:{}", self.kind, self.value)
    }
}

/// The Segment event types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    /// `identify`
    Identify,
    /// `track`
    Track,
    /// `page`
    Page,
    /// `screen`
    Screen,
    /// `group`
    Group,
    /// `alias`
    Alias,
    /// RudderStack's `merge`: the identities in `mergeProperties` belong to one person.
    Merge,
}

impl EventType {
    /// Parses a Segment `type`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "identify" => Self::Identify,
            "track" => Self::Track,
            "page" => Self::Page,
            "screen" => Self::Screen,
            "group" => Self::Group,
            "alias" => Self::Alias,
            "merge" => Self::Merge,
            _ => return None,
        })
    }
}

/// An event as the log stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    /// Unique id at the source (Segment `messageId`); deduplication key.
    pub message_id: String,
    /// Event type.
    #[serde(rename = "type")]
    pub kind: EventType,
    /// Track event name, or page/screen name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// Segment `userId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Segment `anonymousId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anonymous_id: Option<String>,
    /// Further identities (email, phone, external ids).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identities: Vec<Identity>,
    /// When it happened (RFC 3339, skew-corrected).
    pub timestamp: String,
    /// When the host received it (RFC 3339).
    pub received_at: String,
    /// Which source it came from (`source:<id>` or `connector:<plugin id>`).
    pub source: String,
    /// Properties (track, page, screen).
    #[serde(default)]
    pub properties: Value,
    /// Traits (identify, group).
    #[serde(default)]
    pub traits: Value,
    /// Segment `context`.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub context: Value,
    /// Segment `integrations`.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub integrations: Value,
    /// Group id (group calls).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    /// Previous id (alias calls).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_id: Option<String>,
    /// The contact the event is about, when the host itself wrote it about a known contact
    /// (segment membership, a journey's trait update): the profile stage applies it to that
    /// contact, never to an identity. Clients cannot set it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_id: Option<String>,
}

impl StoredEvent {
    /// Every identity the event names, `user_id` and `anonymous_id` included.
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

/// Every identity an event of `kind` names: its `user_id`, its `anonymous_id`, an alias's
/// previous id (as either), then its further identities, each once.
pub fn identities_named(
    kind: EventType,
    user_id: Option<&str>,
    anonymous_id: Option<&str>,
    previous_id: Option<&str>,
    identities: &[Identity],
) -> Vec<Identity> {
    let mut out = Vec::with_capacity(identities.len() + 3);
    if let Some(u) = user_id {
        out.push(Identity::new("user_id", u));
    }
    if let Some(a) = anonymous_id {
        out.push(Identity::new("anonymous_id", a));
    }
    if let (EventType::Alias, Some(p)) = (kind, previous_id) {
        // Segment's alias: previousId is the old user id (or an anonymous id).
        out.push(Identity::new("user_id", p));
        out.push(Identity::new("anonymous_id", p));
    }
    for id in identities {
        if !out.contains(id) {
            out.push(id.clone());
        }
    }
    out
}

/// Now, as RFC 3339.
pub fn now_rfc3339() -> String {
    format_rfc3339(OffsetDateTime::now_utc())
}

/// Formats a time as RFC 3339 with millisecond precision.
pub fn format_rfc3339(t: OffsetDateTime) -> String {
    let t = t
        .replace_nanosecond(t.millisecond() as u32 * 1_000_000)
        .unwrap_or(t);
    t.format(&Rfc3339).unwrap_or_default()
}

/// Parses RFC 3339 / ISO 8601 timestamps as Segment clients send them.
pub fn parse_time(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}
