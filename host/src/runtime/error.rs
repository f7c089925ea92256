//! Typed failures of the runtime: loading a component, and one call into a plugin.

use std::time::Duration;

use super::PluginKind;

/// Why a component could not be loaded or prepared.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The bytes are not a valid WebAssembly component.
    #[error("not a valid WebAssembly component: {0}")]
    NotAComponent(String),
    /// The component does not export the world its manifest claims.
    #[error("the component does not implement the `{expected}` world{}: {detail}", found.map(|k| format!(" (it implements `{k}`)")).unwrap_or_default())]
    WorldMismatch {
        /// The kind the manifest names.
        expected: PluginKind,
        /// The kind the component does implement, if any.
        found: Option<PluginKind>,
        /// What is missing.
        detail: String,
    },
    /// The component's exports implement another contract version than its manifest names.
    #[error(
        "plugin.toml names contract `{manifest}`, but the component implements contract \
         {component}; the version is read from the component's `tessera:cx/...@X.Y.Z` exports, \
         so plugin.toml must name the one it was built against (this host serves {})",
        super::contract::SUPPORTED.join(", ")
    )]
    ContractMismatch {
        /// What the manifest names (`0.1`).
        manifest: String,
        /// What the component's exports name, with an example export.
        component: String,
    },
    /// The component imports an interface the host does not provide.
    #[error("the component imports something the host does not provide: {0}")]
    UnsatisfiedImport(String),
    /// A raw TCP grant names an internal address the operator did not list.
    #[error("capabilities.tcp: {0}")]
    AddressNotAllowed(super::net_policy::AddressRefused),
    /// The on-disk compiled-code cache failed.
    #[error("compiled-code cache: {0}")]
    Cache(String),
    /// The threads guest calls run on could not be started.
    #[error("could not start the guest threads: {0}")]
    Threads(std::io::Error),
}

/// What went wrong inside one call. Only this call fails; the host and other calls go on.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallFailure {
    /// The call ran past its deadline (epoch interruption or the outer timeout).
    #[error("ran past its deadline of {} ms", .0.as_millis())]
    Deadline(Duration),
    /// Linear memory would have grown past the cap.
    #[error("tried to grow linear memory to {wanted} bytes, over the limit of {limit} bytes")]
    MemoryLimit {
        /// Bytes the guest asked for.
        wanted: usize,
        /// The cap.
        limit: usize,
    },
    /// A table would have grown past the cap.
    #[error("tried to grow a table past the limit")]
    TableLimit,
    /// The guest overflowed its stack.
    #[error("overflowed its stack")]
    StackOverflow,
    /// The guest panicked (its message, from stderr, when there was one).
    #[error("panicked: {0}")]
    Panic(String),
    /// Any other trap.
    #[error("trapped: {0}")]
    Trap(String),
    /// Instantiation failed (for example the pool of instances is exhausted).
    #[error("could not be instantiated: {0}")]
    Instantiate(String),
    /// The call used up its fuel (instruction budget).
    #[error("used up its fuel budget of {0} units")]
    FuelExhausted(u64),
    /// The guest returned something that breaks the contract.
    #[error("returned malformed output: {0}")]
    MalformedOutput(String),
    /// The guest's output is over the call's output budget or an event is over the event
    /// limit.
    #[error("returned too much: {0}")]
    OutputLimit(String),
    /// The guest made the host hold more resources (handles, header maps, buffered bodies)
    /// than its share.
    #[error("held too many host resources: {0}")]
    ResourceLimit(String),
    /// The guest logged more than the call's log budget.
    #[error("logged too much: {0}")]
    LogLimit(String),
    /// The plugin already had its share of the instance pool in flight and no call of it
    /// ended within the short wait. Load, not a fault: the breaker and canary verdicts do not
    /// count it, and no failure record is kept.
    #[error("has {limit} calls in flight, its share of the instance pool; retry shortly")]
    ConcurrencyLimit {
        /// The plugin's share: calls in flight at once.
        limit: u32,
    },
}

/// Why a call failed, without the details: what kept failures, counters, metrics and API
/// errors name, spelled on the wire as [`FailureCause::code`] says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureCause {
    /// The plugin returned an error of its own (an answer, kept for diagnosis).
    Error,
    /// [`CallFailure::Deadline`].
    Deadline,
    /// [`CallFailure::MemoryLimit`].
    MemoryLimit,
    /// [`CallFailure::TableLimit`].
    TableLimit,
    /// [`CallFailure::StackOverflow`].
    StackOverflow,
    /// [`CallFailure::Panic`].
    Panic,
    /// [`CallFailure::Trap`].
    Trap,
    /// [`CallFailure::Instantiate`].
    Instantiate,
    /// [`CallFailure::MalformedOutput`].
    MalformedOutput,
    /// [`CallFailure::FuelExhausted`].
    #[serde(rename = "fuel")]
    FuelExhausted,
    /// [`CallFailure::OutputLimit`].
    OutputLimit,
    /// [`CallFailure::ResourceLimit`].
    ResourceLimit,
    /// [`CallFailure::LogLimit`].
    LogLimit,
    /// [`CallFailure::ConcurrencyLimit`].
    ConcurrencyLimit,
}

impl FailureCause {
    /// The cause's stable name.
    pub fn code(self) -> &'static str {
        match self {
            FailureCause::Error => "error",
            FailureCause::Deadline => "deadline",
            FailureCause::MemoryLimit => "memory_limit",
            FailureCause::TableLimit => "table_limit",
            FailureCause::StackOverflow => "stack_overflow",
            FailureCause::Panic => "panic",
            FailureCause::Trap => "trap",
            FailureCause::Instantiate => "instantiate",
            FailureCause::MalformedOutput => "malformed_output",
            FailureCause::FuelExhausted => "fuel",
            FailureCause::OutputLimit => "output_limit",
            FailureCause::ResourceLimit => "resource_limit",
            FailureCause::LogLimit => "log_limit",
            FailureCause::ConcurrencyLimit => "concurrency_limit",
        }
    }
}

impl std::fmt::Display for FailureCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

impl CallFailure {
    /// The cause, without the details.
    pub fn cause(&self) -> FailureCause {
        match self {
            CallFailure::Deadline(_) => FailureCause::Deadline,
            CallFailure::MemoryLimit { .. } => FailureCause::MemoryLimit,
            CallFailure::TableLimit => FailureCause::TableLimit,
            CallFailure::StackOverflow => FailureCause::StackOverflow,
            CallFailure::Panic(_) => FailureCause::Panic,
            CallFailure::Trap(_) => FailureCause::Trap,
            CallFailure::Instantiate(_) => FailureCause::Instantiate,
            CallFailure::MalformedOutput(_) => FailureCause::MalformedOutput,
            CallFailure::FuelExhausted(_) => FailureCause::FuelExhausted,
            CallFailure::OutputLimit(_) => FailureCause::OutputLimit,
            CallFailure::ResourceLimit(_) => FailureCause::ResourceLimit,
            CallFailure::LogLimit(_) => FailureCause::LogLimit,
            CallFailure::ConcurrencyLimit { .. } => FailureCause::ConcurrencyLimit,
        }
    }

    /// A short stable name, used in counters, metrics and API errors.
    pub fn code(&self) -> &'static str {
        self.cause().code()
    }

    /// True for a refusal under load (the call never ran), which says nothing about the
    /// plugin's health.
    pub fn is_load(&self) -> bool {
        matches!(self, CallFailure::ConcurrencyLimit { .. })
    }
}

/// A failed call, naming the plugin version that failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("plugin {plugin}@{version} ({}) {cause}", &sha256[..12])]
pub struct CallError {
    /// Plugin id.
    pub plugin: String,
    /// Plugin version (from its manifest).
    pub version: String,
    /// sha256 of the component.
    pub sha256: String,
    /// What went wrong.
    pub cause: CallFailure,
}
