//! Assembles a running host from a [`ServerConfig`]: store, runtime, registry, admin key,
//! bundled plugins, HTTP API; `Server::run(listener, shutdown)` lets tests bind `127.0.0.1:0`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;

use crate::http::{self, AppState};
use crate::ingest::{Ingest, Intake, Poller, RawWebhooks, Retention, Sources};
use crate::journeys::{Journeys, run_stage as run_journeys};
use crate::outbox::{Outbox, OutboxConfig, OutboxWorker};
use crate::plugins::Actor;
use crate::plugins::{EngineRecords, PluginStore};
use crate::plugins::{PluginError, PluginRegistry, RegistryConfig, sha256_hex};
use crate::profiles::{Profiles, run_applier};
use crate::runtime::{
    AddressGrants, EngineLimits, LoadError, OutboundTlsError, Runtime, read_root_certs,
};
use crate::segments::{Rules, Segments, run_stage as run_segments};
use crate::store::{Engine, EventLog, KvQuota, LogError, MemoryEngine, SledEngine, StoreError};

/// Everything an operator sets.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where the store and the compiled-code cache live.
    pub data_dir: PathBuf,
    /// The admin key; when `None`, the stored one is kept or a new one generated.
    pub admin_key: Option<String>,
    /// A folder of `NAME.wasm` + `NAME.toml` pairs loaded and activated on first start.
    pub bundled_plugins: Option<PathBuf>,
    /// Engine sizing.
    pub engine: EngineLimits,
    /// Plugin limits and breaker settings.
    pub registry: RegistryConfig,
    /// Internal addresses (`ip` or `ip:port`) plugins may reach; all others are refused.
    pub allow_addresses: Vec<String>,
    /// PEM files of roots that plugins' outbound HTTPS trusts besides the web's public ones.
    pub outbound_root_certs: Vec<PathBuf>,
    /// How long a message id is remembered for deduplication.
    pub dedupe_window: Duration,
    /// How many raw webhook requests are kept for replay, how many bytes of them, how long.
    pub webhook_retention: Retention,
    /// What plugins' kv namespaces may hold, each and together.
    pub kv_quota: KvQuota,
    /// Limits on HTTP connections: timeouts and a cap.
    pub http: HttpLimits,
    /// Where derived state (profiles, indexes, plugin records) is kept.
    pub storage: Storage,
    /// Delivery: retry defaults every channel starts from, and the outbox's size limit.
    pub outbox: OutboxConfig,
}

/// The storage engine of a host's derived state. The event log is always a file in the data
/// directory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Storage {
    /// sled, in `DATA/db` (the default).
    #[default]
    Embedded,
    /// Memory only, gone when the host stops (for tests).
    Memory,
}

/// Limits on the HTTP listener, so slow or abandoned connections cannot starve it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// A connection must deliver a whole request head within this long of the server
    /// starting to wait for it (on a new connection, and between requests on a kept-alive
    /// one, so it is also the idle timeout); otherwise it is closed.
    pub header_read_timeout: Duration,
    /// Whether a connection may carry more than one request.
    pub keep_alive: bool,
    /// Connections served at once; further ones wait in the listen backlog until one closes.
    pub max_connections: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            keep_alive: true,
            max_connections: 4096,
        }
    }
}

impl ServerConfig {
    /// Defaults with the given data directory.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            admin_key: None,
            bundled_plugins: None,
            engine: EngineLimits::default(),
            registry: RegistryConfig::default(),
            allow_addresses: Vec::new(),
            outbound_root_certs: Vec::new(),
            dedupe_window: Duration::from_secs(24 * 3600),
            webhook_retention: Retention::default(),
            kv_quota: KvQuota::default(),
            http: HttpLimits::default(),
            storage: Storage::Embedded,
            outbox: OutboxConfig::default(),
        }
    }
}

/// Why the host could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The configuration is invalid.
    #[error("configuration: {0}")]
    Config(String),
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The runtime could not be built.
    #[error(transparent)]
    Runtime(#[from] LoadError),
    /// The roots for plugins' outbound HTTPS could not be read.
    #[error("outbound HTTPS roots: {0}")]
    OutboundTls(#[from] OutboundTlsError),
    /// Restoring plugin slots failed.
    #[error(transparent)]
    Plugins(#[from] PluginError),
    /// The event log could not be opened.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The ingest stage could not read the log back into its dedupe state.
    #[error(transparent)]
    Ingest(#[from] crate::ingest::IngestError),
    /// Serving failed.
    #[error("serving: {0}")]
    Io(#[from] std::io::Error),
}

/// A started host, not yet serving.
pub struct Server {
    state: AppState,
    store: EngineRecords,
    http: HttpLimits,
    /// Set when this start generated the admin key: print it once.
    pub generated_admin_key: Option<String>,
}

impl Server {
    /// Opens the store, restores plugin slots, sets up the admin key and loads bundled plugins.
    pub async fn start(config: ServerConfig) -> Result<Self, ServerError> {
        std::fs::create_dir_all(&config.data_dir)?;
        let engine: Arc<dyn Engine> = match config.storage {
            Storage::Embedded => Arc::new(SledEngine::open(&config.data_dir.join("db"))?),
            Storage::Memory => Arc::new(MemoryEngine::new()),
        };
        let store = EngineRecords::open(engine.clone())?;
        store.set_kv_quota(config.kv_quota);
        let grants = AddressGrants::parse(&config.allow_addresses).map_err(ServerError::Config)?;
        http::metrics::install();
        let mut runtime = Runtime::new(&config.engine, grants, &config.data_dir.join("compiled"))?;
        if !config.outbound_root_certs.is_empty() {
            let mut roots = Vec::new();
            for path in &config.outbound_root_certs {
                roots.extend(read_root_certs(path)?);
            }
            runtime.trust_outbound_roots(roots)?;
        }
        let first_start = store.slots()?.is_empty();
        let registry = Arc::new(PluginRegistry::open(
            runtime,
            Arc::new(store.clone()),
            config.registry.clone(),
        )?);

        let mut generated_admin_key = None;
        let admin_key_hash = match (&config.admin_key, store.admin_key_hash()?) {
            (Some(key), _) => {
                let hash = sha256_hex(key.as_bytes());
                store.set_admin_key_hash(&hash)?;
                hash
            }
            (None, Some(hash)) => hash,
            (None, None) => {
                let key = hex::encode(rand::random::<[u8; 24]>());
                let hash = sha256_hex(key.as_bytes());
                store.set_admin_key_hash(&hash)?;
                generated_admin_key = Some(key);
                hash
            }
        };

        if config.http.max_connections == 0 || config.http.max_connections > MAX_CONNECTIONS {
            return Err(ServerError::Config(format!(
                "max connections must be 1 to {MAX_CONNECTIONS}"
            )));
        }
        if config.http.header_read_timeout.is_zero() {
            return Err(ServerError::Config(
                "the header read timeout must be above zero".into(),
            ));
        }
        if let (true, Some(dir)) = (first_start, &config.bundled_plugins) {
            load_bundled(&registry, dir).await?;
        }
        let log = Arc::new(EventLog::open(&config.data_dir.join("log"))?);
        let ingest = Arc::new(Ingest::new(log, &*engine, config.dedupe_window)?);
        let raw_webhooks = RawWebhooks::open(&engine, config.webhook_retention)?;
        let intake = Intake::new(registry.clone(), ingest.clone(), raw_webhooks.clone());
        let poller = Arc::new(Poller::open(registry.clone(), intake.clone(), &*engine)?);
        let profiles = Profiles::open(&*engine)?;
        let segments = Segments::open(
            &*engine,
            Rules::new(registry.clone()),
            profiles.clone(),
            ingest.clone(),
        )?;
        config
            .outbox
            .defaults
            .check()
            .map_err(|e| ServerError::Config(format!("delivery retry defaults: {e}")))?;
        let outbox = Outbox::open_with(engine.clone(), config.outbox)?;
        let journeys = Journeys::open(
            &*engine,
            profiles.clone(),
            Arc::new(segments.clone()),
            registry.clone(),
            ingest.clone(),
            outbox.clone(),
        )?;
        let state = AppState {
            journeys,
            outbox,
            poller,
            ingest,
            sources: Sources::open(&*engine)?,
            profiles,
            segments,
            raw_webhooks,
            intake,
            registry,
            admin_key_hash: admin_key_hash.into(),
            ready: Arc::new(AtomicBool::new(false)),
        };
        state.ready.store(true, Ordering::Release);
        Ok(Self {
            state,
            store,
            http: config.http,
            generated_admin_key,
        })
    }

    /// The plugin registry.
    pub fn registry(&self) -> &Arc<PluginRegistry> {
        &self.state.registry
    }

    /// Tracking sources (to create write keys without the API).
    pub fn sources(&self) -> &Sources {
        &self.state.sources
    }

    /// Contact profiles.
    pub fn profiles(&self) -> &Profiles {
        &self.state.profiles
    }

    /// The HTTP API.
    pub fn router(&self) -> Router {
        http::router(self.state.clone())
    }

    /// Serves until `shutdown` resolves, then finishes in-flight requests, stops the poller,
    /// the delivery worker (letting its sends in flight finish) and the pipeline stages
    /// (profiles, segments, journeys), and flushes the store.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let applier = tokio::spawn(run_applier(
            self.state.ingest.clone(),
            self.state.profiles.clone(),
            stopped.clone(),
        ));
        let segments = tokio::spawn(run_segments(self.state.segments.clone(), stopped.clone()));
        let journeys = tokio::spawn(run_journeys(self.state.journeys.clone(), stopped.clone()));
        let worker = OutboxWorker::new(
            self.state.outbox.clone(),
            self.state.registry.clone(),
            self.state.profiles.clone(),
            self.state.ingest.clone(),
        );
        let delivery = tokio::spawn(worker.run(stopped.clone()));
        let poller = tokio::spawn(self.state.poller.clone().run(stopped));
        serve(listener, self.router(), self.http, shutdown).await;
        let _ = stop.send(true);
        let _ = poller.await;
        let _ = delivery.await;
        let _ = journeys.await;
        let _ = segments.await;
        let _ = applier.await;
        self.store.flush()?;
        Ok(())
    }
}

/// Pending connections the kernel holds for the host before it accepts them (the kernel caps it
/// at `net.core.somaxconn`, 4096 by default).
pub const LISTEN_BACKLOG: u32 = 4096;

/// Binds the host's listener with a backlog of [`LISTEN_BACKLOG`]. The usual default (128) is
/// too short for a burst of connects: once it is full, Linux drops the handshake's last ACK, the
/// client believes it is connected, and a client that then waits to be spoken to is never
/// seen by the host (and so never timed out by it).
pub fn bind(address: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if address.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)
}

/// The most connections [`HttpLimits::max_connections`] may allow (a semaphore's limit).
pub const MAX_CONNECTIONS: usize = 1 << 20;

/// Accepts connections while fewer than `limits.max_connections` are open and serves each
/// with HTTP/1.1 and a header-read timeout. When `shutdown` resolves: stops accepting, lets
/// every connection finish its request in flight (idle ones close at once), and returns once
/// all are closed.
async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    use hyper::server::conn::http1;
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;
    use tokio::sync::Semaphore;
    use tower::ServiceExt;

    let permits = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let slots = Arc::new(Semaphore::new(permits as usize));
    let (closing, _) = tokio::sync::watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(limits.keep_alive);
    loop {
        // A slot first: past the cap, new connections wait in the listen backlog.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot,
            () = &mut shutdown => break,
        };
        let Ok(slot) = slot else { break };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                if !matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionRefused
                        | std::io::ErrorKind::ConnectionAborted
                        | std::io::ErrorKind::ConnectionReset
                ) {
                    // Typically out of file descriptors: wait for some to close.
                    tracing::error!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone().map_request(
            |req: axum::http::Request<hyper::body::Incoming>| req.map(axum::body::Body::new),
        ));
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        let mut closing = closing.subscribe();
        tokio::spawn(async move {
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!("connection ended: {e}");
                    }
                }
                _ = async { closing.wait_for(|c| *c).await.map(drop) } => {
                    connection.as_mut().graceful_shutdown();
                    if let Err(e) = connection.await {
                        tracing::debug!("connection ended: {e}");
                    }
                }
            }
            drop(slot);
        });
    }
    let _ = closing.send(true);
    // Every connection holds a slot until it ends: all of them back means all are closed.
    let _ = slots.acquire_many(permits).await;
}

/// Uploads and activates every `NAME.wasm` + `NAME.toml` pair in `dir`. A plugin whose
/// activation fails (typically: it needs config first) stays uploaded and inactive.
async fn load_bundled(registry: &Arc<PluginRegistry>, dir: &Path) -> Result<(), ServerError> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| ServerError::Config(format!("bundled plugins {}: {e}", dir.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
        .collect();
    entries.sort();
    for wasm in entries {
        let toml = wasm.with_extension("toml");
        let (Ok(bytes), Ok(manifest)) = (std::fs::read(&wasm), std::fs::read_to_string(&toml))
        else {
            tracing::warn!(
                "skipping {}: needs a readable {} beside it",
                wasm.display(),
                toml.display()
            );
            continue;
        };
        let reg = registry.clone();
        let uploaded = tokio::task::spawn_blocking(move || {
            reg.upload_bundled(&manifest, &bytes, &Actor::host("bundled plugin"))
        })
        .await
        .map_err(|e| ServerError::Config(e.to_string()))?;
        let version = match uploaded {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!("bundled plugin {} not loaded: {e}", wasm.display());
                continue;
            }
        };
        let id = registry
            .list()
            .into_iter()
            .find(|p| p.versions.iter().any(|v| v.sha256 == version.sha256))
            .map(|p| p.id);
        let Some(id) = id else { continue };
        match registry.activate(&id, &version.sha256).await {
            Ok(_) => {
                tracing::info!(plugin = %id, version = %version.version, "bundled plugin is live")
            }
            Err(e) => tracing::warn!(plugin = %id, "bundled plugin uploaded but not live: {e}"),
        }
    }
    Ok(())
}
