//! Ingest: validate, deduplicate by message id, append to the durable event log (the
//! acknowledgement waits for the log's fsync), then hand the log to the profile stage.
//!
//! Sources: the Segment-compatible tracking API ([`segment`]) and connector plugins
//! ([`from_connector`]), by webhook or polled by [`poller`]. Everything downstream reads the log, so a crash at any point
//! resumes from it.

pub mod dedupe;
pub mod event;
pub mod poller;
pub mod raw_webhooks;
pub mod segment;
pub mod sources;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;

pub use dedupe::DedupeIndex;
pub use event::{EventType, Identity, StoredEvent};
pub use poller::{PollError, PollStatus, Poller};
pub use raw_webhooks::{RawWebhooks, Retention};
pub use sources::{Source, Sources};

use crate::runtime::bindings::types as wit;
use crate::store::{EventLog, LogError, StoreError};

/// Why events could not be ingested.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The event log refused the append: nothing was acknowledged.
    #[error("event log: {0}")]
    Log(#[from] LogError),
    /// The dedupe index failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An event could not be encoded.
    #[error("encoding an event: {0}")]
    Encode(String),
}

/// What an ingest call did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct IngestReport {
    /// Events appended to the log.
    pub accepted: usize,
    /// Events already seen within the dedupe window (acknowledged, stored once).
    pub duplicates: usize,
    /// Events about an erased contact's identities (acknowledged, not stored).
    pub suppressed: usize,
}

/// The sled tree of suppressed identity keys (`kind:value`), shared with the profile stage.
pub const SUPPRESSED_TREE: &str = "suppressed_identities";

/// Expired message ids removed per append, beyond twice the events appended.
const PRUNE_PER_APPEND: usize = 64;

/// The ingest stage.
pub struct Ingest {
    suppressed: sled::Tree,
    log: Arc<EventLog>,
    dedupe: DedupeIndex,
    in_flight: Mutex<HashSet<String>>,
    appended: tokio::sync::Notify,
}

fn store_err(e: sled::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn now_ms() -> u64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as u64
}

impl Ingest {
    /// Ingest over `log`, deduplicating on message ids seen within `window`.
    pub fn new(log: Arc<EventLog>, db: &sled::Db, window: Duration) -> Result<Self, StoreError> {
        Ok(Self {
            log,
            dedupe: DedupeIndex::open(db, window)?,
            suppressed: db.open_tree(SUPPRESSED_TREE).map_err(store_err)?,
            in_flight: Mutex::new(HashSet::new()),
            appended: tokio::sync::Notify::new(),
        })
    }

    /// The event log.
    pub fn log(&self) -> &Arc<EventLog> {
        &self.log
    }

    /// Resolves when new events were appended since the last call.
    pub async fn appended(&self) {
        self.appended.notified().await
    }

    fn seen_recently(&self, id: &str, now: u64) -> Result<bool, StoreError> {
        self.dedupe.seen_recently(id, now)
    }

    /// Stops storing events that carry any of these identities (Segment's "delete and
    /// suppress").
    pub fn suppress(&self, identities: &[Identity]) -> Result<(), StoreError> {
        for identity in identities {
            self.suppressed
                .insert(identity.key().as_bytes(), &[])
                .map_err(store_err)?;
        }
        self.suppressed.flush().map(drop).map_err(store_err)
    }

    fn is_suppressed(&self, event: &StoredEvent) -> Result<bool, StoreError> {
        if self.suppressed.is_empty() {
            return Ok(false);
        }
        for identity in event.all_identities() {
            if self
                .suppressed
                .contains_key(identity.key().as_bytes())
                .map_err(store_err)?
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Records that a message id was stored (also done when the log is replayed).
    pub fn remember(&self, id: &str, at_ms: u64) -> Result<(), StoreError> {
        self.dedupe.remember(id, at_ms)
    }

    /// Appends the events that are new; returns once they are durable.
    pub async fn ingest(&self, events: Vec<StoredEvent>) -> Result<IngestReport, IngestError> {
        let now = now_ms();
        let mut fresh = Vec::with_capacity(events.len());
        let mut report = IngestReport::default();
        {
            let mut in_flight = self.in_flight.lock().expect("in-flight lock");
            for event in events {
                if self.is_suppressed(&event)? {
                    report.suppressed += 1;
                } else if in_flight.contains(&event.message_id)
                    || self.seen_recently(&event.message_id, now)?
                {
                    report.duplicates += 1;
                } else {
                    in_flight.insert(event.message_id.clone());
                    fresh.push(event);
                }
            }
        }
        let result = self.append(&fresh, now).await;
        let mut in_flight = self.in_flight.lock().expect("in-flight lock");
        for event in &fresh {
            in_flight.remove(&event.message_id);
        }
        result?;
        report.accepted = fresh.len();
        Ok(report)
    }

    async fn append(&self, events: &[StoredEvent], now: u64) -> Result<(), IngestError> {
        if events.is_empty() {
            return Ok(());
        }
        let payloads = events
            .iter()
            .map(|e| serde_json::to_vec(e).map_err(|e| IngestError::Encode(e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        self.log.append(payloads).await?;
        for event in events {
            self.remember(&event.message_id, now)?;
        }
        // Amortised pruning: each append removes more expired ids than it adds.
        self.dedupe
            .prune(now, PRUNE_PER_APPEND + 2 * events.len())?;
        self.appended.notify_waiters();
        Ok(())
    }
}

/// Converts a connector's events into stored events from `connector:<plugin>`.
pub fn from_connector(
    plugin: &str,
    events: Vec<wit::Event>,
    received_at: OffsetDateTime,
) -> Vec<StoredEvent> {
    let received = event::format_rfc3339(received_at);
    events
        .into_iter()
        .map(|e| {
            let kind = match e.kind {
                wit::EventKind::Track => EventType::Track,
                wit::EventKind::Identify => EventType::Identify,
                wit::EventKind::Page => EventType::Page,
                wit::EventKind::Screen => EventType::Screen,
                wit::EventKind::Group => EventType::Group,
                wit::EventKind::Alias => EventType::Alias,
            };
            let timestamp = e
                .timestamp
                .as_deref()
                .and_then(event::parse_time)
                .map_or_else(|| received.clone(), event::format_rfc3339);
            // The runtime checked that both are JSON objects.
            let properties = serde_json::from_str(&e.properties).unwrap_or_default();
            let traits = serde_json::from_str(&e.traits).unwrap_or_default();
            StoredEvent {
                message_id: e.id,
                kind,
                event: e.name,
                user_id: e.contact.user_id,
                anonymous_id: e.contact.anonymous_id,
                identities: e
                    .contact
                    .identities
                    .iter()
                    .map(|i| Identity::new(&i.kind, &i.value))
                    .collect(),
                timestamp,
                received_at: received.clone(),
                source: format!("connector:{plugin}"),
                properties,
                traits,
                context: serde_json::Value::Null,
                integrations: serde_json::Value::Null,
                group_id: None,
                previous_id: None,
            }
        })
        .collect()
}
