//! What the segment stage reads about a contact, read once per step and shared by every
//! segment that asks about it: the profile, its memberships, and its kept events in the
//! longest window any rule reads.

use std::collections::{BTreeSet, HashMap, VecDeque};

use crate::profiles::{Contact as Profile, Profiles};
use crate::runtime::types::{PastEvent, RuleNeeds};
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
    /// Kept events after the longest window's start, oldest first.
    kept: VecDeque<KeptAt>,
    /// `kept` lacks older events of that span.
    truncated: bool,
}

/// The past events of one rule's window and when the next future-stamped one comes due.
pub(crate) struct Window {
    pub events: Vec<PastEvent>,
    pub arrives: Option<i64>,
}

/// Views of the contacts one step touches.
pub(crate) struct Views {
    /// Kept events after this time are read (now minus the longest window).
    since_ms: i64,
    windowed: bool,
    views: HashMap<String, View>,
}

impl Views {
    /// Views for a step at `now_ms` whose longest rule window is `max_window_ms` (none: no
    /// rule reads past events).
    pub fn new(now_ms: i64, max_window_ms: Option<i64>) -> Self {
        Self {
            since_ms: max_window_ms.map_or(now_ms, |w| now_ms.saturating_sub(w)),
            windowed: max_window_ms.is_some(),
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
            let (kept, truncated) = if self.windowed {
                store.kept_since(contact, self.since_ms, SHARED_EVENTS)?
            } else {
                (VecDeque::new(), false)
            };
            let view = View {
                profile: profiles.get(contact)?,
                segments: store.segments_of(contact)?.into_iter().collect(),
                kept,
                truncated,
            };
            self.views.insert(contact.to_owned(), view);
        }
        Ok(&self.views[contact])
    }
}

impl View {
    /// The events `needs` asks for with event time in `(now - window, now]`, the newest
    /// `max` of them oldest first, and the first such one stamped after `now`.
    pub fn window(
        &self,
        store: &SegmentStore,
        contact: &str,
        needs: &RuleNeeds,
        now_ms: i64,
        max: usize,
    ) -> Result<Window, StoreError> {
        let Some(window) = needs.window_ms else {
            return Ok(Window {
                events: Vec::new(),
                arrives: None,
            });
        };
        let since = now_ms.saturating_sub(window.min(i64::MAX as u64) as i64);
        let any = needs.events.iter().any(|n| n == "*");
        let wanted = |k: &KeptAt| {
            any || k
                .kept
                .name
                .as_ref()
                .is_some_and(|n| needs.events.iter().any(|x| x == n))
        };
        let owned;
        let kept = if self.truncated {
            // More than a view holds: this rule's own span, read again.
            owned = store.kept_since(contact, since, SHARED_EVENTS)?.0;
            &owned
        } else {
            &self.kept
        };
        let arrives = kept
            .iter()
            .find(|k| k.at_ms > now_ms && wanted(k))
            .map(|k| k.at_ms);
        let mut events: Vec<PastEvent> = kept
            .iter()
            .rev()
            .filter(|k| k.at_ms > since && k.at_ms <= now_ms && wanted(k))
            .take(max)
            .map(|k| PastEvent {
                kind: k.kept.kind,
                name: k.kept.name.clone(),
                timestamp_ms: k.at_ms,
                properties: k.kept.properties.clone(),
            })
            .collect();
        events.reverse();
        Ok(Window { events, arrives })
    }
}
