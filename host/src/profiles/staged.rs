//! A write set over the profile tree: reads see the staged writes first, and the whole set
//! commits as one atomic batch, so after a crash either all of it is there or none of it.
//!
//! Profiles live in one keyspace (a batch on one keyspace is atomic and cheaper than a
//! transaction across several); each kind of record has a one-byte key prefix, [`T`].
//! Contacts are kept decoded while the set lives: each is decoded at most once and encoded
//! once, at commit, however many of its events a page applies.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::store::{Batch, Keyspace, StoreError};

use super::Contact;
use super::codec::{decode_contact, encode_contact};

/// The keyspace that holds profiles.
pub(crate) const TREE_NAME: &str = "profiles";

/// The trees of earlier versions, one per kind of record, in the order of [`T`].
pub(crate) const OLD_TREE_NAMES: [&str; 6] = [
    "contacts",
    "identities",
    "merges",
    "contact_events",
    "profiles_meta",
    "unmerged",
];

/// Key prefixes, indexed by [`T`].
const PREFIXES: &[u8; 7] = b"cimeauf";

/// A kind of profile record (its key prefix).
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
    /// The change feed: last sequence of an applied page -> what landed where.
    Feed = 6,
}

impl T {
    /// Every kind, in prefix order.
    pub(crate) const ALL: [T; 7] = [
        T::Contacts,
        T::Identities,
        T::Merges,
        T::ContactEvents,
        T::Meta,
        T::Unmerged,
        T::Feed,
    ];

    /// The key prefix of this kind of record.
    pub(crate) fn prefix(self) -> u8 {
        PREFIXES[self as usize]
    }

    /// `key` with this kind's prefix.
    pub(crate) fn key(self, key: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(key.len() + 1);
        out.push(self.prefix());
        out.extend_from_slice(key);
        out
    }
}

type Writes = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// A contact as a write set sees it.
enum Cached {
    /// As stored (`None`: there is none).
    Clean(Option<Contact>),
    /// Changed here; written at commit (`None`: removed).
    Dirty(Option<Contact>),
    /// Held by the caller while it applies an event; whether it was changed before.
    Taken { dirty: bool },
}

/// Staged writes over the live tree (or over nothing, for a scratch replay).
pub(crate) struct Staged<'a> {
    base: Option<&'a dyn Keyspace>,
    writes: [Writes; 7],
    /// Contacts read or written, decoded, by id. Their encoded form is staged at commit.
    contacts: HashMap<String, Cached>,
}

/// What a contact lookup finds.
pub(crate) enum Found<'s> {
    /// No such contact.
    None,
    /// The contact.
    Contact(&'s Contact),
    /// Taken by the caller (always a root: only roots are taken).
    Taken,
}

impl<'a> Staged<'a> {
    /// Writes staged over `tree`.
    pub fn over(tree: &'a dyn Keyspace) -> Self {
        Self {
            base: Some(tree),
            writes: Default::default(),
            contacts: HashMap::new(),
        }
    }

    /// A write set over an empty tree.
    pub fn scratch() -> Self {
        Self {
            base: None,
            writes: Default::default(),
            contacts: HashMap::new(),
        }
    }

    /// Loads contact `id` into the cache, decoding it at most once.
    fn load(&mut self, id: &str) -> Result<&mut Cached, StoreError> {
        if !self.contacts.contains_key(id) {
            let contact = match self.get(T::Contacts, id.as_bytes())? {
                Some(bytes) => Some(decode_contact(id.as_bytes(), &bytes)?),
                None => None,
            };
            self.contacts.insert(id.to_string(), Cached::Clean(contact));
        }
        Ok(self.contacts.get_mut(id).expect("just loaded"))
    }

    /// Contact `id` as staged or stored (merged-away contacts included).
    pub fn contact(&mut self, id: &str) -> Result<Found<'_>, StoreError> {
        Ok(match self.load(id)? {
            Cached::Clean(Some(c)) | Cached::Dirty(Some(c)) => Found::Contact(c),
            Cached::Clean(None) | Cached::Dirty(None) => Found::None,
            Cached::Taken { .. } => Found::Taken,
        })
    }

    /// Takes contact `id` out to change it: hand it back with [`Staged::put_contact`] (changed)
    /// or [`Staged::give_back`] (unchanged). `None` when there is none (or it is taken).
    pub fn take_contact(&mut self, id: &str) -> Result<Option<Contact>, StoreError> {
        let slot = self.load(id)?;
        let (contact, dirty) = match std::mem::replace(slot, Cached::Taken { dirty: false }) {
            Cached::Clean(c) => (c, false),
            Cached::Dirty(c) => (c, true),
            taken @ Cached::Taken { .. } => {
                *slot = taken;
                return Ok(None);
            }
        };
        match contact {
            Some(c) => {
                *slot = Cached::Taken { dirty };
                Ok(Some(c))
            }
            None => {
                *slot = if dirty {
                    Cached::Dirty(None)
                } else {
                    Cached::Clean(None)
                };
                Ok(None)
            }
        }
    }

    /// Stages `contact` as changed (written at commit).
    pub fn put_contact(&mut self, contact: Contact) {
        self.contacts
            .insert(contact.id.clone(), Cached::Dirty(Some(contact)));
    }

    /// Hands back a contact taken and not changed.
    pub fn give_back(&mut self, contact: Contact) {
        let dirty = matches!(
            self.contacts.get(&contact.id),
            Some(Cached::Taken { dirty: true } | Cached::Dirty(_))
        );
        let id = contact.id.clone();
        let slot = if dirty {
            Cached::Dirty(Some(contact))
        } else {
            Cached::Clean(Some(contact))
        };
        self.contacts.insert(id, slot);
    }

    /// Stages the removal of contact `id`.
    pub fn remove_contact(&mut self, id: &str) {
        self.contacts.insert(id.to_string(), Cached::Dirty(None));
    }

    /// Encodes the changed contacts into the staged writes.
    pub fn settle(&mut self) {
        for (id, cached) in &mut self.contacts {
            let write = match cached {
                Cached::Dirty(Some(c)) => Some(encode_contact(c)),
                Cached::Dirty(None) => None,
                Cached::Clean(_) | Cached::Taken { .. } => continue,
            };
            self.writes[T::Contacts as usize].insert(id.as_bytes().to_vec(), write);
            if let Cached::Dirty(c) = cached {
                *cached = Cached::Clean(c.take());
            }
        }
    }

    /// The value of `key`, staged or stored.
    pub fn get(&self, t: T, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(staged) = self.writes[t as usize].get(key) {
            return Ok(staged.clone());
        }
        match self.base {
            Some(tree) => tree.get(&t.key(key)),
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
        if let Some(tree) = self.base {
            for item in tree.scan_prefix(&t.key(prefix)) {
                let (k, _) = item?;
                keys.insert(k[1..].to_vec());
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

    /// Writes everything staged to `tree` in one atomic batch.
    pub fn commit(mut self, tree: &dyn Keyspace) -> Result<(), StoreError> {
        self.settle();
        let mut batch = Batch::default();
        for (t, writes) in T::ALL.into_iter().zip(self.writes) {
            for (k, v) in writes {
                let key = t.key(&k);
                match v {
                    Some(v) => batch.insert(key, v),
                    None => batch.remove(key),
                }
            }
        }
        tree.apply(batch)
    }
}
