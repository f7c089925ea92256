//! What the segment stage reads about a contact, read once per step and shared by every
//! segment that asks about it: the profile, its memberships, and its kept events in the
//! longest window any rule reads.

use std::collections::{BTreeSet, HashMap, VecDeque};

use crate::profiles::{Contact as Profile, Profiles};
use crate::runtime::types::{Contact, EventCount, PastEvent, RuleNeeds};
use crate::store::StoreError;

use super::store::{KeptAt, SegmentStore};

/// Kept events read per contact into a view; a contact with more in the longest window is
/// read per segment instead (rare: a rule hands at most the newest
/// [`super::stage::MAX_PAST_EVENTS`] anyway).
const SHARED_EVENTS: usize = 20_000;

/// One contact as the stage saw it at the start of the step.
pub(crate) struct View {
    /// None: erased.
    pub profile: Option<Profile>,
    /// The segments it is in.
    pub segments: BTreeSet<String>,
    /// The profile as rules see it (built once, whatever the number of rules asking).
    pub contact: Contact,
    /// Its counters as rules see them.
    pub counts: Vec<EventCount>,
    /// Kept events after the longest window's start, oldest first, and whether older
    /// ones of that span were left out; read when a rule first needs the whole window.
    kept: Option<(VecDeque<KeptAt>, bool)>,
}

/// The past events handed to one rule for a contact.
#[derive(Default)]
pub(crate) struct Window {
    /// In the rule's window, oldest first: the newest `max`.
    pub events: Vec<KeptAt>,
    /// Stamped after now, oldest first: handed once they come due.
    pub future: Vec<KeptAt>,
}

/// Views of the contacts one step touches.
pub(crate) struct Views {
    /// Kept events after this time are read (now minus the longest window).
    since_ms: i64,
    views: HashMap<String, View>,
}

impl Views {
    /// Views for a step at `now_ms` whose longest rule window is `max_window_ms`.
    pub fn new(now_ms: i64, max_window_ms: Option<i64>) -> Self {
        Self {
            since_ms: now_ms.saturating_sub(max_window_ms.unwrap_or(0)),
            views: HashMap::new(),
        }
    }

    /// The view of `contact`, read on first use.
    pub fn get(
        &mut self,
        store: &SegmentStore,
        profiles: &Profiles,
        contact: &str,
    ) -> Result<&View, StoreError> {
        if !self.views.contains_key(contact) {
            let profile = profiles.get(contact)?;
            let view = View {
                contact: profile.as_ref().map_or_else(
                    || Contact {
                        id: contact.to_owned(),
                        identities: Vec::new(),
                        traits: "{}".into(),
                    },
                    super::rules::contact,
                ),
                counts: profile
                    .as_ref()
                    .map(super::rules::counts)
                    .unwrap_or_default(),
                profile,
                segments: store.segments_of(contact)?.into_iter().collect(),
                kept: None,
            };
            self.views.insert(contact.to_owned(), view);
        }
        Ok(&self.views[contact])
    }

    /// The whole window `needs` asks for at `now_ms`, from the contact's kept events.
    pub fn whole_window(
        &mut self,
        store: &SegmentStore,
        profiles: &Profiles,
        contact: &str,
        needs: &RuleNeeds,
        now_ms: i64,
        max: usize,
    ) -> Result<Window, StoreError> {
        let Some(window) = needs.window_ms else {
            return Ok(Window::default());
        };
        let since = now_ms.saturating_sub(window.min(i64::MAX as u64) as i64);
        let since_all = self.since_ms;
        self.get(store, profiles, contact)?;
        let view = self.views.get_mut(contact).expect("just read");
        let (kept, truncated) = match &mut view.kept {
            Some(read) => &*read,
            slot @ None => slot.insert(store.kept_since(contact, since_all, SHARED_EVENTS)?),
        };
        if *truncated {
            // More than a view holds: this rule's own span, read again.
            let own = store.kept_since(contact, since, SHARED_EVENTS)?.0;
            return Ok(select(own.iter(), needs, since, now_ms, max));
        }
        Ok(select(kept.iter(), needs, since, now_ms, max))
    }
}

/// The events a rule kept and the ones that arrived since, as the window `needs` asks for at
/// `now_ms` (duplicates, from a step done again after a crash, once).
pub(crate) fn kept_window(
    retained: Vec<KeptAt>,
    fresh: &[KeptAt],
    needs: &RuleNeeds,
    now_ms: i64,
    max: usize,
) -> Window {
    let Some(window) = needs.window_ms else {
        return Window::default();
    };
    let since = now_ms.saturating_sub(window.min(i64::MAX as u64) as i64);
    let mut all = retained;
    all.extend(fresh.iter().cloned());
    all.sort_by_key(|k| (k.at_ms, k.seq));
    all.dedup_by_key(|k| (k.at_ms, k.seq));
    select(all.iter(), needs, since, now_ms, max)
}

/// Of `kept` (oldest first), the events `needs` names with event time in `(since, now]`,
/// the newest `max` of them, and those stamped after `now`.
fn select<'a>(
    kept: impl DoubleEndedIterator<Item = &'a KeptAt> + Clone,
    needs: &RuleNeeds,
    since: i64,
    now_ms: i64,
    max: usize,
) -> Window {
    let any = needs.events.iter().any(|n| n == "*");
    let wanted = |k: &KeptAt| {
        any || k
            .kept
            .name
            .as_ref()
            .is_some_and(|n| needs.events.iter().any(|x| x == n))
    };
    let future = kept
        .clone()
        .filter(|k| k.at_ms > now_ms && wanted(k))
        .cloned()
        .collect();
    let mut events: Vec<KeptAt> = kept
        .rev()
        .filter(|k| k.at_ms > since && k.at_ms <= now_ms && wanted(k))
        .take(max)
        .cloned()
        .collect();
    events.reverse();
    Window { events, future }
}

impl KeptAt {
    /// As a rule sees it.
    pub fn past_event(&self) -> PastEvent {
        PastEvent {
            kind: self.kept.kind,
            name: self.kept.name.clone(),
            timestamp_ms: self.at_ms,
            properties: self.kept.properties.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::types::EventKind;
    use crate::segments::store::Kept;

    fn at(at_ms: i64, seq: u64, name: &str) -> KeptAt {
        KeptAt {
            at_ms,
            seq,
            kept: Kept {
                kind: EventKind::Track,
                name: Some(name.into()),
                properties: "{}".into(),
            },
        }
    }

    fn needs(window_ms: u64) -> RuleNeeds {
        RuleNeeds {
            events: vec!["Order".into()],
            traits: vec![],
            window_ms: Some(window_ms),
        }
    }

    #[test]
    fn kept_and_fresh_events_make_one_window_in_time_order() {
        let retained = vec![at(10, 1, "Order"), at(50, 4, "Order"), at(500, 9, "Order")];
        // A page redone after a crash hands seq 4 again; seq 7 is an import stamped
        // earlier than what was kept; seq 8 is another name.
        let fresh = [at(50, 4, "Order"), at(30, 7, "Order"), at(60, 8, "Login")];
        let w = kept_window(retained, &fresh, &needs(95), 100, 10);
        let seqs: Vec<u64> = w.events.iter().map(|k| k.seq).collect();
        // The window is (5, 100]; seq 9 is stamped after now.
        assert_eq!(seqs, vec![1, 7, 4]);
        assert_eq!(w.future.iter().map(|k| k.seq).collect::<Vec<_>>(), vec![9]);
        let narrow = kept_window(w.events.clone(), &[], &needs(60), 100, 10);
        assert_eq!(
            narrow.events.iter().map(|k| k.seq).collect::<Vec<_>>(),
            vec![4]
        );
        let newest = kept_window(w.events, &[], &needs(95), 100, 2);
        assert_eq!(
            newest.events.iter().map(|k| k.seq).collect::<Vec<_>>(),
            vec![7, 4]
        );
    }
}
