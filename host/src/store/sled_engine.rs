//! The embedded backend of [`Engine`]: one sled database, one sled tree per keyspace.

use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use super::StoreError;
use super::engine::{Batch, Engine, Entries, Keyspace, Tree, is_empty_range};

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        StoreError::Backend(Box::new(e))
    }
}

/// sled's page cache, in bytes. sled's default (1 GiB) made a host with a million contacts
/// hold 1.2 GiB resident; the operating system's file cache keeps the pages sled evicts.
pub const CACHE_BYTES: u64 = 256 * 1024 * 1024;

/// A sled database.
#[derive(Clone)]
pub struct SledEngine {
    db: sled::Db,
}

impl SledEngine {
    /// Opens (or creates) the database at `path`, with a page cache of [`CACHE_BYTES`].
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Ok(Self {
            db: sled::Config::new()
                .path(path)
                .cache_capacity(CACHE_BYTES)
                .open()?,
        })
    }

    /// A database that lives in memory and is deleted when dropped (for tests).
    pub fn temporary() -> Result<Self, StoreError> {
        Ok(Self {
            db: sled::Config::new().temporary(true).open()?,
        })
    }
}

struct SledKeyspace {
    tree: sled::Tree,
}

fn owned(item: sled::Result<(sled::IVec, sled::IVec)>) -> Result<(Vec<u8>, Vec<u8>), StoreError> {
    let (k, v) = item?;
    Ok((k.to_vec(), v.to_vec()))
}

impl Keyspace for SledKeyspace {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.tree.get(key)?.map(|v| v.to_vec()))
    }

    fn insert(&self, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.tree.insert(key, value)?.map(|v| v.to_vec()))
    }

    fn remove(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.tree.remove(key)?.map(|v| v.to_vec()))
    }

    fn compare_and_swap(
        &self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool, StoreError> {
        Ok(self.tree.compare_and_swap(key, expected, new)?.is_ok())
    }

    fn apply(&self, batch: Batch) -> Result<(), StoreError> {
        let mut sled_batch = sled::Batch::default();
        for (key, value) in batch.into_ops() {
            match value {
                Some(value) => sled_batch.insert(key, value),
                None => sled_batch.remove(key),
            }
        }
        Ok(self.tree.apply_batch(sled_batch)?)
    }

    fn range<'a>(&'a self, from: Bound<&[u8]>, to: Bound<&[u8]>, reverse: bool) -> Entries<'a> {
        if is_empty_range(from, to) {
            return Box::new(std::iter::empty());
        }
        let iter = self.tree.range::<&[u8], _>((from, to));
        if reverse {
            Box::new(iter.rev().map(owned))
        } else {
            Box::new(iter.map(owned))
        }
    }

    fn len(&self) -> usize {
        self.tree.len()
    }

    fn clear(&self) -> Result<(), StoreError> {
        Ok(self.tree.clear()?)
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.tree.flush()?;
        Ok(())
    }
}

impl Engine for SledEngine {
    fn open(&self, name: &str) -> Result<Tree, StoreError> {
        Ok(Arc::new(SledKeyspace {
            tree: self.db.open_tree(name)?,
        }))
    }

    fn drop_keyspace(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self.db.drop_tree(name)?)
    }

    fn keyspace_names(&self) -> Result<Vec<String>, StoreError> {
        Ok(self
            .db
            .tree_names()
            .into_iter()
            .filter(|name| name.as_ref() != b"__sled__default")
            .map(|name| String::from_utf8_lossy(&name).into_owned())
            .collect())
    }

    fn generate_id(&self) -> Result<u64, StoreError> {
        Ok(self.db.generate_id()?)
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sled_meets_the_engine_contract() {
        let dir = tempfile::tempdir().unwrap();
        super::super::conformance::run(&|| {
            SledEngine::open(&dir.path().join(format!("db-{}", rand_suffix()))).unwrap()
        });
    }

    #[test]
    fn sled_keeps_flushed_writes_across_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        super::super::conformance::durability(&|| SledEngine::open(dir.path()).unwrap());
    }

    fn rand_suffix() -> u64 {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        N.fetch_add(1, Ordering::Relaxed)
    }
}
