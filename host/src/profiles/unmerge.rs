//! Unmerge: undo a merge by replaying the surviving contact's events from the log into a
//! scratch profile store where the pair may not merge, then writing the rebuilt contacts
//! back, with the pair recorded in `unmerged` (so later events and replays keep them apart)
//! and an `unmerge` record in the merge log.

use std::collections::HashMap;

use crate::clock::now_ms;
use crate::ingest::Identity;
use crate::store::{Log, LogError, StoreError, decode_json, encode_json};

use super::event::ProfileEvent;
use super::resolve::{self, pair_key};
use super::staged::{Staged, T};
use super::{Contact, Merge, MergeAction, Profiles};

/// Why an unmerge was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum UnmergeError {
    /// No such contact.
    #[error("no contact `{0}`")]
    UnknownContact(String),
    /// The contact has no (matching) merge left to undo.
    #[error("{0}")]
    NothingToUndo(String),
    /// The profile store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A contact the unmerge rebuilt was not there afterwards.
    #[error("contact `{0}` lost in unmerge")]
    Lost(String),
    /// The event log could not be read.
    #[error("event log: {0}")]
    Log(#[from] LogError),
}

/// The two contacts an unmerge leaves.
#[derive(Debug, Clone)]
pub struct Unmerge {
    /// The contact that had absorbed the other, recomputed.
    pub survivor: Contact,
    /// The contact restored as its own.
    pub restored: Contact,
}

impl Profiles {
    /// Undoes the merge of `merged` (default: the latest merge not yet undone) into contact
    /// `id`, rebuilding both from the events in `log`.
    pub fn unmerge(
        &self,
        id: &str,
        merged: Option<&str>,
        log: &dyn Log,
    ) -> Result<Unmerge, UnmergeError> {
        let mut writer = self.lock();
        writer.clear();
        let mut live = self.view();
        let root = resolve::get_root(&mut live, id)?
            .ok_or_else(|| UnmergeError::UnknownContact(id.into()))?;
        let undone = self.merge_to_undo(&live, &root.id, merged)?;
        let mut scratch = self.scratch_with_pairs(&live)?;
        scratch.insert(T::Unmerged, pair_key(&undone.survivor, &undone.merged), []);
        replay(&mut live, &mut scratch, &root.id, log)?;
        let mut out = self.view();
        write_back(&mut out, &mut scratch, &root.id)?;
        out.insert(T::Unmerged, pair_key(&undone.survivor, &undone.merged), []);
        let record = Merge {
            action: MergeAction::Unmerge,
            at_ms: Some(now_ms()),
            ..undone.clone()
        };
        let key = [
            read_applied(&live)?.to_be_bytes().as_slice(),
            b"~unmerge:",
            undone.merged.as_bytes(),
        ]
        .concat();
        out.insert(T::Merges, key, encode_json(&record)?);
        out.commit(&*self.tree)?;
        tracing::info!(survivor = %undone.survivor, restored = %undone.merged, "contacts unmerged");
        let fetch = |id: &str| -> Result<Contact, UnmergeError> {
            resolve::get_root(&mut self.view(), id)?
                .ok_or_else(|| UnmergeError::Lost(id.to_string()))
        };
        Ok(Unmerge {
            survivor: fetch(&undone.survivor)?,
            restored: fetch(&undone.merged)?,
        })
    }

    /// The latest merge into `survivor` (of `merged`, if given) that is not undone yet.
    fn merge_to_undo(
        &self,
        live: &Staged,
        survivor: &str,
        merged: Option<&str>,
    ) -> Result<Merge, UnmergeError> {
        let mut latest = None;
        for item in self.scan(T::Merges) {
            let (k, v) = item?;
            let m: Merge = decode_json(&k, &v)?;
            let wanted = m.action == MergeAction::Merge
                && m.survivor == survivor
                && merged.is_none_or(|x| x == m.merged);
            if wanted
                && live
                    .get(T::Unmerged, &pair_key(&m.survivor, &m.merged))?
                    .is_none()
            {
                latest = Some(m);
            }
        }
        latest.ok_or_else(|| {
            UnmergeError::NothingToUndo(match merged {
                Some(m) => format!("contact `{survivor}` has no merge of `{m}` to undo"),
                None => format!("contact `{survivor}` has no merge to undo"),
            })
        })
    }

    /// A scratch store that knows every pair kept apart.
    fn scratch_with_pairs(&self, live: &Staged) -> Result<Staged<'static>, StoreError> {
        let mut scratch = Staged::scratch();
        for k in live.keys_with_prefix(T::Unmerged, b"")? {
            scratch.insert(T::Unmerged, k, []);
        }
        Ok(scratch)
    }
}

fn read_applied(live: &Staged) -> Result<u64, StoreError> {
    super::read_applied_seq(live)
}

/// Replays every event indexed under `root`, in order, into `scratch`. Identities that now
/// belong to another contact are left out, as they were when the event was applied.
fn replay(
    live: &mut Staged,
    scratch: &mut Staged,
    root: &str,
    log: &dyn Log,
) -> Result<(), UnmergeError> {
    let mut owners: HashMap<String, bool> = HashMap::new();
    for seq in live.event_seqs(root)? {
        let Some((_, bytes)) = log.read(seq, 1)?.into_iter().find(|(s, _)| *s == seq) else {
            continue;
        };
        let event = match ProfileEvent::decode(&bytes) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(seq, "undecodable event in the log, skipped in unmerge: {e}");
                continue;
            }
        };
        let mut identities = Vec::new();
        for identity in event.all_identities() {
            if is_ours(&mut *live, root, &identity, &mut owners)? {
                identities.push(identity);
            }
        }
        resolve::apply_event(scratch, seq, &event, identities)?;
    }
    Ok(())
}

fn is_ours(
    live: &mut Staged,
    root: &str,
    identity: &Identity,
    cache: &mut HashMap<String, bool>,
) -> Result<bool, StoreError> {
    let key = identity.key();
    if let Some(ours) = cache.get(&key) {
        return Ok(*ours);
    }
    let ours = resolve::owner_id(live, identity)?.is_none_or(|id| id == root);
    cache.insert(key, ours);
    Ok(ours)
}

/// Stages the rebuilt contacts, their identities and event index over the live ones.
fn write_back(out: &mut Staged, scratch: &mut Staged, root: &str) -> Result<(), StoreError> {
    scratch.settle();
    let prefix = [root.as_bytes(), b"\0"].concat();
    for k in out.keys_with_prefix(T::ContactEvents, &prefix)? {
        out.remove(T::ContactEvents, k);
    }
    for t in [T::Contacts, T::Identities, T::ContactEvents] {
        for (k, v) in scratch.inserts(t) {
            out.insert(t, k.clone(), v.clone());
        }
    }
    Ok(())
}
