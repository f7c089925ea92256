//! Applying one event to a write set: identity resolution, merges (unless the pair was
//! unmerged), traits, counters and the per-contact event index. The live applier and the
//! unmerge replay share it.

use std::collections::BTreeSet;

use crate::ingest::event::parse_time;
use crate::ingest::{EventType, Identity};
use crate::store::{StoreError, encode_json};

use super::event::ProfileEvent;
use super::staged::{Found, Staged, T};
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

/// The id of the surviving contact that `id` was merged into (`id` itself when it was not);
/// `None` when there is no such contact.
pub(crate) fn root_id(st: &mut Staged, id: &str) -> Result<Option<String>, StoreError> {
    let mut id = id.to_string();
    for _ in 0..64 {
        let next = match st.contact(&id)? {
            Found::None => return Ok(None),
            Found::Taken => return Ok(Some(id)),
            Found::Contact(c) => match &c.merged_into {
                Some(next) => next.clone(),
                None => return Ok(Some(id)),
            },
        };
        id = next;
    }
    Ok(Some(id))
}

/// A contact, following merges to the surviving contact (taken out of `st`).
pub(crate) fn get_root(st: &mut Staged, id: &str) -> Result<Option<Contact>, StoreError> {
    match root_id(st, id)? {
        Some(root) => st.take_contact(&root),
        None => Ok(None),
    }
}

/// The id of the surviving contact an identity resolves to.
pub(crate) fn owner_id(st: &mut Staged, identity: &Identity) -> Result<Option<String>, StoreError> {
    match st.get(T::Identities, identity.key().as_bytes())? {
        Some(id) => root_id(st, &String::from_utf8_lossy(&id)),
        None => Ok(None),
    }
}

/// The surviving contact an identity resolves to (taken out of `st`).
pub(crate) fn owner(st: &mut Staged, identity: &Identity) -> Result<Option<Contact>, StoreError> {
    match owner_id(st, identity)? {
        Some(root) => st.take_contact(&root),
        None => Ok(None),
    }
}

/// Applies one event carrying `identities`; returns the contact it landed on.
pub(crate) fn apply_event(
    st: &mut Staged,
    seq: u64,
    event: &ProfileEvent,
    identities: Vec<Identity>,
) -> Result<Option<String>, StoreError> {
    if let Some(id) = &event.contact_id {
        // Written by the host about a known contact: no identities to resolve.
        let Some(mut contact) = get_root(&mut *st, id)? else {
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
        if let Some(id) = owner_id(st, identity)? {
            found.insert(id);
        }
    }
    let mut contacts: Vec<Contact> = Vec::with_capacity(found.len());
    for id in &found {
        contacts.extend(st.take_contact(id)?);
    }
    contacts.sort_by(|a, b| (a.created_seq, &a.id).cmp(&(b.created_seq, &b.id)));
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
    for other in contacts {
        if st
            .get(T::Unmerged, &pair_key(&survivor.id, &other.id))?
            .is_some()
        {
            kept_apart.insert(other.id.clone());
            st.give_back(other);
            continue;
        }
        merge_into(st, &mut survivor, other, seq, &event.message_id)?;
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
    event: &ProfileEvent,
) -> Result<String, StoreError> {
    if let (EventType::Track, Some(name)) = (event.kind, &event.event) {
        *contact.counters.entry(name.clone()).or_default() += 1;
    }
    contact.last_seq = seq;
    let id = contact.id.clone();
    st.index_event(&id, seq)?;
    st.put_contact(contact);
    Ok(id)
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
            && owner_id(st, &identity)?.is_some_and(|id| kept_apart.contains(&id))
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

fn apply_traits(survivor: &mut Contact, event: &ProfileEvent) {
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
            .is_none_or(|t| not_after(t, &event.timestamp));
        if newer {
            survivor.traits.insert(k.clone(), v.clone());
            survivor
                .trait_times
                .insert(k.clone(), event.timestamp.clone());
        }
    }
}

/// Whether the time `stored` is at or before `at`, both RFC 3339: by instant, not by text.
/// Fraction digits vary (`…:00.5Z` is 500 ms, `…:00.52Z` 520 ms, and sorts after it as text)
/// and clients send offsets, so text order is only used when both have the same shape in
/// UTC, or when one does not parse (an empty time: none recorded).
fn not_after(stored: &str, at: &str) -> bool {
    if stored.len() == at.len() && stored.ends_with('Z') && at.ends_with('Z') {
        return stored <= at;
    }
    match (parse_time(stored), parse_time(at)) {
        (Some(stored), Some(at)) => stored <= at,
        _ => stored <= at,
    }
}

fn merge_into(
    st: &mut Staged,
    survivor: &mut Contact,
    mut other: Contact,
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
        if survivor
            .trait_times
            .get(&k)
            .is_none_or(|t| not_after(t, &at))
        {
            survivor.traits.insert(k.clone(), v);
            survivor.trait_times.insert(k, at);
        }
    }
    for (name, n) in std::mem::take(&mut other.counters) {
        *survivor.counters.entry(name).or_default() += n;
    }
    st.move_events(&other.id, &survivor.id)?;
    other.merged_into = Some(survivor.id.clone());
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
    st.put_contact(other);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::not_after;

    #[test]
    fn trait_times_compare_by_instant_not_text() {
        // The same second, fraction digits trimmed: 500 ms is before 520 ms and 501 ms.
        assert!(not_after(
            "2026-12-02T10:00:00.5Z",
            "2026-12-02T10:00:00.52Z"
        ));
        assert!(not_after(
            "2026-12-02T10:00:00Z",
            "2026-12-02T10:00:00.001Z"
        ));
        assert!(!not_after(
            "2026-12-02T10:00:00.52Z",
            "2026-12-02T10:00:00.5Z"
        ));
        assert!(not_after(
            "2026-12-02T10:00:00.5Z",
            "2026-12-02T10:00:00.5Z"
        ));
        // Offsets: 11:00+02:00 is 09:00Z.
        assert!(not_after(
            "2026-12-02T11:00:00+02:00",
            "2026-12-02T09:30:00Z"
        ));
        assert!(!not_after(
            "2026-12-02T10:00:00Z",
            "2026-12-02T11:00:00+02:00"
        ));
        // No time recorded yet.
        assert!(not_after("", "2026-12-02T10:00:00Z"));
    }
}
