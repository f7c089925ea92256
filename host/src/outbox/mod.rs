//! The outbox: every message to deliver, stored once under its idempotency key, moved through
//! its states by the delivery worker, one lane per channel plugin.
//!
//! # Layout
//! - `record.rs`: a delivery as stored (state, attempts, content, journey origin).
//! - `keys.rs`: the keyspace's key layout (records and indexes).
//! - `store.rs`: [`Outbox`], the records and their moves, each one atomic batch.
//! - `retry.rs`: back-off, attempts and concurrency per channel ([`RetrySettings`]).
//! - `compose.rs`: a delivery made into the message its channel sends.
//! - `worker.rs`: [`OutboxWorker`], the lanes that send.

mod compose;
mod keys;
mod record;
mod retry;
mod store;
mod worker;

pub use compose::compose;
pub use record::{
    Attempt, AttemptOutcome, Content, Delivery, DeliveryState, JourneyOrigin, MAX_ERROR_BYTES,
    MAX_KEPT_ATTEMPTS, StatusRecord,
};
pub use retry::{MAX_RETRY_AFTER_MS, RetryOverride, RetrySettings};
pub use store::{DeliveryEvent, Filter, Landed, NewMessage, Outbox};
pub use worker::OutboxWorker;

/// The outbox's keyspace.
pub const KEYSPACE: &str = "outbox";
/// The event logged about a contact when a message to them was sent.
pub const SENT: &str = "Message Sent";
/// The event logged about a contact when a message to them went to the dead letters.
pub const FAILED: &str = "Message Failed";

/// The outbox's host-wide settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxConfig {
    /// Retry settings every channel starts from (each may override them).
    pub defaults: RetrySettings,
    /// Most open deliveries (queued, deferred, sending) at once; past it, enqueues are
    /// refused, so a flood of sends cannot fill the disk.
    pub max_open: u64,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self {
            defaults: RetrySettings::default(),
            max_open: 1_000_000,
        }
    }
}

/// Why an outbox operation failed.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The outbox holds as many open deliveries as it may.
    #[error("the outbox holds {limit} undelivered messages, its limit; try again later")]
    Full {
        /// The limit.
        limit: u64,
    },
    /// No delivery with that id.
    #[error("no delivery `{0}`")]
    NotFound(String),
    /// Only dead deliveries can be retried.
    #[error("delivery `{id}` is {}, not dead: only dead letters are retried", state.as_str())]
    NotDead {
        /// The delivery.
        id: String,
        /// Its state.
        state: DeliveryState,
    },
    /// Retry settings out of bounds.
    #[error("{0}")]
    InvalidSettings(String),
}

#[cfg(test)]
mod tests;
