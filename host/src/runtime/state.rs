//! What one plugin call's `Store` holds: its WASI context, granted capabilities and limits.
//!
//! A fresh `PluginState` is built for every call, so nothing a guest does survives the call
//! except through the host imports it was given (its kv namespace).

use std::sync::Arc;

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::effects::Effects;
use super::outbound::OutboundHooks;

/// A plugin's private key-value namespace, as the runtime sees it. The plugin registry
/// implements it over storage; the guest reaches it only through the `kv` import.
pub trait KvNamespace: Send + Sync {
    /// The value of `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, KvError>;
    /// Sets `key`, unless that would put the namespace (or all namespaces together) over
    /// a quota; the check and the write are one atomic step.
    fn set(&self, key: &[u8], value: &[u8]) -> Result<(), KvError>;
    /// Deletes `key`.
    fn delete(&self, key: &[u8]) -> Result<(), KvError>;
    /// How many keys the namespace holds.
    fn len(&self) -> usize;
    /// True when it holds no key.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Why a kv write was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    /// The write would put the namespace, or the kv store as a whole, over a quota.
    #[error("quota exceeded: {0}")]
    Quota(String),
    /// The store failed.
    #[error("store: {0}")]
    Backend(String),
}

/// Everything a call needs from outside the sandbox: config, kv, and whether writes are allowed.
#[derive(Clone)]
pub struct CallEnv {
    /// The plugin's operator-set config as a JSON object.
    pub config: Arc<serde_json::Value>,
    /// The plugin's kv namespace.
    pub kv: Arc<dyn KvNamespace>,
    /// True for calls whose side effects must not persist (validation runs).
    pub read_only: bool,
    /// Whether outbound requests really go out.
    pub effects: Effects,
    /// Where the guest's log lines are kept besides `tracing` (the slot's recent-log ring).
    pub logs: Option<Arc<dyn LogSink>>,
}

/// Receives a plugin's log lines.
pub trait LogSink: Send + Sync {
    /// One line at `level` (`error` .. `trace`) from `source` (`id@version`).
    fn line(&self, level: &'static str, source: &str, message: &str);
}

/// Which limit stopped a call, recorded by the limiter so the error can say so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitHit {
    /// Linear memory would have grown past the cap (bytes wanted).
    Memory(usize),
    /// A table would have grown past the cap (elements wanted).
    Table(usize),
}

/// Memory and table caps for one call; a refused growth traps.
pub struct CallLimiter {
    memory_bytes: usize,
    table_elements: usize,
    /// The limit that was hit, if any.
    pub hit: Option<LimitHit>,
    /// The largest linear memory seen in this call, in bytes.
    pub peak_memory: usize,
}

impl CallLimiter {
    /// A limiter with these caps.
    pub fn new(memory_bytes: usize, table_elements: usize) -> Self {
        Self {
            memory_bytes,
            table_elements,
            hit: None,
            peak_memory: 0,
        }
    }
}

impl ResourceLimiter for CallLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            self.hit = Some(LimitHit::Memory(desired));
            wasmtime::bail!("linear memory limit of {} bytes reached", self.memory_bytes);
        }
        self.peak_memory = self.peak_memory.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.table_elements {
            self.hit = Some(LimitHit::Table(desired));
            wasmtime::bail!("table limit of {} elements reached", self.table_elements);
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        64
    }

    fn tables(&self) -> usize {
        64
    }

    fn memories(&self) -> usize {
        16
    }
}

/// The data of one call's `Store`.
pub struct PluginState {
    pub(crate) wasi: WasiCtx,
    pub(crate) http: WasiHttpCtx,
    pub(crate) hooks: OutboundHooks,
    pub(crate) table: ResourceTable,
    pub(crate) limiter: CallLimiter,
    pub(crate) env: CallEnv,
    pub(crate) plugin: Arc<str>,
    pub(crate) stderr: MemoryOutputPipe,
    pub(crate) logs: super::log_import::LogBudget,
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for PluginState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

impl PluginState {
    /// The tail of what the guest wrote to stderr (a Rust panic message lands here).
    pub fn stderr_tail(&self) -> String {
        let bytes = self.stderr.contents();
        let text = String::from_utf8_lossy(&bytes);
        let text = text.trim();
        let start = text.len().saturating_sub(600);
        let start = (start..text.len())
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(text.len());
        text[start..].to_string()
    }
}
