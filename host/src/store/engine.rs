//! The storage seam under every stage's derived state: an [`Engine`] of named, ordered
//! keyspaces of bytes, each with atomic batches and compare-and-swap. Stages build their own
//! records on it; sled ([`super::SledEngine`]) and an in-memory map ([`super::MemoryEngine`])
//! are its backends, and [`super::conformance`] checks both the same way.

use std::ops::Bound;
use std::sync::Arc;

use super::StoreError;

/// One key and its value.
pub type Entry = (Vec<u8>, Vec<u8>);

/// Entries in key order (or reverse key order), read lazily.
pub type Entries<'a> = Box<dyn Iterator<Item = Result<Entry, StoreError>> + Send + 'a>;

/// A keyspace shared by the stage that opened it.
pub type Tree = Arc<dyn Keyspace>;

/// Writes applied together: after a crash either all of them are there or none is.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Batch {
    ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl Batch {
    /// Sets `key` to `value`.
    pub fn insert(&mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        self.ops
            .push((key.as_ref().to_vec(), Some(value.as_ref().to_vec())));
    }

    /// Removes `key`.
    pub fn remove(&mut self, key: impl AsRef<[u8]>) {
        self.ops.push((key.as_ref().to_vec(), None));
    }

    /// True when the batch writes nothing.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The writes in order: a value to set, or `None` to remove.
    pub fn into_ops(self) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        self.ops
    }
}

/// An ordered map of byte keys to byte values. Single operations are atomic; a [`Batch`] is
/// atomic as a whole; nothing is durable before [`Keyspace::flush`] returns.
pub trait Keyspace: Send + Sync {
    /// The value under `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Sets `key` to `value`; returns the value it replaced.
    fn insert(&self, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Removes `key`; returns the value it had.
    fn remove(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Sets `key` to `new` (`None`: removes it) only if its value is `expected` (`None`:
    /// absent); returns whether it did.
    fn compare_and_swap(
        &self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool, StoreError>;

    /// Applies every write of `batch`, atomically.
    fn apply(&self, batch: Batch) -> Result<(), StoreError>;

    /// The entries with keys between `from` and `to`, in key order, or in reverse key order
    /// when `reverse`.
    fn range<'a>(&'a self, from: Bound<&[u8]>, to: Bound<&[u8]>, reverse: bool) -> Entries<'a>;

    /// How many keys it holds.
    fn len(&self) -> usize;

    /// Removes every key.
    fn clear(&self) -> Result<(), StoreError>;

    /// Makes every write so far durable.
    fn flush(&self) -> Result<(), StoreError>;

    /// True when it holds no key.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `key` is present.
    fn contains_key(&self, key: &[u8]) -> Result<bool, StoreError> {
        Ok(self.get(key)?.is_some())
    }

    /// Every entry, in key order.
    fn iter(&self) -> Entries<'_> {
        self.range(Bound::Unbounded, Bound::Unbounded, false)
    }

    /// Every entry whose key starts with `prefix`, in key order.
    fn scan_prefix<'a>(&'a self, prefix: &[u8]) -> Entries<'a> {
        match prefix_end(prefix) {
            Some(end) => self.range(Bound::Included(prefix), Bound::Excluded(&end), false),
            None => self.range(Bound::Included(prefix), Bound::Unbounded, false),
        }
    }

    /// Every entry from `from` on, in key order.
    fn range_from<'a>(&'a self, from: &[u8]) -> Entries<'a> {
        self.range(Bound::Included(from), Bound::Unbounded, false)
    }
}

/// The smallest key after every key that starts with `prefix` (`None`: there is none).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// True when no key can lie between `from` and `to` (backends may panic on such ranges).
pub(super) fn is_empty_range(from: Bound<&[u8]>, to: Bound<&[u8]>) -> bool {
    use Bound::{Excluded, Included};
    match (from, to) {
        (Included(a), Included(b)) => a > b,
        (Included(a), Excluded(b)) | (Excluded(a), Included(b)) | (Excluded(a), Excluded(b)) => {
            a >= b
        }
        _ => false,
    }
}

/// A set of named keyspaces: one database.
pub trait Engine: Send + Sync {
    /// The keyspace called `name`, created empty if it does not exist.
    fn open(&self, name: &str) -> Result<Tree, StoreError>;

    /// Deletes the keyspace called `name`; returns whether it existed.
    fn drop_keyspace(&self, name: &str) -> Result<bool, StoreError>;

    /// The names of every keyspace.
    fn keyspace_names(&self) -> Result<Vec<String>, StoreError>;

    /// A number never returned before by this database (across restarts), increasing.
    fn generate_id(&self) -> Result<u64, StoreError>;

    /// Makes every write so far, in every keyspace, durable.
    fn flush(&self) -> Result<(), StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_ends_after_its_last_byte_that_can_grow() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
        assert_eq!(prefix_end(b""), None);
    }
}
