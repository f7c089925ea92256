//! `tessera plugin`: scaffold, build, test and push plugins, and operate them on a host.
//!
//! - [`args`]: the command line.
//! - [`scaffold`]: `new`, from the files in `templates/`.
//! - [`build`]: `build` (cargo for wasm32-wasip2, component and world checks).
//! - [`sandbox`]: `test` and local `replay`, in the host's sandbox without a host.
//! - [`settings`] and [`client`]: which host, which admin key, and its admin API.
//! - [`commands`]: `push` and the operator commands.

mod args;
mod build;
mod client;
mod commands;
mod sandbox;
mod scaffold;
mod settings;

pub use args::PluginArgs;

use args::PluginCommand;

/// Runs one `tessera plugin` subcommand; on failure prints the error and its hint and
/// exits with status 1.
pub async fn run(args: PluginArgs) -> anyhow::Result<()> {
    if let Err(error) = dispatch(args).await {
        eprintln!("{}", report(&error));
        std::process::exit(1);
    }
    Ok(())
}

/// `error: ...` with its causes, one a line (no backtrace: the message names the fix).
fn report(error: &anyhow::Error) -> String {
    let mut text = format!("error: {error}");
    for cause in error.chain().skip(1) {
        text.push_str(&format!("\n  caused by: {cause}"));
    }
    text
}

async fn dispatch(args: PluginArgs) -> anyhow::Result<()> {
    match args.command {
        PluginCommand::New {
            kind,
            name,
            dir,
            sdk_path,
        } => scaffold::run(kind, &name, &dir, sdk_path.as_deref()),
        PluginCommand::Build(krate) => build::run(&krate.path),
        PluginCommand::Test(krate) => sandbox::test(&krate.path).await,
        command => {
            let client = client::Client::new(settings::resolve(args.host)?)?;
            let ctx = commands::Ctx {
                client,
                json: args.json,
            };
            commands::run(command, ctx).await
        }
    }
}
