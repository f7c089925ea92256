//! The slot's state machine: which version is live, which runs as a canary or shadow, whether
//! the slot is enabled and with what config; every change validated, persisted and audited.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::plugins::store::{Action, Activation, RolloutRecord};
use crate::runtime::SandboxedPlugin;

use super::{Actor, PluginRegistry, PluginView};
use crate::clock::now_ms;
use crate::plugins::review::{CapabilityReview, review};
use crate::plugins::rollout::{CanaryPlan, Rollout, RolloutMode};
use crate::plugins::slot::PluginSlot;
use crate::plugins::{Manifest, PluginError};

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

impl PluginRegistry {
    /// What version `sha` asks for beyond the live version of `slot`.
    pub(super) fn review_against_live(&self, slot: &PluginSlot, sha: &str) -> CapabilityReview {
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

    pub(super) async fn start_rollout(
        &self,
        slot: &Arc<PluginSlot>,
        sha: &str,
        mode: RolloutMode,
        actor: &Actor,
    ) -> Result<PluginView, PluginError> {
        if let RolloutMode::Canary(plan) = &mode {
            plan.validate()?;
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
    pub(in crate::plugins) async fn end_rollout(
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

    pub(super) async fn make_live(
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
    pub(super) async fn validate(
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
            .map_err(|e| failed(e.to_string()))?;
        let mut env = slot.env(true);
        env.config = config;
        // A server in config that the plugin would never be allowed to reach.
        if let Some((key, refused)) = plugin.refused_tcp_server(&env).await {
            return Err(failed(format!("config key `{key}`: {refused}")));
        }
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
    pub(super) fn waiting_bundled_version(
        &self,
        slot: &PluginSlot,
    ) -> Result<Option<String>, PluginError> {
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
}
