//! Plugin versions, slots and their lifecycle: upload, validate, activate, roll back, disable.
//!
//! A version is a component plus its manifest, identified by the component's sha256. A slot per
//! plugin id holds the live version behind `arc-swap`: activation validates a version first and
//! then swaps atomically, so calls in flight finish on the version they started with.

mod breaker;
mod call_input;
mod call_output;
mod calls;
mod kv;
mod limits;
mod local;
mod logs;
mod manifest;
mod registry;
mod review;
mod rollout;
mod slot;
mod store;

pub use breaker::{BreakerConfig, BreakerView};
pub use call_input::{CallInput, InputError, WebhookInput};
pub use call_output::{CallReport, readable, readable_error};
pub use limits::OperatorLimits;
pub use local::{LocalSandbox, run_input};
pub use logs::LogLine;
pub use manifest::{
    Capabilities, ChannelSpec, ConfigError, ConfigSpec, Limits, MAX_FUEL, MAX_HTTP_RESPONSE_BYTES,
    MAX_MEMORY_MB, MAX_POLL_INTERVAL_SECS, MAX_TIMEOUT_MS, Manifest, ManifestError, Medium,
    PollSpec, SUPPORTED_CONTRACTS, valid_id,
};
pub use registry::{
    ActivateOptions, Actor, PluginRegistry, PluginView, RegistryConfig, VersionView, sha256_hex,
};
pub use review::CapabilityReview;
pub use rollout::{CanaryPlan, CanaryPlanError, RolloutMode, RolloutView, ShadowReport};
pub use slot::PluginSlot;
pub use store::{
    Action, Activation, AuditEntry, EngineRecords, FailureLimits, FailureRecord, PluginStore,
    RolloutRecord, SlotRecord, VersionRecord,
};

use crate::runtime::{CallError, LoadError, PluginKind};
use crate::store::StoreError;

/// Why a plugin operation or call failed. The HTTP layer maps each variant to a status.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// No slot with that id.
    #[error("no plugin `{0}`")]
    UnknownPlugin(String),
    /// The plugin has no version with that hash.
    #[error("plugin `{plugin}` has no version {sha256}")]
    UnknownVersion {
        /// Plugin id.
        plugin: String,
        /// The hash asked for.
        sha256: String,
    },
    /// The manifest is invalid.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The component could not be loaded.
    #[error("plugin `{plugin}`: {source}")]
    Load {
        /// Plugin id.
        plugin: String,
        /// The load failure.
        source: LoadError,
    },
    /// A version's kind differs from the slot's.
    #[error("plugin `{plugin}` is a {slot} plugin; this version is a {version}")]
    KindConflict {
        /// Plugin id.
        plugin: String,
        /// The slot's kind.
        slot: PluginKind,
        /// The uploaded version's kind.
        version: PluginKind,
    },
    /// The manifest asks for one of the host's own environment variables.
    #[error(
        "plugin `{plugin}` asks for the environment variable `{name}`, which belongs to the host \
         (TESSERA_* and the names given with --secret-env) and can never be granted; remove it \
         from capabilities.env"
    )]
    HostSecret {
        /// Plugin id.
        plugin: String,
        /// The variable.
        name: String,
    },
    /// The component was uploaded before with a different manifest.
    #[error(
        "plugin `{plugin}` already has version {sha256} with a different manifest; a version is \
         its component, so its manifest cannot change: bump the version and rebuild the \
         component, or upload a different component"
    )]
    ManifestConflict {
        /// Plugin id.
        plugin: String,
        /// The component's hash.
        sha256: String,
    },
    /// The plugin was called as the wrong kind.
    #[error("plugin `{plugin}` is a {actual} plugin, not a {wanted}")]
    WrongKind {
        /// Plugin id.
        plugin: String,
        /// Its kind.
        actual: PluginKind,
        /// The kind the caller needs.
        wanted: PluginKind,
    },
    /// The version's self-test (or config check) failed; the old version stays live.
    #[error("plugin `{plugin}` version {sha256} failed validation: {reason}")]
    SelfTestFailed {
        /// Plugin id.
        plugin: String,
        /// The version that failed.
        sha256: String,
        /// Why.
        reason: String,
    },
    /// The operator's config does not fit the manifest.
    #[error("plugin `{plugin}`: {reason}")]
    InvalidConfig {
        /// Plugin id.
        plugin: String,
        /// Why.
        reason: String,
    },
    /// No version is live.
    #[error(
        "plugin `{0}` has no live version: activate one (`POST /v1/plugins/{0}/activate`); a bundled plugin waiting for its config goes live when a valid config is set (`PUT /v1/plugins/{0}/config`)"
    )]
    NotLive(String),
    /// The operator disabled the plugin.
    #[error("plugin `{0}` is disabled")]
    Disabled(String),
    /// Too many consecutive failures; calls are refused for a while.
    #[error(
        "plugin `{plugin}` is failing: its circuit breaker is open (retry in {retry_in_ms} ms)"
    )]
    BreakerOpen {
        /// Plugin id.
        plugin: String,
        /// Milliseconds until a probe call is allowed.
        retry_in_ms: u64,
    },
    /// The version asks for more than the live one and the activation did not approve it.
    #[error(
        "plugin `{plugin}` version {sha256} asks for more than the live version ({}); activate with approval to accept",
        review.changes.join("; ")
    )]
    ApprovalRequired {
        /// Plugin id.
        plugin: String,
        /// The version.
        sha256: String,
        /// What it asks for beyond the live version.
        review: CapabilityReview,
    },
    /// The canary settings are out of range.
    #[error("{0}")]
    BadCanaryPlan(#[from] CanaryPlanError),
    /// A canary or shadow run cannot start as asked.
    #[error("{0}")]
    InvalidRollout(String),
    /// No canary or shadow run is in progress.
    #[error("plugin `{0}` has no canary or shadow run in progress")]
    NoRollout(String),
    /// No kept failure with that id.
    #[error("plugin `{plugin}` has no kept failure {id}")]
    UnknownFailure {
        /// Plugin id.
        plugin: String,
        /// The id asked for.
        id: u64,
    },
    /// The kept failure's input was over the size kept whole, so it cannot be replayed.
    #[error(
        "plugin `{plugin}`: kept failure {id} holds only the start of its input (it was too large to keep whole) and cannot be replayed"
    )]
    TruncatedFailure {
        /// Plugin id.
        plugin: String,
        /// The failure.
        id: u64,
    },
    /// There is no earlier version to roll back to.
    #[error("plugin `{0}` has no earlier version to roll back to")]
    NothingToRollBack(String),
    /// The call into the plugin failed.
    #[error(transparent)]
    Call(#[from] CallError),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}
