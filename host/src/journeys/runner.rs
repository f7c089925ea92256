//! Moving one run through its steps as far as it can go now, staging every change (run,
//! timer, counts, done-effect keys) into one batch; effects (a queued message, a trait
//! update) carry the run and step as their idempotency key, so a move redone after a crash
//! does each of them once.

use serde_json::{Map, Value, json};

use super::conditions::{Facts, judge};
use super::definition::{Action, Awaited, JourneyDef, Next};
use super::store::{Count, LastEntry, MAX_VISITS, Run, RunState, Visit, Waiting, Writes};
use super::timing::{next_time_of_day, parse_time_of_day, zone};
use super::{JourneyError, Journeys};
use crate::ingest::event::format_rfc3339;
use crate::ingest::{EventType, StoredEvent};
use crate::outbox::{JourneyOrigin, NewMessage};

/// What moves a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Wake {
    /// It was just created, at its first step.
    Start,
    /// Its timer came due (a wait ended, or a `wait_until` timed out, unless it matched
    /// while the journey was paused).
    Timer,
    /// The event it waited for arrived, at this sequence.
    Matched(u64),
}

/// The identify event that writes a step's traits: its message id makes it once-only.
pub(super) fn trait_update_event(
    run: &Run,
    step: usize,
    traits: &Map<String, Value>,
    now: i64,
) -> StoredEvent {
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(now) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    StoredEvent {
        message_id: format!("journey:{}:{step}", run.id),
        kind: EventType::Identify,
        event: None,
        user_id: None,
        anonymous_id: None,
        identities: Vec::new(),
        timestamp: format_rfc3339(at),
        received_at: format_rfc3339(at),
        source: "journeys".into(),
        properties: Value::Null,
        traits: Value::Object(traits.clone()),
        context: json!({ "journey": run.journey, "journey_version": run.version, "run": run.id }),
        integrations: Value::Null,
        group_id: None,
        previous_id: None,
        contact_id: Some(run.contact.clone()),
    }
}

impl Journeys {
    /// Moves `run` (of `def`, the version it follows) as far as it goes: to a waiting step,
    /// an exit or the end. `seen_seq`: events up to it were already looked at, so a wait
    /// begun now matches only later ones. Stages the run and everything it changed in `w`;
    /// the caller commits.
    pub(super) async fn drive(
        &self,
        def: &JourneyDef,
        run: &mut Run,
        wake: Wake,
        seen_seq: u64,
        now: i64,
        w: &mut Writes,
    ) -> Result<(), JourneyError> {
        let Some(contact) = self.profiles.get(&run.contact)? else {
            // Erased since the run started: nothing more is done for it.
            self.end(def, run, RunState::Exited, Some("contact erased"), now, w)?;
            return Ok(());
        };
        let mut traits = contact.traits;
        let mut at = match wake {
            Wake::Start => {
                self.arrive(def, run, 0, now, w);
                0
            }
            Wake::Timer | Wake::Matched(_) => {
                let Some(waiting) = run.waiting.take() else {
                    return Ok(());
                };
                w.clear_timer(waiting.due_ms, &run.id);
                w.count(&run.journey, run.version, run.step, Count::Waiting, -1);
                let matched = matches!(wake, Wake::Matched(_)) || waiting.resumed.is_some();
                let here = run.step;
                let (next, outcome) = match &def.steps[here].action {
                    Action::WaitUntil { on_timeout, .. } if !matched => (*on_timeout, "timed out"),
                    Action::WaitUntil { .. } => (Next::Step(here + 1), "matched"),
                    _ => (Next::Step(here + 1), "waited"),
                };
                self.outcome(run, outcome);
                match self.leave(def, run, here, next, "timed out", now, w)? {
                    Some(j) => j,
                    None => return Ok(()),
                }
            }
        };
        loop {
            let step = &def.steps[at];
            let next = match &step.action {
                Action::WaitFor(ms) => {
                    self.wait(run, at, now.saturating_add(*ms as i64), seen_seq, w);
                    return Ok(());
                }
                Action::WaitUntilTime {
                    at: time_of_day,
                    default_timezone,
                } => {
                    let tz_name = traits
                        .get("timezone")
                        .and_then(Value::as_str)
                        .filter(|z| super::timing::is_known_zone(z))
                        .or(default_timezone.as_deref());
                    let due = match parse_time_of_day(time_of_day) {
                        Some(t) => next_time_of_day(now, t, &zone(tz_name)),
                        None => now,
                    };
                    self.wait(run, at, due, seen_seq, w);
                    return Ok(());
                }
                Action::WaitUntil {
                    awaited,
                    timeout_ms,
                    ..
                } => {
                    let already = match awaited {
                        Awaited::Segment(s) => self.segments.is_member(s, &run.contact)?,
                        Awaited::Event { .. } => false,
                    };
                    if !already {
                        self.wait(run, at, now.saturating_add(*timeout_ms as i64), seen_seq, w);
                        return Ok(());
                    }
                    self.outcome(run, "already in the segment");
                    Next::Step(at + 1)
                }
                Action::Branch {
                    all,
                    conditions,
                    then,
                    otherwise,
                } => {
                    let segments = &self.segments;
                    let contact_id = run.contact.clone();
                    let in_segment = |s: &str| segments.is_member(s, &contact_id).unwrap_or(false);
                    let yes = judge(
                        conditions,
                        *all,
                        &Facts {
                            traits: &traits,
                            properties: &run.trigger.properties,
                            in_segment: &in_segment,
                        },
                    );
                    self.outcome(run, if yes { "then" } else { "else" });
                    if yes { *then } else { *otherwise }
                }
                Action::Send {
                    channel,
                    template,
                    data,
                } => {
                    let key = format!("{}.{at}", run.id);
                    if self.store.effect(&run.id, at)?.is_none() {
                        let (delivery, created) = self.outbox.enqueue(
                            NewMessage {
                                idempotency_key: key.clone(),
                                contact: run.contact.clone(),
                                channel: channel.clone(),
                                to: None,
                                template: Some(template.clone()),
                                content: None,
                                data: data.clone(),
                                journey: Some(JourneyOrigin {
                                    journey: run.journey.clone(),
                                    version: run.version,
                                    run: run.id.clone(),
                                    step: at,
                                    step_id: step.id.clone(),
                                }),
                                request_sha256: None,
                            },
                            now,
                        )?;
                        tracing::info!(delivery = %delivery.id, created, "message queued");
                    }
                    let what = format!("queued {key}");
                    w.effect_done(&run.id, at, &what);
                    self.outcome(run, &what);
                    Next::Step(at + 1)
                }
                Action::UpdateTraits(set) => {
                    if self.store.effect(&run.id, at)?.is_none() {
                        let event = trait_update_event(run, at, set, now);
                        let report = self.ingest.ingest(vec![event]).await?;
                        tracing::info!(duplicates = report.duplicates, "traits update logged");
                    }
                    w.effect_done(&run.id, at, "traits updated");
                    // Later steps of this move see the new values before profiles apply them.
                    traits.extend(set.clone());
                    self.outcome(run, "traits updated");
                    Next::Step(at + 1)
                }
                Action::Exit => Next::Exit,
            };
            let reason = if matches!(step.action, Action::Exit) {
                "exit step"
            } else {
                "sent to exit"
            };
            match self.leave(def, run, at, next, reason, now, w)? {
                Some(j) => at = j,
                None => return Ok(()),
            }
        }
    }

    /// Counts the run into step `at`.
    fn arrive(&self, def: &JourneyDef, run: &mut Run, at: usize, now: i64, w: &mut Writes) {
        run.step = at;
        run.state = RunState::Active;
        run.updated_ms = now;
        if run.visits.len() < MAX_VISITS {
            run.visits.push(Visit {
                step: at,
                id: def.steps[at].id.clone(),
                at_ms: now,
                outcome: None,
            });
        }
        w.count(&run.journey, run.version, at, Count::Entered, 1);
    }

    /// Notes what happened at the current step.
    fn outcome(&self, run: &mut Run, what: &str) {
        if let Some(last) = run.visits.last_mut()
            && last.step == run.step
        {
            last.outcome = Some(what.to_string());
        }
    }

    /// Leaves step `here` for `next`: returns the next step to run, or `None` when the run
    /// ended (exited, or ran off the end). `exit_reason` names an exit.
    #[allow(clippy::too_many_arguments)]
    fn leave(
        &self,
        def: &JourneyDef,
        run: &mut Run,
        here: usize,
        next: Next,
        exit_reason: &str,
        now: i64,
        w: &mut Writes,
    ) -> Result<Option<usize>, JourneyError> {
        match next {
            Next::Exit => {
                w.count(&run.journey, run.version, here, Count::Exited, 1);
                self.end(def, run, RunState::Exited, Some(exit_reason), now, w)?;
                Ok(None)
            }
            Next::Step(j) => {
                w.count(&run.journey, run.version, here, Count::Completed, 1);
                if j >= def.steps.len() {
                    self.end(def, run, RunState::Completed, None, now, w)?;
                    Ok(None)
                } else {
                    self.arrive(def, run, j, now, w);
                    Ok(Some(j))
                }
            }
        }
    }

    /// Stops the run at step `at` until `due_ms` (or the awaited event).
    fn wait(&self, run: &mut Run, at: usize, due_ms: i64, seen_seq: u64, w: &mut Writes) {
        run.state = RunState::Waiting;
        run.step = at;
        run.waiting = Some(Waiting {
            due_ms,
            after_seq: seen_seq,
            resumed: None,
        });
        w.set_timer(due_ms, &run.id);
        w.count(&run.journey, run.version, at, Count::Waiting, 1);
        self.outcome(run, "waiting");
    }

    /// Takes a run out of the journey where it stands (it left the exit segment).
    pub(super) fn exit_now(
        &self,
        def: &JourneyDef,
        run: &mut Run,
        reason: &str,
        now: i64,
        w: &mut Writes,
    ) -> Result<(), JourneyError> {
        if let Some(waiting) = run.waiting.take() {
            w.clear_timer(waiting.due_ms, &run.id);
            w.count(&run.journey, run.version, run.step, Count::Waiting, -1);
        }
        w.count(&run.journey, run.version, run.step, Count::Exited, 1);
        self.outcome(run, "exited");
        self.end(def, run, RunState::Exited, Some(reason), now, w)
    }

    /// Ends a run and records, for re-entry, that the contact's latest run is over.
    fn end(
        &self,
        def: &JourneyDef,
        run: &mut Run,
        state: RunState,
        reason: Option<&str>,
        now: i64,
        w: &mut Writes,
    ) -> Result<(), JourneyError> {
        run.state = state;
        run.waiting = None;
        run.updated_ms = now;
        run.ended_ms = Some(now);
        run.exit_reason = reason.map(str::to_string);
        let latest = self.store.last_entry(&def.id, &run.contact)?;
        if latest
            .as_ref()
            .is_none_or(|l| l.run == run.id || l.started_ms <= run.started_ms)
        {
            w.last_entry(
                &def.id,
                &run.contact,
                &LastEntry {
                    run: run.id.clone(),
                    started_ms: run.started_ms,
                    ended: true,
                },
            )?;
        }
        tracing::info!(state = state.as_str(), reason, "run ended");
        Ok(())
    }
}
