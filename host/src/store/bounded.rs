//! A keyspace whose keys start with `owner\0` and sort oldest first, kept within a count and
//! a byte budget per owner and a byte budget in total by evicting the oldest entries.

use std::collections::HashMap;
use std::sync::Mutex;

use super::StoreError;
use super::engine::Tree;

/// What a [`BoundedTree`] may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Entries per owner.
    pub per_owner_count: usize,
    /// Bytes (key and value as stored) per owner.
    pub per_owner_bytes: u64,
    /// Bytes across every owner. Over it, the owner holding the most bytes loses its oldest.
    pub total_bytes: u64,
}

/// What one owner holds.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Entries.
    pub count: usize,
    /// Bytes, keys and values as stored.
    pub bytes: u64,
}

/// The tree and what each owner holds in it, counted once at open and kept current by every
/// insert and removal made through it.
pub struct BoundedTree {
    tree: Tree,
    usage: Mutex<HashMap<Vec<u8>, Usage>>,
}

/// The key prefix of an owner's entries.
pub fn owner_prefix(owner: &str) -> Vec<u8> {
    [owner.as_bytes(), b"\0"].concat()
}

fn owner_of(key: &[u8]) -> &[u8] {
    key.split(|b| *b == 0).next().unwrap_or_default()
}

fn size(key: &[u8], value: &[u8]) -> u64 {
    (key.len() as u64).saturating_add(value.len() as u64)
}

impl BoundedTree {
    /// Wraps `tree`, reading it once to count what each owner holds.
    pub fn open(tree: Tree) -> Result<Self, StoreError> {
        let mut usage: HashMap<Vec<u8>, Usage> = HashMap::new();
        for item in tree.iter() {
            let (k, v) = item?;
            let u = usage.entry(owner_of(&k).to_vec()).or_default();
            u.count += 1;
            u.bytes = u.bytes.saturating_add(size(&k, &v));
        }
        Ok(Self {
            tree,
            usage: Mutex::new(usage),
        })
    }

    /// The tree, for reading. Removals go through [`BoundedTree::remove`].
    pub fn tree(&self) -> &Tree {
        &self.tree
    }

    /// What `owner` holds.
    pub fn usage(&self, owner: &str) -> Usage {
        self.lock()
            .get(owner.as_bytes())
            .copied()
            .unwrap_or_default()
    }

    /// Bytes held across every owner.
    pub fn total_bytes(&self) -> u64 {
        self.lock()
            .values()
            .fold(0u64, |sum, u| sum.saturating_add(u.bytes))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<u8>, Usage>> {
        self.usage.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Inserts `key` (which must start with `owner\0`), then evicts the oldest entries until
    /// the owner and the tree are within `budget`. An entry larger than the owner's whole
    /// budget is not kept at all: returns false.
    pub fn insert(
        &self,
        owner: &str,
        key: &[u8],
        value: &[u8],
        budget: &Budget,
    ) -> Result<bool, StoreError> {
        debug_assert!(key.starts_with(&owner_prefix(owner)));
        let bytes = size(key, value);
        if bytes > budget.per_owner_bytes || bytes > budget.total_bytes {
            return Ok(false);
        }
        let mut usage = self.lock();
        if let Some(old) = self.tree.insert(key, value)? {
            let u = usage.entry(owner.as_bytes().to_vec()).or_default();
            u.count = u.count.saturating_sub(1);
            u.bytes = u.bytes.saturating_sub(size(key, &old));
        }
        let u = usage.entry(owner.as_bytes().to_vec()).or_default();
        u.count += 1;
        u.bytes = u.bytes.saturating_add(bytes);
        let prefix = owner_prefix(owner);
        loop {
            let u = usage.get(owner.as_bytes()).copied().unwrap_or_default();
            if u.count <= budget.per_owner_count && u.bytes <= budget.per_owner_bytes {
                break;
            }
            if !self.pop_oldest(&mut usage, &prefix)? {
                break;
            }
        }
        loop {
            let total = usage
                .values()
                .fold(0u64, |sum, u| sum.saturating_add(u.bytes));
            if total <= budget.total_bytes {
                break;
            }
            let Some(largest) = usage
                .iter()
                .max_by_key(|(_, u)| u.bytes)
                .map(|(owner, _)| [owner.as_slice(), b"\0"].concat())
            else {
                break;
            };
            if !self.pop_oldest(&mut usage, &largest)? {
                break;
            }
        }
        Ok(true)
    }

    /// Removes the oldest entries of `owner` while `stale(key)` holds for them; returns how
    /// many went.
    pub fn evict_oldest_while(
        &self,
        owner: &str,
        stale: impl Fn(&[u8]) -> bool,
    ) -> Result<usize, StoreError> {
        let prefix = owner_prefix(owner);
        let mut usage = self.lock();
        let mut removed = 0;
        while let Some(item) = self.tree.scan_prefix(&prefix).next() {
            let (k, _) = item?;
            if !stale(&k) {
                break;
            }
            self.remove_locked(&mut usage, &k)?;
            removed += 1;
        }
        Ok(removed)
    }

    /// Removes one entry; returns whether it was there.
    pub fn remove(&self, key: &[u8]) -> Result<bool, StoreError> {
        let mut usage = self.lock();
        self.remove_locked(&mut usage, key)
    }

    fn remove_locked(
        &self,
        usage: &mut HashMap<Vec<u8>, Usage>,
        key: &[u8],
    ) -> Result<bool, StoreError> {
        let Some(old) = self.tree.remove(key)? else {
            return Ok(false);
        };
        let owner = owner_of(key);
        if let Some(u) = usage.get_mut(owner) {
            u.count = u.count.saturating_sub(1);
            u.bytes = u.bytes.saturating_sub(size(key, &old));
            if u.count == 0 {
                usage.remove(owner);
            }
        }
        Ok(true)
    }

    /// Removes the oldest entry under `prefix`; false when there is none.
    fn pop_oldest(
        &self,
        usage: &mut HashMap<Vec<u8>, Usage>,
        prefix: &[u8],
    ) -> Result<bool, StoreError> {
        let Some(item) = self.tree.scan_prefix(prefix).next() else {
            // Nothing left although the count says otherwise: forget the owner.
            usage.remove(owner_of(prefix));
            return Ok(false);
        };
        let (k, _) = item?;
        self.remove_locked(usage, &k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> BoundedTree {
        use crate::store::{Engine, MemoryEngine};
        BoundedTree::open(MemoryEngine::new().open("t").unwrap()).unwrap()
    }

    fn key(owner: &str, n: u64) -> Vec<u8> {
        [owner_prefix(owner).as_slice(), &n.to_be_bytes()].concat()
    }

    fn keys(tree: &BoundedTree, owner: &str) -> Vec<u64> {
        tree.tree()
            .scan_prefix(&owner_prefix(owner))
            .map(|i| {
                let (k, _) = i.unwrap();
                u64::from_be_bytes(k[k.len() - 8..].try_into().unwrap())
            })
            .collect()
    }

    #[test]
    fn owners_are_bounded_in_bytes_oldest_first_and_the_largest_pays_for_the_total() {
        let tree = tree();
        // Each entry: 2 + 8 key bytes + 90 value bytes = 100.
        let budget = Budget {
            per_owner_count: 100,
            per_owner_bytes: 300,
            total_bytes: 500,
        };
        let value = [7u8; 90];
        for n in 0..5 {
            assert!(tree.insert("a", &key("a", n), &value, &budget).unwrap());
        }
        assert_eq!(keys(&tree, "a"), [2, 3, 4], "per owner: oldest first");
        assert_eq!(tree.usage("a").bytes, 300);
        for n in 0..3 {
            tree.insert("b", &key("b", n), &value, &budget).unwrap();
        }
        // a 300 + b 300 > 500: the largest (a, then a tie) loses its oldest.
        assert_eq!(tree.total_bytes(), 500);
        assert_eq!(keys(&tree, "b").len() + keys(&tree, "a").len(), 5);
        assert!(
            !tree
                .insert("c", &key("c", 0), &[0u8; 400], &budget)
                .unwrap(),
            "larger than an owner's budget: not kept"
        );
        assert!(keys(&tree, "c").is_empty());
        // Reopening counts the same.
        let reopened = BoundedTree::open(tree.tree().clone()).unwrap();
        assert_eq!(reopened.total_bytes(), 500);
        let b = keys(&reopened, "b").len();
        assert_eq!(reopened.evict_oldest_while("b", |_| true).unwrap(), b);
        assert_eq!(reopened.total_bytes(), reopened.usage("a").bytes);
        assert_eq!(reopened.usage("b"), Usage::default());
    }
}
