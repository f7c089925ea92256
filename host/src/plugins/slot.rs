//! A plugin slot: the live version behind `arc-swap`, a candidate in canary or shadow, the
//! breaker, config, loaded versions and recent logs; and the lease a call holds on it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::{ArcSwap, ArcSwapOption};

use super::store::SlotRecord;
use crate::runtime::{
    CallEnv, CallError, Effects, KvNamespace, PluginKind, SandboxedPlugin, Stub, Tape,
};

use super::PluginError;
use super::breaker::{Breaker, BreakerConfig};
use super::logs::LogRing;
use super::rollout::{Rollout, RolloutMode};

/// One plugin id's slot.
pub struct PluginSlot {
    pub(super) id: String,
    pub(super) kind: PluginKind,
    pub(super) live: ArcSwapOption<SandboxedPlugin>,
    pub(super) config: ArcSwap<serde_json::Value>,
    pub(super) disabled: AtomicBool,
    pub(super) breaker: Breaker,
    /// The persisted record; written through on every change.
    pub(super) record: Mutex<SlotRecord>,
    /// Serialises activations, rollbacks and config changes of this slot.
    pub(super) admin: tokio::sync::Mutex<()>,
    /// Versions prepared in this process, by sha256 (keeps their call counters).
    pub(super) loaded: Mutex<HashMap<String, Arc<SandboxedPlugin>>>,
    pub(super) kv: Arc<dyn KvNamespace>,
    /// A candidate in canary or shadow, if one runs.
    pub(super) rollout: ArcSwapOption<Rollout>,
    /// Recent log lines of every version.
    pub(super) logs: Arc<LogRing>,
}

/// A call's hold on a slot's live version: the call runs on this version to the end even if
/// another version goes live meanwhile.
pub struct Lease {
    slot: Arc<PluginSlot>,
    /// The version the call runs on.
    pub plugin: Arc<SandboxedPlugin>,
    /// The call's config and kv.
    pub env: CallEnv,
    /// The rollout running when the call started, if any.
    pub rollout: Option<Arc<Rollout>>,
    /// True when a canary routed this call to the candidate.
    pub on_candidate: bool,
    finished: bool,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if !self.finished {
            // The call was abandoned (its request went away): free a half-open probe.
            self.slot.breaker.abandon();
        }
    }
}

impl Lease {
    /// Feeds the call's outcome to the breaker and converts the error. A call refused under
    /// load never ran: it tells nothing about the plugin's health, so the breaker does not
    /// count it (a half-open probe it was is freed for the next call).
    pub fn finish<T>(mut self, outcome: Result<T, CallError>) -> Result<T, PluginError> {
        self.finished = true;
        match &outcome {
            Err(e) if e.cause.is_load() => self.slot.breaker.abandon(),
            _ => self.slot.breaker.record(outcome.is_ok()),
        }
        outcome.map_err(PluginError::from)
    }
}

impl PluginSlot {
    pub(super) fn new(
        record: SlotRecord,
        kv: Arc<dyn KvNamespace>,
        breaker: BreakerConfig,
    ) -> Self {
        Self {
            id: record.id.clone(),
            kind: record.kind,
            live: ArcSwapOption::empty(),
            config: ArcSwap::from_pointee(serde_json::Value::Object(record.config.clone())),
            disabled: AtomicBool::new(record.disabled),
            breaker: Breaker::new(breaker),
            record: Mutex::new(record),
            admin: tokio::sync::Mutex::new(()),
            loaded: Mutex::new(HashMap::new()),
            kv,
            rollout: ArcSwapOption::empty(),
            logs: Arc::new(LogRing::default()),
        }
    }

    /// The plugin id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The slot's kind.
    pub fn kind(&self) -> PluginKind {
        self.kind
    }

    /// False when the operator disabled the slot.
    pub fn is_enabled(&self) -> bool {
        !self.disabled.load(Ordering::Acquire)
    }

    /// The live version, if any.
    pub fn live(&self) -> Option<Arc<SandboxedPlugin>> {
        self.live.load_full()
    }

    pub(super) fn env(&self, read_only: bool) -> CallEnv {
        CallEnv {
            config: self.config.load_full(),
            kv: self.kv.clone(),
            read_only,
            effects: Effects::Live,
            logs: Some(self.logs.clone()),
        }
    }

    /// The env of a call whose effects must not happen (shadow runs, replays): kv writes
    /// refused, outbound requests answered by a stub (from `tape` where the live call made
    /// the same request).
    pub(super) fn shadow_env(&self, tape: Option<Arc<Tape>>) -> CallEnv {
        let stub = tape.map_or_else(Stub::default, Stub::replaying);
        CallEnv {
            effects: Effects::Stubbed(Arc::new(stub)),
            ..self.env(true)
        }
    }

    /// The candidate running beside the live version, if any.
    pub fn rollout(&self) -> Option<Arc<Rollout>> {
        self.rollout.load_full()
    }

    /// Takes a version for one call, or says why no call may be made. `key` (a contact or
    /// event id) decides, stably, whether a canary candidate takes the call.
    pub fn lease(
        self: &Arc<Self>,
        wanted: PluginKind,
        key: Option<&[u8]>,
    ) -> Result<Lease, PluginError> {
        if self.kind != wanted {
            return Err(PluginError::WrongKind {
                plugin: self.id.clone(),
                actual: self.kind,
                wanted,
            });
        }
        if self.disabled.load(Ordering::Acquire) {
            return Err(PluginError::Disabled(self.id.clone()));
        }
        let plugin = self
            .live
            .load_full()
            .ok_or_else(|| PluginError::NotLive(self.id.clone()))?;
        self.breaker
            .admit()
            .map_err(|left| PluginError::BreakerOpen {
                plugin: self.id.clone(),
                retry_in_ms: left.as_millis() as u64,
            })?;
        let rollout = self.rollout.load_full();
        let candidate = rollout
            .as_ref()
            .filter(|r| r.routes_to_candidate(key))
            .map(|r| r.candidate.clone());
        let mut env = self.env(false);
        if rollout
            .as_ref()
            .is_some_and(|r| matches!(r.mode, RolloutMode::Shadow))
        {
            // The live call's answers are taped for the shadow candidate's same requests.
            env.effects = Effects::Taped(Arc::default());
        }
        Ok(Lease {
            slot: self.clone(),
            on_candidate: candidate.is_some(),
            plugin: candidate.unwrap_or(plugin),
            env,
            rollout,
            finished: false,
        })
    }
}
