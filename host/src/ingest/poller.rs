//! Pull connectors: polls live connector versions on their manifest interval, makes each
//! page's events durable before persisting its cursor, and backs off per plugin on errors.
//!
//! One task ([`Poller::run`], started by `Server::run`) looks at the registry's slots every
//! [`TICK`]. A connector is polled when its slot is enabled, its live version's manifest has
//! a `[poll]` section and its interval elapsed since the last round ended. A round calls
//! `poll(cursor)`, ingests the page (durable, deduplicated), then stores the page's cursor
//! in the `poll_cursors` tree; while the page says `more`, it polls again at once, up to
//! [`MAX_PAGES_PER_ROUND`] pages. A failed round waits `interval × 2^failures` (capped at
//! [`MAX_BACKOFF`], with jitter) before the next; a successful one resets that. A version
//! that answers `unsupported` is not polled again until another version goes live.
//!
//! A crash between a page's append and its cursor write re-polls that page after the
//! restart; the ingest stage's message-id dedupe stores its events once.
//!
//! A round is plugin-controlled work, so it runs isolated ([`crate::tasks::isolated`]): a
//! panic in it switches polling of that plugin off with the reason, instead of taking the
//! host down. Before a round calls the plugin, a durable mark in the `poll_tasks` tree says
//! so; the round clears it when it ends. A mark found at start means the process died during
//! that round: polling of that plugin stays off (with the reason, and an audit entry) and the
//! host serves. Polling resumes when another version goes live or the operator enables the
//! plugin again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::task::JoinSet;
use tracing::Instrument;

use super::{IngestError, Intake};
use crate::clock::now_ms;
use crate::plugins::{Action, MAX_POLL_INTERVAL_SECS, PluginError, PluginRegistry};
use crate::runtime::PluginKind;
use crate::runtime::types::ConnectorError;
use crate::store::{Engine, StoreError, Tree, encode_json};
use crate::tasks::{TaskError, instant_after, isolated};

/// How often the poller looks for connectors that are due.
pub const TICK: Duration = Duration::from_secs(1);
/// Most pages one round pulls while the connector keeps saying `more`.
pub const MAX_PAGES_PER_ROUND: usize = 100;
/// The longest wait after failures (unless the interval itself is longer).
pub const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// Why a poll round failed. The round's message is what the poll status shows.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    /// The call could not be made or failed inside the sandbox (breaker open, trap, ...).
    #[error(transparent)]
    Plugin(#[from] PluginError),
    /// The connector returned an error.
    #[error("the connector answered {kind}: {message}")]
    Connector {
        /// `unauthorized`, `bad-request` or `upstream`.
        kind: &'static str,
        /// Its message.
        message: String,
    },
    /// The page's events could not be made durable; the cursor was not moved.
    #[error(transparent)]
    Ingest(#[from] IngestError),
    /// The cursor could not be read or stored.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One connector's polling as an operator sees it (`GET /v1/plugins/{id}/poll`).
#[derive(Debug, Clone, Serialize)]
pub struct PollStatus {
    /// Plugin id.
    pub plugin: String,
    /// True when the poller polls this plugin: enabled, live, its live version has a
    /// `[poll]` section and did not answer `unsupported`.
    pub polling: bool,
    /// The live version's `[poll] interval_secs`, once the poller has seen that version.
    pub interval_secs: Option<u64>,
    /// The persisted cursor: where the next poll starts (`None`: from the beginning).
    pub cursor: Option<String>,
    /// When the last round ended, Unix ms (this process).
    pub last_poll_at_ms: Option<u64>,
    /// When the last successful round ended, Unix ms (this process).
    pub last_success_at_ms: Option<u64>,
    /// The last failed round's error (kept after a recovery).
    pub last_error: Option<String>,
    /// Failed rounds since the last successful one.
    pub consecutive_failures: u32,
    /// The current wait after failures, ms; `None` when the last round succeeded.
    pub backoff_ms: Option<u64>,
    /// Time until the next round, ms (0: at the next tick); `None` when not polling.
    pub next_poll_in_ms: Option<u64>,
    /// The live version's answer when it said it does not poll.
    pub unsupported: Option<String>,
    /// Events from polls appended to the log (this process).
    pub events_accepted: u64,
    /// Events from polls dropped as already seen (this process).
    pub events_duplicate: u64,
    /// Why polling of this plugin is switched off: a round panicked, or the host died during
    /// one. Another live version, or enabling the plugin again, turns it back on.
    pub disabled: Option<String>,
}

/// The durable per-plugin mark in the `poll_tasks` tree.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TaskMark {
    /// The version the round called.
    sha256: String,
    /// When the round started (or polling was switched off), Unix ms.
    at_ms: u64,
    /// Set when polling is switched off: why. Unset: a round is in progress.
    #[serde(default)]
    disabled: Option<String>,
}

/// In-memory state of one plugin's polling.
#[derive(Debug, Default)]
struct PollState {
    /// The live version this state was set up for.
    sha: Option<String>,
    /// That version's interval; `None` when its manifest has no `[poll]`.
    interval: Option<Duration>,
    /// Set when that version answered `unsupported`.
    unsupported: Option<String>,
    /// When the next round may start; `None`: at once.
    due: Option<Instant>,
    in_flight: bool,
    failures: u32,
    backoff: Option<Duration>,
    last_poll_ms: Option<u64>,
    last_success_ms: Option<u64>,
    last_error: Option<String>,
    accepted: u64,
    duplicates: u64,
    /// Why polling is switched off for this version.
    disabled: Option<String>,
}

/// How a round ended.
enum End {
    /// No more pages (or the page bound was hit).
    Done,
    /// The slot was disabled or lost its live version meanwhile.
    Skipped,
    /// The version does not poll.
    Unsupported(String),
    /// An error; pages before it were stored.
    Failed(PollError),
}

/// The pull-connector stage.
pub struct Poller {
    registry: Arc<PluginRegistry>,
    intake: Intake,
    cursors: Tree,
    marks: Tree,
    states: Mutex<HashMap<String, PollState>>,
}

/// Clears a plugin's in-flight mark when its round ends, however it ends.
struct InFlight {
    poller: Arc<Poller>,
    id: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        // Runs when a round is cancelled or unwinds, too: nothing here may panic.
        if let Some(state) = self.poller.lock().get_mut(&self.id) {
            state.in_flight = false;
        }
        if let Some(mark) = self.poller.mark(&self.id)
            && mark.disabled.is_none()
            && let Err(e) = self.poller.marks.remove(self.id.as_bytes())
        {
            tracing::warn!(plugin = %self.id, "poll round mark not cleared: {e}");
        }
    }
}

/// The wait after `failures` consecutive failed rounds: `interval × 2^failures`, plus up to
/// a quarter of that as jitter, never more than [`MAX_BACKOFF`] (or the interval, if longer).
pub fn backoff(interval: Duration, failures: u32) -> Duration {
    let cap = MAX_BACKOFF.max(interval);
    let base = interval.saturating_mul(1u32 << failures.min(31)).min(cap);
    let quarter = u64::try_from(base.as_millis() / 4).unwrap_or(u64::MAX);
    let jitter = rand::random_range(0..=quarter);
    base.saturating_add(Duration::from_millis(jitter)).min(cap)
}

/// A manifest's interval, bounded: versions stored before the bound was checked at upload
/// must not overflow the poller's clock arithmetic either.
fn interval_of(secs: u64) -> Duration {
    Duration::from_secs(secs.clamp(1, MAX_POLL_INTERVAL_SECS))
}

impl Poller {
    /// The poller over `registry`, feeding `intake`, with cursors in `engine`'s
    /// `poll_cursors`.
    pub fn open(
        registry: Arc<PluginRegistry>,
        intake: Intake,
        engine: &dyn Engine,
    ) -> Result<Self, StoreError> {
        let poller = Self {
            registry,
            intake,
            cursors: engine.open("poll_cursors")?,
            marks: engine.open("poll_tasks")?,
            states: Mutex::new(HashMap::new()),
        };
        poller.recover_marks()?;
        Ok(poller)
    }

    /// At start: a round mark left behind means the process died during that round. That
    /// plugin's polling is switched off (persisted, audited); earlier switch-offs are restored.
    fn recover_marks(&self) -> Result<(), StoreError> {
        let mut found = Vec::new();
        for item in self.marks.iter() {
            let (key, value) = item?;
            let id = String::from_utf8_lossy(&key).into_owned();
            match serde_json::from_slice::<TaskMark>(&value) {
                Ok(mark) => found.push((id, mark)),
                Err(e) => tracing::warn!(plugin = %id, "unreadable poll round mark ignored: {e}"),
            }
        }
        for (id, mut mark) in found {
            if mark.disabled.is_none() {
                let started = OffsetDateTime::from_unix_timestamp_nanos(
                    i128::from(mark.at_ms).saturating_mul(1_000_000),
                )
                .ok()
                .and_then(|t| {
                    t.format(&time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .unwrap_or_else(|| format!("{} ms", mark.at_ms));
                let reason = format!(
                    "the host stopped during a poll round of version {} (started {started}); \
                     polling of this plugin is off until another version goes live or the \
                     plugin is enabled again",
                    mark.sha256
                );
                tracing::error!(plugin = %id, "{reason}");
                mark.disabled = Some(reason.clone());
                mark.at_ms = now_ms();
                self.put_mark(&id, &mark)?;
                self.marks.flush()?;
                self.registry
                    .audit_host(&id, Action::PollDisabled, Some(&mark.sha256), &reason);
            }
            let mut states = self.lock();
            let state = states.entry(id).or_default();
            state.sha = Some(mark.sha256);
            state.disabled = mark.disabled;
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, PollState>> {
        // A panic elsewhere must not turn every later use of the states into a second one.
        self.states.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn mark(&self, id: &str) -> Option<TaskMark> {
        let value = self.marks.get(id.as_bytes()).ok().flatten()?;
        serde_json::from_slice(&value).ok()
    }

    fn put_mark(&self, id: &str, mark: &TaskMark) -> Result<(), StoreError> {
        self.marks
            .insert(id.as_bytes(), &encode_json(mark)?)
            .map(drop)
    }

    /// Writes `mark` (or removes the mark) and flushes it to disk, off the async workers.
    async fn save_mark(&self, id: &str, mark: Option<TaskMark>) -> Result<(), StoreError> {
        let value = mark.map(|m| encode_json(&m)).transpose()?;
        let tree = self.marks.clone();
        let key = id.to_string();
        tokio::task::spawn_blocking(move || {
            match value {
                Some(v) => tree.insert(key.as_bytes(), &v).map(drop),
                None => tree.remove(key.as_bytes()).map(drop),
            }?;
            tree.flush()
        })
        .await
        .map_err(|e| StoreError::Backend(Box::new(e)))?
    }

    /// Switches polling of `id` off after its round on version `sha` panicked.
    async fn disable(&self, id: &str, sha: &str, message: &str) {
        let reason = format!(
            "a poll round of version {sha} panicked ({message}); polling of this plugin is \
             off until another version goes live or the plugin is enabled again"
        );
        if let Some(state) = self.lock().get_mut(id)
            && state.sha.as_deref() == Some(sha)
        {
            state.disabled = Some(reason.clone());
        }
        let mark = TaskMark {
            sha256: sha.to_string(),
            at_ms: now_ms(),
            disabled: Some(reason.clone()),
        };
        if let Err(e) = self.save_mark(id, Some(mark)).await {
            tracing::error!(plugin = %id, "switching polling off not persisted: {e}");
        }
        self.registry
            .audit_host(id, Action::PollDisabled, Some(sha), &reason);
    }

    /// Turns polling of `id` back on after it was switched off (the operator enabled the
    /// plugin again); its next round starts at the next tick.
    pub async fn resume(&self, id: &str) -> Result<(), StoreError> {
        let was_off = self.lock().remove(id).is_some_and(|s| s.disabled.is_some());
        if self.mark(id).is_some_and(|m| m.disabled.is_some()) {
            self.save_mark(id, None).await?;
        }
        if was_off {
            tracing::info!(plugin = %id, "polling switched back on");
        }
        Ok(())
    }

    /// The persisted cursor of a plugin.
    pub fn cursor(&self, id: &str) -> Result<Option<String>, StoreError> {
        self.cursors
            .get(id.as_bytes())?
            .map(|v| String::from_utf8(v).map_err(|e| StoreError::corrupt(id.as_bytes(), e)))
            .transpose()
    }

    /// Stores a plugin's cursor and flushes it to disk.
    async fn save_cursor(&self, id: &str, cursor: String) -> Result<(), StoreError> {
        let tree = self.cursors.clone();
        let key = id.to_string();
        tokio::task::spawn_blocking(move || {
            tree.insert(key.as_bytes(), cursor.as_bytes())?;
            tree.flush()
        })
        .await
        .map_err(|e| StoreError::Backend(Box::new(e)))?
    }

    /// Polls due connectors every [`TICK`] until `shutdown` changes; rounds still running
    /// then are cancelled (a cancelled page is re-polled later and deduplicated).
    pub async fn run(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut rounds = JoinSet::new();
        loop {
            while let Some(done) = rounds.try_join_next() {
                if let Err(e) = done {
                    tracing::error!("a poll round failed to finish: {e}");
                }
            }
            for (id, sha, interval) in self.due() {
                let guard = InFlight {
                    poller: self.clone(),
                    id: id.clone(),
                };
                let span = tracing::info_span!("poll", plugin = %id);
                let round = self.clone().round(guard, sha.clone(), interval);
                let poller = self.clone();
                rounds.spawn(
                    async move {
                        if let Err(TaskError::Panicked(message)) =
                            isolated("poll", &id, round).await
                        {
                            poller.disable(&id, &sha, &message).await;
                        }
                    }
                    .instrument(span),
                );
            }
            tokio::select! {
                _ = tokio::time::sleep(TICK) => {}
                _ = shutdown.changed() => break,
            }
        }
        rounds.shutdown().await;
    }

    /// Connectors whose round should start now, marked in flight: `(id, live sha, interval)`.
    fn due(&self) -> Vec<(String, String, Duration)> {
        let now = Instant::now();
        let mut due = Vec::new();
        for slot in self.registry.slots() {
            if slot.kind() != PluginKind::Connector || !slot.is_enabled() {
                continue;
            }
            let Some(live) = slot.live() else { continue };
            let sha = &live.spec().sha256;
            let id = slot.id();
            let known = self
                .lock()
                .get(id)
                .is_some_and(|s| s.sha.as_deref() == Some(sha));
            if !known {
                // A version this poller has not seen: read what its manifest asks.
                let manifest = match self.registry.version_manifest(id, sha) {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(plugin = %id, "cannot read the live manifest: {e}");
                        continue;
                    }
                };
                let interval = manifest.poll.map(|p| interval_of(p.interval_secs));
                // Polling switched off for an earlier version resumes with this one.
                if self
                    .mark(id)
                    .is_some_and(|m| m.disabled.is_some() && m.sha256 != *sha)
                    && let Err(e) = self.marks.remove(id.as_bytes())
                {
                    tracing::warn!(plugin = %id, "poll switch-off not cleared: {e}");
                }
                let mut states = self.lock();
                let state = states.entry(id.to_string()).or_default();
                state.sha = Some(sha.clone());
                state.interval = interval;
                state.disabled = None;
                state.unsupported = None;
                state.failures = 0;
                state.backoff = None;
                state.due = None;
                if let Some(interval) = interval {
                    tracing::info!(plugin = %id, sha256 = %sha, interval_secs = interval.as_secs(), "polling the live version");
                }
            }
            let mut states = self.lock();
            let Some(state) = states.get_mut(id) else {
                continue;
            };
            let Some(interval) = state.interval else {
                continue;
            };
            if state.in_flight
                || state.disabled.is_some()
                || state.unsupported.is_some()
                || state.due.is_some_and(|at| at > now)
            {
                continue;
            }
            state.in_flight = true;
            due.push((id.to_string(), sha.clone(), interval));
        }
        due
    }

    /// One round for one plugin: pages until none is left, then the state update.
    async fn round(self: Arc<Self>, guard: InFlight, sha: String, interval: Duration) {
        let id = guard.id.as_str();
        let (mut accepted, mut duplicates, mut pages) = (0u64, 0u64, 0usize);
        // Durable before the plugin is called: if the process dies in this round, the next
        // start finds the mark and leaves this plugin's polling off.
        let mark = TaskMark {
            sha256: sha.clone(),
            at_ms: now_ms(),
            disabled: None,
        };
        if let Err(e) = self.save_mark(id, Some(mark)).await {
            tracing::warn!("poll round not started: its mark cannot be stored: {e}");
            let mut states = self.lock();
            if let Some(state) = states.get_mut(id) {
                state.due = Some(instant_after(Instant::now(), interval));
            }
            return;
        }
        let end = loop {
            let cursor = match self.cursor(id) {
                Ok(c) => c,
                Err(e) => break End::Failed(e.into()),
            };
            let page = match self.registry.poll(id, cursor.as_deref()).await {
                Ok(Ok(page)) => page,
                Ok(Err(ConnectorError::Unsupported(m))) => break End::Unsupported(m),
                Ok(Err(e)) => {
                    let (kind, message) = match e {
                        ConnectorError::Unauthorized(m) => ("unauthorized", m),
                        ConnectorError::BadRequest(m) => ("bad-request", m),
                        ConnectorError::Upstream(m) | ConnectorError::Unsupported(m) => {
                            ("upstream", m)
                        }
                    };
                    break End::Failed(PollError::Connector { kind, message });
                }
                Err(PluginError::Disabled(_) | PluginError::NotLive(_)) => break End::Skipped,
                Err(e) => break End::Failed(e.into()),
            };
            let report = match self
                .intake
                .accept(id, page.events, OffsetDateTime::now_utc())
                .await
            {
                Ok(r) => r,
                Err(e) => break End::Failed(e.into()),
            };
            accepted += report.accepted as u64;
            duplicates += report.duplicates as u64;
            pages += 1;
            // Only now, with the events durable, does the cursor move.
            if let Some(next) = page.cursor
                && let Err(e) = self.save_cursor(id, next).await
            {
                break End::Failed(e.into());
            }
            tracing::debug!(
                page = pages,
                accepted = report.accepted,
                duplicates = report.duplicates,
                more = page.more,
                "page ingested"
            );
            if !page.more {
                break End::Done;
            }
            if pages >= MAX_PAGES_PER_ROUND {
                tracing::info!("{pages} pages in one round; the rest waits for the next");
                break End::Done;
            }
        };

        if let Err(e) = self.save_mark(id, None).await {
            tracing::warn!("poll round mark not cleared: {e}");
        }
        let now = Instant::now();
        let mut states = self.lock();
        let state = states.entry(id.to_string()).or_default();
        state.last_poll_ms = Some(now_ms());
        state.accepted += accepted;
        state.duplicates += duplicates;
        match end {
            End::Done => {
                if state.failures > 0 {
                    tracing::info!(after_failures = state.failures, "polling recovered");
                }
                state.failures = 0;
                state.backoff = None;
                state.last_success_ms = state.last_poll_ms;
                state.due = Some(instant_after(now, interval));
                if pages > 0 {
                    tracing::debug!(pages, accepted, duplicates, "poll round done");
                }
            }
            End::Skipped => state.due = Some(instant_after(now, interval)),
            End::Unsupported(message) => {
                tracing::info!(sha256 = %sha, "this version does not poll: {message}");
                if state.sha.as_deref() == Some(sha.as_str()) {
                    state.unsupported = Some(message);
                }
                state.due = Some(instant_after(now, interval));
            }
            End::Failed(error) => {
                state.failures = state.failures.saturating_add(1);
                let wait = backoff(interval, state.failures);
                state.backoff = Some(wait);
                state.due = Some(instant_after(now, wait));
                tracing::warn!(
                    failures = state.failures,
                    retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                    pages_stored = pages,
                    "poll failed: {error}"
                );
                state.last_error = Some(error.to_string());
            }
        }
        drop(states);
        drop(guard);
    }

    /// The polling state of plugin `id` (which need not be a polling connector).
    pub fn status(&self, id: &str) -> Result<PollStatus, StoreError> {
        let cursor = self.cursor(id)?;
        let slot = self.registry.slot(id).ok();
        let live_sha = slot
            .as_ref()
            .filter(|s| s.is_enabled() && s.kind() == PluginKind::Connector)
            .and_then(|s| s.live())
            .map(|p| p.spec().sha256.clone());
        let states = self.lock();
        let state = states.get(id);
        let polling = state.is_some_and(|s| {
            s.interval.is_some()
                && s.unsupported.is_none()
                && s.disabled.is_none()
                && s.sha.is_some()
                && s.sha == live_sha
        });
        let now = Instant::now();
        Ok(PollStatus {
            plugin: id.to_string(),
            polling,
            interval_secs: state.and_then(|s| s.interval).map(|i| i.as_secs()),
            cursor,
            last_poll_at_ms: state.and_then(|s| s.last_poll_ms),
            last_success_at_ms: state.and_then(|s| s.last_success_ms),
            last_error: state.and_then(|s| s.last_error.clone()),
            consecutive_failures: state.map_or(0, |s| s.failures),
            backoff_ms: state.and_then(|s| s.backoff).map(|b| b.as_millis() as u64),
            next_poll_in_ms: state.filter(|_| polling).map(|s| {
                s.due
                    .map_or(0, |at| at.saturating_duration_since(now).as_millis() as u64)
            }),
            unsupported: state.and_then(|s| s.unsupported.clone()),
            events_accepted: state.map_or(0, |s| s.accepted),
            events_duplicate: state.map_or(0, |s| s.duplicates),
            disabled: state.and_then(|s| s.disabled.clone()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_stays_under_the_cap() {
        let interval = Duration::from_secs(60);
        for failures in 1..=4u32 {
            let base = interval * 2u32.pow(failures);
            for _ in 0..50 {
                let wait = backoff(interval, failures);
                assert!(
                    wait >= base && wait <= base + base / 4,
                    "{failures}: {wait:?}"
                );
            }
        }
        for failures in [6, 10, 31, 40, u32::MAX] {
            assert_eq!(backoff(interval, failures), MAX_BACKOFF, "{failures}");
        }
        // An interval longer than the cap is never shortened.
        let daily = Duration::from_secs(86_400);
        assert_eq!(backoff(daily, 3), daily);
    }

    #[test]
    fn each_failure_waits_longer_until_the_cap() {
        let interval = Duration::from_secs(1);
        let mut last = Duration::ZERO;
        for failures in 1..=11 {
            let wait = backoff(interval, failures);
            assert!(wait > last, "{failures}: {wait:?} after {last:?}");
            last = wait;
        }
    }
}
