//! The journey keyspace: definitions and their versions, runs with their indexes, timers,
//! per-step counts, done-effect keys and the stage's place in the change feed. Everything a
//! run's move changes is written in one atomic [`Writes`] batch.

use std::collections::BTreeMap;
use std::ops::Bound;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::definition::JourneyDef;
use crate::store::{Batch, StoreError, Tree, decode_json, encode_json, prefix_end};

/// The journey keyspace.
pub const KEYSPACE: &str = "journeys";

/// Key prefixes (one byte each). Ids never contain a 0 byte, so `0` separates parts.
pub mod prefix {
    /// `d ++ journey` -> [`super::JourneyRecord`].
    pub const JOURNEY: u8 = b'd';
    /// `v ++ journey ++ 0 ++ version (u32 BE)` -> [`super::VersionRecord`].
    pub const VERSION: u8 = b'v';
    /// `r ++ run` -> [`super::Run`].
    pub const RUN: u8 = b'r';
    /// `j ++ journey ++ 0 ++ run` -> empty: a journey's runs.
    pub const JOURNEY_RUN: u8 = b'j';
    /// `c ++ contact ++ 0 ++ run` -> journey id: a contact's runs.
    pub const CONTACT_RUN: u8 = b'c';
    /// `l ++ journey ++ 0 ++ contact` -> [`super::LastEntry`]: for re-entry.
    pub const LAST: u8 = b'l';
    /// `t ++ due (u64 BE) ++ run` -> empty: timers in the order they fire.
    pub const TIMER: u8 = b't';
    /// `n ++ journey ++ 0 ++ version (u32 BE) ++ step (u32 BE)` -> [`super::Counts`].
    pub const COUNTS: u8 = b'n';
    /// `e ++ run ++ 0 ++ step (u32 BE)` -> what the step did (an effect done once).
    pub const EFFECT: u8 = b'e';
    /// `m ++ name` -> stage bookkeeping (`followed_seq`).
    pub const META: u8 = b'm';
}

/// A journey: its current version and whether it is paused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JourneyRecord {
    /// Its id.
    pub id: String,
    /// A name for people (of the current version).
    pub name: String,
    /// The version new runs start on.
    pub version: u32,
    /// Paused: no run starts and no run moves until it resumes.
    pub paused: bool,
    /// Unix ms.
    pub created_ms: i64,
    /// Unix ms.
    pub updated_ms: i64,
}

/// One version of a journey: the definition as the client wrote it, and as checked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionRecord {
    /// The checked definition.
    pub def: JourneyDef,
    /// The body the client sent.
    pub source: Value,
    /// Unix ms.
    pub created_ms: i64,
}

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Moving through steps (only between writes; a stored run is never left here).
    Active,
    /// At a waiting step, for a timer or an event.
    Waiting,
    /// Ran off the end of its steps.
    Completed,
    /// Left the journey (an exit step or target, its segment, a timeout).
    Exited,
}

impl RunState {
    /// Whether the run is over.
    pub fn ended(self) -> bool {
        matches!(self, RunState::Completed | RunState::Exited)
    }

    /// The state as the API writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Active => "active",
            RunState::Waiting => "waiting",
            RunState::Completed => "completed",
            RunState::Exited => "exited",
        }
    }
}

/// Why a waiting run moves on before its timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resumed {
    /// The awaited event (or segment entry) arrived while the journey was paused, at this
    /// sequence; the run moves on when it resumes.
    Matched(u64),
}

/// What a waiting run waits for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waiting {
    /// When its timer fires (a wait's end, a `wait_until`'s timeout), Unix ms.
    pub due_ms: i64,
    /// Events up to this sequence were seen before the wait began; only later ones match.
    pub after_seq: u64,
    /// Set when it matched while the journey was paused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumed: Option<Resumed>,
}

/// The event that started a run, kept for conditions and message data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TriggerEvent {
    /// Its sequence in the log.
    pub seq: u64,
    /// Its message id.
    pub message_id: String,
    /// Its name.
    pub name: Option<String>,
    /// Its properties.
    pub properties: Value,
}

/// One step a run took.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Visit {
    /// The step's index.
    pub step: usize,
    /// The step's id.
    pub id: String,
    /// When the run arrived, Unix ms.
    pub at_ms: i64,
    /// What happened (`waited`, `matched`, `timed_out`, `then`, `else`, `queued <id>`,
    /// `traits updated`, `exited`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
}

/// Most visits kept on a run (steps only move forward, so a run has at most one per step).
pub const MAX_VISITS: usize = 200;

/// One contact's way through one version of a journey.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// `{journey}-{trigger sequence}`: one event starts at most one run of a journey.
    pub id: String,
    /// The journey.
    pub journey: String,
    /// The version it follows to its end.
    pub version: u32,
    /// The contact (moved to the survivor when it is merged away).
    pub contact: String,
    /// What started it.
    pub trigger: TriggerEvent,
    /// Where it is.
    pub state: RunState,
    /// The step it is at (or ended at).
    pub step: usize,
    /// What it waits for, when waiting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<Waiting>,
    /// Unix ms.
    pub started_ms: i64,
    /// Unix ms.
    pub updated_ms: i64,
    /// Unix ms, once ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_ms: Option<i64>,
    /// Why it exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_reason: Option<String>,
    /// The steps it took, in order.
    pub visits: Vec<Visit>,
}

/// A contact's latest run of a journey.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastEntry {
    /// The run.
    pub run: String,
    /// When it started, Unix ms.
    pub started_ms: i64,
    /// Whether it has ended.
    pub ended: bool,
}

/// Runs at one step of one version.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Arrived at it.
    pub entered: u64,
    /// Waiting at it now.
    pub waiting: u64,
    /// Finished it and moved on (or ran off the end of the journey).
    pub completed: u64,
    /// Left the journey at it.
    pub exited: u64,
}

/// A change to [`Counts`].
#[derive(Debug, Clone, Copy, Default)]
pub struct CountDelta {
    entered: i64,
    waiting: i64,
    completed: i64,
    exited: i64,
}

/// Which count moves.
#[derive(Debug, Clone, Copy)]
pub enum Count {
    /// Arrived.
    Entered,
    /// Started waiting (+1) or stopped (-1).
    Waiting,
    /// Finished.
    Completed,
    /// Left the journey.
    Exited,
}

pub(super) fn join(p: u8, parts: &[&[u8]]) -> Vec<u8> {
    let mut key = vec![p];
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            key.push(0);
        }
        key.extend_from_slice(part);
    }
    key
}

pub(super) fn version_key(journey: &str, version: u32) -> Vec<u8> {
    let mut key = join(prefix::VERSION, &[journey.as_bytes(), b""]);
    key.extend_from_slice(&version.to_be_bytes());
    key
}

pub(super) fn counts_key(journey: &str, version: u32, step: usize) -> Vec<u8> {
    let mut key = join(prefix::COUNTS, &[journey.as_bytes(), b""]);
    key.extend_from_slice(&version.to_be_bytes());
    key.extend_from_slice(&(step as u32).to_be_bytes());
    key
}

pub(super) fn timer_key(due_ms: i64, run: &str) -> Vec<u8> {
    let mut key = vec![prefix::TIMER];
    key.extend_from_slice(&(due_ms.max(0) as u64).to_be_bytes());
    key.extend_from_slice(run.as_bytes());
    key
}

pub(super) fn effect_key(run: &str, step: usize) -> Vec<u8> {
    let mut key = join(prefix::EFFECT, &[run.as_bytes(), b""]);
    key.extend_from_slice(&(step as u32).to_be_bytes());
    key
}

fn run_key(run: &str) -> Vec<u8> {
    join(prefix::RUN, &[run.as_bytes()])
}

/// Reads of the journey keyspace.
#[derive(Clone)]
pub struct JourneyStore {
    /// The keyspace.
    pub tree: Tree,
}

impl JourneyStore {
    fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        key: &[u8],
    ) -> Result<Option<T>, StoreError> {
        self.tree
            .get(key)?
            .map(|v| decode_json(key, &v))
            .transpose()
    }

    /// A journey.
    pub fn journey(&self, id: &str) -> Result<Option<JourneyRecord>, StoreError> {
        self.get_json(&join(prefix::JOURNEY, &[id.as_bytes()]))
    }

    /// Every journey, by id.
    pub fn journeys(&self) -> Result<Vec<JourneyRecord>, StoreError> {
        self.tree
            .scan_prefix(&[prefix::JOURNEY])
            .map(|item| {
                let (k, v) = item?;
                decode_json(&k, &v)
            })
            .collect()
    }

    /// One version of a journey.
    pub fn version(
        &self,
        journey: &str,
        version: u32,
    ) -> Result<Option<VersionRecord>, StoreError> {
        self.get_json(&version_key(journey, version))
    }

    /// A run.
    pub fn run(&self, id: &str) -> Result<Option<Run>, StoreError> {
        self.get_json(&run_key(id))
    }

    /// The ids of a contact's runs (every journey), oldest first per journey.
    pub fn runs_of_contact(&self, contact: &str) -> Result<Vec<String>, StoreError> {
        let start = join(prefix::CONTACT_RUN, &[contact.as_bytes(), b""]);
        self.tree
            .scan_prefix(&start)
            .map(|item| {
                let (k, _) = item?;
                Ok(String::from_utf8_lossy(&k[start.len()..]).into_owned())
            })
            .collect()
    }

    /// A page of a journey's run ids after `after`.
    pub fn runs_of_journey(
        &self,
        journey: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let start = join(prefix::JOURNEY_RUN, &[journey.as_bytes(), b""]);
        let from = match after {
            Some(run) => Bound::Excluded([&start[..], run.as_bytes()].concat()),
            None => Bound::Included(start.clone()),
        };
        let end = prefix_end(&start).unwrap_or_default();
        let from = match &from {
            Bound::Excluded(k) => Bound::Excluded(k.as_slice()),
            Bound::Included(k) => Bound::Included(k.as_slice()),
            Bound::Unbounded => Bound::Unbounded,
        };
        let mut out = Vec::new();
        for item in self.tree.range(from, Bound::Excluded(&end), false) {
            let (k, _) = item?;
            out.push(String::from_utf8_lossy(&k[start.len()..]).into_owned());
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// A contact's latest run of a journey.
    pub fn last_entry(
        &self,
        journey: &str,
        contact: &str,
    ) -> Result<Option<LastEntry>, StoreError> {
        self.get_json(&join(
            prefix::LAST,
            &[journey.as_bytes(), contact.as_bytes()],
        ))
    }

    /// Counts of one step of one version.
    pub fn counts(&self, journey: &str, version: u32, step: usize) -> Result<Counts, StoreError> {
        Ok(self
            .get_json(&counts_key(journey, version, step))?
            .unwrap_or_default())
    }

    /// Whether a run's step already did its effect (and what it was).
    pub fn effect(&self, run: &str, step: usize) -> Result<Option<String>, StoreError> {
        Ok(self
            .tree
            .get(&effect_key(run, step))?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Timers due at or before `now`, in firing order (due time, then run id), leaving out
    /// those whose run `skip` names: `(due, run)`.
    pub fn due_timers(
        &self,
        now: i64,
        limit: usize,
        skip: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        let end = timer_key(now.saturating_add(1), "");
        let mut out = Vec::new();
        for item in self.tree.range(
            Bound::Included(&[prefix::TIMER]),
            Bound::Excluded(&end),
            false,
        ) {
            let (k, _) = item?;
            let (due, run) = parse_timer(&k)?;
            if skip(&run) {
                continue;
            }
            out.push((due, run));
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// How far through the profile change feed the stage has got.
    pub fn followed_seq(&self) -> Result<u64, StoreError> {
        Ok(self
            .tree
            .get(&join(prefix::META, &[b"followed_seq"]))?
            .and_then(|v| v.as_slice().try_into().ok())
            .map_or(0, u64::from_be_bytes))
    }

    /// Every key with `prefix`.
    pub fn keys_with_prefix(&self, prefix: &[u8]) -> Result<Vec<Vec<u8>>, StoreError> {
        self.tree
            .scan_prefix(prefix)
            .map(|item| Ok(item?.0))
            .collect()
    }
}

fn parse_timer(key: &[u8]) -> Result<(i64, String), StoreError> {
    let due: [u8; 8] = key
        .get(1..9)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| StoreError::corrupt(key, std::fmt::Error))?;
    Ok((
        u64::from_be_bytes(due).min(i64::MAX as u64) as i64,
        String::from_utf8_lossy(&key[9..]).into_owned(),
    ))
}

/// Writes that go to the keyspace together, as one atomic batch: a run's record, its indexes
/// and timer, the effect keys of the steps it did, and the count changes.
#[derive(Default)]
pub struct Writes {
    /// The raw writes.
    pub batch: Batch,
    counts: BTreeMap<(String, u32, usize), CountDelta>,
}

impl Writes {
    /// Stages a record.
    pub fn put<T: Serialize>(&mut self, key: Vec<u8>, value: &T) -> Result<(), StoreError> {
        self.batch.insert(key, encode_json(value)?);
        Ok(())
    }

    /// Stages a journey record.
    pub fn journey(&mut self, record: &JourneyRecord) -> Result<(), StoreError> {
        self.put(join(prefix::JOURNEY, &[record.id.as_bytes()]), record)
    }

    /// Stages a run record.
    pub fn run(&mut self, run: &Run) -> Result<(), StoreError> {
        self.put(run_key(&run.id), run)
    }

    /// Stages a new run's indexes.
    pub fn index_run(&mut self, run: &Run) {
        self.batch.insert(
            join(
                prefix::JOURNEY_RUN,
                &[run.journey.as_bytes(), run.id.as_bytes()],
            ),
            b"",
        );
        self.batch.insert(
            join(
                prefix::CONTACT_RUN,
                &[run.contact.as_bytes(), run.id.as_bytes()],
            ),
            run.journey.as_bytes(),
        );
    }

    /// Stages a contact's latest run of a journey.
    pub fn last_entry(
        &mut self,
        journey: &str,
        contact: &str,
        last: &LastEntry,
    ) -> Result<(), StoreError> {
        self.put(
            join(prefix::LAST, &[journey.as_bytes(), contact.as_bytes()]),
            last,
        )
    }

    /// Stages a timer.
    pub fn set_timer(&mut self, due_ms: i64, run: &str) {
        self.batch.insert(timer_key(due_ms, run), b"");
    }

    /// Stages a timer's removal.
    pub fn clear_timer(&mut self, due_ms: i64, run: &str) {
        self.batch.remove(timer_key(due_ms, run));
    }

    /// Stages a step's effect as done.
    pub fn effect_done(&mut self, run: &str, step: usize, what: &str) {
        self.batch.insert(effect_key(run, step), what.as_bytes());
    }

    /// Stages the stage's place in the feed.
    pub fn followed_seq(&mut self, seq: u64) {
        self.batch
            .insert(join(prefix::META, &[b"followed_seq"]), seq.to_be_bytes());
    }

    /// Moves one count of one step by `by`.
    pub fn count(&mut self, journey: &str, version: u32, step: usize, which: Count, by: i64) {
        let d = self
            .counts
            .entry((journey.to_string(), version, step))
            .or_default();
        match which {
            Count::Entered => d.entered += by,
            Count::Waiting => d.waiting += by,
            Count::Completed => d.completed += by,
            Count::Exited => d.exited += by,
        }
    }

    /// Adds the count changes to the stored counts and applies everything as one batch. The
    /// caller holds the journeys' writer lock, so the counts read here cannot change before
    /// the batch lands.
    pub fn commit(mut self, store: &JourneyStore) -> Result<(), StoreError> {
        for ((journey, version, step), d) in std::mem::take(&mut self.counts) {
            let mut c = store.counts(&journey, version, step)?;
            let add = |v: u64, by: i64| v.saturating_add_signed(by);
            c.entered = add(c.entered, d.entered);
            c.waiting = add(c.waiting, d.waiting);
            c.completed = add(c.completed, d.completed);
            c.exited = add(c.exited, d.exited);
            self.batch
                .insert(counts_key(&journey, version, step), encode_json(&c)?);
        }
        if !self.batch.is_empty() {
            store.tree.apply(self.batch)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Engine, MemoryEngine};

    fn store() -> JourneyStore {
        JourneyStore {
            tree: MemoryEngine::new().open(KEYSPACE).unwrap(),
        }
    }

    #[test]
    fn timers_come_due_in_time_order_then_run_order() {
        let s = store();
        let mut w = Writes::default();
        w.set_timer(300, "b");
        w.set_timer(100, "z");
        w.set_timer(300, "a");
        w.set_timer(900, "late");
        w.commit(&s).unwrap();
        let none = |_: &str| false;
        let due = s.due_timers(300, 10, &none).unwrap();
        assert_eq!(
            due,
            vec![(100, "z".to_string()), (300, "a".into()), (300, "b".into())]
        );
        assert_eq!(s.due_timers(99, 10, &none).unwrap(), vec![]);
        assert_eq!(s.due_timers(i64::MAX - 1, 10, &none).unwrap().len(), 4);
        let not_a = |run: &str| run == "a";
        assert_eq!(s.due_timers(300, 10, &not_a).unwrap().len(), 2);
        let mut w = Writes::default();
        w.clear_timer(100, "z");
        w.commit(&s).unwrap();
        assert_eq!(
            s.due_timers(1_000, 10, &none).unwrap()[0],
            (300, "a".into())
        );
    }

    #[test]
    fn counts_add_up_across_commits() {
        let s = store();
        let mut w = Writes::default();
        w.count("j", 1, 0, Count::Entered, 1);
        w.count("j", 1, 0, Count::Waiting, 1);
        w.commit(&s).unwrap();
        let mut w = Writes::default();
        w.count("j", 1, 0, Count::Waiting, -1);
        w.count("j", 1, 0, Count::Completed, 1);
        w.count("j", 2, 0, Count::Entered, 1);
        w.commit(&s).unwrap();
        assert_eq!(
            s.counts("j", 1, 0).unwrap(),
            Counts {
                entered: 1,
                waiting: 0,
                completed: 1,
                exited: 0
            }
        );
        assert_eq!(s.counts("j", 2, 0).unwrap().entered, 1);
        assert_eq!(s.counts("j", 1, 1).unwrap(), Counts::default());
    }

    #[test]
    fn run_indexes_page_by_journey_and_list_by_contact() {
        let s = store();
        let mut w = Writes::default();
        for (id, contact) in [("j-1", "c1"), ("j-2", "c2"), ("j-3", "c1")] {
            let run = Run {
                id: id.into(),
                journey: "j".into(),
                version: 1,
                contact: contact.into(),
                trigger: TriggerEvent {
                    seq: 1,
                    message_id: "m".into(),
                    name: None,
                    properties: Value::Null,
                },
                state: RunState::Waiting,
                step: 0,
                waiting: None,
                started_ms: 0,
                updated_ms: 0,
                ended_ms: None,
                exit_reason: None,
                visits: vec![],
            };
            w.run(&run).unwrap();
            w.index_run(&run);
        }
        w.effect_done("j-1", 3, "queued j-1.3");
        w.followed_seq(42);
        w.commit(&s).unwrap();
        assert_eq!(s.runs_of_contact("c1").unwrap(), ["j-1", "j-3"]);
        assert_eq!(s.runs_of_journey("j", None, 2).unwrap(), ["j-1", "j-2"]);
        assert_eq!(s.runs_of_journey("j", Some("j-2"), 2).unwrap(), ["j-3"]);
        assert_eq!(s.effect("j-1", 3).unwrap().as_deref(), Some("queued j-1.3"));
        assert_eq!(s.effect("j-1", 2).unwrap(), None);
        assert_eq!(s.followed_seq().unwrap(), 42);
        assert_eq!(s.run("j-2").unwrap().unwrap().contact, "c2");
    }
}
