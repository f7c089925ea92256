//! What the segment stage asks of rule plugins (describe a segment's needs, evaluate a batch)
//! and how it builds their input from what the profile stage wrote.

use std::sync::Arc;

use crate::ingest::{EventType, StoredEvent};
use crate::plugins::{PluginError, PluginRegistry};
use crate::profiles::Contact as Profile;
use crate::runtime::PluginKind;
use crate::runtime::types::{
    Contact, ContactRef, Decision, Event, EventCount, EventKind, Identity, RuleNeeds,
};

/// A rule plugin's live version, as membership events name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleVersion {
    /// The version string of its manifest.
    pub version: String,
    /// sha256 of its component.
    pub sha256: String,
}

/// Why a rule could not answer.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    /// The plugin call failed (not live, a trap, a deadline, ...).
    #[error(transparent)]
    Plugin(#[from] PluginError),
    /// The rule answered an error (for `describe`: the params are invalid).
    #[error("{0}")]
    Refused(String),
    /// The plugin is not a segment rule.
    #[error("plugin `{0}` is a {1:?}, not a segment rule")]
    NotARule(String, PluginKind),
}

/// The segment stage's way to its rule plugins.
#[derive(Clone)]
pub struct Rules {
    registry: Arc<PluginRegistry>,
}

impl Rules {
    /// Rules served by `registry`'s slots.
    pub fn new(registry: Arc<PluginRegistry>) -> Self {
        Self { registry }
    }

    /// The live version of rule plugin `id`, if it has one.
    pub fn live(&self, id: &str) -> Result<Option<RuleVersion>, RuleError> {
        let slot = self.registry.slot(id)?;
        if slot.kind() != PluginKind::SegmentRule {
            return Err(RuleError::NotARule(id.into(), slot.kind()));
        }
        Ok(slot.live().map(|p| RuleVersion {
            version: p.spec().version.clone(),
            sha256: p.spec().sha256.clone(),
        }))
    }

    /// Checks `params` with the rule and returns what it depends on: a 0.2 rule says so
    /// itself (`describe`); a 0.1 rule checks its params by deciding an empty batch and is
    /// taken to depend on everything.
    pub async fn describe(&self, id: &str, params: &str) -> Result<RuleNeeds, RuleError> {
        self.live(id)?;
        let needs = self
            .registry
            .describe_rule(id, params)
            .await?
            .map_err(RuleError::Refused)?;
        Ok(needs)
    }

    /// One decision per input, in order.
    pub async fn evaluate(
        &self,
        id: &str,
        params: &str,
        batch: &[crate::runtime::types::RuleInput],
    ) -> Result<Vec<Decision>, RuleError> {
        self.registry
            .evaluate(id, params, batch)
            .await?
            .map_err(RuleError::Refused)
    }
}

/// A profile as a rule sees it.
pub(crate) fn contact(profile: &Profile) -> Contact {
    Contact {
        id: profile.id.clone(),
        identities: identities(&profile.identities),
        traits: serde_json::Value::Object(profile.traits.clone()).to_string(),
    }
}

/// Stored identities as a rule sees them.
fn identities(stored: &[crate::ingest::Identity]) -> Vec<Identity> {
    stored
        .iter()
        .map(|i| Identity {
            kind: i.kind.clone(),
            value: i.value.clone(),
        })
        .collect()
}

/// A profile's counters as a rule sees them.
pub(crate) fn counts(profile: &Profile) -> Vec<EventCount> {
    profile
        .counters
        .iter()
        .map(|(name, count)| EventCount {
            name: name.clone(),
            count: *count,
        })
        .collect()
}

/// The kind of a stored event as rules know it (RudderStack's `merge` links identities, like
/// an alias).
pub(crate) fn kind(kind: EventType) -> EventKind {
    match kind {
        EventType::Track => EventKind::Track,
        EventType::Identify => EventKind::Identify,
        EventType::Page => EventKind::Page,
        EventType::Screen => EventKind::Screen,
        EventType::Group => EventKind::Group,
        EventType::Alias | EventType::Merge => EventKind::Alias,
    }
}

/// A logged event as a rule sees it.
pub(crate) fn event(e: &StoredEvent) -> Event {
    Event {
        id: e.message_id.clone(),
        kind: kind(e.kind),
        name: e.event.clone(),
        contact: ContactRef {
            user_id: e.user_id.clone(),
            anonymous_id: e.anonymous_id.clone(),
            identities: identities(&e.identities),
        },
        timestamp: Some(e.timestamp.clone()),
        properties: object_text(&e.properties),
        traits: object_text(&e.traits),
    }
}

/// A JSON object as text (`{}` for anything else).
pub(crate) fn object_text(v: &serde_json::Value) -> String {
    if v.is_object() {
        v.to_string()
    } else {
        "{}".into()
    }
}
