//! Journeys: versioned definitions that a trigger event or segment entry starts for a
//! contact, and durable runs that move through their steps (waits, branches, sends into the
//! outbox, trait updates through the log) as the profile change feed moves and timers fire.

pub mod conditions;
pub mod definition;
mod runner;
mod stage;
mod store;
#[cfg(test)]
mod tests;
pub mod timing;

use std::sync::Arc;

use serde_json::Value;
use tokio::sync::{Mutex, Notify};

pub use definition::{Invalid, JourneyDef};
pub use stage::run_stage;
pub use store::{Counts, JourneyRecord, Run, RunState, VersionRecord, Visit};

use crate::clock::now_ms;
use crate::ingest::{Ingest, IngestError};
use crate::outbox::Outbox;
use crate::plugins::PluginRegistry;
use crate::profiles::Profiles;
use crate::runtime::PluginKind;
use crate::segments::Segments;
use crate::store::{Batch, Engine, LogError, StoreError};
use store::{JourneyStore, Writes, prefix};

/// The name under which the journey stage reads the profile change feed.
pub const FEED_READER: &str = "journeys";

/// Why a journey operation failed.
#[derive(Debug, thiserror::Error)]
pub enum JourneyError {
    /// No journey with that id.
    #[error("no journey `{0}`")]
    NotFound(String),
    /// A journey with that id exists.
    #[error("journey `{0}` exists; PUT /v1/journeys/{0} makes a new version")]
    Exists(String),
    /// The definition does not check.
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A trait update could not be logged.
    #[error(transparent)]
    Ingest(#[from] IngestError),
    /// The event log could not be read.
    #[error(transparent)]
    Log(#[from] LogError),
    /// A send could not be queued.
    #[error(transparent)]
    Outbox(#[from] crate::outbox::OutboxError),
}

/// Who is in which segment now: what `branch` conditions and `wait_until` a segment ask.
/// The segment stage answers it; the journey stage never writes memberships.
pub trait Memberships: Send + Sync {
    /// Whether `contact` is in `segment` now.
    fn is_member(&self, segment: &str, contact: &str) -> Result<bool, StoreError>;
}

impl Memberships for Segments {
    fn is_member(&self, segment: &str, contact: &str) -> Result<bool, StoreError> {
        Segments::is_member(self, segment, contact)
    }
}

/// Which channel plugins are installed: what a `send` step may name. The plugin registry
/// answers it. A channel that is uploaded but not live (it needs its config first) counts as
/// installed: the delivery stage records a failure on a message it cannot send.
pub trait ChannelPlugins: Send + Sync {
    /// Why `id` cannot be a send step's channel; `None` when it is an installed channel plugin.
    fn refuse_channel(&self, id: &str) -> Option<String>;
}

impl ChannelPlugins for PluginRegistry {
    fn refuse_channel(&self, id: &str) -> Option<String> {
        match self.slot(id) {
            Err(_) => Some(format!(
                "no plugin `{id}` is installed (upload the channel plugin first)"
            )),
            Ok(slot) if slot.kind() != PluginKind::Channel => Some(format!(
                "plugin `{id}` is a {} plugin, not a channel",
                slot.kind()
            )),
            Ok(_) => None,
        }
    }
}

/// The counts of every step of one version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionCounts {
    /// The version.
    pub version: u32,
    /// Per step: index, id, type, counts.
    pub steps: Vec<(usize, String, &'static str, Counts)>,
}

/// The journey stage: definitions, runs, timers, and the loop that moves them.
#[derive(Clone)]
pub struct Journeys {
    store: JourneyStore,
    profiles: Profiles,
    segments: Arc<dyn Memberships>,
    channels: Arc<dyn ChannelPlugins>,
    ingest: Arc<Ingest>,
    outbox: Outbox,
    /// Held by whoever writes journey records (the stage's steps, the API).
    writer: Arc<Mutex<()>>,
    /// Wakes the stage (a journey was created, changed or resumed).
    wake: Arc<Notify>,
}

impl Journeys {
    /// Opens the journey keyspace of `engine` and registers as a reader of the profile feed.
    pub fn open(
        engine: &dyn Engine,
        profiles: Profiles,
        segments: Arc<dyn Memberships>,
        channels: Arc<dyn ChannelPlugins>,
        ingest: Arc<Ingest>,
        outbox: Outbox,
    ) -> Result<Self, StoreError> {
        profiles.register_feed_reader(FEED_READER)?;
        Ok(Self {
            store: JourneyStore {
                tree: engine.open(store::KEYSPACE)?,
            },
            profiles,
            segments,
            channels,
            ingest,
            outbox,
            writer: Arc::new(Mutex::new(())),
            wake: Arc::new(Notify::new()),
        })
    }

    /// Every journey, by id.
    pub fn list(&self) -> Result<Vec<JourneyRecord>, JourneyError> {
        Ok(self.store.journeys()?)
    }

    /// A journey and its current version.
    pub fn get(&self, id: &str) -> Result<(JourneyRecord, VersionRecord), JourneyError> {
        let record = self
            .store
            .journey(id)?
            .ok_or_else(|| JourneyError::NotFound(id.into()))?;
        let version = self
            .store
            .version(id, record.version)?
            .ok_or_else(|| JourneyError::NotFound(format!("{id} version {}", record.version)))?;
        Ok((record, version))
    }

    /// One version of a journey.
    pub fn version(&self, id: &str, version: u32) -> Result<VersionRecord, JourneyError> {
        self.store
            .version(id, version)?
            .ok_or_else(|| JourneyError::NotFound(format!("{id} version {version}")))
    }

    /// Creates a journey (version 1) from a client's definition, which names its `id`.
    pub async fn create(&self, input: Value) -> Result<JourneyRecord, JourneyError> {
        let id = match input.get("id") {
            Some(Value::String(id)) => id.clone(),
            _ => {
                return Err(Invalid {
                    path: "id".into(),
                    message: "is required (a-z, 0-9, `_` and `-`)".into(),
                }
                .into());
            }
        };
        let def = definition::parse(&id, 1, &input)?;
        self.check_channels(&def)?;
        let _w = self.writer.lock().await;
        if self.store.journey(&id)?.is_some() {
            return Err(JourneyError::Exists(id));
        }
        let now = now_ms() as i64;
        let record = JourneyRecord {
            id: id.clone(),
            name: def.name.clone(),
            version: 1,
            paused: false,
            created_ms: now,
            updated_ms: now,
        };
        self.put_version(&record, def, input, now)?;
        tracing::info!(journey = %id, "journey created");
        self.wake.notify_one();
        Ok(record)
    }

    /// A new version of a journey: new runs start on it; runs in progress stay on theirs.
    pub async fn update(&self, id: &str, input: Value) -> Result<JourneyRecord, JourneyError> {
        let _w = self.writer.lock().await;
        let mut record = self
            .store
            .journey(id)?
            .ok_or_else(|| JourneyError::NotFound(id.into()))?;
        let def = definition::parse(id, record.version + 1, &input)?;
        self.check_channels(&def)?;
        let now = now_ms() as i64;
        record.version += 1;
        record.name = def.name.clone();
        record.updated_ms = now;
        self.put_version(&record, def, input, now)?;
        tracing::info!(journey = %id, version = record.version, "journey updated");
        self.wake.notify_one();
        Ok(record)
    }

    /// Refuses a definition whose `send` step names a plugin that is not an installed
    /// channel, pointing at that step's `channel`.
    fn check_channels(&self, def: &JourneyDef) -> Result<(), Invalid> {
        for (i, step) in def.steps.iter().enumerate() {
            if let definition::Action::Send { channel, .. } = &step.action
                && let Some(message) = self.channels.refuse_channel(channel)
            {
                return Err(Invalid {
                    path: format!("steps[{i}].send.channel"),
                    message,
                });
            }
        }
        Ok(())
    }

    fn put_version(
        &self,
        record: &JourneyRecord,
        def: JourneyDef,
        source: Value,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut w = Writes::default();
        w.put(
            store::version_key(&record.id, record.version),
            &VersionRecord {
                def,
                source,
                created_ms: now,
            },
        )?;
        w.journey(record)?;
        w.commit(&self.store)
    }

    /// Pauses (`true`) or resumes a journey. While paused no run starts and no run moves;
    /// timers that come due and awaited events that arrive meanwhile take effect on resume.
    pub async fn set_paused(&self, id: &str, paused: bool) -> Result<JourneyRecord, JourneyError> {
        let _w = self.writer.lock().await;
        let mut record = self
            .store
            .journey(id)?
            .ok_or_else(|| JourneyError::NotFound(id.into()))?;
        if record.paused != paused {
            record.paused = paused;
            record.updated_ms = now_ms() as i64;
            let mut w = Writes::default();
            w.journey(&record)?;
            w.commit(&self.store)?;
            tracing::info!(journey = %id, paused, "journey paused or resumed");
        }
        self.wake.notify_one();
        Ok(record)
    }

    /// Deletes a journey with every version, run, timer and count. Messages its runs queued
    /// stay in the outbox.
    pub async fn delete(&self, id: &str) -> Result<(), JourneyError> {
        let _w = self.writer.lock().await;
        if self.store.journey(id)?.is_none() {
            return Err(JourneyError::NotFound(id.into()));
        }
        loop {
            let runs = self.store.runs_of_journey(id, None, 500)?;
            if runs.is_empty() {
                break;
            }
            let mut batch = Batch::default();
            for run_id in runs {
                if let Some(run) = self.store.run(&run_id)? {
                    if let Some(w) = &run.waiting {
                        batch.remove(store::timer_key(w.due_ms, &run.id));
                    }
                    batch.remove(store::join(
                        prefix::CONTACT_RUN,
                        &[run.contact.as_bytes(), run.id.as_bytes()],
                    ));
                    let effects = store::join(prefix::EFFECT, &[run.id.as_bytes(), b""]);
                    for k in self.store.keys_with_prefix(&effects)? {
                        batch.remove(k);
                    }
                }
                batch.remove(store::join(prefix::RUN, &[run_id.as_bytes()]));
                batch.remove(store::join(
                    prefix::JOURNEY_RUN,
                    &[id.as_bytes(), run_id.as_bytes()],
                ));
            }
            self.store.tree.apply(batch)?;
        }
        let mut batch = Batch::default();
        for p in [prefix::VERSION, prefix::COUNTS, prefix::LAST] {
            for k in self
                .store
                .keys_with_prefix(&store::join(p, &[id.as_bytes(), b""]))?
            {
                batch.remove(k);
            }
        }
        batch.remove(store::join(prefix::JOURNEY, &[id.as_bytes()]));
        self.store.tree.apply(batch)?;
        tracing::info!(journey = %id, "journey deleted");
        Ok(())
    }

    /// Drops an erased contact's runs (a run in progress counts as exited where it stood),
    /// their timers, effect keys and latest-run records, and its queued messages.
    pub async fn forget_contact(&self, contact: &str) -> Result<(), JourneyError> {
        let _w = self.writer.lock().await;
        let mut w = Writes::default();
        for run_id in self.store.runs_of_contact(contact)? {
            let Some(run) = self.store.run(&run_id)? else {
                continue;
            };
            if !run.state.ended() {
                w.count(&run.journey, run.version, run.step, store::Count::Exited, 1);
            }
            if let Some(waiting) = &run.waiting {
                w.clear_timer(waiting.due_ms, &run.id);
                w.count(
                    &run.journey,
                    run.version,
                    run.step,
                    store::Count::Waiting,
                    -1,
                );
            }
            for k in self
                .store
                .keys_with_prefix(&store::join(prefix::EFFECT, &[run.id.as_bytes(), b""]))?
            {
                w.batch.remove(k);
            }
            w.batch
                .remove(store::join(prefix::RUN, &[run.id.as_bytes()]));
            w.batch.remove(store::join(
                prefix::JOURNEY_RUN,
                &[run.journey.as_bytes(), run.id.as_bytes()],
            ));
            w.batch.remove(store::join(
                prefix::CONTACT_RUN,
                &[contact.as_bytes(), run.id.as_bytes()],
            ));
        }
        for journey in self.store.journeys()? {
            w.batch.remove(store::join(
                prefix::LAST,
                &[journey.id.as_bytes(), contact.as_bytes()],
            ));
        }
        w.commit(&self.store)?;
        let dropped = self.outbox.forget_contact(contact)?;
        tracing::info!(
            contact,
            dropped,
            "erased contact's runs and messages dropped"
        );
        Ok(())
    }

    /// Per-step counts of every version of a journey, newest version first.
    pub fn counts(&self, id: &str) -> Result<Vec<VersionCounts>, JourneyError> {
        let record = self
            .store
            .journey(id)?
            .ok_or_else(|| JourneyError::NotFound(id.into()))?;
        let mut out = Vec::new();
        for version in (1..=record.version).rev() {
            let Some(v) = self.store.version(id, version)? else {
                continue;
            };
            let mut steps = Vec::with_capacity(v.def.steps.len());
            for (i, step) in v.def.steps.iter().enumerate() {
                steps.push((
                    i,
                    step.id.clone(),
                    step.action.kind(),
                    self.store.counts(id, version, i)?,
                ));
            }
            out.push(VersionCounts { version, steps });
        }
        Ok(out)
    }

    /// A page of a journey's runs (by run id), optionally only those in `state`.
    pub fn runs(
        &self,
        id: &str,
        state: Option<RunState>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Run>, JourneyError> {
        if self.store.journey(id)?.is_none() {
            return Err(JourneyError::NotFound(id.into()));
        }
        let mut out = Vec::new();
        let mut cursor = after.map(str::to_string);
        loop {
            let ids = self.store.runs_of_journey(id, cursor.as_deref(), 500)?;
            let Some(last) = ids.last().cloned() else {
                break;
            };
            for run_id in ids {
                if let Some(run) = self.store.run(&run_id)?
                    && state.is_none_or(|s| s == run.state)
                {
                    out.push(run);
                    if out.len() >= limit {
                        return Ok(out);
                    }
                }
            }
            cursor = Some(last);
        }
        Ok(out)
    }

    /// A contact's runs of every journey (a merged-away id answers for its survivor).
    pub fn runs_of_contact(&self, contact: &str) -> Result<Vec<Run>, JourneyError> {
        let id = self
            .profiles
            .get(contact)?
            .map_or_else(|| contact.to_string(), |c| c.id);
        let mut runs = Vec::new();
        for run_id in self.store.runs_of_contact(&id)? {
            if let Some(run) = self.store.run(&run_id)? {
                runs.push(run);
            }
        }
        runs.sort_by_key(|r| (r.started_ms, r.trigger.seq));
        Ok(runs)
    }

    /// How far through the profile change feed the stage has got.
    pub fn followed_seq(&self) -> Result<u64, StoreError> {
        self.store.followed_seq()
    }
}

/// Parses a run state filter.
pub fn parse_run_state(text: &str) -> Option<RunState> {
    Some(match text {
        "active" => RunState::Active,
        "waiting" => RunState::Waiting,
        "completed" => RunState::Completed,
        "exited" => RunState::Exited,
        _ => return None,
    })
}
