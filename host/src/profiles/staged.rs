//! A write set over the profile trees: reads see the staged writes first, and the whole set
//! commits in one sled transaction across the trees, so after a crash either all of it is
//! there or none of it.

use std::collections::{BTreeMap, BTreeSet};

use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use crate::store::StoreError;

/// The profile trees, in the order of [`T`].
pub(crate) const TREE_NAMES: [&str; 6] = [
    "contacts",
    "identities",
    "merges",
    "contact_events",
    "profiles_meta",
    "unmerged",
];

/// One of the profile trees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum T {
    /// Contact id -> contact JSON.
    Contacts = 0,
    /// Identity key -> contact id.
    Identities = 1,
    /// Merge log.
    Merges = 2,
    /// `contact \0 seq` -> nothing.
    ContactEvents = 3,
    /// `applied_seq`.
    Meta = 4,
    /// Pairs of contacts that must not be merged again.
    Unmerged = 5,
}

type Writes = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// Staged writes over the live trees (or over nothing, for a scratch replay).
pub(crate) struct Staged<'a> {
    base: Option<&'a [sled::Tree]>,
    writes: [Writes; 6],
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

impl<'a> Staged<'a> {
    /// Writes staged over `trees` (indexed by [`T`]).
    pub fn over(trees: &'a [sled::Tree]) -> Self {
        Self {
            base: Some(trees),
            writes: Default::default(),
        }
    }

    /// A write set over empty trees.
    pub fn scratch() -> Self {
        Self {
            base: None,
            writes: Default::default(),
        }
    }

    /// The value of `key`, staged or stored.
    pub fn get(&self, t: T, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(staged) = self.writes[t as usize].get(key) {
            return Ok(staged.clone());
        }
        match self.base {
            Some(trees) => trees[t as usize]
                .get(key)
                .map(|v| v.map(|v| v.to_vec()))
                .map_err(backend),
            None => Ok(None),
        }
    }

    /// Stages an insert.
    pub fn insert(&mut self, t: T, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.writes[t as usize].insert(key.into(), Some(value.into()));
    }

    /// Stages a removal.
    pub fn remove(&mut self, t: T, key: impl Into<Vec<u8>>) {
        self.writes[t as usize].insert(key.into(), None);
    }

    /// Every key starting with `prefix`, staged writes applied, in order.
    pub fn keys_with_prefix(&self, t: T, prefix: &[u8]) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut keys = BTreeSet::new();
        if let Some(trees) = self.base {
            for item in trees[t as usize].scan_prefix(prefix) {
                let (k, _) = item.map_err(backend)?;
                keys.insert(k.to_vec());
            }
        }
        let staged = self.writes[t as usize]
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix));
        for (k, v) in staged {
            if v.is_some() {
                keys.insert(k.clone());
            } else {
                keys.remove(k);
            }
        }
        Ok(keys.into_iter().collect())
    }

    /// The staged inserts of one tree (removals left out).
    pub fn inserts(&self, t: T) -> impl Iterator<Item = (&Vec<u8>, &Vec<u8>)> {
        self.writes[t as usize]
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
    }

    /// Writes everything staged to `trees` in one transaction.
    pub fn commit(self, trees: &[sled::Tree]) -> Result<(), StoreError> {
        let batches: Vec<sled::Batch> = self
            .writes
            .into_iter()
            .map(|writes| {
                let mut batch = sled::Batch::default();
                for (k, v) in writes {
                    match v {
                        Some(v) => batch.insert(k, v),
                        None => batch.remove(k),
                    }
                }
                batch
            })
            .collect();
        trees
            .transaction(|tx| {
                for (tree, batch) in tx.iter().zip(&batches) {
                    tree.apply_batch(batch)?;
                }
                Ok::<(), ConflictableTransactionError<()>>(())
            })
            .map_err(|e: TransactionError<()>| backend(format!("{e:?}")))
    }
}
