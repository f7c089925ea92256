//! The delivery worker: one lane per channel plugin, each with its own ready queue and its own
//! limit of sends in flight, so a slow or failing provider holds up only its own messages.
//!
//! A lane takes the due heads of its channel's queue (the first open message of each contact,
//! so per-contact order holds), marks them `sending`, and runs one attempt each through the
//! plugin registry (the slot's live version, canary, breaker). The attempt's outcome moves the
//! delivery on in one batch with the event it causes; the events are then appended to the
//! event log. After a restart, deliveries found `sending` are attempted again with the same
//! idempotency key. A channel that is not installed, has no live version or is disabled
//! sends nothing: its messages wait, queued, and spend no attempts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use super::compose::compose;
use super::record::{Attempt, AttemptOutcome, Delivery, MAX_ERROR_BYTES, cut_text};
use super::retry::RetrySettings;
use super::store::{DeliveryEvent, Outbox};
use crate::clock::now_ms;
use crate::ingest::event::format_rfc3339;
use crate::ingest::{EventType, Ingest, StoredEvent};
use crate::plugins::{Medium, PluginError, PluginRegistry};
use crate::profiles::Profiles;
use crate::runtime::PluginKind;
use crate::runtime::types::SendError;

/// How long a lane sleeps at most before looking at its queue again, when nothing wakes it.
const IDLE: Duration = Duration::from_secs(30);
/// How often a lane whose channel cannot send (not installed, not live, disabled) looks again.
const PARKED: Duration = Duration::from_secs(1);
/// How soon a send the plugin's pool share refused is tried again (not an attempt).
const REFUSED_AGAIN_MS: i64 = 250;
/// Most deliveries a lane takes at once.
const CLAIM_AT_ONCE: usize = 256;
/// Most events appended to the log in one call.
const EVENTS_AT_ONCE: usize = 1_000;

/// The current time in Unix ms, as records keep it.
fn now() -> i64 {
    i64::try_from(now_ms()).unwrap_or(i64::MAX)
}

/// What the worker reaches: the outbox, the channel plugins, the contacts, the event log.
pub struct OutboxWorker {
    outbox: Outbox,
    registry: Arc<PluginRegistry>,
    profiles: Profiles,
    ingest: Arc<Ingest>,
    /// The medium each channel version's manifest names, by sha256.
    media: Mutex<HashMap<String, Option<Medium>>>,
    /// Serialises appends of delivery events, so two lanes never log the same one at once.
    logging: tokio::sync::Mutex<()>,
}

impl OutboxWorker {
    /// A worker over these parts.
    pub fn new(
        outbox: Outbox,
        registry: Arc<PluginRegistry>,
        profiles: Profiles,
        ingest: Arc<Ingest>,
    ) -> Arc<Self> {
        Arc::new(Self {
            outbox,
            registry,
            profiles,
            ingest,
            media: Mutex::new(HashMap::new()),
            logging: tokio::sync::Mutex::new(()),
        })
    }

    /// Runs until `stopped` turns true: recovers attempts a previous run left in flight,
    /// appends events a previous run did not, then runs a lane per channel with work, and
    /// on stop lets the attempts in flight finish.
    pub async fn run(self: Arc<Self>, mut stopped: watch::Receiver<bool>) {
        match self.outbox.recover_in_flight(now()) {
            Ok(0) => {}
            Ok(n) => tracing::info!(n, "deliveries in flight at the last stop are due again"),
            Err(e) => tracing::error!("recovering deliveries in flight: {e}"),
        }
        self.log_events().await;
        let mut lanes: HashMap<String, JoinHandle<()>> = HashMap::new();
        loop {
            for channel in self.outbox.wakers.channels() {
                let running = lanes.get(&channel).is_some_and(|h| !h.is_finished());
                if !running {
                    if lanes.contains_key(&channel) {
                        tracing::error!(%channel, "a delivery lane stopped; starting it again");
                    }
                    let lane = tokio::spawn(self.clone().lane(channel.clone(), stopped.clone()));
                    lanes.insert(channel, lane);
                }
            }
            tokio::select! {
                () = self.outbox.wakers.new_lane.notified() => {}
                // Restarts a lane that ended (it only ends by a panic) within a second.
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                changed = stopped.changed() => {
                    if changed.is_err() || *stopped.borrow() {
                        break;
                    }
                }
            }
        }
        for (_, lane) in lanes {
            let _ = lane.await;
        }
        self.log_events().await;
    }

    /// One channel's lane.
    async fn lane(self: Arc<Self>, channel: String, mut stopped: watch::Receiver<bool>) {
        let wake = self.outbox.wakers.lane(&channel);
        let mut attempts: JoinSet<()> = JoinSet::new();
        loop {
            if *stopped.borrow() {
                break;
            }
            while attempts.try_join_next().is_some() {}
            if !self.accepts_sends(&channel) {
                // Not installed, not live, or disabled by the operator: its messages wait,
                // queued, without spending attempts. The lane looks again every second.
                tokio::select! {
                    () = wake.notified() => {}
                    Some(_) = attempts.join_next(), if !attempts.is_empty() => {}
                    () = tokio::time::sleep(PARKED) => {}
                    changed = stopped.changed() => {
                        if changed.is_err() {
                            break;
                        }
                    }
                }
                continue;
            }
            let settings = self.outbox.settings(&channel).unwrap_or_else(|e| {
                tracing::error!(%channel, "reading the channel's retry settings: {e}");
                self.outbox.config().defaults
            });
            let free = (settings.concurrency as usize).saturating_sub(attempts.len());
            let at = now();
            let claimed = match self.outbox.claim(&channel, at, free.min(CLAIM_AT_ONCE)) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(%channel, "taking due deliveries: {e}");
                    Vec::new()
                }
            };
            let took = claimed.len();
            for delivery in claimed {
                attempts.spawn(self.clone().attempt(delivery, settings));
            }
            if took > 0 && took < free {
                continue;
            }
            let wait = if free == 0 || took > 0 {
                IDLE
            } else {
                match self.outbox.next_due(&channel) {
                    Ok(Some(due)) => Duration::from_millis(
                        u64::try_from(due.saturating_sub(at)).unwrap_or(0).max(1),
                    )
                    .min(IDLE),
                    Ok(None) => IDLE,
                    Err(e) => {
                        tracing::error!(%channel, "reading the next due delivery: {e}");
                        Duration::from_secs(1)
                    }
                }
            };
            tokio::select! {
                () = wake.notified() => {}
                Some(_) = attempts.join_next(), if !attempts.is_empty() => {}
                () = tokio::time::sleep(wait) => {}
                changed = stopped.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
            }
        }
        while attempts.join_next().await.is_some() {}
    }

    /// True when `channel` is an enabled channel plugin with a live version.
    fn accepts_sends(&self, channel: &str) -> bool {
        self.registry.slot(channel).is_ok_and(|slot| {
            slot.kind() == PluginKind::Channel && slot.is_enabled() && slot.live().is_some()
        })
    }

    /// The medium the live version of `channel` names in its manifest.
    fn medium(&self, channel: &str) -> Option<Medium> {
        let live = self.registry.slot(channel).ok()?.live()?;
        let sha = live.spec().sha256.clone();
        let mut media = self.media.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = media.get(&sha) {
            return *m;
        }
        let medium = self
            .registry
            .version_manifest(channel, &sha)
            .ok()
            .and_then(|m| m.channel)
            .map(|c| c.medium);
        media.insert(sha, medium);
        medium
    }

    /// One attempt at `d` (marked `sending`), then its outcome recorded.
    async fn attempt(self: Arc<Self>, d: Delivery, settings: RetrySettings) {
        let started_ms = now();
        let clock = Instant::now();
        let contact = match self.profiles.get(&d.contact) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(delivery = %d.id, "reading the contact: {e}");
                let _ = self.outbox.release(&d.id, now().saturating_add(1_000));
                return;
            }
        };
        let mut attempt = Attempt {
            n: d.attempt_count.saturating_add(1),
            channel: d.channel.clone(),
            version: None,
            started_ms,
            duration_ms: 0,
            outcome: AttemptOutcome::Sent,
            error: None,
            provider_id: None,
            retry_after_ms: None,
        };
        match compose(&d, contact.as_ref(), self.medium(&d.channel)) {
            Err(why) => {
                attempt.outcome = AttemptOutcome::Permanent;
                attempt.error = Some(why);
            }
            Ok(message) => {
                attempt.version = self
                    .registry
                    .slot(&d.channel)
                    .ok()
                    .and_then(|s| s.live())
                    .map(|p| p.spec().version.clone());
                match self.registry.send(&d.channel, &message).await {
                    Ok(Ok(sent)) => attempt.provider_id = sent.provider_id,
                    Ok(Err(SendError::Retryable(r))) => {
                        attempt.outcome = AttemptOutcome::Retryable;
                        attempt.error = Some(r.message);
                        attempt.retry_after_ms = r.after_ms;
                    }
                    Ok(Err(SendError::Permanent(why))) => {
                        attempt.outcome = AttemptOutcome::Permanent;
                        attempt.error = Some(why);
                    }
                    Err(PluginError::Call(e)) if e.cause.is_load() => {
                        // The call never ran: not an attempt.
                        let _ = self
                            .outbox
                            .release(&d.id, now().saturating_add(REFUSED_AGAIN_MS));
                        return;
                    }
                    Err(e @ PluginError::WrongKind { .. }) => {
                        attempt.outcome = AttemptOutcome::Permanent;
                        attempt.error = Some(e.to_string());
                    }
                    Err(e) => {
                        attempt.outcome = AttemptOutcome::Unavailable;
                        if let PluginError::BreakerOpen { retry_in_ms, .. } = &e {
                            attempt.retry_after_ms = Some(*retry_in_ms);
                        }
                        attempt.error = Some(e.to_string());
                    }
                }
            }
        }
        attempt.duration_ms = u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX);
        attempt.error = attempt.error.map(|e| cut_text(&e, MAX_ERROR_BYTES));
        let outcome = attempt.outcome;
        match self
            .outbox
            .finish(&d.id, attempt, &settings, now(), rand::random::<f64>())
        {
            Ok(Some((d, landed))) => {
                tracing::info!(delivery = %d.id, channel = %d.channel, ?outcome, ?landed, "delivery attempt")
            }
            Ok(None) => {}
            Err(e) => tracing::error!(delivery = %d.id, "recording the attempt: {e}"),
        }
        self.log_events().await;
    }

    /// Appends the delivery events waiting in the outbox to the event log, then forgets them.
    /// A failure leaves them for the next call (ingest drops the ones already logged).
    async fn log_events(&self) {
        let _one = self.logging.lock().await;
        loop {
            let pending = match self.outbox.pending_events(EVENTS_AT_ONCE) {
                Ok(p) if p.is_empty() => return,
                Ok(p) => p,
                Err(e) => {
                    tracing::error!("reading delivery events: {e}");
                    return;
                }
            };
            let full = pending.len() == EVENTS_AT_ONCE;
            let (keys, events): (Vec<_>, Vec<_>) = pending.into_iter().unzip();
            let events = events.into_iter().map(stored_event).collect();
            if let Err(e) = self.ingest.ingest(events).await {
                tracing::error!("appending delivery events to the log: {e}");
                return;
            }
            if let Err(e) = self.outbox.events_logged(keys) {
                tracing::error!("forgetting logged delivery events: {e}");
                return;
            }
            if !full {
                return;
            }
        }
    }
}

/// A delivery event as a `track` event about its contact.
fn stored_event(e: DeliveryEvent) -> StoredEvent {
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(e.at_ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    StoredEvent {
        message_id: e.message_id,
        kind: EventType::Track,
        event: Some(e.name),
        user_id: None,
        anonymous_id: None,
        identities: Vec::new(),
        timestamp: format_rfc3339(at),
        received_at: format_rfc3339(at),
        source: "outbox".into(),
        properties: e.properties,
        traits: serde_json::Value::Null,
        context: json!({}),
        integrations: serde_json::Value::Null,
        group_id: None,
        previous_id: None,
        contact_id: Some(e.contact),
    }
}
