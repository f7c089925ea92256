//! The message-id dedupe index: `event_ids` (id -> when it was stored) and a time index
//! `event_ids_by_time` (`at_ms ++ id`) through which ids older than the window are pruned a
//! few at a time, oldest first, without scanning the id tree.

use std::time::Duration;

use crate::store::StoreError;

fn store_err(e: sled::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn time_key(id: &str, at_ms: u64) -> Vec<u8> {
    [at_ms.to_be_bytes().as_slice(), id.as_bytes()].concat()
}

fn ms_of(bytes: &[u8]) -> Option<u64> {
    bytes.get(..8)?.try_into().ok().map(u64::from_be_bytes)
}

/// Message ids seen within a window.
pub struct DedupeIndex {
    seen: sled::Tree,
    by_time: sled::Tree,
    window: Duration,
}

impl DedupeIndex {
    /// Opens the index in `db`, indexing by time any ids stored before the time index existed.
    pub fn open(db: &sled::Db, window: Duration) -> Result<Self, StoreError> {
        let index = Self {
            seen: db.open_tree("event_ids").map_err(store_err)?,
            by_time: db.open_tree("event_ids_by_time").map_err(store_err)?,
            window,
        };
        if index.by_time.is_empty() && !index.seen.is_empty() {
            for item in index.seen.iter() {
                let (id, at) = item.map_err(store_err)?;
                let at = ms_of(&at).unwrap_or(0);
                let key = [at.to_be_bytes().as_slice(), &id].concat();
                index.by_time.insert(key, &[]).map_err(store_err)?;
            }
        }
        Ok(index)
    }

    fn window_ms(&self) -> u64 {
        self.window.as_millis() as u64
    }

    /// Whether `id` was stored less than the window before `now` (Unix ms).
    pub fn seen_recently(&self, id: &str, now: u64) -> Result<bool, StoreError> {
        Ok(match self.seen.get(id.as_bytes()).map_err(store_err)? {
            Some(v) => ms_of(&v).is_some_and(|at| now.saturating_sub(at) < self.window_ms()),
            None => false,
        })
    }

    /// Records that `id` was stored at `at_ms`. The time index is written first, so a crash
    /// between the two writes leaves at worst a time entry that pruning drops.
    pub fn remember(&self, id: &str, at_ms: u64) -> Result<(), StoreError> {
        self.by_time
            .insert(time_key(id, at_ms), &[])
            .map_err(store_err)?;
        self.seen
            .insert(id.as_bytes(), &at_ms.to_be_bytes())
            .map(drop)
            .map_err(store_err)
    }

    /// Removes up to `limit` ids stored a window or more before `now` (oldest first); an id
    /// remembered again since keeps its newer entry. Returns how many time entries went.
    pub fn prune(&self, now: u64, limit: usize) -> Result<usize, StoreError> {
        let cutoff = now.saturating_sub(self.window_ms());
        let mut removed = 0;
        for item in self.by_time.range(..cutoff.to_be_bytes()).take(limit) {
            let (key, _) = item.map_err(store_err)?;
            let (Some(at), Some(id)) = (ms_of(&key), key.get(8..)) else {
                continue;
            };
            // Only the entry written at that time goes; compare-and-swap keeps a newer one.
            let _ = self
                .seen
                .compare_and_swap(id, Some(&at.to_be_bytes()[..]), None as Option<&[u8]>)
                .map_err(store_err)?;
            self.by_time.remove(&key).map_err(store_err)?;
            removed += 1;
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

    fn index(window_ms: u64) -> DedupeIndex {
        let db = sled::Config::new().temporary(true).open().unwrap();
        DedupeIndex::open(&db, Duration::from_millis(window_ms)).unwrap()
    }

    #[test]
    fn ids_older_than_the_window_are_pruned_oldest_first_and_a_few_at_a_time() {
        let ix = index(1_000);
        for i in 0..10u64 {
            ix.remember(&format!("old-{i}"), 100 + i).unwrap();
        }
        ix.remember("fresh", 5_000).unwrap();
        assert_eq!(ix.prune(5_500, 4).unwrap(), 4, "at most the limit per call");
        assert!(
            !ix.seen_recently("old-0", 100).unwrap(),
            "the oldest went first"
        );
        assert!(ix.seen_recently("old-9", 109).unwrap());
        assert_eq!(ix.prune(5_500, 100).unwrap(), 6);
        assert_eq!(ix.len(), 1);
        assert!(ix.seen_recently("fresh", 5_500).unwrap());
        assert_eq!(ix.prune(5_500, 100).unwrap(), 0, "nothing else is expired");
    }

    #[test]
    fn an_id_remembered_again_keeps_its_newer_entry() {
        let ix = index(1_000);
        ix.remember("m", 100).unwrap();
        ix.remember("m", 4_800).unwrap();
        assert_eq!(ix.prune(5_000, 10).unwrap(), 1, "the stale time entry goes");
        assert!(ix.seen_recently("m", 5_000).unwrap());
        assert_eq!(ix.prune(6_000, 10).unwrap(), 1);
        assert!(ix.is_empty());
    }

    #[test]
    fn ids_stored_before_the_time_index_existed_are_indexed_on_open() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let seen = db.open_tree("event_ids").unwrap();
        seen.insert("legacy", &50u64.to_be_bytes()).unwrap();
        let ix = DedupeIndex::open(&db, Duration::from_millis(1_000)).unwrap();
        assert_eq!(ix.prune(2_000, 10).unwrap(), 1);
        assert!(ix.is_empty());
    }
}
