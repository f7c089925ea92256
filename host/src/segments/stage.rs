//! The segment stage's loop: follows the profile change feed, fires due recheck timers and
//! runs recomputes, asking each segment's rule about the contacts that changed in what it
//! depends on (one call per segment per batch), and logs membership changes as events.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::json;

use crate::clock::now_ms;
use crate::ingest::event::{format_rfc3339, parse_time};
use crate::ingest::{EventType, StoredEvent};
use crate::profiles::Applied;
use crate::runtime::types::{Decision, RuleInput, RuleNeeds};

use super::rules::{self, RuleVersion};
use super::store::{Kept, SegmentDef, Writes, pair, prefix};
use super::store::{KeptAt, Retained};
use super::views::{Views, Window, kept_window};
use super::{SegmentError, Segments};

/// Feed events read per step.
const PAGE: usize = 1_000;
/// Contacts per rule call.
const BATCH: usize = 500;
/// How long contacts whose rule call failed wait before they are asked about again, ms.
const RETRY_MS: i64 = 1_000;
/// Past events handed to a rule per contact: the newest by event time in its window.
pub(crate) const MAX_PAST_EVENTS: usize = 10_000;
/// A contact's logged events read back per page when a recompute fills a window.
const BACKFILL_PAGE: usize = 1_000;

/// The names of the events the stage itself writes.
pub const ENTERED: &str = "Segment Entered";
/// See [`ENTERED`].
pub const EXITED: &str = "Segment Exited";

/// Runs the segment stage until `shutdown` fires.
pub async fn run_stage(segments: Segments, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let mut applied = segments.profiles.watch_applied();
    loop {
        let worked = match segments.step().await {
            Ok(n) => n,
            Err(e) => {
                tracing::error!("segment stage: {e}; retrying");
                0
            }
        };
        if worked > 0 {
            continue;
        }
        let now = now_ms() as i64;
        let next = segments.store.next_timer().ok().flatten();
        let wait = next.map_or(200, |due| (due - now).clamp(1, 200)) as u64;
        tokio::select! {
            _ = applied.changed() => {}
            _ = segments.wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// What changed about one contact in a page: what its events could wake.
#[derive(Default)]
struct Touch {
    /// Event names (track, page, screen).
    names: BTreeSet<String>,
    /// Trait names its events set.
    traits: BTreeSet<String>,
    /// Merged with another contact: every segment looks again.
    all: bool,
    /// The last of its events in the page.
    last: Option<StoredEvent>,
    /// Its events in the page that windowed rules read.
    fresh: Vec<KeptAt>,
}

impl Touch {
    fn wakes(&self, needs: &RuleNeeds) -> bool {
        let any = |list: &[String], name: &str| list.iter().any(|n| n == name);
        self.all
            || self.names.iter().any(|n| {
                any(&needs.events, n) || (any(&needs.events, "*") && n != ENTERED && n != EXITED)
            })
            || self
                .traits
                .iter()
                .any(|t| any(&needs.traits, t) || any(&needs.traits, "*"))
    }
}

/// Why a contact is evaluated: names the membership events, so that a step redone after a
/// crash writes the same message ids (which ingest then drops as duplicates).
enum Cause {
    Feed(u64),
    Timer(i64),
    Recompute(i64),
}

impl Cause {
    fn tag(&self) -> String {
        match self {
            Cause::Feed(seq) => format!("s{seq}"),
            Cause::Timer(due) => format!("t{due}"),
            Cause::Recompute(started) => format!("r{started}"),
        }
    }
}

impl Segments {
    /// One step: a page of the feed, due timers, a chunk of a recompute. Returns how much
    /// work it did (0: idle).
    pub(super) async fn step(&self) -> Result<usize, SegmentError> {
        let _w = self.writer.lock().await;
        let mut defs: BTreeMap<String, SegmentDef> = self
            .store
            .defs()?
            .into_iter()
            .map(|d| (d.id.clone(), d))
            .collect();
        self.notice_new_rule_versions(&mut defs).await?;
        let mut done = self.feed_page(&mut defs).await?;
        done += self.fire_timers(&mut defs).await?;
        done += self.recompute_chunk(&mut defs).await?;
        Ok(done)
    }

    /// A segment whose rule got a new live version is described again by it (the new version
    /// may read other events, traits or another window) and recomputed with it.
    async fn notice_new_rule_versions(
        &self,
        defs: &mut BTreeMap<String, SegmentDef>,
    ) -> Result<(), SegmentError> {
        let mut writes = Writes::default();
        for def in defs.values_mut() {
            let running = def
                .recompute
                .as_ref()
                .is_some_and(|r| r.finished_ms.is_none());
            let Ok(Some(live)) = self.rules.live(&def.rule) else {
                continue;
            };
            if running || def.rule_sha256.as_deref() == Some(&live.sha256) {
                continue;
            }
            match self
                .rules
                .describe(&def.rule, &def.params.to_string())
                .await
            {
                Ok(needs) => def.needs = needs,
                Err(e) => {
                    // The old needs stay; the new version's evaluations will fail the same
                    // way and the segment shows why.
                    tracing::warn!(segment = %def.id, rule = %def.rule, "describe failed: {e}");
                    def.last_error = Some(e.to_string());
                }
            }
            if def.rule_sha256.is_some() {
                def.recompute = Some(self.new_recompute("rule_version", now_ms() as i64));
            }
            def.rule_sha256 = Some(live.sha256);
            def.rule_version = Some(live.version);
            writes.defs.insert(def.id.clone(), def.clone());
        }
        if !writes.defs.is_empty() {
            writes.commit(&*self.store.tree)?;
        }
        Ok(())
    }

    async fn feed_page(
        &self,
        defs: &mut BTreeMap<String, SegmentDef>,
    ) -> Result<usize, SegmentError> {
        let cursor = self.store.evaluated_seq()?;
        let page = self.profiles.feed(cursor, PAGE)?;
        if page.through == cursor {
            return Ok(0);
        }
        let now = now_ms() as i64;
        let events = self.read_events(&page.events)?;
        let mut touched: BTreeMap<String, Touch> = BTreeMap::new();
        let mut writes = Writes::default();

        // Contacts merged away leave their segments; the survivor gets their kept events.
        for applied in &page.events {
            for gone in &applied.merged {
                self.leave_all(defs, &mut writes, gone)?;
                for (k, v) in self.store.window_all(gone)? {
                    let start = pair(prefix::WINDOW, gone, "").len();
                    let moved = [
                        &pair(prefix::WINDOW, &applied.contact_id, "")[..],
                        &k[start..],
                    ]
                    .concat();
                    writes.batch.insert(moved, v);
                    writes.batch.remove(k);
                }
                touched.entry(applied.contact_id.clone()).or_default().all = true;
            }
        }
        // What each contact's events can wake, and the events windowed rules read.
        let windowed = windowed_names(defs.values());
        let oldest_kept = now.saturating_sub(max_window(defs.values()).unwrap_or(0));
        for applied in &page.events {
            let Some(event) = events.get(&applied.seq) else {
                continue;
            };
            let touch = touched.entry(applied.contact_id.clone()).or_default();
            if let Some(traits) = event.traits.as_object() {
                touch.traits.extend(traits.keys().cloned());
            }
            if let Some(name) = &event.event {
                touch.names.insert(name.clone());
                let at = event_ms(event);
                let wanted = windowed.contains("*") || windowed.contains(name.as_str());
                if wanted && at >= oldest_kept {
                    let kept = Kept {
                        kind: rules::kind(event.kind),
                        name: Some(name.clone()),
                        properties: rules::object_text(&event.properties),
                    };
                    writes.keep_event(&applied.contact_id, at, applied.seq, &kept)?;
                    touch.fresh.push(KeptAt {
                        at_ms: at,
                        seq: applied.seq,
                        kept,
                    });
                }
            }
            touch.last = Some(event.clone());
        }
        if !windowed.is_empty() {
            for contact in touched.keys() {
                for k in self.store.window_before(contact, oldest_kept)? {
                    writes.batch.remove(k);
                }
            }
        }
        // Kept events must be readable by the rules below; they are keyed by sequence, so
        // writing them again after a crash changes nothing.
        let window_writes = std::mem::take(&mut writes.batch);
        self.store.tree.apply(window_writes)?;

        let mut logged = Vec::new();
        let mut views = Views::new(now, max_window(defs.values()));
        for def in defs.values_mut() {
            let woken: Vec<Woken> = touched
                .iter()
                .filter(|(_, t)| t.wakes(&def.needs))
                .map(|(c, t)| Woken {
                    contact: c.clone(),
                    trigger: t.last.clone(),
                    fresh: t.fresh.clone(),
                    whole: t.all,
                })
                .collect();
            if woken.is_empty() {
                continue;
            }
            let cause = Cause::Feed(page.through);
            let changed = self
                .evaluate(
                    def,
                    woken,
                    &cause,
                    now,
                    &mut views,
                    &mut writes,
                    &mut logged,
                )
                .await?;
            if changed {
                writes.defs.insert(def.id.clone(), def.clone());
            }
        }
        self.log_events(logged).await?;
        writes.evaluated_seq(page.through);
        writes.commit(&*self.store.tree)?;
        self.profiles.ack_feed(super::FEED_READER, page.through)?;
        Ok(page.events.len().max(1))
    }

    /// The logged events of a feed page, by sequence.
    fn read_events(&self, applied: &[Applied]) -> Result<BTreeMap<u64, StoredEvent>, SegmentError> {
        let mut out = BTreeMap::new();
        let (Some(first), Some(last)) = (applied.first(), applied.last()) else {
            return Ok(out);
        };
        let wanted: BTreeSet<u64> = applied.iter().map(|a| a.seq).collect();
        let span = (last.seq - first.seq + 1) as usize;
        let records = self.ingest.log().read(first.seq, span)?;
        for (seq, bytes) in records {
            if !wanted.contains(&seq) || crate::store::is_redacted(&bytes) {
                continue;
            }
            match serde_json::from_slice::<StoredEvent>(&bytes) {
                Ok(event) => {
                    out.insert(seq, event);
                }
                Err(e) => tracing::warn!(seq, "segment stage: undecodable event skipped: {e}"),
            }
        }
        Ok(out)
    }

    async fn fire_timers(
        &self,
        defs: &mut BTreeMap<String, SegmentDef>,
    ) -> Result<usize, SegmentError> {
        let now = now_ms() as i64;
        let due = self.store.due_timers(now, PAGE)?;
        if due.is_empty() {
            return Ok(0);
        }
        let mut writes = Writes::default();
        let mut by_segment: BTreeMap<String, Vec<(String, i64)>> = BTreeMap::new();
        for timer in &due {
            // Fired: gone, unless the rule asks again below.
            writes.set_timer(&timer.segment, &timer.contact, Some(timer.due_ms), None);
            by_segment
                .entry(timer.segment.clone())
                .or_default()
                .push((timer.contact.clone(), timer.due_ms));
        }
        // Written first, so the evaluation below sees no timer and sets the rule's new one.
        writes.commit(&*self.store.tree)?;
        let mut writes = Writes::default();
        let mut logged = Vec::new();
        let mut views = Views::new(now, max_window(defs.values()));
        for (segment, contacts) in by_segment {
            let Some(def) = defs.get_mut(&segment) else {
                continue;
            };
            let cause = Cause::Timer(contacts.iter().map(|c| c.1).max().unwrap_or(now));
            let woken = contacts.into_iter().map(|(c, _)| Woken::new(c)).collect();
            if self
                .evaluate(
                    def,
                    woken,
                    &cause,
                    now,
                    &mut views,
                    &mut writes,
                    &mut logged,
                )
                .await?
            {
                writes.defs.insert(def.id.clone(), def.clone());
            }
        }
        self.log_events(logged).await?;
        writes.commit(&*self.store.tree)?;
        Ok(due.len())
    }

    async fn recompute_chunk(
        &self,
        defs: &mut BTreeMap<String, SegmentDef>,
    ) -> Result<usize, SegmentError> {
        let Some(def) = defs.values_mut().find(|d| {
            d.recompute
                .as_ref()
                .is_some_and(|r| r.finished_ms.is_none())
        }) else {
            return Ok(0);
        };
        let Some(mut recompute) = def.recompute.clone() else {
            return Ok(0);
        };
        let now = now_ms() as i64;
        let mut writes = Writes::default();
        let contacts = self
            .profiles
            .contacts_after(recompute.after.as_deref(), BATCH)?;
        let Some(last) = contacts.last().map(|c| c.id.clone()) else {
            recompute.finished_ms = Some(now);
            recompute.total = recompute.evaluated;
            def.recompute = Some(recompute);
            writes.defs.insert(def.id.clone(), def.clone());
            writes.commit(&*self.store.tree)?;
            return Ok(1);
        };
        if let Some(window) = def.needs.window_ms {
            self.fill_windows(&def.needs, window, &contacts, now)?;
        }
        let n = contacts.len();
        let woken = contacts
            .into_iter()
            .map(|c| Woken {
                whole: true,
                ..Woken::new(c.id)
            })
            .collect();
        let mut logged = Vec::new();
        let mut views = Views::new(now, def.needs.window_ms.map(clamp_window));
        self.evaluate(
            def,
            woken,
            &Cause::Recompute(recompute.started_ms),
            now,
            &mut views,
            &mut writes,
            &mut logged,
        )
        .await?;
        let entered = logged
            .iter()
            .filter(|e| e.event.as_deref() == Some(ENTERED))
            .count();
        let exited = logged.len() - entered;
        recompute.entered += entered as u64;
        recompute.exited += exited as u64;
        recompute.evaluated += n as u64;
        recompute.total = recompute.total.max(recompute.evaluated);
        recompute.after = Some(last);
        def.recompute = Some(recompute);
        writes.defs.insert(def.id.clone(), def.clone());
        self.log_events(logged).await?;
        writes.commit(&*self.store.tree)?;
        Ok(n)
    }

    /// Reads the contacts' past events of the names a windowed rule needs back from the log
    /// (they were not kept while no segment needed them).
    fn fill_windows(
        &self,
        needs: &RuleNeeds,
        window: u64,
        contacts: &[crate::profiles::Contact],
        now: i64,
    ) -> Result<(), SegmentError> {
        let since = now.saturating_sub(window.min(i64::MAX as u64) as i64);
        let any = needs.events.iter().any(|n| n == "*");
        let mut writes = Writes::default();
        for contact in contacts {
            // Every logged event of the contact: log order is not event-time order (imports
            // carry old timestamps), so the window's events may be anywhere in it.
            let mut after = 0;
            loop {
                let seqs = self
                    .profiles
                    .event_seqs(&contact.id, after, BACKFILL_PAGE)?;
                let Some(&last) = seqs.last() else { break };
                after = last;
                for seq in seqs {
                    let Ok(Some(event)) = self.ingest.logged_event(seq) else {
                        continue;
                    };
                    let Some(name) = &event.event else { continue };
                    let at = event_ms(&event);
                    if at <= since || !(any || needs.events.iter().any(|n| n == name)) {
                        continue;
                    }
                    let kept = Kept {
                        kind: rules::kind(event.kind),
                        name: Some(name.clone()),
                        properties: rules::object_text(&event.properties),
                    };
                    writes.keep_event(&contact.id, at, seq, &kept)?;
                }
            }
        }
        writes.commit(&*self.store.tree)?;
        Ok(())
    }

    /// Asks `def`'s rule about `contacts` (in batches) and stages the membership changes,
    /// timers, kept events and membership events. Returns whether the definition changed
    /// (members, errors).
    #[allow(clippy::too_many_arguments)]
    async fn evaluate(
        &self,
        def: &mut SegmentDef,
        contacts: Vec<Woken>,
        cause: &Cause,
        now: i64,
        views: &mut Views,
        writes: &mut Writes,
        logged: &mut Vec<StoredEvent>,
    ) -> Result<bool, SegmentError> {
        let params = def.params.to_string();
        let mut changed = false;
        let version = RuleVersion {
            version: def.rule_version.clone().unwrap_or_default(),
            sha256: def.rule_sha256.clone().unwrap_or_default(),
        };
        for chunk in contacts.chunks(BATCH) {
            let mut inputs = Vec::with_capacity(chunk.len());
            let mut asked = Vec::with_capacity(chunk.len());
            for woken in chunk {
                let id = &woken.contact;
                // The window is (now - window, now] by event time: an imported event counts
                // where its timestamp puts it, and one stamped in the future not yet; the
                // contact is evaluated again when the first such one comes due. A rule that
                // kept a list of past events gets those and the ones that arrived since.
                let retained = match def.needs.window_ms {
                    Some(_) if !woken.whole => self.store.retained(&def.id, id)?,
                    _ => None,
                };
                let had_retained = retained.is_some();
                let mut old_retained = None;
                let window = match retained {
                    Some(r) if r.version == def.version && r.rule_sha256 == version.sha256 => {
                        let window = kept_window(
                            r.events.clone(),
                            &woken.fresh,
                            &def.needs,
                            now,
                            MAX_PAST_EVENTS,
                        );
                        old_retained = Some(r);
                        window
                    }
                    _ => views.whole_window(
                        &self.store,
                        &self.profiles,
                        id,
                        &def.needs,
                        now,
                        MAX_PAST_EVENTS,
                    )?,
                };
                let view = views.get(&self.store, &self.profiles, id)?;
                let member = view.segments.contains(&def.id);
                let Some(profile) = &view.profile else {
                    // Erased: it leaves quietly.
                    if member {
                        writes.exit(def, id);
                        changed = true;
                    }
                    continue;
                };
                if profile.id != *id {
                    // Merged away since: the survivor is evaluated on its own.
                    continue;
                }
                inputs.push(RuleInput {
                    contact: view.contact.clone(),
                    event: woken.trigger.as_ref().map(rules::event),
                    counts: view.counts.clone(),
                    member,
                    events: window.events.iter().map(KeptAt::past_event).collect(),
                    now_ms: now,
                });
                asked.push(Asked {
                    contact: id.clone(),
                    member,
                    window,
                    had_retained,
                    old_retained,
                });
            }
            if inputs.is_empty() {
                continue;
            }
            let decisions = match self.rules.evaluate(&def.rule, &params, &inputs).await {
                Ok(d) => d,
                Err(e) => {
                    // Memberships stay as they are; the failure is on the segment and in
                    // the plugin's kept failures, and the contacts are asked about again
                    // after a pause (a deadline under load, a breaker that closes again),
                    // with their whole windows (this call's new events were not seen).
                    tracing::warn!(segment = %def.id, rule = %def.rule, "rule call failed: {e}");
                    def.last_error = Some(e.to_string());
                    changed = true;
                    let retry = now.saturating_add(RETRY_MS);
                    for a in &asked {
                        let old = self.store.timer_of(&def.id, &a.contact)?;
                        if old.is_none_or(|due| due > retry) {
                            writes.set_timer(&def.id, &a.contact, old, Some(retry));
                        }
                        if a.had_retained {
                            writes.set_retained(&def.id, &a.contact, None);
                        }
                    }
                    continue;
                }
            };
            if def.last_error.take().is_some() {
                changed = true;
            }
            for (a, mut decision) in asked.into_iter().zip(decisions) {
                let arrives = a.window.future.first().map(|k| k.at_ms);
                let recheck = decision.recheck_at_ms.filter(|&t| t > now);
                decision.recheck_at_ms = match (recheck, arrives) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                if def.needs.window_ms.is_some() {
                    let retained = retain(&decision, a.window, def.version, &version.sha256);
                    // Most events change nothing a rule keeps (an order under its
                    // threshold): nothing to write then.
                    if retained != a.old_retained && (retained.is_some() || a.had_retained) {
                        writes.set_retained(&def.id, &a.contact, retained.as_ref());
                    }
                }
                changed |= self.apply_decision(
                    def, &a.contact, a.member, decision, cause, now, writes, logged, &version,
                )?;
            }
        }
        Ok(changed)
    }

    #[allow(clippy::too_many_arguments)]
    fn apply_decision(
        &self,
        def: &mut SegmentDef,
        contact: &str,
        member: bool,
        decision: Decision,
        cause: &Cause,
        now: i64,
        writes: &mut Writes,
        logged: &mut Vec<StoredEvent>,
        version: &RuleVersion,
    ) -> Result<bool, SegmentError> {
        let old_timer = self.store.timer_of(&def.id, contact)?;
        // A recheck in the past would fire at once and forever: only future ones count.
        let new_timer = decision.recheck_at_ms.filter(|&t| t > now);
        writes.set_timer(&def.id, contact, old_timer, new_timer);
        let name = match (member, decision.member) {
            (false, true) => {
                writes.enter(def, contact, now)?;
                ENTERED
            }
            (true, false) => {
                writes.exit(def, contact);
                EXITED
            }
            _ => return Ok(false),
        };
        logged.push(membership_event(def, contact, name, cause, now, version));
        Ok(true)
    }

    /// Stages `contact` leaving every segment it is in, quietly (it was merged away).
    fn leave_all(
        &self,
        defs: &mut BTreeMap<String, SegmentDef>,
        writes: &mut Writes,
        contact: &str,
    ) -> Result<(), SegmentError> {
        for segment in self.store.segments_of(contact)? {
            if let Some(def) = defs.get_mut(&segment) {
                writes.exit(def, contact);
                writes.defs.insert(segment.clone(), def.clone());
            }
        }
        for def in defs.values() {
            if let Some(due) = self.store.timer_of(&def.id, contact)? {
                writes.set_timer(&def.id, contact, Some(due), None);
            }
            writes.set_retained(&def.id, contact, None);
        }
        Ok(())
    }

    /// Appends membership events to the log (durably) before the memberships commit.
    async fn log_events(&self, events: Vec<StoredEvent>) -> Result<(), SegmentError> {
        if events.is_empty() {
            return Ok(());
        }
        self.ingest.ingest(events).await?;
        Ok(())
    }
}

fn membership_event(
    def: &SegmentDef,
    contact: &str,
    name: &str,
    cause: &Cause,
    now: i64,
    version: &RuleVersion,
) -> StoredEvent {
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(now) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let verb = if name == ENTERED { "in" } else { "out" };
    StoredEvent {
        message_id: format!(
            "segment:{}:{}:{}:{verb}:{}",
            def.id,
            def.version,
            contact,
            cause.tag()
        ),
        kind: EventType::Track,
        event: Some(name.into()),
        user_id: None,
        anonymous_id: None,
        identities: Vec::new(),
        timestamp: format_rfc3339(at),
        received_at: format_rfc3339(at),
        source: "segments".into(),
        properties: json!({
            "segment_id": def.id,
            "segment_version": def.version,
            "rule_plugin": def.rule,
            "rule_version": version.version,
        }),
        traits: serde_json::Value::Null,
        context: serde_json::Value::Null,
        integrations: serde_json::Value::Null,
        group_id: None,
        previous_id: None,
        contact_id: Some(contact.into()),
    }
}

/// An event's time (its source's timestamp), Unix ms.
fn event_ms(event: &StoredEvent) -> i64 {
    parse_time(&event.timestamp)
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
        .unwrap_or(0)
}

/// Event names some windowed rule reads (`*`: all).
fn windowed_names<'a>(defs: impl Iterator<Item = &'a SegmentDef>) -> BTreeSet<&'a str> {
    defs.filter(|d| d.needs.window_ms.is_some())
        .flat_map(|d| d.needs.events.iter().map(String::as_str))
        .collect()
}

/// The longest window of any rule, ms (none: no rule reads past events).
fn max_window<'a>(defs: impl Iterator<Item = &'a SegmentDef>) -> Option<i64> {
    defs.filter_map(|d| d.needs.window_ms)
        .max()
        .map(clamp_window)
}

fn clamp_window(window_ms: u64) -> i64 {
    window_ms.min(i64::MAX as u64) as i64
}

/// A contact to ask a segment's rule about.
struct Woken {
    contact: String,
    /// The event that caused the evaluation, if one did.
    trigger: Option<StoredEvent>,
    /// Its events kept by this step (they arrived in the page): a rule's kept list lacks
    /// them.
    fresh: Vec<KeptAt>,
    /// Hand the rule the whole window, whatever it kept (a merge, a recompute).
    whole: bool,
}

impl Woken {
    fn new(contact: String) -> Self {
        Self {
            contact,
            trigger: None,
            fresh: Vec::new(),
            whole: false,
        }
    }
}

/// A contact in a rule call, and what it was handed.
struct Asked {
    contact: String,
    member: bool,
    window: Window,
    had_retained: bool,
    /// What it had kept, when that was what it was handed.
    old_retained: Option<Retained>,
}

/// What to keep for the rule's next look at a contact: the past events its decision
/// kept, and every future-stamped one (it has not seen them yet). None when it kept no list,
/// or named an event it was not handed: the whole window next time.
fn retain(decision: &Decision, window: Window, version: u64, sha256: &str) -> Option<Retained> {
    let keep = decision.keep.as_ref()?;
    let mut slots: Vec<Option<KeptAt>> = window.events.into_iter().map(Some).collect();
    let mut events = Vec::with_capacity(keep.len() + window.future.len());
    for &i in keep {
        match slots.get_mut(i as usize) {
            Some(slot) => events.extend(slot.take()),
            None => return None,
        }
    }
    events.extend(window.future);
    events.sort_by_key(|k| (k.at_ms, k.seq));
    Some(Retained {
        version,
        rule_sha256: sha256.to_owned(),
        events,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::types::EventKind;

    fn at(at_ms: i64, seq: u64) -> KeptAt {
        KeptAt {
            at_ms,
            seq,
            kept: Kept {
                kind: EventKind::Track,
                name: Some("Order".into()),
                properties: "{}".into(),
            },
        }
    }

    #[test]
    fn a_decision_keeps_what_it_named_and_every_future_event() {
        let window = || Window {
            events: vec![at(1, 1), at(2, 2), at(3, 3)],
            future: vec![at(9, 9)],
        };
        let kept = |keep: Option<Vec<u32>>| {
            let decision = Decision {
                member: true,
                recheck_at_ms: None,
                keep,
            };
            retain(&decision, window(), 3, "sha").map(|r| {
                assert_eq!((r.version, r.rule_sha256.as_str()), (3, "sha"));
                r.events.iter().map(|k| k.seq).collect::<Vec<_>>()
            })
        };
        assert_eq!(kept(Some(vec![2, 0])), Some(vec![1, 3, 9]));
        assert_eq!(kept(Some(vec![])), Some(vec![9]));
        // No list, or an index it was not handed: the whole window next time.
        assert_eq!(kept(None), None);
        assert_eq!(kept(Some(vec![0, 3])), None);
    }
}
