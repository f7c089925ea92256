//! What a guest returns, lifted out of its memory under a byte budget: every string and list
//! length is read in guest memory and charged before a byte is copied to the host.
//!
//! Why: a component's strings may all point at one buffer, so its linear memory does not
//! bound what the host copies. 10,000 events whose properties share one 12 KB buffer cost
//! the guest 1 MB and the host 120 MB of copies (and gigabytes once parsed). The types here
//! stand in for the generated bindings' result types: [`Metered`] opens a budget for one
//! result, [`Text`] and [`Bounded`] charge it and refuse an oversized string or list before
//! it is copied, and the `Lifted*` records mirror the contract's records field by field and
//! convert into the host's [`super::types`]. They are checked against the component's own
//! types by name and shape, so they serve every contract version whose result records are
//! those of `tessera:cx@0.1.0`; a version that changes one adds its own lifted record.
//!
//! The budget lives in a thread-local because lifting gets no state from the embedder; a lift
//! runs synchronously on one thread from start to end (it never awaits), so the value set by
//! [`Metered`] at its start is the one every nested lift sees.

use std::cell::Cell;

use wasmtime::ValRaw;
use wasmtime::component::__internal::{CanonicalAbiInfo, InstanceType, InterfaceType, LiftContext};
use wasmtime::component::{ComponentType, Lift};

use super::types as host;

/// Host bytes one call's output may cost: the strings and lists copied out of the guest, and
/// then the JSON parsed from them (see [`json_cost`]), each counted against this budget.
pub const OUTPUT_BUDGET: usize = 32 << 20;
/// Largest string of an event, and largest event (all its text together): the tracking
/// API's event limit.
pub const MAX_EVENT_BYTES: usize = crate::ingest::segment::MAX_EVENT_BYTES;
/// Largest message, cursor or delivery field a guest may return.
pub const MAX_MESSAGE_BYTES: usize = 64 << 10;
/// Most events one webhook call or poll page may return.
pub const MAX_EVENTS_PER_CALL: usize = 10_000;
/// Most identities one event may name.
pub const MAX_IDENTITIES: usize = 256;
/// Most decisions a segment rule may return (one per contact of the batch).
pub const MAX_DECISIONS: usize = 1 << 20;

/// The output was over a budget; lifting stopped before the copy.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct OutputLimitExceeded(pub String);

thread_local! {
    /// Bytes the result being lifted may still cost; `None` outside a [`Metered`] lift.
    static LEFT: Cell<Option<usize>> = const { Cell::new(None) };
}

fn over(what: String) -> wasmtime::Error {
    wasmtime::Error::new(OutputLimitExceeded(what))
}

/// Charges `bytes` to the result being lifted.
fn charge(bytes: usize, what: &str) -> wasmtime::Result<()> {
    LEFT.with(|left| match left.get() {
        None => Ok(()),
        Some(l) if bytes <= l => {
            left.set(Some(l - bytes));
            Ok(())
        }
        Some(_) => Err(over(format!(
            "{what}: the call's output is over its budget of {} MiB",
            OUTPUT_BUDGET >> 20
        ))),
    })
}

/// The length field of a (pointer, length) pair stored in guest memory.
fn stored_len(bytes: &[u8]) -> usize {
    bytes
        .get(4..8)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map_or(usize::MAX, |b| u32::from_le_bytes(b) as usize)
}

/// The length of a flat (pointer, length) pair.
fn flat_len(src: &[ValRaw; 2]) -> usize {
    src[1].get_u32() as usize
}

/// A whole result, lifted under [`OUTPUT_BUDGET`]; `.1` is what it cost.
pub struct Metered<T>(pub T, pub usize);

fn metered<T>(lift: impl FnOnce() -> wasmtime::Result<T>) -> wasmtime::Result<Metered<T>> {
    let outer = LEFT.replace(Some(OUTPUT_BUDGET));
    let out = lift();
    let left = LEFT.replace(outer).unwrap_or(0);
    out.map(|value| Metered(value, OUTPUT_BUDGET - left))
}

// SAFETY: every item forwards to `T`, whose canonical ABI this wrapper has.
unsafe impl<T: ComponentType> ComponentType for Metered<T> {
    type Lower = T::Lower;
    const ABI: CanonicalAbiInfo = T::ABI;

    fn typecheck(ty: &InterfaceType, types: &InstanceType<'_>) -> wasmtime::Result<()> {
        T::typecheck(ty, types)
    }
}

// SAFETY: lifting forwards to `T`'s own lift.
unsafe impl<T: Lift> Lift for Metered<T> {
    fn linear_lift_from_flat(
        cx: &mut LiftContext<'_>,
        ty: InterfaceType,
        src: &Self::Lower,
    ) -> wasmtime::Result<Self> {
        metered(|| T::linear_lift_from_flat(cx, ty, src))
    }

    fn linear_lift_from_memory(
        cx: &mut LiftContext<'_>,
        ty: InterfaceType,
        bytes: &[u8],
    ) -> wasmtime::Result<Self> {
        metered(|| T::linear_lift_from_memory(cx, ty, bytes))
    }
}

/// A `string` of at most `MAX` bytes, charged to the budget before it is copied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Text<const MAX: usize>(pub String);

impl<const MAX: usize> Text<MAX> {
    fn admit(len: usize) -> wasmtime::Result<()> {
        if len > MAX {
            return Err(over(format!(
                "a string of {len} bytes, over the limit of {MAX} bytes"
            )));
        }
        charge(len, "a string")
    }
}

// SAFETY: the canonical ABI of `string`, as `String` has it.
unsafe impl<const MAX: usize> ComponentType for Text<MAX> {
    type Lower = <String as ComponentType>::Lower;
    const ABI: CanonicalAbiInfo = <String as ComponentType>::ABI;

    fn typecheck(ty: &InterfaceType, types: &InstanceType<'_>) -> wasmtime::Result<()> {
        <String as ComponentType>::typecheck(ty, types)
    }
}

// SAFETY: lifting forwards to `String`'s once the length is admitted.
unsafe impl<const MAX: usize> Lift for Text<MAX> {
    fn linear_lift_from_flat(
        cx: &mut LiftContext<'_>,
        ty: InterfaceType,
        src: &Self::Lower,
    ) -> wasmtime::Result<Self> {
        Self::admit(flat_len(src))?;
        String::linear_lift_from_flat(cx, ty, src).map(Self)
    }

    fn linear_lift_from_memory(
        cx: &mut LiftContext<'_>,
        ty: InterfaceType,
        bytes: &[u8],
    ) -> wasmtime::Result<Self> {
        Self::admit(stored_len(bytes))?;
        String::linear_lift_from_memory(cx, ty, bytes).map(Self)
    }
}

/// A `list<T>` of at most `MAX` items, its host size charged before it is copied (each item's
/// strings are charged as they are lifted).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bounded<T, const MAX: usize>(pub Vec<T>);

impl<T, const MAX: usize> Bounded<T, MAX> {
    fn admit(len: usize) -> wasmtime::Result<()> {
        if len > MAX {
            return Err(over(format!(
                "a list of {len} items, over the limit of {MAX}"
            )));
        }
        charge(len.saturating_mul(size_of::<T>()), "a list")
    }
}

// SAFETY: the canonical ABI of `list<T>`, as `Vec<T>` has it.
unsafe impl<T: ComponentType, const MAX: usize> ComponentType for Bounded<T, MAX> {
    type Lower = <Vec<T> as ComponentType>::Lower;
    const ABI: CanonicalAbiInfo = <Vec<T> as ComponentType>::ABI;

    fn typecheck(ty: &InterfaceType, types: &InstanceType<'_>) -> wasmtime::Result<()> {
        <Vec<T> as ComponentType>::typecheck(ty, types)
    }
}

// SAFETY: lifting forwards to `Vec<T>`'s once the length is admitted.
unsafe impl<T: Lift, const MAX: usize> Lift for Bounded<T, MAX> {
    fn linear_lift_from_flat(
        cx: &mut LiftContext<'_>,
        ty: InterfaceType,
        src: &Self::Lower,
    ) -> wasmtime::Result<Self> {
        Self::admit(flat_len(src))?;
        Vec::<T>::linear_lift_from_flat(cx, ty, src).map(Self)
    }

    fn linear_lift_from_memory(
        cx: &mut LiftContext<'_>,
        ty: InterfaceType,
        bytes: &[u8],
    ) -> wasmtime::Result<Self> {
        Self::admit(stored_len(bytes))?;
        Vec::<T>::linear_lift_from_memory(cx, ty, bytes).map(Self)
    }
}

/// A string of an event.
pub type EventText = Text<MAX_EVENT_BYTES>;
/// A message, cursor or delivery field.
pub type Message = Text<MAX_MESSAGE_BYTES>;

/// `identity`, lifted.
#[derive(ComponentType, Lift)]
#[component(record)]
pub struct LiftedIdentity {
    pub(super) kind: EventText,
    pub(super) value: EventText,
}

/// `contact-ref`, lifted.
#[derive(ComponentType, Lift)]
#[component(record)]
pub struct LiftedContactRef {
    #[component(name = "user-id")]
    pub(super) user_id: Option<EventText>,
    #[component(name = "anonymous-id")]
    pub(super) anonymous_id: Option<EventText>,
    pub(super) identities: Bounded<LiftedIdentity, MAX_IDENTITIES>,
}

/// `event-kind`, lifted.
#[derive(Debug, Clone, Copy, ComponentType, Lift)]
#[component(enum)]
#[repr(u8)]
pub enum LiftedEventKind {
    #[component(name = "track")]
    Track,
    #[component(name = "identify")]
    Identify,
    #[component(name = "page")]
    Page,
    #[component(name = "screen")]
    Screen,
    #[component(name = "group")]
    Group,
    #[component(name = "alias")]
    Alias,
}

impl From<LiftedEventKind> for host::EventKind {
    fn from(k: LiftedEventKind) -> Self {
        match k {
            LiftedEventKind::Track => Self::Track,
            LiftedEventKind::Identify => Self::Identify,
            LiftedEventKind::Page => Self::Page,
            LiftedEventKind::Screen => Self::Screen,
            LiftedEventKind::Group => Self::Group,
            LiftedEventKind::Alias => Self::Alias,
        }
    }
}

/// `event`, lifted; its JSON is parsed later, once, by [`super::events`].
#[derive(ComponentType, Lift)]
#[component(record)]
pub struct LiftedEvent {
    pub(super) id: EventText,
    pub(super) kind: LiftedEventKind,
    pub(super) name: Option<EventText>,
    pub(super) contact: LiftedContactRef,
    pub(super) timestamp: Option<EventText>,
    pub(super) properties: EventText,
    pub(super) traits: EventText,
}

/// The events of one call.
pub type LiftedEvents = Bounded<LiftedEvent, MAX_EVENTS_PER_CALL>;

/// `poll-page`, lifted.
#[derive(ComponentType, Lift)]
#[component(record)]
pub struct LiftedPollPage {
    pub(super) events: LiftedEvents,
    pub(super) cursor: Option<Message>,
    pub(super) more: bool,
}

/// `connector-error`, lifted.
#[derive(ComponentType, Lift)]
#[component(variant)]
pub enum LiftedConnectorError {
    #[component(name = "unauthorized")]
    Unauthorized(Message),
    #[component(name = "bad-request")]
    BadRequest(Message),
    #[component(name = "unsupported")]
    Unsupported(Message),
    #[component(name = "upstream")]
    Upstream(Message),
}

impl From<LiftedConnectorError> for host::ConnectorError {
    fn from(e: LiftedConnectorError) -> Self {
        match e {
            LiftedConnectorError::Unauthorized(m) => Self::Unauthorized(m.0),
            LiftedConnectorError::BadRequest(m) => Self::BadRequest(m.0),
            LiftedConnectorError::Unsupported(m) => Self::Unsupported(m.0),
            LiftedConnectorError::Upstream(m) => Self::Upstream(m.0),
        }
    }
}

/// `delivery`, lifted.
#[derive(ComponentType, Lift)]
#[component(record)]
pub struct LiftedDelivery {
    #[component(name = "provider-id")]
    provider_id: Option<Message>,
    detail: Option<Message>,
}

impl From<LiftedDelivery> for host::Delivery {
    fn from(d: LiftedDelivery) -> Self {
        Self {
            provider_id: d.provider_id.map(|t| t.0),
            detail: d.detail.map(|t| t.0),
        }
    }
}

/// `retry`, lifted.
#[derive(ComponentType, Lift)]
#[component(record)]
pub struct LiftedRetry {
    message: Message,
    #[component(name = "after-ms")]
    after_ms: Option<u64>,
}

/// `send-error`, lifted.
#[derive(ComponentType, Lift)]
#[component(variant)]
pub enum LiftedSendError {
    #[component(name = "retryable")]
    Retryable(LiftedRetry),
    #[component(name = "permanent")]
    Permanent(Message),
}

impl From<LiftedSendError> for host::SendError {
    fn from(e: LiftedSendError) -> Self {
        match e {
            LiftedSendError::Retryable(r) => Self::Retryable(host::Retry {
                message: r.message.0,
                after_ms: r.after_ms,
            }),
            LiftedSendError::Permanent(m) => Self::Permanent(m.0),
        }
    }
}

/// Most status updates one status callback may report.
pub const MAX_STATUS_UPDATES: usize = 1_000;

/// `delivery-status` (contract 0.2), lifted.
#[derive(Debug, Clone, Copy, ComponentType, Lift)]
#[component(enum)]
#[repr(u8)]
pub enum LiftedDeliveryStatus {
    #[component(name = "sent")]
    Sent,
    #[component(name = "delivered")]
    Delivered,
    #[component(name = "failed")]
    Failed,
    #[component(name = "bounced")]
    Bounced,
    #[component(name = "complained")]
    Complained,
    #[component(name = "unsubscribed")]
    Unsubscribed,
}

impl From<LiftedDeliveryStatus> for host::DeliveryStatus {
    fn from(s: LiftedDeliveryStatus) -> Self {
        match s {
            LiftedDeliveryStatus::Sent => Self::Sent,
            LiftedDeliveryStatus::Delivered => Self::Delivered,
            LiftedDeliveryStatus::Failed => Self::Failed,
            LiftedDeliveryStatus::Bounced => Self::Bounced,
            LiftedDeliveryStatus::Complained => Self::Complained,
            LiftedDeliveryStatus::Unsubscribed => Self::Unsubscribed,
        }
    }
}

/// `status-update` (contract 0.2), lifted.
#[derive(ComponentType, Lift)]
#[component(record)]
pub struct LiftedStatusUpdate {
    #[component(name = "message-id")]
    message_id: Option<Message>,
    #[component(name = "provider-id")]
    provider_id: Option<Message>,
    status: LiftedDeliveryStatus,
    detail: Option<Message>,
}

impl From<LiftedStatusUpdate> for host::StatusUpdate {
    fn from(u: LiftedStatusUpdate) -> Self {
        Self {
            message_id: u.message_id.map(|t| t.0),
            provider_id: u.provider_id.map(|t| t.0),
            status: u.status.into(),
            detail: u.detail.map(|t| t.0),
        }
    }
}

/// A channel's answer to a status callback (contract 0.2), lifted.
pub type LiftedStatusUpdates = Result<Bounded<LiftedStatusUpdate, MAX_STATUS_UPDATES>, Message>;

/// Segment rule decisions of contract 0.1 (`list<bool>`), lifted.
pub type LiftedDecisions = Result<Bounded<bool, MAX_DECISIONS>, Message>;

/// `decision` (contract 0.2), lifted.
#[derive(Debug, Clone, ComponentType, Lift)]
#[component(record)]
pub struct LiftedDecision {
    member: bool,
    #[component(name = "recheck-at-ms")]
    recheck_at_ms: Option<i64>,
    keep: Option<Bounded<u32, MAX_KEEP>>,
}

/// Most past events one decision may keep (the most a rule input carries).
pub const MAX_KEEP: usize = 10_000;

impl From<LiftedDecision> for host::Decision {
    fn from(d: LiftedDecision) -> Self {
        Self {
            member: d.member,
            recheck_at_ms: d.recheck_at_ms,
            keep: d.keep.map(|k| k.0),
        }
    }
}

/// Segment rule decisions of contract 0.2 (`list<decision>`), lifted.
pub type LiftedDecisions2 = Result<Bounded<LiftedDecision, MAX_DECISIONS>, Message>;

/// Most names a rule's needs may list (events and traits each).
pub const MAX_NEEDED_NAMES: usize = 1_000;
/// Longest name in a rule's needs.
pub const MAX_NAME_BYTES: usize = 1_024;

/// A name in a rule's needs.
pub type NameText = Text<MAX_NAME_BYTES>;

/// `rule-needs` (contract 0.2), lifted.
#[derive(ComponentType, Lift)]
#[component(record)]
pub struct LiftedRuleNeeds {
    events: Bounded<NameText, MAX_NEEDED_NAMES>,
    traits: Bounded<NameText, MAX_NEEDED_NAMES>,
    #[component(name = "window-ms")]
    window_ms: Option<u64>,
}

impl From<LiftedRuleNeeds> for host::RuleNeeds {
    fn from(n: LiftedRuleNeeds) -> Self {
        Self {
            events: n.events.0.into_iter().map(|t| t.0).collect(),
            traits: n.traits.0.into_iter().map(|t| t.0).collect(),
            window_ms: n.window_ms,
        }
    }
}

/// A rule's answer to `describe`, lifted.
pub type LiftedDescribe = Result<LiftedRuleNeeds, Message>;

/// Host bytes a parsed JSON value holds, roughly: each node, each string and key, and the
/// spare capacity of arrays. Text like `[0,0,0,...]` costs 16 times its size once parsed, so
/// the parse is charged, not only the text.
pub fn json_cost(value: &serde_json::Value) -> usize {
    use serde_json::Value;
    const NODE: usize = size_of::<Value>();
    // A map entry: its key `String`, its value, and the map's own bookkeeping.
    const ENTRY: usize = size_of::<String>() + NODE + 16;
    match value {
        Value::Null | Value::Bool(_) | Value::Number(_) => NODE,
        Value::String(s) => NODE + s.capacity(),
        Value::Array(items) => {
            NODE + (items.capacity() - items.len()) * NODE
                + items.iter().map(json_cost).sum::<usize>()
        }
        Value::Object(map) => {
            NODE + map
                .iter()
                .map(|(k, v)| ENTRY - NODE + k.capacity() + json_cost(v))
                .sum::<usize>()
        }
    }
}
