//! Applying one event to a write set: identity resolution, merges (unless the pair was
//! unmerged), traits, counters and the per-contact event index. The live applier and the
//! unmerge replay share it.

use std::collections::BTreeSet;

use crate::ingest::{EventType, Identity, StoredEvent};
use crate::store::{StoreError, decode_json, encode_json};

use super::staged::{Staged, T};
use super::{Contact, Merge, MergeAction};

fn contact_id_for(identity: &Identity) -> String {
    let digest = crate::plugins::sha256_hex(identity.key().as_bytes());
    format!("ct_{}", &digest[..20])
}

/// Key of an unordered pair of contacts in the `unmerged` tree.
pub(crate) fn pair_key(a: &str, b: &str) -> Vec<u8> {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    [lo.as_bytes(), b"\0", hi.as_bytes()].concat()
}

/// Key of an event in the per-contact event index.
pub(crate) fn event_key(contact: &str, seq: u64) -> Vec<u8> {
    [contact.as_bytes(), b"\0", &seq.to_be_bytes()].concat()
}

/// A contact exactly as stored (merged-away contacts included).
pub(crate) fn get_raw(st: &Staged, id: &str) -> Result<Option<Contact>, StoreError> {
    match st.get(T::Contacts, id.as_bytes())? {
        Some(v) => decode_json(id.as_bytes(), &v).map(Some),
        None => Ok(None),
    }
}

/// A contact, following merges to the surviving contact.
pub(crate) fn get_root(st: &Staged, id: &str) -> Result<Option<Contact>, StoreError> {
    let mut current = get_raw(st, id)?;
    for _ in 0..64 {
        match current {
            Some(Contact {
                merged_into: Some(next),
                ..
            }) => current = get_raw(st, &next)?,
            other => return Ok(other),
        }
    }
    Ok(current)
}

/// The surviving contact an identity resolves to.
pub(crate) fn owner(st: &Staged, identity: &Identity) -> Result<Option<Contact>, StoreError> {
    match st.get(T::Identities, identity.key().as_bytes())? {
        Some(id) => get_root(st, &String::from_utf8_lossy(&id)),
        None => Ok(None),
    }
}

fn put(st: &mut Staged, contact: &Contact) -> Result<(), StoreError> {
    let json = encode_json(contact)?;
    st.insert(T::Contacts, contact.id.as_bytes(), json);
    Ok(())
}

/// Applies one event carrying `identities`; returns the contact it landed on.
pub(crate) fn apply_event(
    st: &mut Staged,
    seq: u64,
    event: &StoredEvent,
    identities: Vec<Identity>,
) -> Result<Option<String>, StoreError> {
    if let Some(id) = &event.contact_id {
        // Written by the host about a known contact: no identities to resolve.
        let Some(mut contact) = get_root(st, id)? else {
            return Ok(None);
        };
        apply_traits(&mut contact, event);
        return record(st, contact, seq, event).map(Some);
    }
    let Some(first) = identities.first() else {
        return Ok(None);
    };
    let mut found: BTreeSet<String> = BTreeSet::new();
    for identity in &identities {
        if let Some(c) = owner(st, identity)? {
            found.insert(c.id);
        }
    }
    let mut contacts: Vec<Contact> = found
        .iter()
        .filter_map(|id| get_raw(st, id).transpose())
        .collect::<Result<_, _>>()?;
    contacts.sort_by_key(|c| (c.created_seq, c.id.clone()));
    let mut survivor = if contacts.is_empty() {
        // A contact with that id may exist from an identity since moved away; start anew.
        Contact {
            id: contact_id_for(first),
            created_seq: seq,
            ..Contact::default()
        }
    } else {
        contacts.remove(0)
    };
    let mut kept_apart = BTreeSet::new();
    for mut other in contacts {
        if st
            .get(T::Unmerged, &pair_key(&survivor.id, &other.id))?
            .is_some()
        {
            kept_apart.insert(other.id);
            continue;
        }
        merge_into(st, &mut survivor, &mut other, seq, &event.message_id)?;
    }
    attach_identities(st, &mut survivor, identities, &kept_apart)?;
    apply_traits(&mut survivor, event);
    record(st, survivor, seq, event).map(Some)
}

/// Counts the event on the contact, indexes it under the contact and stores the contact.
fn record(
    st: &mut Staged,
    mut contact: Contact,
    seq: u64,
    event: &StoredEvent,
) -> Result<String, StoreError> {
    if let (EventType::Track, Some(name)) = (event.kind, &event.event) {
        *contact.counters.entry(name.clone()).or_default() += 1;
    }
    contact.last_seq = seq;
    put(st, &contact)?;
    st.insert(T::ContactEvents, event_key(&contact.id, seq), []);
    Ok(contact.id)
}

/// Gives the survivor the event's identities, except those of contacts kept apart from it.
fn attach_identities(
    st: &mut Staged,
    survivor: &mut Contact,
    identities: Vec<Identity>,
    kept_apart: &BTreeSet<String>,
) -> Result<(), StoreError> {
    for identity in identities {
        if survivor.identities.contains(&identity) {
            continue;
        }
        if !kept_apart.is_empty()
            && owner(st, &identity)?.is_some_and(|c| kept_apart.contains(&c.id))
        {
            continue;
        }
        st.insert(
            T::Identities,
            identity.key().as_bytes(),
            survivor.id.as_bytes(),
        );
        survivor.identities.push(identity);
    }
    Ok(())
}

fn apply_traits(survivor: &mut Contact, event: &StoredEvent) {
    let traits = match event.kind {
        EventType::Identify => event.traits.as_object(),
        EventType::Group => None,
        _ => event.traits.as_object().filter(|t| !t.is_empty()),
    };
    let Some(traits) = traits else { return };
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

fn merge_into(
    st: &mut Staged,
    survivor: &mut Contact,
    other: &mut Contact,
    seq: u64,
    message_id: &str,
) -> Result<(), StoreError> {
    for identity in other.identities.drain(..) {
        st.insert(
            T::Identities,
            identity.key().as_bytes(),
            survivor.id.as_bytes(),
        );
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
    for k in st.keys_with_prefix(T::ContactEvents, &prefix)? {
        let moved = [survivor.id.as_bytes(), b"\0", &k[prefix.len()..]].concat();
        st.insert(T::ContactEvents, moved, []);
        st.remove(T::ContactEvents, k);
    }
    other.merged_into = Some(survivor.id.clone());
    put(st, other)?;
    let merge = Merge {
        action: MergeAction::Merge,
        survivor: survivor.id.clone(),
        merged: other.id.clone(),
        event_seq: seq,
        message_id: message_id.into(),
        at_ms: None,
    };
    let key = [seq.to_be_bytes().as_slice(), other.id.as_bytes()].concat();
    st.insert(T::Merges, key, encode_json(&merge)?);
    tracing::info!(survivor = %survivor.id, merged = %other.id, seq, "contacts merged");
    Ok(())
}
