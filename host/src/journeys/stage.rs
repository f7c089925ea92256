//! The journey stage's loop: follows the profile change feed in pages (starting runs on
//! trigger events, moving runs whose awaited event arrived, ending runs whose contact left
//! their exit segment) and fires due timers in order, then acknowledges the feed.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tracing::Instrument;

use super::conditions::{Facts, judge};
use super::definition::{Action, Awaited, JourneyDef, Reentry, Trigger};
use super::runner::Wake;
use super::store::{JourneyRecord, LastEntry, Run, RunState, TriggerEvent, Writes};
use super::{FEED_READER, JourneyError, Journeys};
use crate::clock::now_ms;
use crate::ingest::{EventType, StoredEvent};
use crate::profiles::Applied;

/// Feed events read per page.
const PAGE: usize = 1_000;
/// Timers fired per step.
const TIMERS: usize = 1_000;
/// The longest the stage sleeps without looking (a timer written by an older host, say).
const IDLE_MS: i64 = 200;

/// The event the segment stage logs when a contact enters a segment.
pub const SEGMENT_ENTERED: &str = "Segment Entered";
/// The event the segment stage logs when a contact leaves a segment.
pub const SEGMENT_EXITED: &str = "Segment Exited";

/// Runs the journey stage until `shutdown` fires.
pub async fn run_stage(journeys: Journeys, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let mut applied = journeys.profiles.watch_applied();
    loop {
        let worked = match journeys.step().await {
            Ok(n) => n,
            Err(e) => {
                tracing::error!("journey stage: {e}; retrying");
                0
            }
        };
        if worked > 0 {
            continue;
        }
        let wait = journeys.idle_wait_ms().unwrap_or(IDLE_MS) as u64;
        tokio::select! {
            _ = applied.changed() => {}
            _ = journeys.wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// The journey a run id belongs to (`{journey}-{seq}`).
fn journey_of(run: &str) -> &str {
    run.rsplit_once('-').map_or(run, |(j, _)| j)
}

/// Definitions read during one step, by (journey, version).
#[derive(Default)]
struct Defs {
    versions: BTreeMap<(String, u32), Option<JourneyDef>>,
}

impl Defs {
    fn get(
        &mut self,
        j: &Journeys,
        journey: &str,
        version: u32,
    ) -> Result<Option<&JourneyDef>, JourneyError> {
        let key = (journey.to_string(), version);
        if !self.versions.contains_key(&key) {
            let def = j.store.version(journey, version)?.map(|v| v.def);
            self.versions.insert(key.clone(), def);
        }
        Ok(self.versions.get(&key).and_then(Option::as_ref))
    }
}

impl Journeys {
    /// One step: a page of the feed, then due timers. Returns how much it did (0: idle).
    pub(super) async fn step(&self) -> Result<usize, JourneyError> {
        let _w = self.writer.lock().await;
        let mut done = self.feed_page().await?;
        done += self.fire_timers().await?;
        Ok(done)
    }

    /// How long until the next timer of a journey that is not paused (capped at the idle
    /// wait); `None` when there is none to wait for.
    fn idle_wait_ms(&self) -> Option<i64> {
        let paused = self.paused().ok()?;
        let now = now_ms() as i64;
        let skip = |run: &str| paused.contains(journey_of(run));
        let next = self.store.due_timers(i64::MAX - 1, 1, &skip).ok()?;
        next.first().map(|(due, _)| (due - now).clamp(1, IDLE_MS))
    }

    fn paused(&self) -> Result<BTreeSet<String>, JourneyError> {
        Ok(self
            .store
            .journeys()?
            .into_iter()
            .filter(|j| j.paused)
            .map(|j| j.id)
            .collect())
    }

    async fn feed_page(&self) -> Result<usize, JourneyError> {
        let cursor = self.store.followed_seq()?;
        let page = self.profiles.feed(cursor, PAGE)?;
        if page.through == cursor {
            return Ok(0);
        }
        let events = self.read_events(&page.events)?;
        let mut live: Vec<(JourneyRecord, JourneyDef)> = Vec::new();
        for record in self.store.journeys()? {
            if let Some(v) = self.store.version(&record.id, record.version)? {
                live.push((record, v.def));
            }
        }
        let mut defs = Defs::default();
        let now = now_ms() as i64;
        for applied in &page.events {
            if !applied.merged.is_empty() {
                self.move_runs(&applied.merged, &applied.contact_id, &live, &mut defs, now)?;
            }
            let Some(event) = events.get(&applied.seq) else {
                continue;
            };
            let span = tracing::info_span!(
                "journey_event",
                event = %event.message_id,
                seq = applied.seq,
                contact = %applied.contact_id
            );
            self.on_event(applied, event, &live, &mut defs, now)
                .instrument(span)
                .await?;
        }
        let mut w = Writes::default();
        w.followed_seq(page.through);
        w.commit(&self.store)?;
        self.profiles.ack_feed(FEED_READER, page.through)?;
        Ok(page.events.len().max(1))
    }

    /// The logged events of a feed page, by sequence.
    fn read_events(&self, applied: &[Applied]) -> Result<BTreeMap<u64, StoredEvent>, JourneyError> {
        let mut out = BTreeMap::new();
        let (Some(first), Some(last)) = (applied.first(), applied.last()) else {
            return Ok(out);
        };
        let wanted: BTreeSet<u64> = applied.iter().map(|a| a.seq).collect();
        let span = (last.seq - first.seq + 1) as usize;
        for (seq, bytes) in self.ingest.log().read(first.seq, span)? {
            if !wanted.contains(&seq) || crate::store::is_redacted(&bytes) {
                continue;
            }
            match serde_json::from_slice::<StoredEvent>(&bytes) {
                Ok(event) => {
                    out.insert(seq, event);
                }
                Err(e) => tracing::warn!(seq, "journey stage: undecodable event skipped: {e}"),
            }
        }
        Ok(out)
    }

    /// What one event does: ends runs whose contact left their exit segment, moves runs that
    /// waited for it, starts runs it triggers. Each run's change is one batch; redoing the
    /// event after a crash changes nothing already done (run ids come from the event's
    /// sequence, and a wait only matches events after the one it began at).
    async fn on_event(
        &self,
        applied: &Applied,
        event: &StoredEvent,
        live: &[(JourneyRecord, JourneyDef)],
        defs: &mut Defs,
        now: i64,
    ) -> Result<(), JourneyError> {
        let contact = &applied.contact_id;
        let seq = applied.seq;
        let segment_id = event.properties.get("segment_id").and_then(|v| v.as_str());
        let name = event
            .event
            .as_deref()
            .filter(|_| event.kind == EventType::Track);
        let run_ids = self.store.runs_of_contact(contact)?;
        for run_id in run_ids {
            let Some(mut run) = self.store.run(&run_id)? else {
                continue;
            };
            if run.state.ended() {
                continue;
            }
            let Some(def) = defs.get(self, &run.journey, run.version)?.cloned() else {
                continue;
            };
            if name == Some(SEGMENT_EXITED)
                && segment_id.is_some()
                && def.exit_on_segment_exit.as_deref() == segment_id
            {
                let span = run_span(&run);
                let _g = span.enter();
                let mut w = Writes::default();
                let reason = format!("left segment {}", segment_id.unwrap_or_default());
                self.exit_now(&def, &mut run, &reason, now, &mut w)?;
                w.run(&run)?;
                w.commit(&self.store)?;
                continue;
            }
            let Some(waiting) = run.waiting.clone() else {
                continue;
            };
            if run.state != RunState::Waiting
                || seq <= waiting.after_seq
                || waiting.resumed.is_some()
            {
                continue;
            }
            let Action::WaitUntil { awaited, .. } = &def.steps[run.step].action else {
                continue;
            };
            if !awaits(awaited, name, segment_id, event) {
                continue;
            }
            let paused = live
                .iter()
                .find(|(r, _)| r.id == run.journey)
                .is_none_or(|(r, _)| r.paused);
            let mut w = Writes::default();
            if paused {
                // Noted now, acted on when the journey resumes.
                w.clear_timer(waiting.due_ms, &run.id);
                w.set_timer(now, &run.id);
                run.waiting = Some(super::store::Waiting {
                    due_ms: now,
                    after_seq: waiting.after_seq,
                    resumed: Some(super::store::Resumed::Matched(seq)),
                });
            } else {
                let span = run_span(&run);
                self.drive(&def, &mut run, Wake::Matched(seq), seq, now, &mut w)
                    .instrument(span)
                    .await?;
            }
            w.run(&run)?;
            w.commit(&self.store)?;
        }
        for (record, def) in live {
            if record.paused || !triggers(&def.trigger, name, segment_id, event) {
                continue;
            }
            self.start(def, seq, event, contact, now).await?;
        }
        Ok(())
    }

    /// Starts a run of `def` for `contact` unless one exists for this event, or the contact is
    /// in the journey now, or its re-entry policy says no.
    async fn start(
        &self,
        def: &JourneyDef,
        seq: u64,
        event: &StoredEvent,
        contact: &str,
        now: i64,
    ) -> Result<(), JourneyError> {
        let id = format!("{}-{seq}", def.id);
        if self.store.run(&id)?.is_some() {
            return Ok(());
        }
        if let Some(last) = self.store.last_entry(&def.id, contact)? {
            let allowed = last.ended
                && match def.reentry {
                    Reentry::Never => false,
                    Reentry::Always => true,
                    Reentry::After(ms) => now.saturating_sub(last.started_ms) >= ms as i64,
                };
            if !allowed {
                tracing::debug!(journey = %def.id, contact, "not re-entered");
                return Ok(());
            }
        }
        let mut run = Run {
            id: id.clone(),
            journey: def.id.clone(),
            version: def.version,
            contact: contact.to_string(),
            trigger: TriggerEvent {
                seq,
                message_id: event.message_id.clone(),
                name: event.event.clone(),
                properties: event.properties.clone(),
            },
            state: RunState::Active,
            step: 0,
            waiting: None,
            started_ms: now,
            updated_ms: now,
            ended_ms: None,
            exit_reason: None,
            visits: Vec::new(),
        };
        let span = run_span(&run);
        let mut w = Writes::default();
        w.index_run(&run);
        w.last_entry(
            &def.id,
            contact,
            &LastEntry {
                run: id,
                started_ms: now,
                ended: false,
            },
        )?;
        async {
            tracing::info!(version = def.version, "run started");
            self.drive(def, &mut run, Wake::Start, seq, now, &mut w)
                .await
        }
        .instrument(span)
        .await?;
        w.run(&run)?;
        w.commit(&self.store)?;
        Ok(())
    }

    /// Moves the runs of contacts merged into `survivor` over to it, so they go on there.
    /// A contact is in a journey at most once, so when the merge leaves the survivor more than
    /// one run of a journey in progress, the one that started first goes on and the others
    /// exit (`merged`). The survivor's latest-run record per journey becomes its run in
    /// progress, else the latest start among the merged contacts', so re-entry judges the
    /// merged history (`never` stays never).
    fn move_runs(
        &self,
        merged: &[String],
        survivor: &str,
        live: &[(JourneyRecord, JourneyDef)],
        defs: &mut Defs,
        now: i64,
    ) -> Result<(), JourneyError> {
        let mut w = Writes::default();
        let mut runs: Vec<Run> = Vec::new();
        for run_id in self.store.runs_of_contact(survivor)? {
            runs.extend(self.store.run(&run_id)?);
        }
        for gone in merged {
            for run_id in self.store.runs_of_contact(gone)? {
                let Some(mut run) = self.store.run(&run_id)? else {
                    continue;
                };
                w.batch.remove(super::store::join(
                    super::store::prefix::CONTACT_RUN,
                    &[gone.as_bytes(), run_id.as_bytes()],
                ));
                run.contact = survivor.to_string();
                w.index_run(&run);
                w.run(&run)?;
                runs.push(run);
            }
        }
        // The run that goes on per journey: the earliest started of those in progress.
        runs.sort_by_key(|r| (r.started_ms, r.trigger.seq));
        let mut going_on: BTreeMap<String, Run> = BTreeMap::new();
        for mut run in runs {
            if run.state.ended() {
                continue;
            }
            let Some(kept) = going_on.get(&run.journey) else {
                going_on.insert(run.journey.clone(), run);
                continue;
            };
            let Some(def) = defs.get(self, &run.journey, run.version)?.cloned() else {
                continue;
            };
            let reason = format!("merged into {survivor}, whose run {} goes on", kept.id);
            let span = run_span(&run);
            let _g = span.enter();
            self.exit_now(&def, &mut run, &reason, now, &mut w)?;
            w.run(&run)?;
        }
        let mut journeys: BTreeSet<&str> = live.iter().map(|(r, _)| r.id.as_str()).collect();
        journeys.extend(going_on.keys().map(String::as_str));
        for journey in journeys {
            let last = match going_on.get(journey) {
                Some(run) => Some(LastEntry {
                    run: run.id.clone(),
                    started_ms: run.started_ms,
                    ended: false,
                }),
                None => {
                    let mut latest = self.store.last_entry(journey, survivor)?;
                    for gone in merged {
                        if let Some(l) = self.store.last_entry(journey, gone)?
                            && latest.as_ref().is_none_or(|k| k.started_ms < l.started_ms)
                        {
                            latest = Some(LastEntry { ended: true, ..l });
                        }
                    }
                    latest
                }
            };
            // Written after any exit above, so it is what the batch leaves.
            if let Some(last) = last {
                w.last_entry(journey, survivor, &last)?;
            }
        }
        w.commit(&self.store)?;
        Ok(())
    }

    /// Fires the due timers of journeys that are not paused, in due order, each run's move
    /// with its timer's removal in one batch.
    async fn fire_timers(&self) -> Result<usize, JourneyError> {
        let now = now_ms() as i64;
        let paused = self.paused()?;
        let seen = self.store.followed_seq()?;
        let mut defs = Defs::default();
        let mut fired = 0;
        let skip = |run: &str| paused.contains(journey_of(run));
        for (due_ms, run_id) in self.store.due_timers(now, TIMERS, &skip)? {
            let mut w = Writes::default();
            let run = self.store.run(&run_id)?;
            let stale = run.as_ref().is_none_or(|r| {
                r.state != RunState::Waiting || r.waiting.as_ref().map(|w| w.due_ms) != Some(due_ms)
            });
            let def = match &run {
                Some(r) => defs.get(self, &r.journey, r.version)?.cloned(),
                None => None,
            };
            match (run, def) {
                (Some(mut run), Some(def)) if !stale => {
                    let span = run_span(&run);
                    self.drive(&def, &mut run, Wake::Timer, seen, now, &mut w)
                        .instrument(span)
                        .await?;
                    w.run(&run)?;
                }
                _ => {
                    // Its run moved on or is gone: the timer means nothing now.
                    w.clear_timer(due_ms, &run_id);
                }
            }
            w.commit(&self.store)?;
            fired += 1;
        }
        Ok(fired)
    }
}

fn run_span(run: &Run) -> tracing::Span {
    tracing::info_span!(
        "journey_run",
        journey = %run.journey,
        run = %run.id,
        event = %run.trigger.message_id
    )
}

/// Whether a (track) event named `name` starts runs of `trigger`.
fn triggers(
    trigger: &Trigger,
    name: Option<&str>,
    segment_id: Option<&str>,
    event: &StoredEvent,
) -> bool {
    match trigger {
        Trigger::Event {
            name: want,
            conditions,
        } => name == Some(want.as_str()) && properties_hold(conditions, event),
        Trigger::SegmentEntered(segment) => {
            name == Some(SEGMENT_ENTERED) && segment_id == Some(segment.as_str())
        }
    }
}

/// Whether an event is what a `wait_until` step waits for.
fn awaits(
    awaited: &Awaited,
    name: Option<&str>,
    segment_id: Option<&str>,
    event: &StoredEvent,
) -> bool {
    match awaited {
        Awaited::Event {
            name: want,
            conditions,
        } => name == Some(want.as_str()) && properties_hold(conditions, event),
        Awaited::Segment(segment) => {
            name == Some(SEGMENT_ENTERED) && segment_id == Some(segment.as_str())
        }
    }
}

fn properties_hold(conditions: &[super::conditions::Condition], event: &StoredEvent) -> bool {
    let none = serde_json::Map::new();
    let never = |_: &str| false;
    judge(
        conditions,
        true,
        &Facts {
            traits: &none,
            properties: &event.properties,
            in_segment: &never,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn track(name: &str, properties: serde_json::Value) -> StoredEvent {
        serde_json::from_value(json!({
            "message_id": "m", "type": "track", "event": name, "timestamp": "2026-01-01T00:00:00Z",
            "received_at": "2026-01-01T00:00:00Z", "source": "t", "properties": properties
        }))
        .unwrap()
    }

    #[test]
    fn run_ids_name_their_journey() {
        assert_eq!(journey_of("welcome-12"), "welcome");
        assert_eq!(journey_of("big-spenders-3"), "big-spenders");
    }

    #[test]
    fn triggers_match_names_properties_and_segments() {
        let def = super::super::definition::parse(
            "j",
            1,
            &json!({ "trigger": { "event": "Order Completed", "where": [{ "property": "total", "gt": 100 }] },
                     "steps": [{ "exit": {} }] }),
        )
        .unwrap();
        let big = track("Order Completed", json!({ "total": 150 }));
        let small = track("Order Completed", json!({ "total": 50 }));
        assert!(triggers(&def.trigger, Some("Order Completed"), None, &big));
        assert!(!triggers(
            &def.trigger,
            Some("Order Completed"),
            None,
            &small
        ));
        assert!(!triggers(&def.trigger, Some("Other"), None, &big));
        let seg = Trigger::SegmentEntered("vip".into());
        let entered = track(SEGMENT_ENTERED, json!({ "segment_id": "vip" }));
        assert!(triggers(&seg, Some(SEGMENT_ENTERED), Some("vip"), &entered));
        assert!(!triggers(
            &seg,
            Some(SEGMENT_ENTERED),
            Some("other"),
            &entered
        ));
        assert!(!triggers(&seg, Some(SEGMENT_EXITED), Some("vip"), &entered));
        assert!(awaits(
            &Awaited::Segment("vip".into()),
            Some(SEGMENT_ENTERED),
            Some("vip"),
            &entered
        ));
    }
}
