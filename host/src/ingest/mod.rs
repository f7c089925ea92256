//! Ingest: validate, deduplicate by message id, append to the durable event log (the
//! acknowledgement waits for the log's fsync), then hand the log to the profile stage, which
//! also writes the logged ids into the dedupe index.
//!
//! Sources: the Segment-compatible tracking API ([`segment`]) and connector plugins
//! ([`from_connector`]), by webhook or polled by [`poller`]. Everything downstream reads the log, so a crash at any point
//! resumes from it.

pub mod dedupe;
pub mod event;
pub mod intake;
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
pub use intake::{Intake, IntakeError, ReplayReport};
pub use poller::{PollError, PollStatus, Poller};
pub use raw_webhooks::{Page, PageStart, RawWebhooks, Retention};
pub use sources::{Source, Sources};

use crate::clock::now_ms;
use crate::runtime::ConnectorEvent;
use crate::runtime::types::EventKind;
use crate::store::{Engine, Log, LogError, StoreError, Tree};

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
    /// A logged event could not be decoded.
    #[error("logged event {seq} does not decode: {source}")]
    Decode {
        /// Its sequence.
        seq: u64,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
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

/// The keyspace of suppressed identity keys (`kind:value`): written by erasure in the profile
/// stage, read by ingest.
pub const SUPPRESSED_TREE: &str = "suppressed_identities";

/// Ids the pruning walk looks at per indexed page, beyond twice the events in it: a full
/// walk takes at most half a window, so an id is gone within one and a half windows.
const PRUNE_PER_PAGE: usize = 64;

/// The ingest stage.
pub struct Ingest {
    suppressed: Tree,
    log: Arc<dyn Log>,
    dedupe: DedupeIndex,
    /// Message ids being appended, or logged but not yet in the dedupe index: the index is
    /// written by the profile stage as it reads the log, off the acknowledgement path.
    unindexed: Mutex<HashSet<String>>,
    appended: tokio::sync::Notify,
}

/// Reads only the message id and arrival time of a logged event.
#[derive(serde::Deserialize)]
struct MessageId {
    message_id: String,
    received_at: String,
}

impl Ingest {
    /// Ingest over `log`, deduplicating on message ids seen within `window`. The ids of
    /// events logged within the window after the dedupe index's last page are read back
    /// from the log.
    pub fn new(
        log: Arc<dyn Log>,
        engine: &dyn Engine,
        window: Duration,
    ) -> Result<Self, IngestError> {
        let dedupe = DedupeIndex::open(engine, window, log.last_seq())?;
        let since = OffsetDateTime::now_utc() - window;
        let mut unindexed = HashSet::new();
        let mut from = dedupe.indexed_seq()? + 1;
        loop {
            let page = log.read(from, 1_000)?;
            let Some((last, _)) = page.last() else { break };
            from = last + 1;
            let ids = page
                .iter()
                .filter_map(|(_, bytes)| serde_json::from_slice::<MessageId>(bytes).ok())
                .filter(|m| event::parse_time(&m.received_at).is_none_or(|t| t >= since))
                .map(|m| m.message_id);
            unindexed.extend(ids);
        }
        Ok(Self {
            log,
            dedupe,
            suppressed: engine.open(SUPPRESSED_TREE)?,
            unindexed: Mutex::new(unindexed),
            appended: tokio::sync::Notify::new(),
        })
    }

    /// The event log.
    pub fn log(&self) -> &Arc<dyn Log> {
        &self.log
    }

    /// The event logged at `seq`, as stored; `None` when there is none or it was redacted.
    pub fn logged_event(&self, seq: u64) -> Result<Option<StoredEvent>, IngestError> {
        let records = self.log.read(seq, 1)?;
        let Some((_, bytes)) = records
            .into_iter()
            .find(|(s, bytes)| *s == seq && !crate::store::is_redacted(bytes))
        else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| IngestError::Decode { seq, source: e })
    }

    /// Resolves when new events were appended since the last call.
    pub async fn appended(&self) {
        self.appended.notified().await
    }

    fn seen_recently(&self, id: &str, now: u64) -> Result<bool, StoreError> {
        self.dedupe.seen_recently(id, now)
    }

    /// Whether an event carries an identity of an erased contact.
    pub fn is_suppressed(&self, event: &StoredEvent) -> Result<bool, StoreError> {
        if !self.suppresses_any() {
            return Ok(false);
        }
        self.any_suppressed(&event.all_identities())
    }

    /// Whether any identity is suppressed at all: one look at the tree (not a cheap one), so
    /// a request or a page of the log looks up each identity only after an erasure.
    pub fn suppresses_any(&self) -> bool {
        !self.suppressed.is_empty()
    }

    /// Whether one of `identities` belongs to an erased contact.
    pub fn any_suppressed(&self, identities: &[Identity]) -> Result<bool, StoreError> {
        for identity in identities {
            if self.suppressed.contains_key(identity.key().as_bytes())? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Adds the message ids of logged events, read from the log up to `through_seq`, to the
    /// dedupe index (each remembered for a window from now) and prunes a few expired ids.
    /// Called by the profile stage, the index's one writer, before it applies the page.
    pub fn index_logged(&self, ids: &[&str], through_seq: u64) -> Result<(), StoreError> {
        // Timed from now, not from when the event was received: a replayed webhook's old
        // events are still remembered for a whole window.
        let now = now_ms();
        self.dedupe.index(ids, now, through_seq)?;
        {
            let mut unindexed = self.unindexed();
            for id in ids {
                unindexed.remove(*id);
            }
        }
        if let Err(e) = self.dedupe.prune(now, PRUNE_PER_PAGE + 2 * ids.len()) {
            tracing::warn!("pruning expired message ids: {e}");
        }
        Ok(())
    }

    /// How many logged ids wait for the profile stage to index them.
    pub fn unindexed_len(&self) -> usize {
        self.unindexed().len()
    }

    fn unindexed(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.unindexed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends the events that are new; returns once they are durable.
    pub async fn ingest(&self, events: Vec<StoredEvent>) -> Result<IngestReport, IngestError> {
        let now = now_ms();
        let mut fresh = Vec::with_capacity(events.len());
        let mut report = IngestReport::default();
        let suppressing = self.suppresses_any();
        {
            let mut unindexed = self.unindexed();
            for event in events {
                if suppressing && self.any_suppressed(&event.all_identities())? {
                    report.suppressed += 1;
                } else if unindexed.contains(&event.message_id)
                    || self.seen_recently(&event.message_id, now)?
                {
                    report.duplicates += 1;
                } else {
                    unindexed.insert(event.message_id.clone());
                    fresh.push(event);
                }
            }
        }
        if let Err(e) = self.append(&fresh).await {
            // Not logged: a retry of these ids must not count as a duplicate.
            let mut unindexed = self.unindexed();
            for event in &fresh {
                unindexed.remove(&event.message_id);
            }
            return Err(e);
        }
        report.accepted = fresh.len();
        Ok(report)
    }

    async fn append(&self, events: &[StoredEvent]) -> Result<(), IngestError> {
        if events.is_empty() {
            return Ok(());
        }
        let payloads = events
            .iter()
            .map(|e| serde_json::to_vec(e).map_err(|e| IngestError::Encode(e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        self.log.append(payloads).await?;
        self.appended.notify_waiters();
        Ok(())
    }
}

/// Converts a connector's events (checked, their JSON parsed once by the runtime) into stored
/// events from `connector:<plugin>`.
pub fn from_connector(
    plugin: &str,
    events: Vec<ConnectorEvent>,
    received_at: OffsetDateTime,
) -> Vec<StoredEvent> {
    let received = event::format_rfc3339(received_at);
    events
        .into_iter()
        .map(|e| {
            let kind = match e.kind {
                EventKind::Track => EventType::Track,
                EventKind::Identify => EventType::Identify,
                EventKind::Page => EventType::Page,
                EventKind::Screen => EventType::Screen,
                EventKind::Group => EventType::Group,
                EventKind::Alias => EventType::Alias,
            };
            // The contract has no fields for a group's id or an alias's previous id: a
            // connector puts them in the properties under Segment's names (the SDK's Segment
            // mapping does), and they are read back from there.
            let text = |name: &str| {
                e.properties
                    .get(name)
                    .and_then(serde_json::Value::as_str)
                    .filter(|v| !v.is_empty())
                    .map(str::to_string)
            };
            let group_id = (kind == EventType::Group)
                .then(|| text("groupId"))
                .flatten();
            let previous_id = (kind == EventType::Alias)
                .then(|| text("previousId"))
                .flatten();
            let mut properties = e.properties;
            let mut traits = e.traits;
            // Stored as the tracking API stores them: the ids in their own fields, and a
            // group's traits (which the SDK carries in `properties.traits`) as its traits.
            if group_id.is_some() {
                properties.remove("groupId");
                if traits.is_empty()
                    && let Some(serde_json::Value::Object(t)) = properties.remove("traits")
                {
                    traits = t;
                }
            }
            if previous_id.is_some() {
                properties.remove("previousId");
            }
            let timestamp = e
                .timestamp
                .as_deref()
                .and_then(event::parse_time)
                .map_or_else(|| received.clone(), event::format_rfc3339);
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
                properties: serde_json::Value::Object(properties),
                traits: serde_json::Value::Object(traits),
                context: serde_json::Value::Null,
                integrations: serde_json::Value::Null,
                group_id,
                previous_id,
                contact_id: None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::EventLog;

    fn track(id: &str) -> StoredEvent {
        serde_json::from_value(serde_json::json!({
            "message_id": id, "type": "track", "event": "Seen", "user_id": "u1",
            "timestamp": "2030-01-01T00:00:00Z", "received_at": "2030-01-01T00:00:00Z",
            "source": "source:test",
        }))
        .expect("event")
    }

    fn open(dir: &std::path::Path) -> (Ingest, crate::store::SledEngine) {
        let db = crate::store::SledEngine::open(&dir.join("db")).expect("db");
        let log = Arc::new(EventLog::open(&dir.join("log")).expect("log"));
        let ingest = Ingest::new(log, &db, Duration::from_secs(3600)).expect("ingest");
        (ingest, db)
    }

    async fn accepted(ingest: &Ingest, ids: &[&str]) -> usize {
        let events = ids.iter().map(|id| track(id)).collect();
        ingest.ingest(events).await.expect("ingest").accepted
    }

    #[tokio::test]
    async fn a_logged_id_is_a_duplicate_before_and_after_it_is_indexed_and_across_a_restart() {
        let dir = tempfile::tempdir().expect("dir");
        {
            let (ingest, _db) = open(dir.path());
            assert_eq!(
                accepted(&ingest, &["a", "b", "a"]).await,
                2,
                "within a call"
            );
            assert_eq!(
                accepted(&ingest, &["a", "c"]).await,
                1,
                "logged, not indexed"
            );
        }
        // Reopened before the profile stage indexed anything: the ids come back from the log.
        let (ingest, _db) = open(dir.path());
        assert_eq!(accepted(&ingest, &["b", "c", "d"]).await, 1);
        ingest
            .index_logged(&["a", "b", "c", "d"], 4)
            .expect("index");
        assert_eq!(ingest.unindexed_len(), 0);
        assert_eq!(
            accepted(&ingest, &["a", "d", "e"]).await,
            1,
            "from the index"
        );
        assert_eq!(ingest.log().next_seq(), 6);
    }
}
