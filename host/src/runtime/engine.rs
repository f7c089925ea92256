//! The process-wide wasmtime `Engine`: pooling allocator, epoch ticker, compiled-code cache.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::component::Component;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::error::LoadError;

/// How often the epoch advances; a call's deadline is counted in these ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Engine-wide sizing, set by the operator.
#[derive(Debug, Clone)]
pub struct EngineLimits {
    /// Instances alive at once (calls in flight); further calls wait for a slot.
    pub max_instances: u32,
    /// The largest linear memory any plugin may be given, in bytes.
    pub max_memory_bytes: usize,
    /// Meter fuel (about one unit per wasm instruction) in every plugin: every call reports
    /// what it used. Costs some speed everywhere; without it only plugins with a fuel limit
    /// run metered, on an engine of their own.
    pub fuel: bool,
    /// Threads that run guest code. Guests never run on the threads that serve the API:
    /// however many spin, they share these (yielding at every epoch tick) and the API's
    /// threads stay free.
    pub guest_threads: usize,
}

impl Default for EngineLimits {
    fn default() -> Self {
        Self {
            max_instances: 512,
            max_memory_bytes: 256 << 20,
            fuel: false,
            guest_threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
        }
    }
}

/// Builds the engine every plugin runs on.
pub fn build_engine(limits: &EngineLimits) -> Result<Engine, LoadError> {
    let mut pool = PoolingAllocationConfig::default();
    let n = limits.max_instances;
    pool.total_component_instances(n)
        .total_core_instances(n * 8)
        .total_memories(n * 2)
        .total_tables(n * 4)
        .total_stacks(n)
        .max_memories_per_component(8)
        .max_tables_per_component(16)
        .max_core_instances_per_component(32)
        .max_memory_size(limits.max_memory_bytes);
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .consume_fuel(limits.fuel)
        .max_wasm_stack(512 << 10)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&config).map_err(|e| LoadError::Cache(format!("engine: {e:#}")))
}

/// The threads guest calls run on: a multi-thread tokio runtime of its own, so a guest
/// that spins (until its epoch deadline traps it) holds one of these, never one of the
/// threads that serve the API. Shut down without waiting when dropped (from any context).
pub struct GuestPool {
    runtime: Option<tokio::runtime::Runtime>,
}

impl GuestPool {
    /// Starts `threads` worker threads (at least one).
    pub fn start(threads: usize) -> Result<Self, LoadError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("tessera-guest")
            .enable_all()
            .build()
            .map_err(LoadError::Threads)?;
        Ok(Self {
            runtime: Some(runtime),
        })
    }

    /// Where guest calls are spawned.
    pub fn handle(&self) -> Option<&tokio::runtime::Handle> {
        self.runtime.as_ref().map(tokio::runtime::Runtime::handle)
    }
}

impl Drop for GuestPool {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which panics inside async code: calls still running are
        // cancelled at their next yield instead.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until dropped.
pub struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    /// Starts the ticker thread.
    pub fn start(engine: &Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, engine) = (stop.clone(), engine.weak());
        std::thread::Builder::new()
            .name("tessera-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    match engine.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            .expect("spawning the epoch thread");
        Self { stop }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Compiled components on disk, keyed by (component sha256, engine compatibility hash), so a
/// restart or a rollback deserializes (~45 µs) instead of compiling (tens of ms).
pub struct CompileCache {
    dir: PathBuf,
    compat: String,
}

impl CompileCache {
    /// A cache in `dir` for `engine`'s compilation settings.
    pub fn new(dir: &Path, engine: &Engine) -> Result<Self, LoadError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| LoadError::Cache(format!("{}: {e}", dir.display())))?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(Self {
            dir: dir.to_path_buf(),
            compat: format!("{:016x}", hasher.finish()),
        })
    }

    fn path(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}-{}.cwasm", self.compat))
    }

    /// The cached compiled component, if this engine configuration compiled it before.
    pub fn cached(&self, engine: &Engine, sha256: &str) -> Option<Component> {
        let path = self.path(sha256);
        if !path.exists() {
            return None;
        }
        // SAFETY: the file was written by `Component::serialize` of this same engine
        // configuration (the name carries the compatibility hash) into the host's own data
        // directory, which the operator controls.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(component) => Some(component),
            Err(e) => {
                tracing::warn!("recompiling {sha256}: cached code unusable: {e:#}");
                None
            }
        }
    }

    /// Compiles a component without caching it: the caller checks it first and then
    /// [`store`](Self::store)s it, so a refused component leaves nothing behind.
    pub fn compile(&self, engine: &Engine, bytes: &[u8]) -> Result<Component, LoadError> {
        Component::new(engine, bytes).map_err(|e| LoadError::NotAComponent(format!("{e:#}")))
    }

    /// Writes a checked component's compiled code, so later loads deserialize it.
    pub fn store(&self, sha256: &str, component: &Component) -> Result<(), LoadError> {
        let path = self.path(sha256);
        let serialized = component
            .serialize()
            .map_err(|e| LoadError::Cache(format!("{e:#}")))?;
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, serialized)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| LoadError::Cache(format!("{}: {e}", path.display())))
    }
}
