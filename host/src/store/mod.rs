//! Persistence behind traits: what the rest of the host may ask of storage.
//!
//! `PluginStore` keeps plugin versions (component bytes and manifests), slots (live pointer,
//! history, config, enabled flag), admin key hashes, and each plugin's private kv namespace.
//! The embedded backend is `sled` ([`SledStore`]).

pub mod bounded;
mod event_log;
mod kv_quota;
mod sled_store;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::plugins::Manifest;

use crate::runtime::{KvNamespace, PluginKind};

pub use event_log::{EventLog, LogError, is_redacted};
pub use kv_quota::{KvLedger, KvQuota, KvUsage};
pub use sled_store::SledStore;

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend failed.
    #[error("store backend: {0}")]
    Backend(String),
    /// A stored record could not be decoded.
    #[error("corrupt record `{key}`: {detail}")]
    Corrupt {
        /// The record's key.
        key: String,
        /// The decoding error.
        detail: String,
    },
}

/// One uploaded version of a plugin.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionRecord {
    /// sha256 of the component, hex: the version's identity.
    pub sha256: String,
    /// Its manifest.
    pub manifest: Manifest,
    /// Component size in bytes.
    pub size: u64,
    /// Upload time, Unix milliseconds.
    pub uploaded_at_ms: u64,
    /// The interfaces the component imports, read from the component at upload.
    #[serde(default)]
    pub imports: Vec<String>,
    /// Loaded from the operator's `--plugins-dir` at first start: trusted as shipped, so its
    /// first activation needs no approval.
    #[serde(default)]
    pub bundled: bool,
}

/// One change of a slot's live version.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Activation {
    /// The version made live.
    pub sha256: String,
    /// `activate` or `rollback`.
    pub action: String,
    /// When, Unix milliseconds.
    pub at_ms: u64,
}

/// The persisted state of a plugin slot.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SlotRecord {
    /// Plugin id.
    pub id: String,
    /// Its kind, fixed by the first upload.
    pub kind: PluginKind,
    /// The live version's sha256, if one is live.
    pub live: Option<String>,
    /// True when the operator disabled the slot.
    pub disabled: bool,
    /// Operator-set config (a JSON object).
    pub config: serde_json::Map<String, serde_json::Value>,
    /// Every activation and rollback, oldest first.
    pub history: Vec<Activation>,
    /// A canary or shadow run in progress, restored at start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutRecord>,
}

/// A candidate version running beside the live one.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RolloutRecord {
    /// The candidate.
    pub sha256: String,
    /// `canary` (with its plan) or `shadow`.
    pub mode: crate::plugins::RolloutMode,
    /// When it started, Unix milliseconds.
    pub started_ms: u64,
}

/// One operator action, as `GET /v1/audit` lists it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Position in the audit log (assigned by the store).
    #[serde(default)]
    pub seq: u64,
    /// When, Unix milliseconds.
    pub at_ms: u64,
    /// Who: a short id of the admin key (its sha256 prefix), or `host` for the host's own acts.
    pub key_id: String,
    /// `upload`, `activate`, `canary`, `shadow`, `promote`, `abort`, `auto-rollback`,
    /// `rollback`, `disable`, `enable`, `config`.
    pub action: String,
    /// The plugin.
    pub plugin: String,
    /// The version concerned, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Why, as the operator or the host said it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A failed call kept with its exact input, for `replay`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailureRecord {
    /// Id within the plugin (assigned by the store).
    #[serde(default)]
    pub id: u64,
    /// When, Unix milliseconds.
    pub at_ms: u64,
    /// The version that failed.
    pub sha256: String,
    /// Its manifest version.
    pub version: String,
    /// `handle-webhook`, `poll`, `evaluate`, `send`.
    pub call: String,
    /// `error` (returned by the plugin) or the failure cause (`deadline`, `trap`, ...).
    pub code: String,
    /// What happened.
    pub message: String,
    /// Call duration, microseconds.
    pub micros: u64,
    /// The input, secrets redacted.
    pub input: crate::plugins::CallInput,
    /// True when the input was over [`FailureLimits::max_input_bytes`] and was cut to fit:
    /// such a failure can be read but not replayed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub input_truncated: bool,
}

/// How much failure history is kept. The oldest failures go first: a plugin's own when it is
/// over its share, the plugin holding the most bytes' when all plugins are over the total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureLimits {
    /// Failures kept per plugin.
    pub per_plugin: usize,
    /// Bytes of failures kept per plugin (as stored: input, message, key).
    pub per_plugin_bytes: u64,
    /// Bytes of failures kept across every plugin.
    pub total_bytes: u64,
    /// The largest input a failure keeps whole; a larger one is cut to this size.
    pub max_input_bytes: usize,
    /// Calls refused as unauthorized (a bad webhook signature) are kept apart, in a class
    /// of their own that can never evict the real failures: this many per plugin,
    pub refused_per_plugin: usize,
    /// this many bytes per plugin,
    pub refused_per_plugin_bytes: u64,
    /// this many bytes across every plugin,
    pub refused_total_bytes: u64,
    /// with inputs cut to this size.
    pub refused_max_input_bytes: usize,
}

impl Default for FailureLimits {
    fn default() -> Self {
        Self {
            per_plugin: 100,
            per_plugin_bytes: 4 << 20,
            total_bytes: 64 << 20,
            max_input_bytes: 256 << 10,
            refused_per_plugin: 10,
            refused_per_plugin_bytes: 1 << 20,
            refused_total_bytes: 8 << 20,
            refused_max_input_bytes: 64 << 10,
        }
    }
}

/// What the plugin registry needs from storage.
pub trait PluginStore: Send + Sync {
    /// Stores a version and its component bytes (idempotent on the sha).
    fn put_version(
        &self,
        plugin: &str,
        record: &VersionRecord,
        component: &[u8],
    ) -> Result<(), StoreError>;
    /// The versions of a plugin, oldest upload first.
    fn versions(&self, plugin: &str) -> Result<Vec<VersionRecord>, StoreError>;
    /// The component bytes of a version.
    fn component(&self, sha256: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Writes a slot record durably.
    fn put_slot(&self, slot: &SlotRecord) -> Result<(), StoreError>;
    /// Every slot record.
    fn slots(&self) -> Result<Vec<SlotRecord>, StoreError>;
    /// The plugin's private kv namespace.
    fn kv(&self, plugin: &str) -> Result<Arc<dyn KvNamespace>, StoreError>;
    /// The sha256 hex of the admin key, if one was set.
    fn admin_key_hash(&self) -> Result<Option<String>, StoreError>;
    /// Sets the sha256 hex of the admin key.
    fn set_admin_key_hash(&self, hash: &str) -> Result<(), StoreError>;
    /// Appends an audit entry durably; returns its sequence number.
    fn append_audit(&self, entry: &AuditEntry) -> Result<u64, StoreError>;
    /// The newest `limit` audit entries (of one plugin, if given), oldest first.
    fn audit(&self, plugin: Option<&str>, limit: usize) -> Result<Vec<AuditEntry>, StoreError>;
    /// Keeps a failed call, dropping the oldest beyond `limits`; returns its id.
    fn put_failure(
        &self,
        plugin: &str,
        record: &FailureRecord,
        limits: &FailureLimits,
    ) -> Result<u64, StoreError>;
    /// Keeps a call refused as unauthorized in its own class (see
    /// [`FailureLimits::refused_per_plugin`]), which never evicts real failures; returns its id.
    fn put_refusal(
        &self,
        plugin: &str,
        record: &FailureRecord,
        limits: &FailureLimits,
    ) -> Result<u64, StoreError>;
    /// A plugin's kept failures and refusals, newest first.
    fn failures(&self, plugin: &str) -> Result<Vec<FailureRecord>, StoreError>;
}
