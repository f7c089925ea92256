//! The plugin registry: every slot, the operator's actions on them, and typed calls.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::runtime::bindings::types::{
    ConnectorError, Delivery, Event, HttpRequest, Message, PollPage, RuleInput, SendError,
};
use crate::runtime::{CallStatsSnapshot, LoadError, PluginKind, Runtime, SandboxedPlugin};
use crate::store::{Activation, PluginStore, SlotRecord, VersionRecord};

use super::breaker::{BreakerConfig, BreakerView};
use super::slot::PluginSlot;
use super::{Capabilities, Limits, Manifest, OperatorLimits, PluginError};

/// Registry settings.
#[derive(Debug, Clone, Default)]
pub struct RegistryConfig {
    /// Operator maxima and defaults for plugin limits.
    pub limits: OperatorLimits,
    /// Circuit breaker settings for every slot.
    pub breaker: BreakerConfig,
}

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
    /// Call counters since this process loaded it.
    pub stats: Option<CallStatsSnapshot>,
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
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// sha256 of bytes, lower-case hex: a version's identity.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Every plugin slot, and the operations on them.
pub struct PluginRegistry {
    runtime: Runtime,
    store: Arc<dyn PluginStore>,
    config: RegistryConfig,
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
            let slot = registry.insert_slot(record)?;
            if let Some(sha) = live {
                match registry.load_version(&slot, &sha) {
                    Ok(plugin) => slot.live.store(Some(plugin)),
                    Err(e) => {
                        tracing::error!(plugin = %slot.id, "live version {sha} could not be restored: {e}")
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
            .expect("slots lock")
            .insert(slot.id.clone(), slot.clone());
        Ok(slot)
    }

    /// The slot of a plugin id.
    pub fn slot(&self, id: &str) -> Result<Arc<PluginSlot>, PluginError> {
        self.slots
            .read()
            .expect("slots lock")
            .get(id)
            .cloned()
            .ok_or_else(|| PluginError::UnknownPlugin(id.into()))
    }

    /// Every slot, in id order (a snapshot: slots added later are not in it).
    pub fn slots(&self) -> Vec<Arc<PluginSlot>> {
        self.slots
            .read()
            .expect("slots lock")
            .values()
            .cloned()
            .collect()
    }

    /// The manifest of version `sha` of plugin `id`, read from the store. Pass the sha of
    /// [`PluginSlot::live`] to learn what the live version asks for (its `[poll]` section).
    pub fn version_manifest(&self, id: &str, sha: &str) -> Result<Manifest, PluginError> {
        Ok(self.version_record(id, sha)?.manifest)
    }

    fn version_record(&self, id: &str, sha: &str) -> Result<VersionRecord, PluginError> {
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
    fn load_version(
        &self,
        slot: &PluginSlot,
        sha: &str,
    ) -> Result<Arc<SandboxedPlugin>, PluginError> {
        if let Some(p) = slot.loaded.lock().expect("loaded lock").get(sha) {
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
            .expect("loaded lock")
            .insert(sha.to_string(), plugin.clone());
        Ok(plugin)
    }

    /// Stores a new version after checking that it compiles and implements its manifest's
    /// world. Compiles: call it off the async executor.
    pub fn upload(
        &self,
        manifest_text: &str,
        component: &[u8],
    ) -> Result<VersionView, PluginError> {
        let manifest = Manifest::parse(manifest_text)?;
        let sha = sha256_hex(component);
        let id = manifest.id.clone();
        if let Ok(slot) = self.slot(&id)
            && slot.kind != manifest.kind
        {
            return Err(PluginError::KindConflict {
                plugin: id,
                slot: slot.kind,
                version: manifest.kind,
            });
        }
        let spec = self.config.limits.sandbox(&manifest, &sha);
        let plugin = self
            .runtime
            .prepare(spec, || Ok(component.to_vec()))
            .map_err(|source| PluginError::Load {
                plugin: id.clone(),
                source,
            })?;
        let record = VersionRecord {
            sha256: sha.clone(),
            manifest,
            size: component.len() as u64,
            uploaded_at_ms: now_ms(),
        };
        self.store.put_version(&id, &record, component)?;
        let slot = match self.slot(&id) {
            Ok(slot) => slot,
            Err(_) => {
                let record = SlotRecord {
                    id: id.clone(),
                    kind: record.manifest.kind,
                    live: None,
                    disabled: false,
                    config: serde_json::Map::new(),
                    history: Vec::new(),
                };
                self.store.put_slot(&record)?;
                self.insert_slot(record)?
            }
        };
        slot.loaded
            .lock()
            .expect("loaded lock")
            .entry(sha.clone())
            .or_insert_with(|| Arc::new(plugin));
        tracing::info!(plugin = %id, sha256 = %sha, "version uploaded");
        let stored = self.version_record(&id, &sha)?;
        Ok(self.version_view(&slot, stored))
    }

    /// Validates a version (config, instantiation, self-test) and makes it live.
    pub async fn activate(&self, id: &str, sha: &str) -> Result<PluginView, PluginError> {
        self.make_live(id, sha, "activate").await
    }

    /// Makes the version that was live before the current one live again.
    pub async fn rollback(&self, id: &str) -> Result<PluginView, PluginError> {
        let slot = self.slot(id)?;
        let target = {
            let record = slot.record.lock().expect("record lock");
            let current = record.live.clone();
            record
                .history
                .iter()
                .rev()
                .map(|a| &a.sha256)
                .find(|sha| Some(*sha) != current.as_ref())
                .cloned()
                .ok_or_else(|| PluginError::NothingToRollBack(id.into()))?
        };
        self.make_live(id, &target, "rollback").await
    }

    async fn make_live(
        &self,
        id: &str,
        sha: &str,
        action: &str,
    ) -> Result<PluginView, PluginError> {
        let slot = self.slot(id)?;
        let _admin = slot.admin.lock().await;
        let plugin = self.load_version(&slot, sha)?;
        let manifest = self.version_record(id, sha)?.manifest;
        self.validate(&slot, &plugin, &manifest, slot.config.load_full())
            .await?;
        slot.live.store(Some(plugin));
        slot.breaker.reset();
        let record = {
            let mut record = slot.record.lock().expect("record lock");
            record.live = Some(sha.to_string());
            record.history.push(Activation {
                sha256: sha.to_string(),
                action: action.into(),
                at_ms: now_ms(),
            });
            record.clone()
        };
        self.store.put_slot(&record)?;
        tracing::info!(plugin = %id, sha256 = %sha, version = %manifest.version, "{action}: version is live");
        Ok(self.view(&slot))
    }

    /// Config check, then the version's self-test against `config` with writes refused.
    async fn validate(
        &self,
        slot: &PluginSlot,
        plugin: &SandboxedPlugin,
        manifest: &Manifest,
        config: Arc<serde_json::Value>,
    ) -> Result<(), PluginError> {
        let failed = |reason: String| PluginError::SelfTestFailed {
            plugin: slot.id.clone(),
            sha256: plugin.spec().sha256.clone(),
            reason,
        };
        let empty = serde_json::Map::new();
        manifest
            .check_config(config.as_object().unwrap_or(&empty))
            .map_err(failed)?;
        let mut env = slot.env(true);
        env.config = config;
        match plugin.self_test(&env).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(msg)) => Err(failed(format!("self-test: {msg}"))),
            Err(call) => Err(failed(call.to_string())),
        }
    }

    /// Enables or disables a slot.
    pub async fn set_enabled(&self, id: &str, enabled: bool) -> Result<PluginView, PluginError> {
        let slot = self.slot(id)?;
        let _admin = slot.admin.lock().await;
        slot.disabled.store(!enabled, Ordering::Release);
        let record = {
            let mut record = slot.record.lock().expect("record lock");
            record.disabled = !enabled;
            record.clone()
        };
        self.store.put_slot(&record)?;
        tracing::info!(plugin = %id, enabled, "slot state changed");
        Ok(self.view(&slot))
    }

    /// Replaces a slot's config. With a live version, that version must pass its self-test
    /// with the new config first; otherwise the old config stays.
    pub async fn set_config(
        &self,
        id: &str,
        config: serde_json::Map<String, serde_json::Value>,
    ) -> Result<PluginView, PluginError> {
        let slot = self.slot(id)?;
        let _admin = slot.admin.lock().await;
        let config = Arc::new(serde_json::Value::Object(config));
        if let Some(live) = slot.live() {
            let manifest = self.version_record(id, &live.spec().sha256)?.manifest;
            self.validate(&slot, &live, &manifest, config.clone())
                .await
                .map_err(|e| match e {
                    PluginError::SelfTestFailed { reason, .. } => PluginError::InvalidConfig {
                        plugin: id.into(),
                        reason,
                    },
                    other => other,
                })?;
        }
        let record = {
            let mut record = slot.record.lock().expect("record lock");
            record.config = config.as_object().cloned().unwrap_or_default();
            record.clone()
        };
        self.store.put_slot(&record)?;
        slot.config.store(config);
        Ok(self.view(&slot))
    }

    /// Every slot.
    pub fn list(&self) -> Vec<PluginView> {
        self.slots().iter().map(|s| self.view(s)).collect()
    }

    /// One slot.
    pub fn inspect(&self, id: &str) -> Result<PluginView, PluginError> {
        Ok(self.view(&*self.slot(id)?))
    }

    /// One version of a plugin.
    pub fn inspect_version(&self, id: &str, sha: &str) -> Result<VersionView, PluginError> {
        let slot = self.slot(id)?;
        Ok(self.version_view(&slot, self.version_record(id, sha)?))
    }

    fn version_view(&self, slot: &PluginSlot, v: VersionRecord) -> VersionView {
        let live = slot.live().is_some_and(|p| p.spec().sha256 == v.sha256);
        let stats = slot
            .loaded
            .lock()
            .expect("loaded lock")
            .get(&v.sha256)
            .map(|p| p.stats());
        VersionView {
            live,
            stats,
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

    fn view(&self, slot: &PluginSlot) -> PluginView {
        let versions = self.store.versions(&slot.id).unwrap_or_default();
        let secrets: BTreeSet<&String> = versions
            .iter()
            .flat_map(|v| &v.manifest.config.secrets)
            .collect();
        let record = slot.record.lock().expect("record lock").clone();
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
        }
    }

    /// Calls a connector's `handle-webhook` on its live version.
    pub async fn handle_webhook(
        &self,
        id: &str,
        request: &HttpRequest,
    ) -> Result<Result<Vec<Event>, ConnectorError>, PluginError> {
        let lease = self.slot(id)?.lease(PluginKind::Connector)?;
        let outcome = lease.plugin.handle_webhook(&lease.env, request).await;
        lease.finish(outcome)
    }

    /// Calls a connector's `poll` on its live version.
    pub async fn poll(
        &self,
        id: &str,
        cursor: Option<&str>,
    ) -> Result<Result<PollPage, ConnectorError>, PluginError> {
        let lease = self.slot(id)?.lease(PluginKind::Connector)?;
        let outcome = lease.plugin.poll(&lease.env, cursor).await;
        lease.finish(outcome)
    }

    /// Calls a segment rule's `evaluate` on its live version.
    pub async fn evaluate(
        &self,
        id: &str,
        params: &str,
        batch: &[RuleInput],
    ) -> Result<Result<Vec<bool>, String>, PluginError> {
        let lease = self.slot(id)?.lease(PluginKind::SegmentRule)?;
        let outcome = lease.plugin.evaluate(&lease.env, params, batch).await;
        lease.finish(outcome)
    }

    /// Calls a channel's `send` on its live version.
    pub async fn send(
        &self,
        id: &str,
        message: &Message,
    ) -> Result<Result<Delivery, SendError>, PluginError> {
        let lease = self.slot(id)?.lease(PluginKind::Channel)?;
        let outcome = lease.plugin.send(&lease.env, message).await;
        lease.finish(outcome)
    }
}
