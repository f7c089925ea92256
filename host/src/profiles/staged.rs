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
use super::codec::{decode_chunk, decode_contact, encode_chunk, encode_contact};

/// A contact's newest event sequences are kept in its record until there are this many; then
/// they go to a chunk of its event index (one key for many events, written once).
pub(crate) const RECENT_MAX: usize = 32;

/// The most sequences in one chunk of the event index.
const CHUNK_MAX: usize = 4_096;

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
    /// `contact \0 first seq` -> the chunk's further sequences, as varint deltas (empty: a
    /// chunk of one, as earlier versions wrote every event). A contact's newest sequences
    /// are in its record until they fill a chunk.
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

/// The first sequence of a chunk, from the end of its key.
fn chunk_first(bytes: &[u8]) -> Result<u64, StoreError> {
    let seq: [u8; 8] = bytes
        .try_into()
        .map_err(|e| StoreError::corrupt(bytes, e))?;
    Ok(u64::from_be_bytes(seq))
}

/// A contact as a write set sees it.
enum Cached {
    /// As stored (`None`: there is none).
    Clean(Option<Contact>),
    /// Changed here; written at commit (`None`: removed).
    Dirty(Option<Contact>),
    /// Held by the caller while it applies an event; whether it was changed before.
    Taken { dirty: bool },
}

/// One chunk of a contact's event index: its key and the sequences it holds.
type IndexChunk = (Vec<u8>, Vec<u64>);

/// Contacts as committed, kept decoded from one page to the next (the applier's working
/// set), with the newest event sequences of each. Only the holder of the profile writer lock
/// reaches it; whoever writes contacts another way clears it.
#[derive(Default)]
pub(crate) struct WarmContacts {
    young: HashMap<String, (Contact, Vec<u64>)>,
    old: HashMap<String, (Contact, Vec<u64>)>,
}

impl WarmContacts {
    /// Contacts kept per generation: at most twice as many are held (a few tens of MiB).
    const GENERATION: usize = 25_000;

    fn take(&mut self, id: &str) -> Option<(Contact, Vec<u64>)> {
        self.young.remove(id).or_else(|| self.old.remove(id))
    }

    fn put(&mut self, id: String, contact: Contact, recent: Vec<u64>) {
        if self.young.len() >= Self::GENERATION {
            // The least recently used half goes.
            self.old = std::mem::take(&mut self.young);
        }
        self.young.insert(id, (contact, recent));
    }

    /// Forgets every contact (after contacts were written without it).
    pub fn clear(&mut self) {
        self.young.clear();
        self.old.clear();
    }
}

/// Staged writes over the live tree (or over nothing, for a scratch replay).
pub(crate) struct Staged<'a> {
    base: Option<&'a dyn Keyspace>,
    /// Contacts decoded by earlier pages; this set's clean contacts go back at commit.
    warm: Option<&'a mut WarmContacts>,
    writes: [Writes; 7],
    /// Contacts read or written, decoded, by id. Their encoded form is staged at commit.
    contacts: HashMap<String, Cached>,
    /// The newest event sequences of each contact read or written (kept in its record).
    recent: HashMap<String, Vec<u64>>,
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
            warm: None,
            writes: Default::default(),
            contacts: HashMap::new(),
            recent: HashMap::new(),
        }
    }

    /// Writes staged over `tree`, reading contacts from `warm` first and leaving them there
    /// at commit.
    pub fn over_warm(tree: &'a dyn Keyspace, warm: &'a mut WarmContacts) -> Self {
        Self {
            warm: Some(warm),
            ..Self::over(tree)
        }
    }

    /// A write set over an empty tree.
    pub fn scratch() -> Self {
        Self {
            base: None,
            warm: None,
            writes: Default::default(),
            contacts: HashMap::new(),
            recent: HashMap::new(),
        }
    }

    /// Loads contact `id` into the cache, decoding it at most once.
    fn load(&mut self, id: &str) -> Result<&mut Cached, StoreError> {
        let loaded = self.contacts.contains_key(id);
        if !loaded {
            let warm = self.warm.as_mut().and_then(|w| w.take(id));
            let contact = match warm {
                Some((contact, recent)) => {
                    self.recent.entry(id.to_string()).or_insert(recent);
                    Some(contact)
                }
                None => self.read_contact(id)?,
            };
            self.contacts.insert(id.to_string(), Cached::Clean(contact));
        }
        Ok(self.contacts.get_mut(id).expect("just loaded"))
    }

    /// Contact `id` as staged or stored, noting its newest event sequences.
    fn read_contact(&mut self, id: &str) -> Result<Option<Contact>, StoreError> {
        let Some(bytes) = self.get(T::Contacts, id.as_bytes())? else {
            return Ok(None);
        };
        let (contact, recent) = decode_contact(id.as_bytes(), &bytes)?;
        self.recent.entry(id.to_string()).or_insert(recent);
        Ok(Some(contact))
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

    /// The newest event sequences of contact `id`, as stored or staged.
    fn recent_mut(&mut self, id: &str) -> Result<&mut Vec<u64>, StoreError> {
        let loaded = self.recent.contains_key(id);
        if !loaded {
            let recent = match self.get(T::Contacts, id.as_bytes())? {
                Some(bytes) => decode_contact(id.as_bytes(), &bytes)?.1,
                None => Vec::new(),
            };
            self.recent.insert(id.to_string(), recent);
        }
        Ok(self.recent.get_mut(id).expect("just loaded"))
    }

    /// Indexes event `seq` under contact `id` (kept in the contact's record; the contact
    /// must be written too).
    pub fn index_event(&mut self, id: &str, seq: u64) -> Result<(), StoreError> {
        let recent = self.recent_mut(id)?;
        if recent.last().is_some_and(|&last| last >= seq) {
            recent.push(seq);
            recent.sort_unstable();
            recent.dedup();
        } else {
            recent.push(seq);
        }
        Ok(())
    }

    /// The chunks of contact `id`'s event index, staged writes applied: (key, sequences).
    fn chunks(&self, id: &str) -> Result<Vec<IndexChunk>, StoreError> {
        let prefix = [id.as_bytes(), b"\0"].concat();
        let mut chunks = BTreeMap::new();
        if let Some(tree) = self.base {
            for item in tree.scan_prefix(&T::ContactEvents.key(&prefix)) {
                let (k, v) = item?;
                chunks.insert(k[1..].to_vec(), v);
            }
        }
        let staged = self.writes[T::ContactEvents as usize]
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix));
        for (k, v) in staged {
            match v {
                Some(v) => chunks.insert(k.clone(), v.clone()),
                None => chunks.remove(k),
            };
        }
        chunks
            .into_iter()
            .map(|(k, v)| {
                let first = chunk_first(&k[prefix.len()..])?;
                let seqs = decode_chunk(&k, first, &v)?;
                Ok((k, seqs))
            })
            .collect()
    }

    /// Every event sequence indexed under contact `id`, in order.
    pub fn event_seqs(&mut self, id: &str) -> Result<Vec<u64>, StoreError> {
        // The record first: a page committed meanwhile can only have moved its sequences
        // into a chunk, which the walk below then finds.
        let mut seqs = self.recent_mut(id)?.clone();
        seqs.extend(self.chunks(id)?.into_iter().flat_map(|(_, s)| s));
        seqs.sort_unstable();
        seqs.dedup();
        Ok(seqs)
    }

    /// Removes contact `id`'s event index; returns the sequences it held, in order.
    pub fn take_events(&mut self, id: &str) -> Result<Vec<u64>, StoreError> {
        let seqs = self.event_seqs(id)?;
        for (k, _) in self.chunks(id)? {
            self.remove(T::ContactEvents, k);
        }
        self.recent_mut(id)?.clear();
        Ok(seqs)
    }

    /// Moves contact `from`'s event index to contact `to` (which must be written too).
    pub fn move_events(&mut self, from: &str, to: &str) -> Result<(), StoreError> {
        let from_prefix = from.len() + 1;
        for (k, seqs) in self.chunks(from)? {
            let moved = [to.as_bytes(), b"\0", &k[from_prefix..]].concat();
            self.insert(T::ContactEvents, moved, encode_chunk(&seqs));
            self.remove(T::ContactEvents, k);
        }
        let recent = std::mem::take(self.recent_mut(from)?);
        for seq in recent {
            self.index_event(to, seq)?;
        }
        Ok(())
    }

    /// Encodes the changed contacts into the staged writes; a contact's newest sequences
    /// go to chunks of its event index once there are enough of them.
    pub fn settle(&mut self) {
        for (id, cached) in &mut self.contacts {
            let write = match cached {
                Cached::Dirty(Some(c)) => {
                    let recent = self.recent.entry(id.clone()).or_default();
                    if recent.len() >= RECENT_MAX {
                        for chunk in recent.chunks(CHUNK_MAX) {
                            let key = [id.as_bytes(), b"\0", &chunk[0].to_be_bytes()].concat();
                            self.writes[T::ContactEvents as usize]
                                .insert(key, Some(encode_chunk(chunk)));
                        }
                        recent.clear();
                    }
                    Some(encode_contact(c, recent))
                }
                Cached::Dirty(None) => {
                    self.recent.remove(id);
                    None
                }
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
        for (t, writes) in T::ALL.into_iter().zip(std::mem::take(&mut self.writes)) {
            for (k, v) in writes {
                let key = t.key(&k);
                match v {
                    Some(v) => batch.insert(key, v),
                    None => batch.remove(key),
                }
            }
        }
        tree.apply(batch)?;
        // Committed: what this set holds is what the tree holds. (Had the commit failed,
        // the contacts taken from `warm` would just be read from the tree again.)
        if let Some(warm) = self.warm.take() {
            for (id, cached) in self.contacts.drain() {
                if let Cached::Clean(Some(contact)) = cached {
                    let recent = self.recent.remove(&id).unwrap_or_default();
                    warm.put(id, contact, recent);
                }
            }
        }
        Ok(())
    }
}
