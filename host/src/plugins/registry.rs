//! The plugin registry: every slot, the operator's actions on them, and typed calls.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};

use serde::Serialize;

use super::store::{
    Action, Activation, AuditEntry, FailureLimits, PluginStore, RolloutRecord, SlotRecord,
    VersionRecord,
};
use crate::runtime::{CallStatsSnapshot, LoadError, PluginKind, Runtime, SandboxedPlugin};

use super::breaker::{BreakerConfig, BreakerView};
use super::review::{CapabilityReview, review};
use super::rollout::{CanaryPlan, Rollout, RolloutMode, RolloutView};
use super::slot::PluginSlot;
use super::{Capabilities, Limits, Manifest, OperatorLimits, PluginError};

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

/// Who acts, and why: recorded in the audit log.
#[derive(Debug, Clone)]
pub struct Actor {
    /// A short id of the admin key used, or `host`.
    pub key_id: String,
    /// The reason given, if any.
    pub reason: Option<String>,
}

impl Actor {
    /// The host acting on its own (bundled plugins, automatic rollback).
    pub fn host(reason: impl Into<String>) -> Self {
        Self {
            key_id: "host".into(),
            reason: Some(reason.into()),
        }
    }
}

/// How to activate a version.
#[derive(Debug, Clone, Default)]
pub struct ActivateOptions {
    /// Accept a version that asks for more than the live one.
    pub approve: bool,
    /// Give the version a share of calls instead of all of them.
    pub canary: Option<CanaryPlan>,
    /// Run the version on copies of live inputs, without effects, and compare outputs.
    pub shadow: bool,
}

use crate::clock::now_ms;
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

    /// Stores a new version after checking that it compiles and implements its manifest's
    /// world. Compiles: call it off the async executor.
    pub fn upload(
        &self,
        manifest_text: &str,
        component: &[u8],
        actor: &Actor,
    ) -> Result<VersionView, PluginError> {
        self.upload_as(manifest_text, component, actor, false)
    }

    /// [`upload`](Self::upload) of a plugin the operator ships in `--plugins-dir`: its first
    /// activation needs no approval of what it asks for.
    pub fn upload_bundled(
        &self,
        manifest_text: &str,
        component: &[u8],
        actor: &Actor,
    ) -> Result<VersionView, PluginError> {
        self.upload_as(manifest_text, component, actor, true)
    }

    fn upload_as(
        &self,
        manifest_text: &str,
        component: &[u8],
        actor: &Actor,
        bundled: bool,
    ) -> Result<VersionView, PluginError> {
        let manifest = Manifest::parse(manifest_text)?;
        if let Some(name) = manifest
            .capabilities
            .env
            .iter()
            .find(|name| self.config.limits.is_host_secret(name))
        {
            return Err(PluginError::HostSecret {
                plugin: manifest.id,
                name: name.clone(),
            });
        }
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
        // A version is its component: the same bytes with another manifest would silently
        // keep the first one, so they are refused before anything is compiled.
        if let Ok(existing) = self.version_record(&id, &sha)
            && existing.manifest != manifest
        {
            return Err(PluginError::ManifestConflict {
                plugin: id,
                sha256: sha,
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
            imports: plugin.imports().to_vec(),
            bundled,
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
                    rollout: None,
                };
                self.store.put_slot(&record)?;
                self.insert_slot(record)?
            }
        };
        slot.loaded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(sha.clone())
            .or_insert_with(|| Arc::new(plugin));
        tracing::info!(plugin = %id, sha256 = %sha, "version uploaded");
        self.audit(actor, Action::Upload, &id, Some(&sha));
        let stored = self.version_record(&id, &sha)?;
        Ok(self.version_view(&slot, stored))
    }

    /// Records an operator action; a failing audit write is logged, not fatal to the action.
    pub(super) fn audit(&self, actor: &Actor, action: Action, plugin: &str, sha: Option<&str>) {
        let entry = AuditEntry {
            seq: 0,
            at_ms: now_ms(),
            key_id: actor.key_id.clone(),
            action,
            plugin: plugin.into(),
            sha256: sha.map(str::to_string),
            reason: actor.reason.clone(),
        };
        if let Err(e) = self.store.append_audit(&entry) {
            tracing::error!(
                plugin,
                action = action.name(),
                "audit entry not written: {e}"
            );
        }
    }

    /// Records something the host did to a plugin on its own (switched its polling off after
    /// a crash, ...) in the audit log, with the reason.
    pub fn audit_host(&self, plugin: &str, action: Action, sha: Option<&str>, reason: &str) {
        self.audit(&Actor::host(reason), action, plugin, sha);
    }

    /// The newest `limit` audit entries, of one plugin if given.
    pub fn audit_log(
        &self,
        plugin: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, PluginError> {
        Ok(self.store.audit(plugin, limit)?)
    }

    /// What version `sha` asks for beyond the live version of `slot`.
    fn review_against_live(&self, slot: &PluginSlot, sha: &str) -> CapabilityReview {
        let candidate = match self.version_record(&slot.id, sha) {
            Ok(c) => c,
            Err(_) => return CapabilityReview::default(),
        };
        let live = slot
            .live()
            .and_then(|p| self.version_record(&slot.id, &p.spec().sha256).ok());
        review(&self.config.limits, live.as_ref(), &candidate)
    }

    /// Validates a version and makes it live, trusted (no capability review): bundled
    /// plugins at start and programs embedding the host.
    pub async fn activate(&self, id: &str, sha: &str) -> Result<PluginView, PluginError> {
        let options = ActivateOptions {
            approve: true,
            ..ActivateOptions::default()
        };
        self.activate_with(id, sha, options, &Actor::host("activate"))
            .await
    }

    /// Validates a version (config, instantiation, self-test), reviews what it asks for
    /// beyond the live version, then makes it live, or starts it as a canary or shadow.
    pub async fn activate_with(
        &self,
        id: &str,
        sha: &str,
        options: ActivateOptions,
        actor: &Actor,
    ) -> Result<PluginView, PluginError> {
        let slot = self.slot(id)?;
        let review = self.review_against_live(&slot, sha);
        if review.needs_approval && !options.approve {
            return Err(PluginError::ApprovalRequired {
                plugin: id.into(),
                sha256: sha.into(),
                review,
            });
        }
        let mode = match (options.canary, options.shadow) {
            (Some(_), true) => {
                return Err(PluginError::InvalidRollout(
                    "choose either a canary or a shadow run, not both".into(),
                ));
            }
            (Some(plan), false) => RolloutMode::Canary(plan),
            (None, true) => RolloutMode::Shadow,
            (None, false) => return self.make_live(id, sha, Action::Activate, actor).await,
        };
        self.start_rollout(&slot, sha, mode, actor).await
    }

    async fn start_rollout(
        &self,
        slot: &Arc<PluginSlot>,
        sha: &str,
        mode: RolloutMode,
        actor: &Actor,
    ) -> Result<PluginView, PluginError> {
        if let RolloutMode::Canary(plan) = &mode {
            plan.validate().map_err(PluginError::BadCanaryPlan)?;
        }
        let _admin = slot.admin.lock().await;
        let live = slot.live().ok_or_else(|| {
            PluginError::InvalidRollout(format!(
                "plugin `{}` has no live version to compare against; activate one first",
                slot.id
            ))
        })?;
        if live.spec().sha256 == sha {
            return Err(PluginError::InvalidRollout(format!(
                "version {sha} is already live"
            )));
        }
        let candidate = self.load_version(slot, sha)?;
        let manifest = self.version_record(&slot.id, sha)?.manifest;
        self.validate(slot, &candidate, &manifest, slot.config.load_full())
            .await?;
        let started_ms = now_ms();
        let action = match &mode {
            RolloutMode::Canary(_) => Action::Canary,
            RolloutMode::Shadow => Action::Shadow,
        };
        let record = RolloutRecord {
            sha256: sha.into(),
            mode: mode.clone(),
            started_ms,
        };
        if let Some(old) = slot
            .rollout
            .swap(Some(Arc::new(Rollout::new(mode, candidate, started_ms))))
        {
            old.end();
        }
        self.persist(slot, |r| r.rollout = Some(record))?;
        self.audit(actor, action, &slot.id, Some(sha));
        tracing::info!(plugin = %slot.id, sha256 = %sha, "{action} started");
        Ok(self.view(slot))
    }

    /// Makes the canary or shadow candidate the live version.
    pub async fn promote(&self, id: &str, actor: &Actor) -> Result<PluginView, PluginError> {
        let slot = self.slot(id)?;
        let rollout = slot
            .rollout()
            .ok_or_else(|| PluginError::NoRollout(id.into()))?;
        let sha = rollout.candidate.spec().sha256.clone();
        self.make_live(id, &sha, Action::Promote, actor).await
    }

    /// Ends a canary or shadow run; the live version keeps every call.
    pub async fn abort(&self, id: &str, actor: &Actor) -> Result<PluginView, PluginError> {
        self.end_rollout(id, Action::Abort, actor).await
    }

    /// Ends the rollout of `id` with `action` (`abort`, `auto-rollback`).
    pub(super) async fn end_rollout(
        &self,
        id: &str,
        action: Action,
        actor: &Actor,
    ) -> Result<PluginView, PluginError> {
        let slot = self.slot(id)?;
        let _admin = slot.admin.lock().await;
        let rollout = slot
            .rollout
            .swap(None)
            .ok_or_else(|| PluginError::NoRollout(id.into()))?;
        rollout.end();
        self.persist(&slot, |r| r.rollout = None)?;
        let sha = rollout.candidate.spec().sha256.clone();
        self.audit(actor, action, id, Some(&sha));
        tracing::warn!(plugin = %id, sha256 = %sha, reason = ?actor.reason, "{action}: candidate removed");
        Ok(self.view(&slot))
    }

    /// Makes the version that was live before the current one live again.
    pub async fn rollback(&self, id: &str, actor: &Actor) -> Result<PluginView, PluginError> {
        let slot = self.slot(id)?;
        let target = {
            let record = slot.record.lock().unwrap_or_else(|e| e.into_inner());
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
        self.make_live(id, &target, Action::Rollback, actor).await
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

    async fn make_live(
        &self,
        id: &str,
        sha: &str,
        action: Action,
        actor: &Actor,
    ) -> Result<PluginView, PluginError> {
        let slot = self.slot(id)?;
        let _admin = slot.admin.lock().await;
        let plugin = self.load_version(&slot, sha)?;
        let manifest = self.version_record(id, sha)?.manifest;
        self.validate(&slot, &plugin, &manifest, slot.config.load_full())
            .await?;
        slot.live.store(Some(plugin));
        // A new live version ends any canary or shadow run (promoted or superseded).
        if let Some(rollout) = slot.rollout.swap(None) {
            rollout.end();
        }
        slot.breaker.reset();
        self.persist(&slot, |record| {
            record.live = Some(sha.to_string());
            record.rollout = None;
            record.history.push(Activation {
                sha256: sha.to_string(),
                action,
                at_ms: now_ms(),
            });
        })?;
        self.audit(actor, action, id, Some(sha));
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
    pub async fn set_enabled(
        &self,
        id: &str,
        enabled: bool,
        actor: &Actor,
    ) -> Result<PluginView, PluginError> {
        let slot = self.slot(id)?;
        let _admin = slot.admin.lock().await;
        slot.disabled.store(!enabled, Ordering::Release);
        self.persist(&slot, |record| record.disabled = !enabled)?;
        let action = if enabled {
            Action::Enable
        } else {
            Action::Disable
        };
        self.audit(actor, action, id, None);
        tracing::info!(plugin = %id, enabled, "slot state changed");
        Ok(self.view(&slot))
    }

    /// Replaces a slot's config. With a live version, that version must pass its self-test
    /// with the new config first; otherwise the old config stays.
    pub async fn set_config(
        &self,
        id: &str,
        config: serde_json::Map<String, serde_json::Value>,
        actor: &Actor,
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
        let previous = slot.config.load_full();
        self.persist(&slot, |record| {
            record.config = config.as_object().cloned().unwrap_or_default();
        })?;
        slot.config.store(config);
        self.audit(actor, Action::Config, id, None);
        let Some(sha) = self.waiting_bundled_version(&slot)? else {
            return Ok(self.view(&slot));
        };
        // A bundled version that could not go live without this config: it goes live now,
        // or the config is refused as it would be for a live version.
        drop(_admin);
        match self.activate(id, &sha).await {
            Ok(view) => Ok(view),
            Err(PluginError::SelfTestFailed { reason, .. }) => {
                let _admin = slot.admin.lock().await;
                self.persist(&slot, |record| {
                    record.config = previous.as_object().cloned().unwrap_or_default();
                })?;
                slot.config.store(previous);
                Err(PluginError::InvalidConfig {
                    plugin: id.into(),
                    reason,
                })
            }
            Err(other) => Err(other),
        }
    }

    /// The newest version of a slot that was never live, if it is a bundled one waiting for
    /// its config: no version is live, the operator has not disabled the slot, and no
    /// version was ever activated.
    fn waiting_bundled_version(&self, slot: &PluginSlot) -> Result<Option<String>, PluginError> {
        let never_live = {
            let record = slot.record.lock().unwrap_or_else(|e| e.into_inner());
            record.live.is_none() && record.history.is_empty()
        };
        if !never_live || slot.live().is_some() || !slot.is_enabled() {
            return Ok(None);
        }
        let newest = self.store.versions(&slot.id)?.pop();
        Ok(newest.filter(|v| v.bundled).map(|v| v.sha256))
    }

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

    fn version_view(&self, slot: &PluginSlot, v: VersionRecord) -> VersionView {
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

    fn view(&self, slot: &PluginSlot) -> PluginView {
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
