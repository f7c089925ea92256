//! Slots and versions as the API shows them (secrets redacted, live counters, the review of
//! what a version asks for).

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

use serde::Serialize;

use crate::plugins::store::{Activation, VersionRecord};
use crate::runtime::{CallStatsSnapshot, PluginKind};

use super::PluginRegistry;
use crate::plugins::breaker::BreakerView;
use crate::plugins::review::CapabilityReview;
use crate::plugins::rollout::RolloutView;
use crate::plugins::slot::PluginSlot;
use crate::plugins::{Capabilities, Limits, PluginError};

/// A version as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct VersionView {
    /// sha256 of the component.
    pub sha256: String,
    /// The manifest's version.
    pub version: String,
    /// Contract version.
    pub contract: String,
    /// Description.
    pub description: String,
    /// Component size.
    pub size: u64,
    /// Upload time, Unix ms.
    pub uploaded_at_ms: u64,
    /// True for the live version.
    pub live: bool,
    /// What it asks for.
    pub capabilities: Capabilities,
    /// Limits it asks for.
    pub limits: Limits,
    /// The interfaces its component imports.
    pub imports: Vec<String>,
    /// Call counters since this process loaded it.
    pub stats: Option<CallStatsSnapshot>,
    /// What it asks for beyond the live version.
    pub review: CapabilityReview,
}

/// A plugin slot as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct PluginView {
    /// Plugin id.
    pub id: String,
    /// Kind.
    pub kind: PluginKind,
    /// `live`, `disabled` or `inactive` (no live version).
    pub state: &'static str,
    /// The live version's sha256.
    pub live: Option<String>,
    /// The live version's manifest version.
    pub live_version: Option<String>,
    /// Circuit breaker.
    pub breaker: BreakerView,
    /// Config, secrets redacted.
    pub config: serde_json::Map<String, serde_json::Value>,
    /// Every version, oldest first.
    pub versions: Vec<VersionView>,
    /// Activations and rollbacks, oldest first.
    pub history: Vec<Activation>,
    /// A candidate in canary or shadow, if one runs.
    pub rollout: Option<RolloutView>,
}

impl PluginRegistry {
    /// Every slot.
    pub fn list(&self) -> Vec<PluginView> {
        self.slots().iter().map(|s| self.view(s)).collect()
    }

    /// One slot.
    pub fn inspect(&self, id: &str) -> Result<PluginView, PluginError> {
        Ok(self.view(&*self.slot(id)?))
    }

    /// The component bytes of a version.
    pub fn component(&self, id: &str, sha: &str) -> Result<Vec<u8>, PluginError> {
        self.version_record(id, sha)?;
        self.store
            .component(sha)?
            .ok_or_else(|| PluginError::UnknownVersion {
                plugin: id.into(),
                sha256: sha.into(),
            })
    }

    /// A version's manifest as TOML.
    pub fn manifest_text(&self, id: &str, sha: &str) -> Result<String, PluginError> {
        let manifest = self.version_record(id, sha)?.manifest;
        Ok(toml::to_string(&manifest).unwrap_or_default())
    }

    /// One version of a plugin.
    pub fn inspect_version(&self, id: &str, sha: &str) -> Result<VersionView, PluginError> {
        let slot = self.slot(id)?;
        Ok(self.version_view(&slot, self.version_record(id, sha)?))
    }

    pub(super) fn version_view(&self, slot: &PluginSlot, v: VersionRecord) -> VersionView {
        let live = slot.live().is_some_and(|p| p.spec().sha256 == v.sha256);
        let stats = slot
            .loaded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&v.sha256)
            .map(|p| p.stats());
        let review = if live {
            CapabilityReview::default()
        } else {
            self.review_against_live(slot, &v.sha256)
        };
        VersionView {
            live,
            stats,
            review,
            imports: v.imports,
            sha256: v.sha256,
            version: v.manifest.version,
            contract: v.manifest.contract,
            description: v.manifest.description,
            size: v.size,
            uploaded_at_ms: v.uploaded_at_ms,
            capabilities: v.manifest.capabilities,
            limits: v.manifest.limits,
        }
    }

    pub(super) fn view(&self, slot: &PluginSlot) -> PluginView {
        let versions = self.store.versions(&slot.id).unwrap_or_default();
        let secrets: BTreeSet<&String> = versions
            .iter()
            .flat_map(|v| &v.manifest.config.secrets)
            .collect();
        let record = slot
            .record
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let config = record
            .config
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    if secrets.contains(k) {
                        "********".into()
                    } else {
                        v.clone()
                    },
                )
            })
            .collect();
        let live = slot.live();
        let state = if slot.disabled.load(Ordering::Acquire) {
            "disabled"
        } else if live.is_some() {
            "live"
        } else {
            "inactive"
        };
        PluginView {
            id: slot.id.clone(),
            kind: slot.kind,
            state,
            live: live.as_ref().map(|p| p.spec().sha256.clone()),
            live_version: live.as_ref().map(|p| p.spec().version.clone()),
            breaker: slot.breaker.view(),
            config,
            versions: versions
                .into_iter()
                .map(|v| self.version_view(slot, v))
                .collect(),
            history: record.history,
            rollout: slot.rollout().map(|r| r.view(live.as_deref())),
        }
    }
}
