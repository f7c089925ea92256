//! The contract's data types, re-exported with small constructors that keep plugin code short.
//!
//! Structured payloads (traits, properties, metadata) travel as JSON text in the contract;
//! the helpers here take and give [`serde_json::Value`] so plugins never format JSON by hand.

use serde_json::Value;

pub use crate::bindings::connector::tessera::cx::kv::KvError;
pub use crate::bindings::connector::tessera::cx::log::Level;
pub use crate::bindings::connector::tessera::cx::types::{
    ConnectorError, Contact, ContactRef, Decision, Delivery, DeliveryStatus, Event, EventCount,
    EventKind, Header, HttpRequest, Identity, Message, PastEvent, PollPage, Retry, RuleInput,
    RuleNeeds, SendError, StatusUpdate,
};

/// JSON text for a payload field: an object stays as is, `null` becomes `{}`.
fn payload_text(value: Value) -> String {
    match value {
        Value::Null => "{}".to_string(),
        other => other.to_string(),
    }
}

/// Parses a payload field, treating empty or malformed text as an empty object.
fn payload_value(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::Object(Default::default()))
}

impl Identity {
    /// An identity of `kind` (`email`, `phone`, `vendor:object`) with `value`.
    pub fn new(kind: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            value: value.into(),
        }
    }
}

// The type is generated, so `#[derive(Default)]` is not an option here.
#[allow(clippy::derivable_impls)]
impl Default for ContactRef {
    fn default() -> Self {
        Self {
            user_id: None,
            anonymous_id: None,
            identities: Vec::new(),
        }
    }
}

impl ContactRef {
    /// A known user, by the source's stable user id.
    pub fn user(user_id: impl Into<String>) -> Self {
        Self {
            user_id: Some(user_id.into()),
            ..Self::default()
        }
    }

    /// Someone not yet known, by a device or session id.
    pub fn anonymous(anonymous_id: impl Into<String>) -> Self {
        Self {
            anonymous_id: Some(anonymous_id.into()),
            ..Self::default()
        }
    }

    /// Sets the anonymous id as well.
    pub fn with_anonymous_id(mut self, anonymous_id: impl Into<String>) -> Self {
        self.anonymous_id = Some(anonymous_id.into());
        self
    }

    /// Adds an identity, skipping one already present.
    pub fn with_identity(mut self, kind: impl Into<String>, value: impl Into<String>) -> Self {
        let identity = Identity::new(kind, value);
        if !self.identities.contains(&identity) {
            self.identities.push(identity);
        }
        self
    }

    /// Adds an `email` identity.
    pub fn with_email(self, email: impl Into<String>) -> Self {
        self.with_identity("email", email)
    }

    /// Adds a `phone` identity.
    pub fn with_phone(self, phone: impl Into<String>) -> Self {
        self.with_identity("phone", phone)
    }

    /// True when the reference names nobody.
    pub fn is_empty(&self) -> bool {
        self.user_id.is_none() && self.anonymous_id.is_none() && self.identities.is_empty()
    }
}

impl EventKind {
    /// The kind for a Segment `type` (`track`, `identify`, ...), if it is one.
    pub fn parse(kind: &str) -> Option<Self> {
        Some(match kind {
            "track" => Self::Track,
            "identify" => Self::Identify,
            "page" => Self::Page,
            "screen" => Self::Screen,
            "group" => Self::Group,
            "alias" => Self::Alias,
            _ => return None,
        })
    }

    /// The Segment `type` for this kind.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Track => "track",
            Self::Identify => "identify",
            Self::Page => "page",
            Self::Screen => "screen",
            Self::Group => "group",
            Self::Alias => "alias",
        }
    }
}

impl Event {
    /// An event of `kind` with no name, timestamp, properties or traits.
    pub fn new(id: impl Into<String>, kind: EventKind, contact: ContactRef) -> Self {
        Self {
            id: id.into(),
            kind,
            name: None,
            contact,
            timestamp: None,
            properties: "{}".to_string(),
            traits: "{}".to_string(),
        }
    }

    /// A `track` event: the contact did `name`.
    pub fn track(id: impl Into<String>, name: impl Into<String>, contact: ContactRef) -> Self {
        Self::new(id, EventKind::Track, contact).named(name)
    }

    /// An `identify` event setting `traits` (a JSON object) on the contact.
    pub fn identify(id: impl Into<String>, contact: ContactRef, traits: Value) -> Self {
        Self::new(id, EventKind::Identify, contact).with_traits(traits)
    }

    /// Sets the name (event name for `track`, page or screen name).
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Sets when it happened (RFC 3339).
    pub fn at(mut self, timestamp: impl Into<String>) -> Self {
        self.timestamp = Some(timestamp.into());
        self
    }

    /// Sets the properties (a JSON object; `null` means none).
    pub fn with_properties(mut self, properties: Value) -> Self {
        self.properties = payload_text(properties);
        self
    }

    /// Sets the traits (a JSON object; `null` means none).
    pub fn with_traits(mut self, traits: Value) -> Self {
        self.traits = payload_text(traits);
        self
    }

    /// The properties as JSON (`{}` when they do not parse).
    pub fn properties_value(&self) -> Value {
        payload_value(&self.properties)
    }

    /// The traits as JSON (`{}` when they do not parse).
    pub fn traits_value(&self) -> Value {
        payload_value(&self.traits)
    }
}

impl HttpRequest {
    /// A `POST` to `path` with `body` and no headers, for tests.
    pub fn post(path: impl Into<String>, body: impl Into<Vec<u8>>) -> Self {
        Self {
            method: "POST".to_string(),
            path: path.into(),
            query: String::new(),
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// Adds a header (the name is lower-cased, as the host does).
    pub fn with_header(mut self, name: impl AsRef<str>, value: impl Into<String>) -> Self {
        self.headers
            .push((name.as_ref().to_ascii_lowercase(), value.into()));
        self
    }

    /// The first value of header `name`, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The body as UTF-8 text, when it is.
    pub fn body_text(&self) -> Option<&str> {
        std::str::from_utf8(&self.body).ok()
    }
}

impl ConnectorError {
    /// The message, whatever the variant.
    pub fn message(&self) -> &str {
        match self {
            Self::Unauthorized(m)
            | Self::BadRequest(m)
            | Self::Unsupported(m)
            | Self::Upstream(m) => m,
        }
    }
}

impl PollPage {
    /// A page with `events`, keeping the cursor where it is and with nothing more ready.
    pub fn new(events: Vec<Event>) -> Self {
        Self {
            events,
            cursor: None,
            more: false,
        }
    }

    /// Moves the cursor to `cursor` once this page is durable.
    pub fn with_cursor(mut self, cursor: impl Into<String>) -> Self {
        self.cursor = Some(cursor.into());
        self
    }

    /// Says another page is ready now.
    pub fn with_more(mut self, more: bool) -> Self {
        self.more = more;
        self
    }
}

impl Contact {
    /// A contact with `id`, no identities and no traits, for tests.
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            identities: Vec::new(),
            traits: "{}".to_string(),
        }
    }

    /// Sets the traits (a JSON object).
    pub fn with_traits(mut self, traits: Value) -> Self {
        self.traits = payload_text(traits);
        self
    }

    /// Adds an identity.
    pub fn with_identity(mut self, kind: impl Into<String>, value: impl Into<String>) -> Self {
        self.identities.push(Identity::new(kind, value));
        self
    }

    /// The traits as JSON (`{}` when they do not parse).
    pub fn traits_value(&self) -> Value {
        payload_value(&self.traits)
    }
}

impl RuleInput {
    /// An input about `contact`, with no event, no counts, no past events, not a member yet,
    /// at time 0.
    pub fn new(contact: Contact) -> Self {
        Self {
            contact,
            event: None,
            counts: Vec::new(),
            member: false,
            events: Vec::new(),
            now_ms: 0,
        }
    }

    /// Sets the host's clock for the evaluation, Unix milliseconds.
    pub fn at(mut self, now_ms: i64) -> Self {
        self.now_ms = now_ms;
        self
    }

    /// Adds a past event, keeping [`RuleInput::events`] oldest first.
    pub fn with_past_event(mut self, event: PastEvent) -> Self {
        let at = self
            .events
            .partition_point(|e| e.timestamp_ms <= event.timestamp_ms);
        self.events.insert(at, event);
        self
    }

    /// Sets how many `name` events the contact has.
    pub fn with_count(mut self, name: impl Into<String>, count: u64) -> Self {
        let name = name.into();
        match self.counts.iter_mut().find(|c| c.name == name) {
            Some(existing) => existing.count = count,
            None => self.counts.push(EventCount { name, count }),
        }
        self
    }

    /// Sets the event that caused the evaluation.
    pub fn with_event(mut self, event: Event) -> Self {
        self.event = Some(event);
        self
    }

    /// Sets whether the contact is in the segment now.
    pub fn with_member(mut self, member: bool) -> Self {
        self.member = member;
        self
    }

    /// How many `name` events the contact has (0 when none are counted).
    pub fn count(&self, name: &str) -> u64 {
        self.counts
            .iter()
            .find(|c| c.name == name)
            .map_or(0, |c| c.count)
    }
}

impl PastEvent {
    /// A `track` event called `name` that happened at `timestamp_ms`, with no properties.
    pub fn track(name: impl Into<String>, timestamp_ms: i64) -> Self {
        Self {
            kind: EventKind::Track,
            name: Some(name.into()),
            timestamp_ms,
            properties: "{}".to_string(),
        }
    }

    /// Sets the properties (a JSON object).
    pub fn with_properties(mut self, properties: Value) -> Self {
        self.properties = payload_text(properties);
        self
    }

    /// The properties as JSON (`{}` when they do not parse).
    pub fn properties_value(&self) -> Value {
        payload_value(&self.properties)
    }
}

impl Decision {
    /// In (`true`) or out, with no recheck time.
    pub fn member(member: bool) -> Self {
        Self {
            member,
            recheck_at_ms: None,
            keep: None,
        }
    }

    /// Asks the host to evaluate the contact again at `at_ms` (Unix milliseconds), when
    /// time alone may change the decision.
    pub fn recheck_at(mut self, at_ms: i64) -> Self {
        self.recheck_at_ms = Some(at_ms);
        self
    }

    /// Tells the host which of the input's past events (indices into `events`) the rule
    /// needs to see again: next time it hands only those that are still in the window and
    /// the events that arrived since, instead of the whole window. A rule that needs the
    /// newest N events that qualify keeps those N. (A recompute, a new definition or
    /// rule version, a merge or a failed call hands the whole window again.)
    pub fn keep(mut self, indices: impl IntoIterator<Item = usize>) -> Self {
        self.keep = Some(
            indices
                .into_iter()
                .filter_map(|i| u32::try_from(i).ok())
                .collect(),
        );
        self
    }
}

impl From<bool> for Decision {
    fn from(member: bool) -> Self {
        Self::member(member)
    }
}

// The type is generated, so `#[derive(Default)]` is not an option here.
#[allow(clippy::derivable_impls)]
impl Default for RuleNeeds {
    fn default() -> Self {
        Self {
            events: Vec::new(),
            traits: Vec::new(),
            window_ms: None,
        }
    }
}

impl RuleNeeds {
    /// Reads nothing yet: add what the rule reads with the `with_*` methods.
    pub fn new() -> Self {
        Self::default()
    }

    /// Any change may matter, and no past events: what the host assumes of a 0.1 rule.
    pub fn everything() -> Self {
        Self::new().with_event("*").with_trait("*")
    }

    /// Events called `name` may change membership (`"*"`: any name).
    pub fn with_event(mut self, name: impl Into<String>) -> Self {
        let name = name.into();
        if !self.events.contains(&name) {
            self.events.push(name);
        }
        self
    }

    /// A change of trait `name` may change membership (`"*"`: any trait).
    pub fn with_trait(mut self, name: impl Into<String>) -> Self {
        let name = name.into();
        if !self.traits.contains(&name) {
            self.traits.push(name);
        }
        self
    }

    /// The rule reads the contact's events of its event names from the last `window_ms`
    /// milliseconds (by event time), handed over in [`RuleInput::events`].
    pub fn with_window_ms(mut self, window_ms: u64) -> Self {
        self.window_ms = Some(window_ms);
        self
    }
}

impl Message {
    /// A message with `id` for `channel`, to `to`, with a plain-text `body`; for tests.
    pub fn new(
        id: impl Into<String>,
        channel: impl Into<String>,
        to: impl Into<String>,
        body: impl Into<String>,
    ) -> Self {
        Self {
            id: id.into(),
            channel: channel.into(),
            to: to.into(),
            sender: None,
            subject: None,
            body: body.into(),
            content_type: "text/plain".to_string(),
            metadata: "{}".to_string(),
            html: None,
            headers: Vec::new(),
        }
    }

    /// Sets the HTML alternative (`body` is then the text part).
    pub fn with_html(mut self, html: impl Into<String>) -> Self {
        self.html = Some(html.into());
        self
    }

    /// Adds a header (`List-Unsubscribe`, `Reply-To`, ...).
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push(Header {
            name: name.into(),
            value: value.into(),
        });
        self
    }

    /// The value of the first header named `name`, compared without regard to case.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }

    /// Sets the subject.
    pub fn with_subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// Sets the media type of the body.
    pub fn with_content_type(mut self, content_type: impl Into<String>) -> Self {
        self.content_type = content_type.into();
        self
    }

    /// Sets the metadata (a JSON object).
    pub fn with_metadata(mut self, metadata: Value) -> Self {
        self.metadata = payload_text(metadata);
        self
    }

    /// The metadata as JSON (`{}` when it does not parse).
    pub fn metadata_value(&self) -> Value {
        payload_value(&self.metadata)
    }
}

impl Delivery {
    /// An accepted message with no provider id and no detail.
    pub fn accepted() -> Self {
        Self {
            provider_id: None,
            detail: None,
        }
    }

    /// Sets the provider's id for the message.
    pub fn with_provider_id(mut self, provider_id: impl Into<String>) -> Self {
        self.provider_id = Some(provider_id.into());
        self
    }

    /// Sets a short human-readable note.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

impl StatusUpdate {
    /// A status about the message the provider knows as `provider_id`.
    pub fn for_provider_id(provider_id: impl Into<String>, status: DeliveryStatus) -> Self {
        Self {
            message_id: None,
            provider_id: Some(provider_id.into()),
            status,
            detail: None,
        }
    }

    /// A status about the message whose idempotency key (`Message::id`) is `message_id`.
    pub fn for_message_id(message_id: impl Into<String>, status: DeliveryStatus) -> Self {
        Self {
            message_id: Some(message_id.into()),
            provider_id: None,
            status,
            detail: None,
        }
    }

    /// Sets the provider's own words (an error code, a bounce reason).
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

impl SendError {
    /// A transient failure the host retries with back-off.
    pub fn retryable(message: impl Into<String>) -> Self {
        Self::Retryable(Retry {
            message: message.into(),
            after_ms: None,
        })
    }

    /// A transient failure the provider asked to retry after `after_ms` milliseconds.
    pub fn retryable_after(message: impl Into<String>, after_ms: Option<u64>) -> Self {
        Self::Retryable(Retry {
            message: message.into(),
            after_ms,
        })
    }

    /// A failure that will not heal: the host dead-letters the message at once.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self::Permanent(message.into())
    }

    /// True for [`SendError::Retryable`].
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Retryable(_))
    }

    /// The message, whatever the variant.
    pub fn message(&self) -> &str {
        match self {
            Self::Retryable(retry) => &retry.message,
            Self::Permanent(message) => message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn track_event_defaults_to_empty_payloads() {
        let event = Event::track("m1", "Order Completed", ContactRef::user("u1"));
        assert_eq!(event.kind, EventKind::Track);
        assert_eq!(event.name.as_deref(), Some("Order Completed"));
        assert_eq!(event.properties, "{}");
        assert_eq!(event.traits, "{}");
    }

    #[test]
    fn null_payload_becomes_empty_object() {
        let event = Event::identify("m1", ContactRef::anonymous("a1"), Value::Null)
            .with_properties(json!({"plan": "pro"}));
        assert_eq!(event.traits, "{}");
        assert_eq!(event.properties_value(), json!({"plan": "pro"}));
    }

    #[test]
    fn contact_ref_skips_duplicate_identities() {
        let contact = ContactRef::user("u1")
            .with_email("ada@example.com")
            .with_email("ada@example.com");
        assert_eq!(contact.identities.len(), 1);
    }

    #[test]
    fn request_headers_match_case_insensitively() {
        let request = HttpRequest::post("/", "{}").with_header("X-Thing", "1");
        assert_eq!(request.header("x-thing"), Some("1"));
        assert_eq!(request.header("X-THING"), Some("1"));
    }

    #[test]
    fn past_events_stay_oldest_first() {
        let input = RuleInput::new(Contact::new("c1"))
            .with_past_event(PastEvent::track("b", 20))
            .with_past_event(PastEvent::track("a", 10))
            .with_past_event(PastEvent::track("c", 30));
        let names: Vec<_> = input.events.iter().filter_map(|e| e.name.clone()).collect();
        assert_eq!(names, vec!["a", "b", "c"]);
    }

    #[test]
    fn needs_list_each_name_once() {
        let needs = RuleNeeds::new()
            .with_event("Login")
            .with_event("Login")
            .with_trait("plan")
            .with_window_ms(60_000);
        assert_eq!(needs.events, vec!["Login".to_string()]);
        assert_eq!(needs.traits, vec!["plan".to_string()]);
        assert_eq!(needs.window_ms, Some(60_000));
        assert_eq!(RuleNeeds::everything().events, vec!["*".to_string()]);
    }

    #[test]
    fn rule_input_counts_default_to_zero() {
        let input = RuleInput::new(Contact::new("c1")).with_count("Order Completed", 3);
        assert_eq!(input.count("Order Completed"), 3);
        assert_eq!(input.count("Signed Up"), 0);
    }
}
