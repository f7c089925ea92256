//! The `tessera` binary: `tessera serve` runs the host; `tessera plugin` writes, builds,
//! tests, pushes and operates plugins.

mod cli;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tessera::server::{Server, ServerConfig};

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
    /// Folder of NAME.wasm + NAME.toml plugins loaded and activated on first start.
    #[arg(long, env = "TESSERA_PLUGINS_DIR")]
    plugins_dir: Option<PathBuf>,
    /// Internal address (ip or ip:port) plugins may reach; repeatable. Others are refused.
    #[arg(
        long = "allow-address",
        env = "TESSERA_ALLOW_ADDRESSES",
        value_delimiter = ','
    )]
    allow_addresses: Vec<String>,
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
    config.bundled_plugins = args.plugins_dir;
    config.allow_addresses = args.allow_addresses;
    config.engine.fuel = args.fuel;
    config.registry.limits.secret_env = args.secret_env;
    config.registry.breaker.failure_threshold = args.breaker_threshold;
    config.registry.breaker.cool_down = std::time::Duration::from_secs(args.breaker_cool_down_secs);
    let server = Server::start(config).await.context("starting the host")?;
    if let Some(key) = &server.generated_admin_key {
        println!(
            "Generated admin key (shown once; set TESSERA_ADMIN_KEY to choose your own): {key}"
        );
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
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
