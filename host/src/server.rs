//! Assembles a running host from a [`ServerConfig`]: store, runtime, registry, admin key,
//! bundled plugins, HTTP API; `Server::run(listener, shutdown)` lets tests bind `127.0.0.1:0`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;

use crate::http::{self, AppState};
use crate::ingest::{Ingest, Poller, RawWebhooks, Retention, Sources};
use crate::plugins::Actor;
use crate::plugins::{PluginError, PluginRegistry, RegistryConfig, sha256_hex};
use crate::profiles::{Profiles, run_applier};
use crate::runtime::{AddressGrants, EngineLimits, LoadError, Runtime};
use crate::store::{EventLog, LogError, PluginStore, SledStore, StoreError};

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
    /// How long a message id is remembered for deduplication.
    pub dedupe_window: Duration,
    /// How many raw webhook requests are kept for replay, and how long.
    pub webhook_retention: Retention,
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
            dedupe_window: Duration::from_secs(24 * 3600),
            webhook_retention: Retention::default(),
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
    store: SledStore,
    /// Set when this start generated the admin key: print it once.
    pub generated_admin_key: Option<String>,
}

impl Server {
    /// Opens the store, restores plugin slots, sets up the admin key and loads bundled plugins.
    pub async fn start(config: ServerConfig) -> Result<Self, ServerError> {
        std::fs::create_dir_all(&config.data_dir)?;
        let store = SledStore::open(&config.data_dir.join("db"))?;
        let grants = AddressGrants::parse(&config.allow_addresses).map_err(ServerError::Config)?;
        http::metrics::install();
        let runtime = Runtime::new(&config.engine, grants, &config.data_dir.join("compiled"))?;
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

        if let (true, Some(dir)) = (first_start, &config.bundled_plugins) {
            load_bundled(&registry, dir).await?;
        }
        let log = Arc::new(EventLog::open(&config.data_dir.join("log"))?);
        let ingest = Arc::new(Ingest::new(log, store.db(), config.dedupe_window)?);
        let poller = Arc::new(Poller::open(registry.clone(), ingest.clone(), store.db())?);
        let state = AppState {
            poller,
            ingest,
            sources: Sources::open(store.db())?,
            profiles: Profiles::open(store.db())?,
            raw_webhooks: RawWebhooks::open(store.db(), config.webhook_retention)?,
            registry,
            admin_key_hash: admin_key_hash.into(),
            ready: Arc::new(AtomicBool::new(false)),
        };
        state.ready.store(true, Ordering::Release);
        Ok(Self {
            state,
            store,
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

    /// Serves until `shutdown` resolves, then finishes in-flight requests, stops the profile
    /// stage and the poller, and flushes the store.
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
        let poller = tokio::spawn(self.state.poller.clone().run(stopped));
        axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await?;
        let _ = stop.send(true);
        let _ = poller.await;
        let _ = applier.await;
        self.store.flush()?;
        Ok(())
    }
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
