//! Everything wasmtime: the engine, the linker of host capabilities, and sandboxed plugin calls.
//!
//! `Runtime::prepare` turns component bytes plus a [`SandboxSpec`] into a [`SandboxedPlugin`]
//! (compiled, world-checked, imports resolved into an `InstancePre`); each call on it builds a
//! fresh instance with its own limits and deadline and throws it away afterwards.
//!
//! What crosses into the rest of the host is in the host's own [`types`]; the generated
//! bindings of each contract version stay in [`contract`], converted at the call.

pub mod contract;
mod effects;
mod engine;
mod error;
mod events;
mod host_imports;
mod log_import;
pub mod net_policy;
mod outbound;
pub mod output;
mod pinned_send;
mod resources;
mod sandbox;
mod share;
mod state;
mod stats;
mod tape;
mod tcp_grant;
pub mod types;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use wasmtime::Engine;
use wasmtime::component::{Component, Linker};

pub use contract::Contract;
pub use effects::Effects;
pub use engine::{EPOCH_TICK, EngineLimits};
pub use error::{CallError, CallFailure, FailureCause, LoadError};
pub use events::{ConnectorEvent, ConnectorPage};
pub use host_imports::{KV_MAX_KEY, KV_MAX_VALUE};
pub use log_import::{
    LOG_BUDGET, LOG_BYTES_PER_CALL, MAX_FIELD_KEY_BYTES, MAX_FIELD_VALUE_BYTES, MAX_FIELDS,
    MAX_LINE_BYTES, MAX_MESSAGE_BYTES,
};
pub use net_policy::{AddressGrants, AddressRefused, HostPattern};
pub use outbound::{OutboundNet, OutboundTlsError, read_root_certs};
pub use resources::HostResources;
pub use sandbox::SandboxedPlugin;
pub use share::SHARE_WAIT;
pub use state::{CallEnv, KvError, KvNamespace, LogSink, PluginState};
pub use stats::{CallStats, CallStatsSnapshot, LatencyHistogram};
pub use tape::{Stub, Tape};
pub use tcp_grant::CONFIG_PREFIX as TCP_CONFIG_PREFIX;

use engine::{CompileCache, EpochTicker, GuestPool};
use share::Shares;

/// The three kinds of plugin, one WIT world each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PluginKind {
    /// Vendor webhooks or pulled data in, canonical events out.
    Connector,
    /// Contacts in, segment membership out.
    SegmentRule,
    /// Messages in, deliveries out.
    Channel,
}

impl PluginKind {
    /// The WIT world name.
    pub fn as_str(self) -> &'static str {
        match self {
            PluginKind::Connector => "connector",
            PluginKind::SegmentRule => "segment-rule",
            PluginKind::Channel => "channel",
        }
    }
}

impl std::fmt::Display for PluginKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the sandbox grants one plugin version: its manifest's asks, clamped to operator maxima.
#[derive(Debug, Clone)]
pub struct SandboxSpec {
    /// Plugin id.
    pub plugin: String,
    /// Plugin version.
    pub version: String,
    /// sha256 of the component, hex.
    pub sha256: String,
    /// The world the component must implement.
    pub kind: PluginKind,
    /// The contract version its manifest names (`0.1`); the component's exports must agree.
    pub contract: String,
    /// Linear memory cap, bytes.
    pub memory_bytes: usize,
    /// Table cap, elements.
    pub table_elements: usize,
    /// Deadline of one call (instantiation included).
    pub timeout: Duration,
    /// Hosts it may reach over HTTP.
    pub http_allow: Vec<HostPattern>,
    /// Response body cap for outbound HTTP.
    pub http_response_bytes: u64,
    /// Addresses it may open raw TCP connections to.
    pub tcp_allow: Vec<SocketAddr>,
    /// Config keys whose value (`ip:port` or `host:port`) names a server it may connect to
    /// (`config:<key>` in `capabilities.tcp`); resolved and checked per call.
    pub tcp_config: Vec<String>,
    /// Environment variables it sees.
    pub env: Vec<(String, String)>,
    /// Fuel one call may use; set, the plugin runs on the metered engine.
    pub fuel: Option<u64>,
    /// Calls of this plugin (all its versions) in flight at once: its share of the instance
    /// pool. The runtime keeps it between 1 and the pool's size.
    pub max_concurrency: u32,
}

/// One engine configuration with its linker, compiled-code cache and epoch ticker.
struct Flavor {
    engine: Engine,
    linker: Linker<PluginState>,
    cache: CompileCache,
    _ticker: EpochTicker,
}

impl Flavor {
    fn new(limits: &EngineLimits, cache_dir: &Path) -> Result<Self, LoadError> {
        let engine = engine::build_engine(limits)?;
        let mut linker = Linker::new(&engine);
        let link = |e: wasmtime::Error| LoadError::Cache(format!("linker: {e:#}"));
        // Every WASI interface is linked: a guest whose runtime imports files or sockets must
        // still instantiate. What it may do is decided by policy in its WasiCtx, per call.
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(link)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(link)?;
        // Every contract version's host imports, so components of each keep running.
        contract::add_to_linker(&mut linker).map_err(link)?;
        let cache = CompileCache::new(cache_dir, &engine)?;
        let ticker = EpochTicker::start(&engine);
        Ok(Self {
            engine,
            linker,
            cache,
            _ticker: ticker,
        })
    }
}

/// The wasmtime engines and linkers shared by every plugin.
///
/// Fuel metering is compiled into the code, so it needs its own engine: plugins whose
/// manifest sets `limits.fuel` run on a metered engine (built on first use, with its own
/// compiled-code cache entries); the others run on the plain one and pay nothing for it.
/// With [`EngineLimits::fuel`] the single engine meters every plugin.
pub struct Runtime {
    plain: Flavor,
    metered: std::sync::Mutex<Option<Arc<Flavor>>>,
    limits: EngineLimits,
    cache_dir: std::path::PathBuf,
    net: Arc<OutboundNet>,
    slots: Arc<tokio::sync::Semaphore>,
    shares: Shares,
    guests: Arc<GuestPool>,
}

impl Runtime {
    /// A runtime caching compiled code under `cache_dir`.
    pub fn new(
        limits: &EngineLimits,
        grants: AddressGrants,
        cache_dir: &Path,
    ) -> Result<Self, LoadError> {
        Ok(Self {
            plain: Flavor::new(limits, cache_dir)?,
            metered: std::sync::Mutex::new(None),
            limits: limits.clone(),
            cache_dir: cache_dir.to_path_buf(),
            net: Arc::new(OutboundNet::new(grants)),
            slots: Arc::new(tokio::sync::Semaphore::new(limits.max_instances as usize)),
            shares: Shares::default(),
            guests: Arc::new(GuestPool::start(limits.guest_threads)?),
        })
    }

    /// Outbound HTTPS of every plugin also trusts `roots` (an internal CA; tests use a test
    /// root). The operator's choice: no manifest can add a root.
    pub fn trust_outbound_roots(
        &mut self,
        roots: Vec<rustls::pki_types::CertificateDer<'static>>,
    ) -> Result<(), OutboundTlsError> {
        let net = OutboundNet::new(self.net.grants.clone()).with_extra_roots(roots)?;
        self.net = Arc::new(net);
        Ok(())
    }

    /// The engine of unmetered plugins, for benchmarks that compare against bare wasmtime.
    pub fn engine(&self) -> &Engine {
        &self.plain.engine
    }

    /// The metered engine, built on first use.
    fn metered(&self) -> Result<Arc<Flavor>, LoadError> {
        let mut metered = self.metered.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(flavor) = metered.as_ref() {
            return Ok(flavor.clone());
        }
        let limits = EngineLimits {
            fuel: true,
            ..self.limits.clone()
        };
        let flavor = Arc::new(Flavor::new(&limits, &self.cache_dir)?);
        *metered = Some(flavor.clone());
        Ok(flavor)
    }

    /// Compiles (or loads from the cache) and prepares a component for calls. `bytes` is
    /// called only when the compiled code is not cached.
    pub fn prepare(
        &self,
        mut spec: SandboxSpec,
        bytes: impl FnOnce() -> Result<Vec<u8>, LoadError>,
    ) -> Result<SandboxedPlugin, LoadError> {
        // Raw TCP meets the same internal-address policy as HTTP, before anything compiles;
        // the socket check of every call applies it again.
        for addr in &spec.tcp_allow {
            net_policy::check_address(*addr, &self.net.grants)
                .map_err(LoadError::AddressNotAllowed)?;
        }
        let metered;
        let flavor = if spec.fuel.is_some() && !self.limits.fuel {
            metered = self.metered()?;
            &*metered
        } else {
            &self.plain
        };
        // Compile, read the contract from the exports, resolve imports and check the world
        // first; only a component that passes is written to the compiled-code cache.
        let (component, fresh): (Component, bool) =
            match flavor.cache.cached(&flavor.engine, &spec.sha256) {
                Some(component) => (component, false),
                None => (flavor.cache.compile(&flavor.engine, &bytes()?)?, true),
            };
        let contract = contract::of_component(&component, &flavor.engine, &spec.contract)?;
        let pre = flavor
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::UnsatisfiedImport(format!("{e:#}")))?;
        spec.max_concurrency = spec
            .max_concurrency
            .clamp(1, self.limits.max_instances.max(1));
        let calls = sandbox::CallSlots {
            pool: self.slots.clone(),
            share: self.shares.of(&spec.plugin),
            guests: self.guests.clone(),
        };
        let sha256 = spec.sha256.clone();
        let plugin = SandboxedPlugin::new(spec, contract, pre, self.net.clone(), calls)?;
        if fresh {
            flavor.cache.store(&sha256, &component)?;
        }
        Ok(plugin)
    }
}
