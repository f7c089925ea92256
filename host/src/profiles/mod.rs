//! Profiles: identity resolution, merges with a merge log, traits (last write wins by event
//! time) and per-event-name counters, all derived from the event log and rebuilt from it.

mod applier;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use applier::run_applier;

use crate::ingest::{EventType, Identity, StoredEvent};
use crate::store::StoreError;

/// A contact profile.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Contact {
    /// Stable id.
    pub id: String,
    /// Every identity that resolves to this contact.
    pub identities: Vec<Identity>,
    /// Traits.
    pub traits: Map<String, Value>,
    /// The event time each trait was last set at (for last-write-wins).
    #[serde(default)]
    pub trait_times: BTreeMap<String, String>,
    /// How many `track` events of each name.
    pub counters: BTreeMap<String, u64>,
    /// Sequence of the event that created it.
    pub created_seq: u64,
    /// Sequence of the last event applied to it.
    pub last_seq: u64,
    /// Set when this contact was merged into another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_into: Option<String>,
}

/// One merge of two contacts, for audit.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Merge {
    /// The contact that remains.
    pub survivor: String,
    /// The contact merged into it.
    pub merged: String,
    /// The event that linked them.
    pub event_seq: u64,
    /// Its message id.
    pub message_id: String,
}

/// The profile store (sled trees).
#[derive(Clone)]
pub struct Profiles {
    contacts: sled::Tree,
    identities: sled::Tree,
    merges: sled::Tree,
    contact_events: sled::Tree,
    meta: sled::Tree,
    suppressed: sled::Tree,
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn contact_id_for(identity: &Identity) -> String {
    let digest = crate::plugins::sha256_hex(identity.key().as_bytes());
    format!("ct_{}", &digest[..20])
}

impl Profiles {
    /// Opens the profile trees of `db`.
    pub fn open(db: &sled::Db) -> Result<Self, StoreError> {
        Ok(Self {
            contacts: db.open_tree("contacts").map_err(backend)?,
            identities: db.open_tree("identities").map_err(backend)?,
            merges: db.open_tree("merges").map_err(backend)?,
            contact_events: db.open_tree("contact_events").map_err(backend)?,
            meta: db.open_tree("profiles_meta").map_err(backend)?,
            suppressed: db
                .open_tree(crate::ingest::SUPPRESSED_TREE)
                .map_err(backend)?,
        })
    }

    /// The last event sequence applied.
    pub fn applied_seq(&self) -> Result<u64, StoreError> {
        Ok(self
            .meta
            .get("applied_seq")
            .map_err(backend)?
            .map_or(0, |v| {
                u64::from_be_bytes(v.as_ref().try_into().unwrap_or([0; 8]))
            }))
    }

    pub(crate) fn set_applied_seq(&self, seq: u64) -> Result<(), StoreError> {
        self.meta
            .insert("applied_seq", &seq.to_be_bytes())
            .map(drop)
            .map_err(backend)
    }

    fn get_raw(&self, id: &str) -> Result<Option<Contact>, StoreError> {
        match self.contacts.get(id.as_bytes()).map_err(backend)? {
            Some(v) => serde_json::from_slice(&v).map(Some).map_err(backend),
            None => Ok(None),
        }
    }

    fn put(&self, contact: &Contact) -> Result<(), StoreError> {
        let json = serde_json::to_vec(contact).map_err(backend)?;
        self.contacts
            .insert(contact.id.as_bytes(), json)
            .map(drop)
            .map_err(backend)
    }

    /// A contact by id, following merges to the surviving contact.
    pub fn get(&self, id: &str) -> Result<Option<Contact>, StoreError> {
        let mut current = self.get_raw(id)?;
        for _ in 0..64 {
            match current {
                Some(Contact {
                    merged_into: Some(next),
                    ..
                }) => current = self.get_raw(&next)?,
                other => return Ok(other),
            }
        }
        Ok(current)
    }

    /// The contact an identity resolves to.
    pub fn find(&self, identity: &Identity) -> Result<Option<Contact>, StoreError> {
        match self
            .identities
            .get(identity.key().as_bytes())
            .map_err(backend)?
        {
            Some(id) => self.get(&String::from_utf8_lossy(&id)),
            None => Ok(None),
        }
    }

    /// Event sequences of a contact, after `after`, at most `limit`.
    pub fn event_seqs(
        &self,
        contact: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<u64>, StoreError> {
        let prefix = [contact.as_bytes(), b"\0"].concat();
        let start = [prefix.as_slice(), &(after + 1).to_be_bytes()].concat();
        let mut out = Vec::new();
        for item in self.contact_events.range(start..) {
            let (k, _) = item.map_err(backend)?;
            if !k.starts_with(&prefix) || out.len() >= limit {
                break;
            }
            let seq: [u8; 8] = k[prefix.len()..].try_into().map_err(backend_slice)?;
            out.push(u64::from_be_bytes(seq));
        }
        Ok(out)
    }

    /// Erases a contact: its profile, its identity index entries and its event index. Returns
    /// the erased identities (for suppression), or `None` when there is no such contact.
    ///
    /// The events stay in the append-only log (no API serves them any more); dropping their
    /// bytes needs log compaction.
    pub fn erase(&self, id: &str) -> Result<Option<Vec<Identity>>, StoreError> {
        let Some(contact) = self.get(id)? else {
            return Ok(None);
        };
        for identity in &contact.identities {
            self.identities
                .remove(identity.key().as_bytes())
                .map_err(backend)?;
        }
        let prefix = [contact.id.as_bytes(), b"\0"].concat();
        for item in self.contact_events.scan_prefix(&prefix) {
            let (k, _) = item.map_err(backend)?;
            self.contact_events.remove(k).map_err(backend)?;
        }
        self.contacts
            .remove(contact.id.as_bytes())
            .map_err(backend)?;
        tracing::info!(contact = %contact.id, "contact erased");
        Ok(Some(contact.identities))
    }

    /// Every merge, oldest first.
    pub fn merges(&self) -> Result<Vec<Merge>, StoreError> {
        self.merges
            .iter()
            .map(|r| {
                let (_, v) = r.map_err(backend)?;
                serde_json::from_slice(&v).map_err(backend)
            })
            .collect()
    }

    /// Applies one logged event: resolve (and merge), then traits, counters, event index.
    pub fn apply(&self, seq: u64, event: &StoredEvent) -> Result<Option<String>, StoreError> {
        if seq <= self.applied_seq()? {
            return Ok(None);
        }
        let identities = event.all_identities();
        // Logged before its contact was erased: not applied, so the contact stays gone.
        let suppressed = identities
            .iter()
            .map(|i| self.suppressed.contains_key(i.key().as_bytes()))
            .collect::<Result<Vec<bool>, _>>()
            .map_err(backend)?;
        if suppressed.contains(&true) {
            self.set_applied_seq(seq)?;
            return Ok(None);
        }
        let Some(first) = identities.first() else {
            self.set_applied_seq(seq)?;
            return Ok(None);
        };
        let mut found: BTreeSet<String> = BTreeSet::new();
        for identity in &identities {
            if let Some(c) = self.find(identity)? {
                found.insert(c.id);
            }
        }
        let mut contacts: Vec<Contact> = found
            .iter()
            .filter_map(|id| self.get_raw(id).transpose())
            .collect::<Result<_, _>>()?;
        contacts.sort_by_key(|c| (c.created_seq, c.id.clone()));
        let mut survivor = if contacts.is_empty() {
            let id = contact_id_for(first);
            // A contact with that id may exist from an identity since moved away; start anew.
            Contact {
                id,
                created_seq: seq,
                ..Contact::default()
            }
        } else {
            contacts.remove(0)
        };
        for mut other in contacts {
            self.merge_into(&mut survivor, &mut other, seq, &event.message_id)?;
        }
        for identity in identities {
            if !survivor.identities.contains(&identity) {
                self.identities
                    .insert(identity.key().as_bytes(), survivor.id.as_bytes())
                    .map_err(backend)?;
                survivor.identities.push(identity);
            }
        }
        let traits = match event.kind {
            EventType::Identify => event.traits.as_object(),
            EventType::Group => None,
            _ => event.traits.as_object().filter(|t| !t.is_empty()),
        };
        if let Some(traits) = traits {
            for (k, v) in traits {
                let newer = survivor
                    .trait_times
                    .get(k)
                    .is_none_or(|t| *t <= event.timestamp);
                if newer {
                    survivor.traits.insert(k.clone(), v.clone());
                    survivor
                        .trait_times
                        .insert(k.clone(), event.timestamp.clone());
                }
            }
        }
        if let (EventType::Track, Some(name)) = (event.kind, &event.event) {
            *survivor.counters.entry(name.clone()).or_default() += 1;
        }
        survivor.last_seq = seq;
        self.put(&survivor)?;
        let key = [survivor.id.as_bytes(), b"\0", &seq.to_be_bytes()].concat();
        self.contact_events.insert(key, &[]).map_err(backend)?;
        self.set_applied_seq(seq)?;
        Ok(Some(survivor.id))
    }

    fn merge_into(
        &self,
        survivor: &mut Contact,
        other: &mut Contact,
        seq: u64,
        message_id: &str,
    ) -> Result<(), StoreError> {
        for identity in other.identities.drain(..) {
            self.identities
                .insert(identity.key().as_bytes(), survivor.id.as_bytes())
                .map_err(backend)?;
            if !survivor.identities.contains(&identity) {
                survivor.identities.push(identity);
            }
        }
        for (k, v) in std::mem::take(&mut other.traits) {
            let at = other.trait_times.get(&k).cloned().unwrap_or_default();
            if survivor.trait_times.get(&k).is_none_or(|t| *t <= at) {
                survivor.traits.insert(k.clone(), v);
                survivor.trait_times.insert(k, at);
            }
        }
        for (name, n) in std::mem::take(&mut other.counters) {
            *survivor.counters.entry(name).or_default() += n;
        }
        let prefix = [other.id.as_bytes(), b"\0"].concat();
        for item in self.contact_events.scan_prefix(&prefix) {
            let (k, _) = item.map_err(backend)?;
            let moved = [survivor.id.as_bytes(), b"\0", &k[prefix.len()..]].concat();
            self.contact_events.insert(moved, &[]).map_err(backend)?;
            self.contact_events.remove(k).map_err(backend)?;
        }
        other.merged_into = Some(survivor.id.clone());
        self.put(other)?;
        let merge = Merge {
            survivor: survivor.id.clone(),
            merged: other.id.clone(),
            event_seq: seq,
            message_id: message_id.into(),
        };
        let key = [seq.to_be_bytes().as_slice(), other.id.as_bytes()].concat();
        self.merges
            .insert(key, serde_json::to_vec(&merge).map_err(backend)?)
            .map_err(backend)?;
        tracing::info!(survivor = %survivor.id, merged = %other.id, seq, "contacts merged");
        Ok(())
    }
}

fn backend_slice(e: std::array::TryFromSliceError) -> StoreError {
    backend(e)
}
