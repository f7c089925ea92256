//! Profiles: identity resolution, merges with a merge log, traits (last write wins by event
//! time) and per-event-name counters, all derived from the event log and rebuilt from it.

mod applier;
mod codec;
mod event;
mod resolve;
mod staged;
mod unmerge;

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use applier::{ApplyError, catch_up, run_applier};
pub use unmerge::{Unmerge, UnmergeError};

use crate::ingest::{Identity, StoredEvent};
use crate::store::{Batch, Engine, Log, LogError, StoreError, Tree, decode_json, encode_json};
use event::ProfileEvent;
use staged::{OLD_TREE_NAMES, Staged, T, TREE_NAME, WarmContacts};

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

/// What a merge-log record did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MergeAction {
    /// Two contacts became one.
    #[default]
    Merge,
    /// A merge was undone; the pair is kept apart from then on.
    Unmerge,
}

/// One merge (or unmerge) of two contacts, for audit.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Merge {
    /// Merge or unmerge.
    #[serde(default)]
    pub action: MergeAction,
    /// The contact that remains.
    pub survivor: String,
    /// The contact merged into it (or, for an unmerge, restored).
    pub merged: String,
    /// The event that linked them.
    pub event_seq: u64,
    /// Its message id.
    pub message_id: String,
    /// When an unmerge was made, Unix milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_ms: Option<u64>,
}

/// Meta key prefix of an erasure whose events are not redacted yet (`ERASING ++ contact`).
const ERASING: &[u8] = b"erasing\0";

/// Why an erasure could not be finished.
#[derive(Debug, thiserror::Error)]
pub enum EraseError {
    /// The profile store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The event log could not redact the events (the redaction is retried).
    #[error(transparent)]
    Log(#[from] LogError),
}

/// What erasing a contact removed from profiles.
#[derive(Debug, Clone)]
pub struct Erased {
    /// Its identities.
    pub identities: Vec<Identity>,
    /// Log sequences of the events that were indexed under it.
    pub event_seqs: Vec<u64>,
}

/// One event of the change feed: where the profile stage applied it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// The event's sequence in the log.
    pub seq: u64,
    /// The (surviving) contact it landed on.
    pub contact_id: String,
    /// Contacts this event merged into `contact_id`: they no longer exist on their own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merged: Vec<String>,
}

/// Pages of the change feed read at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedPage {
    /// The events, in sequence order.
    pub events: Vec<Applied>,
    /// The last sequence these pages cover.
    pub through: u64,
}

/// The profile store (one keyspace).
#[derive(Clone)]
pub struct Profiles {
    /// Every profile record, keyed by kind ([`T`]).
    tree: Tree,
    suppressed: Tree,
    /// Held by whoever writes profiles (the applier, unmerge, erasure), with the contacts
    /// the applier keeps decoded between pages.
    writer: Arc<Mutex<WarmContacts>>,
    /// The last applied sequence, for later stages to wait on.
    applied: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Profiles {
    /// Opens the profile keyspace of `engine`, moving in the records of an older store that
    /// kept one keyspace per kind (in one atomic batch, then the old ones are dropped).
    pub fn open(engine: &dyn Engine) -> Result<Self, StoreError> {
        let tree = engine.open(TREE_NAME)?;
        let names = engine.keyspace_names()?;
        let old: Vec<&str> = OLD_TREE_NAMES
            .iter()
            .filter(|o| names.iter().any(|n| n == *o))
            .copied()
            .collect();
        if !old.is_empty() {
            if tree.is_empty() {
                let mut batch = Batch::default();
                for (i, name) in OLD_TREE_NAMES.iter().enumerate() {
                    let prefix = T::ALL[i];
                    for item in engine.open(name)?.iter() {
                        let (k, v) = item?;
                        batch.insert(prefix.key(&k), v);
                    }
                }
                tree.apply(batch)?;
                tree.flush()?;
            }
            for name in old {
                engine.drop_keyspace(name)?;
            }
        }
        Ok(Self {
            tree,
            suppressed: engine.open(crate::ingest::SUPPRESSED_TREE)?,
            writer: Arc::new(Mutex::new(WarmContacts::default())),
            applied: Arc::new(tokio::sync::watch::Sender::new(0)),
        })
    }

    /// Every record of one kind, in key order (keys without the kind's prefix byte).
    fn scan(&self, t: T) -> impl Iterator<Item = Result<(Vec<u8>, Vec<u8>), StoreError>> {
        self.tree.scan_prefix(&[t.prefix()]).map(|item| {
            let (k, v) = item?;
            Ok((k[1..].to_vec(), v))
        })
    }

    fn lock(&self) -> MutexGuard<'_, WarmContacts> {
        self.writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn view(&self) -> Staged<'_> {
        Staged::over(&*self.tree)
    }

    /// The last event sequence applied.
    pub fn applied_seq(&self) -> Result<u64, StoreError> {
        read_applied_seq(&self.view())
    }

    /// A contact by id, following merges to the surviving contact.
    pub fn get(&self, id: &str) -> Result<Option<Contact>, StoreError> {
        resolve::get_root(&mut self.view(), id)
    }

    /// The contact an identity resolves to.
    pub fn find(&self, identity: &Identity) -> Result<Option<Contact>, StoreError> {
        resolve::owner(&mut self.view(), identity)
    }

    /// Event sequences of a contact, after `after`, at most `limit`.
    pub fn event_seqs(
        &self,
        contact: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<u64>, StoreError> {
        let seqs = self.view().event_seqs(contact)?;
        Ok(seqs
            .into_iter()
            .filter(|s| *s > after)
            .take(limit)
            .collect())
    }

    /// Erases a contact: suppresses its identities (from then on ingest acknowledges events
    /// about them without storing them, and this stage skips any already logged), removes
    /// its profile, identity index entries and event index, and records its events as
    /// pending redaction, all before it returns; [`Profiles::finish_erasures`] redacts them.
    /// `None` when there is no such contact.
    pub fn erase(&self, id: &str) -> Result<Option<Erased>, StoreError> {
        let mut writer = self.lock();
        writer.clear();
        let mut st = self.view();
        let Some(contact) = resolve::get_root(&mut st, id)? else {
            return Ok(None);
        };
        for identity in &contact.identities {
            self.suppressed.insert(identity.key().as_bytes(), &[])?;
        }
        self.suppressed.flush()?;
        for identity in &contact.identities {
            st.remove(T::Identities, identity.key().as_bytes());
        }
        let event_seqs = st.take_events(&contact.id)?;
        st.remove_contact(&contact.id);
        let seqs: Vec<u8> = event_seqs.iter().flat_map(|s| s.to_be_bytes()).collect();
        st.insert(T::Meta, [ERASING, contact.id.as_bytes()].concat(), seqs);
        st.commit(&*self.tree)?;
        self.tree.flush()?;
        tracing::info!(contact = %contact.id, events = event_seqs.len(), "contact erased");
        Ok(Some(Erased {
            identities: contact.identities,
            event_seqs,
        }))
    }

    /// Redacts in `log` the events of every erased contact whose redaction is not done yet
    /// (after an erasure, and again after a crash or a failed redaction); returns how many
    /// records were rewritten. Blocking.
    pub fn finish_erasures(&self, log: &dyn Log) -> Result<usize, EraseError> {
        let mut redacted = 0;
        for item in self.tree.scan_prefix(&T::Meta.key(ERASING)) {
            let (key, seqs) = item.map_err(EraseError::Store)?;
            let seqs: Vec<u64> = seqs
                .chunks_exact(8)
                .map(|c| u64::from_be_bytes(c.try_into().expect("8 bytes")))
                .collect();
            redacted += log.redact(&seqs)?;
            self.tree.remove(&key).map_err(EraseError::Store)?;
        }
        Ok(redacted)
    }

    /// Every merge and unmerge, oldest first.
    pub fn merges(&self) -> Result<Vec<Merge>, StoreError> {
        self.scan(T::Merges)
            .map(|r| {
                let (k, v) = r?;
                decode_json(&k, &v)
            })
            .collect()
    }

    /// Applies one logged event: resolve (and merge), then traits, counters, event index.
    pub fn apply(&self, seq: u64, event: &StoredEvent) -> Result<Option<String>, StoreError> {
        let mut landed = self.apply_batch(&[(seq, Some(event.clone()))])?;
        Ok(landed.pop().flatten())
    }

    /// Applies a batch of logged events in order (`None`: undecodable, skipped) and advances
    /// `applied_seq` past them, all in one transaction. Returns where each event landed.
    pub fn apply_batch(
        &self,
        events: &[(u64, Option<StoredEvent>)],
    ) -> Result<Vec<Option<String>>, StoreError> {
        let events: Vec<(u64, Option<ProfileEvent>)> = events
            .iter()
            .map(|(seq, e)| (*seq, e.as_ref().map(ProfileEvent::from)))
            .collect();
        self.apply_page(&events)
    }

    /// [`Profiles::apply_batch`] for events as the profile stage reads them from the log.
    pub(crate) fn apply_page(
        &self,
        events: &[(u64, Option<ProfileEvent>)],
    ) -> Result<Vec<Option<String>>, StoreError> {
        let mut warm = self.lock();
        let mut st = Staged::over_warm(&*self.tree, &mut warm);
        let applied = read_applied_seq(&st)?;
        // Erasure suppresses under the writer lock: looked at once for the whole page.
        let suppressing = !self.suppressed.is_empty();
        let mut landed = Vec::with_capacity(events.len());
        let mut feed = Vec::new();
        let mut last = applied;
        for (seq, event) in events {
            if *seq <= applied {
                landed.push(None);
                continue;
            }
            let target = match event {
                Some(event) => self.apply_one(&mut st, *seq, event, suppressing)?,
                None => None,
            };
            if let Some(contact_id) = &target {
                let merged = st
                    .inserts(T::Merges)
                    .filter(|(k, _)| k.starts_with(&seq.to_be_bytes()))
                    .map(|(k, _)| String::from_utf8_lossy(&k[8..]).into_owned())
                    .collect();
                feed.push(Applied {
                    seq: *seq,
                    contact_id: contact_id.clone(),
                    merged,
                });
            }
            landed.push(target);
            last = last.max(*seq);
        }
        if last > applied {
            st.insert(T::Meta, "applied_seq", last.to_be_bytes());
            st.insert(T::Feed, last.to_be_bytes(), encode_json(&feed)?);
        }
        st.commit(&*self.tree)?;
        if last > applied {
            self.applied.send_replace(last);
        }
        Ok(landed)
    }

    /// Changes each time a page of events is applied (its value: the last sequence applied
    /// by this process), so a later stage wakes at once instead of polling.
    pub fn watch_applied(&self) -> tokio::sync::watch::Receiver<u64> {
        self.applied.subscribe()
    }

    /// Contacts in id order after `after` (from the start when `None`), at most `limit`,
    /// leaving out contacts merged into others.
    pub fn contacts_after(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Contact>, StoreError> {
        let from = match after {
            Some(id) => Bound::Excluded(T::Contacts.key(id.as_bytes())),
            None => Bound::Included(T::Contacts.key(&[])),
        };
        let to = T::Contacts.key(&[0xff]);
        let from = match &from {
            Bound::Excluded(k) => Bound::Excluded(k.as_slice()),
            Bound::Included(k) => Bound::Included(k.as_slice()),
            Bound::Unbounded => Bound::Unbounded,
        };
        let mut out = Vec::new();
        for item in self.tree.range(from, Bound::Excluded(&to), false) {
            let (k, v) = item?;
            let (contact, _) = codec::decode_contact(&k, &v)?;
            if contact.merged_into.is_none() {
                out.push(contact);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// How many contacts exist (merged-away ones included): a recompute's estimate.
    pub fn contacts_len(&self) -> usize {
        self.tree.scan_prefix(&[T::Contacts.prefix()]).count()
    }

    /// The change feed: the events applied after `after_seq` (at most about `limit`, whole
    /// pages), in sequence order, each with the contact it landed on and the contacts it
    /// merged into that one. Events that landed on no contact (redacted, about an erased
    /// contact, without identities) are absent. Later stages follow it instead of resolving
    /// identities again.
    pub fn applied_since(&self, after_seq: u64, limit: usize) -> Result<Vec<Applied>, StoreError> {
        Ok(self.feed(after_seq, limit)?.events)
    }

    /// [`Profiles::applied_since`], and the sequence the pages read reach: a reader that
    /// took them all continues after `through` (pages whose events landed nowhere included).
    pub fn feed(&self, after_seq: u64, limit: usize) -> Result<FeedPage, StoreError> {
        let from = T::Feed.key(&after_seq.saturating_add(1).to_be_bytes());
        let to = T::Feed.key(&u64::MAX.to_be_bytes());
        let mut page = FeedPage {
            events: Vec::new(),
            through: after_seq,
        };
        for item in self
            .tree
            .range(Bound::Included(&from), Bound::Included(&to), false)
        {
            let (k, v) = item?;
            let events: Vec<Applied> = decode_json(&k, &v)?;
            page.through = seq_of(&k[1..])?;
            page.events
                .extend(events.into_iter().filter(|a| a.seq > after_seq));
            if page.events.len() >= limit {
                break;
            }
        }
        Ok(page)
    }

    /// Makes `name` a reader of the change feed (once; later calls keep its place): pages stay
    /// until it has acknowledged them. A later stage registers before the host serves.
    pub fn register_feed_reader(&self, name: &str) -> Result<(), StoreError> {
        let key = T::Meta.key(format!("feed_reader:{name}").as_bytes());
        self.tree
            .compare_and_swap(&key, None, Some(&0u64.to_be_bytes()))?;
        Ok(())
    }

    /// Records that the reader `name` (a later stage) has taken everything in the change feed
    /// up to `through_seq`, and drops the pages every registered reader has taken.
    pub fn ack_feed(&self, name: &str, through_seq: u64) -> Result<(), StoreError> {
        let _writer = self.lock();
        let key = T::Meta.key(format!("feed_reader:{name}").as_bytes());
        self.tree.insert(&key, &through_seq.to_be_bytes())?;
        let mut slowest = u64::MAX;
        for item in self.tree.scan_prefix(&T::Meta.key(b"feed_reader:")) {
            let (_, v) = item?;
            slowest = slowest.min(seq_of(&v)?);
        }
        let mut batch = Batch::default();
        let from = T::Feed.key(&[]);
        let to = T::Feed.key(&slowest.to_be_bytes());
        for item in self
            .tree
            .range(Bound::Included(&from), Bound::Included(&to), false)
        {
            let (k, _) = item?;
            batch.remove(k);
        }
        if !batch.is_empty() {
            self.tree.apply(batch)?;
        }
        Ok(())
    }

    fn apply_one(
        &self,
        st: &mut Staged,
        seq: u64,
        event: &ProfileEvent,
        suppressing: bool,
    ) -> Result<Option<String>, StoreError> {
        let identities = event.all_identities();
        // Logged before its contact was erased: not applied, so the contact stays gone.
        if suppressing {
            for identity in &identities {
                if self.suppressed.contains_key(identity.key().as_bytes())? {
                    return Ok(None);
                }
            }
        }
        resolve::apply_event(st, seq, event, identities)
    }
}

fn read_applied_seq(st: &Staged) -> Result<u64, StoreError> {
    Ok(st.get(T::Meta, b"applied_seq")?.map_or(0, |v| {
        u64::from_be_bytes(v.as_slice().try_into().unwrap_or([0; 8]))
    }))
}

fn seq_of(bytes: &[u8]) -> Result<u64, StoreError> {
    let seq: [u8; 8] = bytes
        .try_into()
        .map_err(|e| StoreError::corrupt(bytes, e))?;
    Ok(u64::from_be_bytes(seq))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::store::MemoryEngine;

    fn db() -> MemoryEngine {
        MemoryEngine::new()
    }

    fn track(id: &str, user: &str, name: &str) -> StoredEvent {
        serde_json::from_value(serde_json::json!({
            "message_id": id, "type": "track", "event": name, "user_id": user,
            "timestamp": "2030-01-01T00:00:00Z", "received_at": "2030-01-01T00:00:00Z",
            "source": "source:test",
        }))
        .expect("event")
    }

    fn counter(p: &Profiles, user: &str, name: &str) -> u64 {
        p.find(&Identity::new("user_id", user))
            .expect("find")
            .map_or(0, |c| c.counters.get(name).copied().unwrap_or(0))
    }

    #[test]
    fn the_change_feed_names_each_events_contact_and_merges_until_every_reader_took_it() {
        let db = db();
        let p = Profiles::open(&db).expect("open");
        p.register_feed_reader("a").expect("a");
        p.register_feed_reader("b").expect("b");
        let mut link = track("m3", "ua", "Linked");
        link.anonymous_id = Some("anon-b".into());
        let mut anon = track("m2", "x", "Seen");
        anon.user_id = None;
        anon.anonymous_id = Some("anon-b".into());
        p.apply_batch(&[(1, Some(track("m1", "ua", "Seen"))), (2, Some(anon))])
            .expect("page 1");
        p.apply_batch(&[(3, Some(link)), (4, None)])
            .expect("page 2");
        let feed = p.applied_since(0, 100).expect("feed");
        let a = p
            .find(&Identity::new("user_id", "ua"))
            .expect("a")
            .expect("a")
            .id;
        assert_eq!(
            feed.iter().map(|x| x.seq).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        assert_eq!(feed[0].contact_id, a);
        assert_eq!(feed[2].contact_id, a);
        assert_ne!(
            feed[1].contact_id, a,
            "the anonymous visit was a contact of its own"
        );
        assert_eq!(
            feed[2].merged,
            vec![feed[1].contact_id.clone()],
            "then merged into a"
        );
        assert_eq!(p.applied_since(2, 100).expect("tail").len(), 1);
        // Only when both readers are past a page does it go.
        p.ack_feed("a", 4).expect("ack a");
        assert_eq!(p.applied_since(0, 100).expect("feed").len(), 3);
        p.ack_feed("b", 2).expect("ack b");
        assert_eq!(p.applied_since(0, 100).expect("feed").len(), 1);
        p.register_feed_reader("b").expect("again keeps its place");
        p.ack_feed("b", 4).expect("ack b");
        assert!(p.applied_since(0, 100).expect("feed").is_empty());
    }

    #[test]
    fn an_event_the_host_wrote_about_a_contact_lands_on_it_and_not_on_an_identity() {
        let db = db();
        let p = Profiles::open(&db).expect("open");
        p.apply(1, &track("m1", "ua", "Seen")).expect("a");
        let a = p
            .find(&Identity::new("user_id", "ua"))
            .expect("a")
            .expect("a");
        let mut update: StoredEvent = serde_json::from_value(serde_json::json!({
            "message_id": "journey:j1:r1:s1", "type": "identify",
            "traits": {"tier": "gold"}, "contact_id": a.id,
            "timestamp": "2030-01-02T00:00:00Z", "received_at": "2030-01-02T00:00:00Z",
            "source": "journey:j1",
        }))
        .expect("event");
        assert_eq!(p.apply(2, &update).expect("apply"), Some(a.id.clone()));
        let got = p.get(&a.id).expect("get").expect("there");
        assert_eq!(got.traits["tier"], "gold");
        assert_eq!(got.identities, a.identities);
        update.contact_id = Some("ct_nobody".into());
        assert_eq!(p.apply(3, &update).expect("apply"), None);
    }

    #[test]
    fn a_batch_and_its_applied_seq_commit_together() {
        let db = db();
        let p = Profiles::open(&db).expect("open");
        let batch: Vec<_> = (1..=3)
            .map(|seq| (seq, Some(track(&format!("m{seq}"), "u1", "Seen"))))
            .collect();
        p.apply_batch(&batch).expect("apply");
        assert_eq!(p.applied_seq().expect("seq"), 3);
        assert_eq!(counter(&p, "u1", "Seen"), 3);
        // The same page read again (as after a crash that lost nothing) changes nothing.
        p.apply_batch(&batch).expect("apply again");
        assert_eq!(counter(&p, "u1", "Seen"), 3);
    }

    #[test]
    fn writes_staged_but_not_committed_are_not_there_and_reapply_once() {
        let db = db();
        let p = Profiles::open(&db).expect("open");
        let event = track("m1", "u1", "Seen");
        {
            // A crash before the commit: the work is staged, then lost.
            let mut st = p.view();
            p.apply_one(&mut st, 1, &(&event).into(), true)
                .expect("staged");
            st.insert(T::Meta, "applied_seq", 1u64.to_be_bytes());
        }
        assert_eq!(p.applied_seq().expect("seq"), 0);
        assert_eq!(counter(&p, "u1", "Seen"), 0);
        p.apply_batch(&[(1, Some(event))]).expect("apply");
        assert_eq!(counter(&p, "u1", "Seen"), 1);
        assert_eq!(p.applied_seq().expect("seq"), 1);
    }

    #[test]
    fn a_store_with_a_tree_per_kind_is_moved_into_the_one_tree() {
        let db = db();
        let contact = serde_json::to_vec(&Contact {
            id: "ct_old".into(),
            counters: [("Seen".to_string(), 2)].into(),
            ..Contact::default()
        })
        .expect("json");
        db.open("contacts")
            .and_then(|t| t.insert(b"ct_old", &contact))
            .expect("old contact");
        db.open("identities")
            .and_then(|t| t.insert(b"user_id:u1", b"ct_old"))
            .expect("old identity");
        db.open("profiles_meta")
            .and_then(|t| t.insert(b"applied_seq", &9u64.to_be_bytes()))
            .expect("old seq");
        let p = Profiles::open(&db).expect("open");
        assert_eq!(p.applied_seq().expect("seq"), 9);
        assert_eq!(counter(&p, "u1", "Seen"), 2);
        assert!(
            !db.keyspace_names()
                .unwrap()
                .contains(&"contacts".to_string())
        );
        drop(p);
        let p = Profiles::open(&db).expect("reopen");
        assert_eq!(counter(&p, "u1", "Seen"), 2, "opened again, nothing lost");
    }

    #[test]
    fn a_store_written_by_the_previous_version_reads_and_keeps_its_event_index() {
        let db = db();
        let p = Profiles::open(&db).expect("open");
        // As the previous version wrote them: JSON contacts, one index key per event.
        let old = |id: &str, user: &str, seqs: &[u64]| {
            let contact = Contact {
                id: id.into(),
                identities: vec![Identity::new("user_id", user)],
                counters: [("Seen".to_string(), seqs.len() as u64)].into(),
                created_seq: seqs[0],
                last_seq: seqs[seqs.len() - 1],
                ..Contact::default()
            };
            let json = serde_json::to_vec(&contact).expect("json");
            p.tree
                .insert(&T::Contacts.key(id.as_bytes()), &json)
                .expect("c");
            p.tree
                .insert(
                    &T::Identities.key(format!("user_id:{user}").as_bytes()),
                    id.as_bytes(),
                )
                .expect("i");
            for seq in seqs {
                let key = [id.as_bytes(), b"\0", &seq.to_be_bytes()].concat();
                p.tree.insert(&T::ContactEvents.key(&key), &[]).expect("e");
            }
        };
        old("ct_a", "ua", &[1, 3]);
        old("ct_b", "ub", &[2]);
        p.tree
            .insert(&T::Meta.key(b"applied_seq"), &3u64.to_be_bytes())
            .expect("seq");
        assert_eq!(counter(&p, "ua", "Seen"), 2);
        assert_eq!(p.event_seqs("ct_a", 0, 10).expect("seqs"), vec![1, 3]);
        // New events land beside the old index; enough of them fill chunks.
        let page: Vec<_> = (4..=80)
            .map(|seq| (seq, Some(track(&format!("m{seq}"), "ua", "Seen"))))
            .collect();
        p.apply_batch(&page).expect("page");
        let mut want: Vec<u64> = vec![1, 3];
        want.extend(4..=80);
        assert_eq!(p.event_seqs("ct_a", 0, 1_000).expect("seqs"), want);
        assert_eq!(p.event_seqs("ct_a", 3, 2).expect("after"), vec![4, 5]);
        assert_eq!(counter(&p, "ua", "Seen"), 79);
        // A link merges b (created later) into a: its old key moves with it.
        let mut link = track("m81", "ua", "Linked");
        link.identities = vec![Identity::new("user_id", "ub")];
        p.apply_batch(&[(81, Some(link))]).expect("link");
        want.push(2);
        want.push(81);
        want.sort_unstable();
        assert_eq!(p.event_seqs("ct_a", 0, 1_000).expect("seqs"), want);
        assert!(p.event_seqs("ct_b", 0, 10).expect("seqs").is_empty());
        // Reopened (no contact kept decoded), then erased: every event is found.
        let p = Profiles::open(&db).expect("reopen");
        assert_eq!(p.event_seqs("ct_a", 0, 1_000).expect("seqs"), want);
        let erased = p.erase("ct_a").expect("erase").expect("there");
        assert_eq!(erased.event_seqs, want);
        assert!(p.get("ct_a").expect("get").is_none());
        assert!(
            p.tree
                .scan_prefix(&[T::ContactEvents.prefix()])
                .next()
                .is_none()
        );
    }

    #[test]
    fn an_undecodable_record_still_advances_applied_seq() {
        let db = db();
        let p = Profiles::open(&db).expect("open");
        p.apply_batch(&[(1, None), (2, Some(track("m2", "u2", "X")))])
            .expect("apply");
        assert_eq!(p.applied_seq().expect("seq"), 2);
        assert_eq!(counter(&p, "u2", "X"), 1);
    }

    #[test]
    fn a_kept_apart_pair_is_not_merged_by_a_linking_event() {
        let db = db();
        let p = Profiles::open(&db).expect("open");
        let a = p
            .apply(1, &track("m1", "ua", "A"))
            .expect("a")
            .expect("landed");
        let mut b_event = track("m2", "ub", "B");
        b_event.identities = vec![Identity::new("email", "b@example.com")];
        let b = p.apply(2, &b_event).expect("b").expect("landed");
        p.tree
            .insert(&T::Unmerged.key(&resolve::pair_key(&a, &b)), &[])
            .expect("pair");
        let mut link = track("m3", "ua", "Link");
        link.identities = vec![Identity::new("email", "b@example.com")];
        assert_eq!(p.apply(3, &link).expect("link"), Some(a.clone()));
        let found = p
            .find(&Identity::new("email", "b@example.com"))
            .expect("find")
            .expect("b");
        assert_eq!(found.id, b, "the identity stays with its contact");
        assert!(p.merges().expect("merges").is_empty());
    }
}
