//! The `tessera` binary: `tessera serve` runs the host; `tessera plugin` writes, builds,
//! tests, pushes and operates plugins.

mod cli;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tessera::outbox::{OutboxConfig, RetrySettings};
use tessera::server::{Server, ServerConfig};
use tessera::store::KvQuota;

// glibc's malloc spent a quarter of the ingest path's CPU in its arena locks; mimalloc
// raised batched ingest ~1.6x and kept p99 under 8 ms at 10,000 req/s (docs/BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "tessera",
    version,
    about = "A self-hosted orchestration layer for composable CX stacks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the host.
    Serve(ServeArgs),
    /// Writes, builds, tests and pushes plugins, and operates them on a host.
    Plugin(cli::PluginArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080", env = "TESSERA_LISTEN")]
    listen: SocketAddr,
    /// Where the store and compiled plugins live.
    #[arg(long, default_value = "./tessera-data", env = "TESSERA_DATA_DIR")]
    data_dir: PathBuf,
    /// Admin API key; generated and printed once on first start when unset.
    #[arg(long, env = "TESSERA_ADMIN_KEY", hide_env_values = true)]
    admin_key: Option<String>,
    /// Folder of NAME.wasm + NAME.toml plugins loaded and activated on first start. Default:
    /// the bundled plugins shipped beside the binary (`plugins/` next to it, or
    /// `../share/tessera/plugins`, or `../plugins` in a build tree), if there are any.
    #[arg(long, env = "TESSERA_PLUGINS_DIR")]
    plugins_dir: Option<PathBuf>,
    /// Start without the bundled plugins.
    #[arg(long, conflicts_with = "plugins_dir")]
    no_bundled_plugins: bool,
    /// Internal address (ip or ip:port) plugins may reach; repeatable. Others are refused.
    #[arg(
        long = "allow-address",
        env = "TESSERA_ALLOW_ADDRESSES",
        value_delimiter = ','
    )]
    allow_addresses: Vec<String>,
    /// PEM file of extra roots (an internal CA) that plugins' outbound HTTPS trusts besides
    /// the web's public roots; repeatable.
    #[arg(
        long = "outbound-root-cert",
        env = "TESSERA_OUTBOUND_ROOT_CERTS",
        value_delimiter = ','
    )]
    outbound_root_certs: Vec<PathBuf>,
    /// An environment variable of the host that no plugin may ever be granted (`TESSERA_*`
    /// never are); repeatable.
    #[arg(long = "secret-env", env = "TESSERA_SECRET_ENV", value_delimiter = ',')]
    secret_env: Vec<String>,
    /// Consecutive failed calls that open a plugin's circuit breaker.
    #[arg(long, default_value_t = 5)]
    breaker_threshold: u32,
    /// Seconds a tripped breaker stays open before a probe call (1 to 86400).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    breaker_cool_down_secs: u64,
    /// Meter fuel in every plugin: each call reports the instructions it ran (costs some speed
    /// everywhere). Without it, only plugins whose manifest sets `limits.fuel` are metered.
    #[arg(long, env = "TESSERA_FUEL")]
    fuel: bool,
    /// Most keys one plugin's kv namespace may hold.
    #[arg(long, default_value_t = KvQuota::default().plugin_keys)]
    kv_plugin_keys: u64,
    /// Most bytes (keys and values) one plugin's kv namespace may hold.
    #[arg(long, default_value_t = KvQuota::default().plugin_bytes)]
    kv_plugin_bytes: u64,
    /// Most bytes all plugins' kv namespaces may hold together.
    #[arg(long, default_value_t = KvQuota::default().total_bytes)]
    kv_total_bytes: u64,
    /// Megabytes of raw webhook requests kept for replay per connector (oldest dropped first).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    webhook_retention_connector_mb: u64,
    /// Megabytes of raw webhook requests kept for replay across all connectors.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    webhook_retention_total_mb: u64,
    /// Megabytes of kept failures (with their inputs) per plugin.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    failures_plugin_mb: u64,
    /// Megabytes of kept failures across all plugins.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    failures_total_mb: u64,
    /// Seconds a connection has to send a whole request head (also the keep-alive idle time).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    header_read_timeout_secs: u64,
    /// Connections served at once; more wait in the listen backlog. Keep it well under the
    /// process's open-file limit (ulimit -n).
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    max_connections: u64,
    /// Plugin instances alive at once (calls in flight). Each plugin gets a quarter of them
    /// by default; its manifest may ask for up to half (`[limits] max_concurrency`).
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    max_instances: u32,
    /// Delivery: milliseconds before a channel's first retry; each later retry waits about
    /// twice as long (with jitter). A channel's own setting (`PUT /v1/channels/{id}/settings`)
    /// overrides it.
    #[arg(long, default_value_t = RetrySettings::default().base_ms,
          value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
    retry_base_ms: u64,
    /// Delivery: the longest wait between two attempts, milliseconds.
    #[arg(long, default_value_t = RetrySettings::default().cap_ms,
          value_parser = clap::value_parser!(u64).range(10..=604_800_000))]
    retry_cap_ms: u64,
    /// Delivery: attempts before a message goes to the dead letters.
    #[arg(long, default_value_t = RetrySettings::default().max_attempts,
          value_parser = clap::value_parser!(u32).range(1..=100))]
    retry_max_attempts: u32,
    /// Delivery: sends in flight at once per channel plugin.
    #[arg(long, default_value_t = RetrySettings::default().concurrency,
          value_parser = clap::value_parser!(u32).range(1..=1_024))]
    channel_concurrency: u32,
    /// Delivery: most messages waiting in the outbox (queued, deferred, sending); past it,
    /// sends are refused with 503 until some are delivered.
    #[arg(long, default_value_t = OutboxConfig::default().max_open,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
    outbox_max_open: u64,
    /// Threads that run plugin code, apart from the threads that serve the API (default: one
    /// per core).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_024))]
    guest_threads: Option<u64>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let command = Cli::parse().command;
    // The CLI prints its own output; only the server logs at info by default.
    let default_filter = match command {
        Command::Serve(_) => "info,cranelift=warn,wasmtime=warn",
        Command::Plugin(_) => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_filter.into()),
        )
        .init();
    match command {
        Command::Serve(args) => serve(args).await,
        Command::Plugin(args) => cli::run(args).await,
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = ServerConfig::new(&args.data_dir);
    config.admin_key = args.admin_key;
    config.bundled_plugins = match (args.plugins_dir, args.no_bundled_plugins) {
        (Some(dir), _) => Some(dir),
        (None, true) => None,
        (None, false) => shipped_plugins(),
    };
    match &config.bundled_plugins {
        Some(dir) => tracing::info!("bundled plugins: {}", dir.display()),
        None => tracing::info!("no bundled plugins"),
    }
    config.allow_addresses = args.allow_addresses;
    config.outbound_root_certs = args.outbound_root_certs;
    config.engine.fuel = args.fuel;
    config.kv_quota = KvQuota {
        plugin_keys: args.kv_plugin_keys,
        plugin_bytes: args.kv_plugin_bytes,
        total_bytes: args.kv_total_bytes,
    };
    config.engine.max_instances = args.max_instances;
    if let Some(threads) = args.guest_threads {
        config.engine.guest_threads = usize::try_from(threads).unwrap_or(1);
    }
    config.registry.limits = config.registry.limits.sized_for_pool(args.max_instances);
    config.registry.limits.secret_env = args.secret_env;
    config.registry.breaker.failure_threshold = args.breaker_threshold;
    config.registry.breaker.cool_down = std::time::Duration::from_secs(args.breaker_cool_down_secs);
    const MB: u64 = 1 << 20;
    config.webhook_retention.max_bytes_per_connector = args.webhook_retention_connector_mb * MB;
    config.webhook_retention.max_total_bytes = args.webhook_retention_total_mb * MB;
    config.registry.failures.per_plugin_bytes = args.failures_plugin_mb * MB;
    config.registry.failures.total_bytes = args.failures_total_mb * MB;
    config.http.header_read_timeout = std::time::Duration::from_secs(args.header_read_timeout_secs);
    config.http.max_connections = usize::try_from(args.max_connections)
        .context("--max-connections does not fit this platform")?;
    config.outbox = OutboxConfig {
        defaults: RetrySettings {
            base_ms: args.retry_base_ms,
            cap_ms: args.retry_cap_ms,
            max_attempts: args.retry_max_attempts,
            concurrency: args.channel_concurrency,
        },
        max_open: args.outbox_max_open,
    };
    let server = Server::start(config).await.context("starting the host")?;
    if let Some(key) = &server.generated_admin_key {
        println!(
            "Generated admin key (shown once; set TESSERA_ADMIN_KEY to choose your own): {key}"
        );
    }
    let listener =
        tessera::server::bind(args.listen).with_context(|| format!("binding {}", args.listen))?;
    tracing::info!("listening on http://{}", listener.local_addr()?);
    server
        .run(listener, shutdown_signal())
        .await
        .context("serving")?;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

/// The bundled plugins shipped beside this binary: `plugins/` next to it (an unpacked
/// release), `../share/tessera/plugins` (an installed one), or `../plugins` (this source
/// tree's `target/`, after `scripts/build-plugins.sh`). The first that holds a `.wasm` wins.
fn shipped_plugins() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?.canonicalize().ok()?;
    let dir = exe.parent()?;
    [
        dir.join("plugins"),
        dir.join("../share/tessera/plugins"),
        dir.join("../plugins"),
    ]
    .into_iter()
    .find(|candidate| {
        std::fs::read_dir(candidate).is_ok_and(|entries| {
            entries
                .filter_map(Result::ok)
                .any(|e| e.path().extension().is_some_and(|x| x == "wasm"))
        })
    })
}
