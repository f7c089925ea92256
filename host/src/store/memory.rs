//! The in-memory backend of [`Engine`], for tests: ordered maps behind locks, gone when the
//! engine is dropped. It keeps the same contract as sled (checked by the same conformance
//! suite), so a stage tested on it behaves the same on disk.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use super::StoreError;
use super::engine::{Batch, Engine, Entries, Entry, Keyspace, Tree, is_empty_range};

type Map = BTreeMap<Vec<u8>, Vec<u8>>;

/// Keyspaces in memory.
#[derive(Clone, Default)]
pub struct MemoryEngine {
    keyspaces: Arc<Mutex<HashMap<String, Arc<MemoryKeyspace>>>>,
    ids: Arc<AtomicU64>,
}

impl MemoryEngine {
    /// An empty engine.
    pub fn new() -> Self {
        Self::default()
    }
}

#[derive(Default)]
struct MemoryKeyspace {
    map: Arc<RwLock<Map>>,
}

impl MemoryKeyspace {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Map> {
        self.map.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Map> {
        self.map.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// Entries read a chunk at a time under the read lock, so a long walk neither copies the
/// whole map nor holds the lock between chunks.
struct Chunks {
    map: Arc<RwLock<Map>>,
    /// The bounds still to read.
    from: Bound<Vec<u8>>,
    to: Bound<Vec<u8>>,
    reverse: bool,
    buffer: std::vec::IntoIter<Entry>,
    done: bool,
}

const CHUNK: usize = 256;

impl Iterator for Chunks {
    type Item = Result<Entry, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(entry) = self.buffer.next() {
            return Some(Ok(entry));
        }
        if self.done || is_empty_range(bound_ref(&self.from), bound_ref(&self.to)) {
            return None;
        }
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        let range = map.range::<[u8], _>((bound_ref(&self.from), bound_ref(&self.to)));
        let chunk: Vec<Entry> = if self.reverse {
            range
                .rev()
                .take(CHUNK)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        } else {
            range
                .take(CHUNK)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        drop(map);
        if chunk.len() < CHUNK {
            self.done = true;
        }
        if let Some((last, _)) = chunk.last() {
            if self.reverse {
                self.to = Bound::Excluded(last.clone());
            } else {
                self.from = Bound::Excluded(last.clone());
            }
        }
        self.buffer = chunk.into_iter();
        self.buffer.next().map(Ok)
    }
}

fn bound_ref(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(k) => Bound::Included(k.as_slice()),
        Bound::Excluded(k) => Bound::Excluded(k.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

fn bound_owned(b: Bound<&[u8]>) -> Bound<Vec<u8>> {
    match b {
        Bound::Included(k) => Bound::Included(k.to_vec()),
        Bound::Excluded(k) => Bound::Excluded(k.to_vec()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

impl Keyspace for MemoryKeyspace {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.read().get(key).cloned())
    }

    fn insert(&self, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.write().insert(key.to_vec(), value.to_vec()))
    }

    fn remove(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.write().remove(key))
    }

    fn compare_and_swap(
        &self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool, StoreError> {
        let mut map = self.write();
        if map.get(key).map(Vec::as_slice) != expected {
            return Ok(false);
        }
        match new {
            Some(value) => map.insert(key.to_vec(), value.to_vec()),
            None => map.remove(key),
        };
        Ok(true)
    }

    fn apply(&self, batch: Batch) -> Result<(), StoreError> {
        let mut map = self.write();
        for (key, value) in batch.into_ops() {
            match value {
                Some(value) => map.insert(key, value),
                None => map.remove(&key),
            };
        }
        Ok(())
    }

    fn range<'a>(&'a self, from: Bound<&[u8]>, to: Bound<&[u8]>, reverse: bool) -> Entries<'a> {
        Box::new(Chunks {
            map: self.map.clone(),
            from: bound_owned(from),
            to: bound_owned(to),
            reverse,
            buffer: Vec::new().into_iter(),
            done: false,
        })
    }

    fn len(&self) -> usize {
        self.read().len()
    }

    fn clear(&self) -> Result<(), StoreError> {
        self.write().clear();
        Ok(())
    }

    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

impl Engine for MemoryEngine {
    fn open(&self, name: &str) -> Result<Tree, StoreError> {
        let mut keyspaces = self.keyspaces.lock().unwrap_or_else(|e| e.into_inner());
        Ok(keyspaces.entry(name.to_string()).or_default().clone())
    }

    fn drop_keyspace(&self, name: &str) -> Result<bool, StoreError> {
        let mut keyspaces = self.keyspaces.lock().unwrap_or_else(|e| e.into_inner());
        Ok(match keyspaces.remove(name) {
            // Handles opened before see it emptied; new opens get a map of their own.
            Some(old) => {
                old.write().clear();
                true
            }
            None => false,
        })
    }

    fn keyspace_names(&self) -> Result<Vec<String>, StoreError> {
        let keyspaces = self.keyspaces.lock().unwrap_or_else(|e| e.into_inner());
        Ok(keyspaces.keys().cloned().collect())
    }

    fn generate_id(&self) -> Result<u64, StoreError> {
        Ok(self.ids.fetch_add(1, Ordering::Relaxed))
    }

    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_meets_the_engine_contract() {
        super::super::conformance::run(&MemoryEngine::new);
    }

    #[test]
    fn memory_keeps_writes_while_the_engine_lives() {
        let engine = MemoryEngine::new();
        super::super::conformance::durability(&|| engine.clone());
    }
}
