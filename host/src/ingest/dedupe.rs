//! The message-id dedupe index: `event_ids` (id -> when it was stored, Unix ms) and the last
//! log sequence indexed. One writer (the profile stage, as it reads the log) keeps it, a page
//! at a time; expired ids are pruned by a cursor that walks the id tree a few entries per
//! page and wraps around, so each id costs one write to store and one to drop.

use std::sync::Mutex;
use std::time::Duration;

use crate::store::{Batch, Engine, StoreError, Tree};

fn ms_of(bytes: &[u8]) -> Option<u64> {
    bytes.get(..8)?.try_into().ok().map(u64::from_be_bytes)
}

const INDEXED_SEQ: &[u8] = b"indexed_seq";

/// Message ids seen within a window.
pub struct DedupeIndex {
    seen: Tree,
    meta: Tree,
    window: Duration,
    /// Where the pruning walk is.
    walk: Mutex<Walk>,
}

/// The pruning walk's place, and what its last full lap saw.
#[derive(Default)]
struct Walk {
    /// Where it goes on from (a key; empty: the start of the tree).
    cursor: Vec<u8>,
    /// When the current lap started (Unix ms; 0: not started).
    lap_started: u64,
    /// The oldest time of an id the current lap kept.
    lap_oldest: u64,
    /// No id can expire before this (Unix ms): the walk rests until then.
    rest_until: u64,
}

impl DedupeIndex {
    /// Opens the index in `engine`. An index that holds ids but never recorded its sequence was
    /// written as events were acknowledged, so it covers the log up to `logged_seq`; an
    /// empty one (a new or rebuilt store) covers nothing yet.
    pub fn open(
        engine: &dyn Engine,
        window: Duration,
        logged_seq: u64,
    ) -> Result<Self, StoreError> {
        // The time index of earlier versions: pruning walks the id tree instead.
        engine.drop_keyspace("event_ids_by_time")?;
        let index = Self {
            seen: engine.open("event_ids")?,
            meta: engine.open("event_ids_meta")?,
            window,
            walk: Mutex::new(Walk::default()),
        };
        if index.meta.get(INDEXED_SEQ)?.is_none() {
            let covered = if index.seen.is_empty() { 0 } else { logged_seq };
            index.meta.insert(INDEXED_SEQ, &covered.to_be_bytes())?;
        }
        Ok(index)
    }

    fn window_ms(&self) -> u64 {
        self.window.as_millis() as u64
    }

    /// The last log sequence whose message ids are in the index.
    pub fn indexed_seq(&self) -> Result<u64, StoreError> {
        Ok(self
            .meta
            .get(INDEXED_SEQ)?
            .and_then(|v| ms_of(&v))
            .unwrap_or(0))
    }

    /// Whether `id` was stored less than the window before `now` (Unix ms).
    pub fn seen_recently(&self, id: &str, now: u64) -> Result<bool, StoreError> {
        Ok(match self.seen.get(id.as_bytes())? {
            Some(v) => ms_of(&v).is_some_and(|at| now.saturating_sub(at) < self.window_ms()),
            None => false,
        })
    }

    /// Records ids stored at `at_ms`, from log records up to `through_seq`. The ids are
    /// written before the sequence, so writing the same page again changes nothing.
    pub fn index(&self, ids: &[&str], at_ms: u64, through_seq: u64) -> Result<(), StoreError> {
        let mut seen = Batch::default();
        for id in ids {
            seen.insert(id.as_bytes(), at_ms.to_be_bytes());
        }
        self.seen.apply(seen)?;
        {
            let mut walk = self.walk.lock().unwrap_or_else(|e| e.into_inner());
            walk.rest_until = walk.rest_until.min(at_ms.saturating_add(self.window_ms()));
        }
        if through_seq > self.indexed_seq()? {
            self.meta.insert(INDEXED_SEQ, &through_seq.to_be_bytes())?;
        }
        Ok(())
    }

    /// Looks at up to `limit` ids from where the last call stopped (wrapping at the end) and
    /// removes those stored a window or more before `now`. Returns how many went. After a
    /// full lap it rests until the oldest id it kept (or one stored since the lap began)
    /// can expire, so a steady index is not walked again and again for nothing.
    pub fn prune(&self, now: u64, limit: usize) -> Result<usize, StoreError> {
        let window = self.window_ms();
        let mut walk = self.walk.lock().unwrap_or_else(|e| e.into_inner());
        if now < walk.rest_until {
            return Ok(0);
        }
        if walk.lap_started == 0 {
            walk.lap_started = now;
            walk.lap_oldest = u64::MAX;
        }
        let (mut removed, mut visited) = (0, 0);
        for item in self.seen.range_from(walk.cursor.as_slice()).take(limit) {
            let (id, at) = item?;
            visited += 1;
            let stored = ms_of(&at);
            if stored.is_none_or(|at| now.saturating_sub(at) >= window) {
                // Compare-and-swap: an id stored again meanwhile keeps its newer entry.
                let swapped = self.seen.compare_and_swap(&id, Some(&at), None)?;
                removed += usize::from(swapped);
            } else if let Some(at) = stored {
                walk.lap_oldest = walk.lap_oldest.min(at);
            }
            walk.cursor = [id.as_slice(), &[0]].concat();
        }
        if visited < limit {
            // A full lap: every id it did not see was stored after it began.
            let oldest = walk.lap_oldest.min(walk.lap_started);
            walk.rest_until = oldest.saturating_add(window);
            walk.cursor.clear();
            walk.lap_started = 0;
        }
        Ok(removed)
    }

    /// How many ids the index holds.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether the index is empty.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::store::MemoryEngine;

    fn index(window_ms: u64) -> DedupeIndex {
        DedupeIndex::open(&MemoryEngine::new(), Duration::from_millis(window_ms), 0).unwrap()
    }

    fn remember(ix: &DedupeIndex, id: &str, at_ms: u64) {
        ix.index(&[id], at_ms, 0).unwrap();
    }

    #[test]
    fn expired_ids_are_pruned_a_few_at_a_time_and_the_walk_wraps_around() {
        let ix = index(1_000);
        for i in 0..10u64 {
            remember(&ix, &format!("old-{i}"), 100 + i);
        }
        remember(&ix, "recent", 5_000);
        assert_eq!(ix.prune(5_500, 4).unwrap(), 4, "at most the limit per call");
        assert!(ix.seen_recently("old-9", 109).unwrap(), "not reached yet");
        assert_eq!(ix.prune(5_500, 4).unwrap(), 4);
        assert_eq!(
            ix.prune(5_500, 4).unwrap(),
            2,
            "the recent id is looked at, kept"
        );
        assert_eq!(ix.len(), 1);
        assert!(ix.seen_recently("recent", 5_500).unwrap());
        assert!(!ix.seen_recently("old-0", 5_500).unwrap());
        assert_eq!(ix.prune(7_000, 4).unwrap(), 1, "wrapped to the start again");
        assert!(ix.is_empty());
    }

    #[test]
    fn after_a_full_lap_the_walk_rests_until_an_id_can_expire() {
        let ix = index(1_000);
        remember(&ix, "a", 100);
        remember(&ix, "b", 300);
        assert_eq!(ix.prune(500, 10).unwrap(), 0, "a lap, nothing expired");
        remember(&ix, "c", 600);
        assert_eq!(
            ix.prune(1_099, 10).unwrap(),
            0,
            "resting: nothing can go yet"
        );
        assert_eq!(ix.prune(1_100, 10).unwrap(), 1, "a expires at 1100");
        assert_eq!(ix.prune(1_300, 10).unwrap(), 1, "b");
        assert_eq!(
            ix.prune(1_600, 10).unwrap(),
            1,
            "c, stored after the lap began"
        );
        remember(&ix, "late", 50);
        assert_eq!(
            ix.prune(1_600, 10).unwrap(),
            1,
            "an id stored with an older time (a clock stepped back) ends the rest"
        );
        assert!(ix.is_empty());
    }

    #[test]
    fn an_id_stored_again_is_kept_for_a_window_from_then() {
        let ix = index(1_000);
        remember(&ix, "m", 100);
        remember(&ix, "m", 4_800);
        assert_eq!(ix.prune(5_000, 10).unwrap(), 0);
        assert!(ix.seen_recently("m", 5_000).unwrap());
        assert_eq!(ix.prune(6_000, 10).unwrap(), 1);
        assert!(ix.is_empty());
    }

    #[test]
    fn an_index_without_a_sequence_covers_the_log_it_was_opened_with() {
        let db = MemoryEngine::new();
        db.open("event_ids")
            .unwrap()
            .insert(b"legacy", &50u64.to_be_bytes())
            .unwrap();
        db.open("event_ids_by_time").unwrap();
        let ix = DedupeIndex::open(&db, Duration::from_millis(1_000), 7).unwrap();
        assert_eq!(
            ix.indexed_seq().unwrap(),
            7,
            "written as events were logged"
        );
        let rebuilt = MemoryEngine::new();
        let empty = DedupeIndex::open(&rebuilt, Duration::from_millis(1_000), 7).unwrap();
        assert_eq!(
            empty.indexed_seq().unwrap(),
            0,
            "a new store covers nothing"
        );
        assert!(
            !db.keyspace_names()
                .unwrap()
                .contains(&"event_ids_by_time".to_string())
        );
        assert_eq!(ix.prune(2_000, 10).unwrap(), 1);
        assert!(ix.is_empty());
    }

    #[test]
    fn the_indexed_sequence_only_moves_forward_and_a_page_indexed_twice_is_unchanged() {
        let ix = index(1_000);
        ix.index(&["a", "b"], 10, 2).unwrap();
        ix.index(&["a", "b"], 10, 2).unwrap();
        ix.index(&[], 11, 1).unwrap();
        assert_eq!(ix.indexed_seq().unwrap(), 2);
        assert_eq!(ix.len(), 2);
        assert_eq!(ix.prune(5_000, 10).unwrap(), 2);
    }
}
