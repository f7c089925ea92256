//! The plugin registry: every slot by id, restored from the store at start, and the
//! prepared versions its operations and calls share.
//!
//! Operator actions are split by concern: [`upload`] stores versions, [`lifecycle`] moves a
//! slot between versions (activate, canary, shadow, promote, abort, roll back, disable,
//! config), [`audit`] records who did what, [`views`] shapes slots and versions for the API.

mod audit;
mod lifecycle;
mod upload;
mod views;

pub use audit::Actor;
pub use lifecycle::ActivateOptions;
pub use views::{PluginView, VersionView};

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use super::store::{FailureLimits, PluginStore, SlotRecord, VersionRecord};
use crate::runtime::{LoadError, Runtime, SandboxedPlugin};

use super::breaker::BreakerConfig;
use super::rollout::Rollout;
use super::slot::PluginSlot;
use super::{Manifest, OperatorLimits, PluginError};

/// Registry settings.
#[derive(Debug, Clone, Default)]
pub struct RegistryConfig {
    /// Operator maxima and defaults for plugin limits.
    pub limits: OperatorLimits,
    /// Circuit breaker settings for every slot.
    pub breaker: BreakerConfig,
    /// How much failure history is kept.
    pub failures: FailureLimits,
}

pub use crate::digest::sha256_hex;

/// Every plugin slot, and the operations on them.
pub struct PluginRegistry {
    runtime: Runtime,
    pub(super) store: Arc<dyn PluginStore>,
    pub(super) config: RegistryConfig,
    slots: RwLock<BTreeMap<String, Arc<PluginSlot>>>,
}

impl PluginRegistry {
    /// Opens the registry and restores every slot's live version from the compiled cache.
    pub fn open(
        runtime: Runtime,
        store: Arc<dyn PluginStore>,
        config: RegistryConfig,
    ) -> Result<Self, PluginError> {
        let registry = Self {
            runtime,
            store,
            config,
            slots: RwLock::new(BTreeMap::new()),
        };
        for record in registry.store.slots()? {
            let live = record.live.clone();
            let rollout = record.rollout.clone();
            let slot = registry.insert_slot(record)?;
            if let Some(sha) = live {
                match registry.load_version(&slot, &sha) {
                    Ok(plugin) => slot.live.store(Some(plugin)),
                    Err(e) => {
                        tracing::error!(plugin = %slot.id, "live version {sha} could not be restored: {e}")
                    }
                }
            }
            if let Some(r) = rollout {
                match registry.load_version(&slot, &r.sha256) {
                    Ok(candidate) => slot.rollout.store(Some(Arc::new(Rollout::new(
                        r.mode,
                        candidate,
                        r.started_ms,
                    )))),
                    Err(e) => {
                        tracing::error!(plugin = %slot.id, "candidate {} could not be restored: {e}", r.sha256)
                    }
                }
            }
        }
        Ok(registry)
    }

    /// The runtime, for benchmarks.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    fn insert_slot(&self, record: SlotRecord) -> Result<Arc<PluginSlot>, PluginError> {
        let kv = self.store.kv(&record.id)?;
        let slot = Arc::new(PluginSlot::new(record, kv, self.config.breaker));
        self.slots
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(slot.id.clone(), slot.clone());
        Ok(slot)
    }

    /// The slot of a plugin id.
    pub fn slot(&self, id: &str) -> Result<Arc<PluginSlot>, PluginError> {
        self.slots
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
            .ok_or_else(|| PluginError::UnknownPlugin(id.into()))
    }

    /// Every slot, in id order (a snapshot: slots added later are not in it).
    pub fn slots(&self) -> Vec<Arc<PluginSlot>> {
        self.slots
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// The manifest of version `sha` of plugin `id`, read from the store. Pass the sha of
    /// [`PluginSlot::live`] to learn what the live version asks for (its `[poll]` section).
    pub fn version_manifest(&self, id: &str, sha: &str) -> Result<Manifest, PluginError> {
        Ok(self.version_record(id, sha)?.manifest)
    }

    pub(super) fn version_record(&self, id: &str, sha: &str) -> Result<VersionRecord, PluginError> {
        self.store
            .versions(id)?
            .into_iter()
            .find(|v| v.sha256 == sha)
            .ok_or_else(|| PluginError::UnknownVersion {
                plugin: id.into(),
                sha256: sha.into(),
            })
    }

    /// A prepared version: from this process's cache, else from compiled code on disk.
    pub(super) fn load_version(
        &self,
        slot: &PluginSlot,
        sha: &str,
    ) -> Result<Arc<SandboxedPlugin>, PluginError> {
        if let Some(p) = slot
            .loaded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(sha)
        {
            return Ok(p.clone());
        }
        let record = self.version_record(&slot.id, sha)?;
        let spec = self.config.limits.sandbox(&record.manifest, sha);
        let store = self.store.clone();
        let plugin = self
            .runtime
            .prepare(spec, || {
                store
                    .component(sha)
                    .map_err(|e| LoadError::Cache(e.to_string()))?
                    .ok_or_else(|| {
                        LoadError::Cache(format!("component {sha} is missing from the store"))
                    })
            })
            .map_err(|source| PluginError::Load {
                plugin: slot.id.clone(),
                source,
            })?;
        let plugin = Arc::new(plugin);
        slot.loaded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(sha.to_string(), plugin.clone());
        Ok(plugin)
    }

    /// Applies `change` to the slot's record and writes it through.
    fn persist(
        &self,
        slot: &PluginSlot,
        change: impl FnOnce(&mut SlotRecord),
    ) -> Result<(), PluginError> {
        let record = {
            let mut record = slot.record.lock().unwrap_or_else(|e| e.into_inner());
            change(&mut record);
            record.clone()
        };
        self.store.put_slot(&record)?;
        Ok(())
    }
}
