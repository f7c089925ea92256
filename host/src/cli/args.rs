//! The `tessera plugin` command line: subcommands, flags and their validation.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

/// `tessera plugin ...`: write, build, test and push plugins, and operate them on a host.
#[derive(Args)]
pub struct PluginArgs {
    /// The subcommand.
    #[command(subcommand)]
    pub command: PluginCommand,
    /// The host's address [default: TESSERA_HOST, else `host` in ~/.config/tessera/cli.toml,
    /// else http://127.0.0.1:8080]. The admin key comes from TESSERA_ADMIN_KEY or `admin_key`
    /// in the same file.
    #[arg(long, global = true, env = "TESSERA_HOST")]
    pub host: Option<String>,
    /// Print the host's JSON answers as they are instead of a summary.
    #[arg(long, global = true)]
    pub json: bool,
}

/// The plugin kinds, as `plugin.toml` spells them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    /// Vendor webhooks (or pulled pages) in, canonical events out.
    Connector,
    /// Decides which contacts belong to a segment.
    SegmentRule,
    /// Delivers messages (email, SMS, webhooks, ...).
    Channel,
}

impl Kind {
    /// The name `plugin.toml` uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Connector => "connector",
            Kind::SegmentRule => "segment-rule",
            Kind::Channel => "channel",
        }
    }
}

/// Where a plugin crate is.
#[derive(Args)]
pub struct CrateArgs {
    /// The plugin crate's folder (with Cargo.toml and plugin.toml).
    #[arg(long, default_value = ".")]
    pub path: PathBuf,
}

/// A plugin id argument and the reason recorded in the audit log.
#[derive(Args)]
pub struct ActionArgs {
    /// The plugin id.
    #[arg(value_parser = plugin_id)]
    pub id: String,
    /// Why, recorded in the audit log.
    #[arg(long)]
    pub reason: Option<String>,
}

/// The subcommands.
#[derive(Subcommand)]
pub enum PluginCommand {
    /// Creates a plugin crate NAME/ with a manifest, an implementation, tests and a fixture.
    New {
        /// What the plugin is.
        kind: Kind,
        /// Its id and crate name (a-z, 0-9 and -, starting with a letter).
        #[arg(value_parser = crate_name)]
        name: String,
        /// The folder to create NAME/ in.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// A local tessera-sdk to depend on [default: the checkout's sdk/ when this binary
        /// runs from it, else the SDK this binary carries, unpacked into vendor/].
        #[arg(long)]
        sdk_path: Option<PathBuf>,
    },
    /// Builds the component (cargo, wasm32-wasip2), checks it against plugin.toml, prints its hash.
    Build(CrateArgs),
    /// Runs `cargo test`, then the built component in the sandbox on its self-test and on
    /// every fixtures/*.json input (config from fixtures/config.json).
    Test(CrateArgs),
    /// Uploads the built component with its plugin.toml to the host.
    Push(CrateArgs),
    /// Lists the host's plugins.
    List,
    /// Shows one plugin: state, versions with their call figures, and any canary or shadow
    /// run with both arms' counters.
    Show {
        /// The plugin id.
        #[arg(value_parser = plugin_id)]
        id: String,
    },
    /// Shows a shadow run's comparison: counts and the latest differing outputs.
    Shadow {
        /// The plugin id.
        #[arg(value_parser = plugin_id)]
        id: String,
    },
    /// Makes a version live, or starts a canary or shadow run of it.
    Activate(ActivateArgs),
    /// Makes a canary or shadow candidate the live version.
    Promote(ActionArgs),
    /// Ends a canary or shadow run; the live version stays.
    Abort(ActionArgs),
    /// Goes back to the version live before the current one.
    Rollback(ActionArgs),
    /// Refuses every call to the plugin until it is enabled again.
    Disable(ActionArgs),
    /// Lets calls through again.
    Enable(ActionArgs),
    /// Replaces the plugin's whole config with KEY=VALUE (text) and KEY:=JSON pairs.
    Config {
        /// The plugin id.
        #[arg(value_parser = plugin_id)]
        id: String,
        /// `KEY=VALUE` sets a text value; `KEY:=JSON` a JSON value (`retries:=3`).
        #[arg(required = true, value_name = "KEY=VALUE")]
        pairs: Vec<String>,
    },
    /// Shows the plugin's recent log lines.
    Logs {
        /// The plugin id.
        #[arg(value_parser = plugin_id)]
        id: String,
        /// How many lines, newest last.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Lists the plugin's kept failures (use their id with `replay`).
    Failures {
        /// The plugin id.
        #[arg(value_parser = plugin_id)]
        id: String,
    },
    /// Runs a kept failure's input again: on the host (live or --version), or locally on a
    /// component you built (--wasm with --manifest).
    Replay(ReplayArgs),
    /// Shows the audit log of operator actions.
    Audit {
        /// Only this plugin's entries.
        #[arg(long, value_parser = plugin_id)]
        plugin: Option<String>,
        /// How many entries.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

/// `activate`.
#[derive(Args)]
pub struct ActivateArgs {
    /// The plugin id.
    #[arg(value_parser = plugin_id)]
    pub id: String,
    /// The version's sha256 [default: the newest uploaded version].
    pub sha: Option<String>,
    /// Start a canary: the candidate takes this percentage of calls.
    #[arg(long, value_name = "PCT")]
    pub canary: Option<f64>,
    /// Canary: roll back when the candidate's error rate exceeds the live one's by more (0..1).
    #[arg(long, requires = "canary", value_name = "R")]
    pub max_error_rate: Option<f64>,
    /// Canary: roll back when the candidate's p99 latency exceeds this.
    #[arg(long, requires = "canary", value_name = "MS")]
    pub max_p99_ms: Option<u64>,
    /// Canary: candidate calls before a verdict.
    #[arg(long, requires = "canary", value_name = "N")]
    pub min_calls: Option<u64>,
    /// Start a shadow run: the candidate sees copies of live calls; its output is compared,
    /// never used.
    #[arg(long, conflicts_with = "canary")]
    pub shadow: bool,
    /// Accept capabilities the version asks for beyond the live one's (read the review first).
    #[arg(long)]
    pub approve: bool,
    /// Why, recorded in the audit log.
    #[arg(long)]
    pub reason: Option<String>,
}

/// `replay`.
#[derive(Args)]
pub struct ReplayArgs {
    /// The plugin id.
    #[arg(value_parser = plugin_id)]
    pub id: String,
    /// The failure's id (from `tessera plugin failures`).
    pub failure: u64,
    /// Replay on the host on this uploaded version instead of the live one.
    #[arg(long, value_name = "SHA", conflicts_with = "wasm")]
    pub version: Option<String>,
    /// Replay locally on this component instead of on the host.
    #[arg(long, value_name = "FILE", requires = "manifest")]
    pub wasm: Option<PathBuf>,
    /// The component's plugin.toml (with --wasm).
    #[arg(long, value_name = "FILE", requires = "wasm")]
    pub manifest: Option<PathBuf>,
    /// Local replay: the config as a JSON file (the host never shows secrets).
    #[arg(long, value_name = "FILE", requires = "wasm")]
    pub config: Option<PathBuf>,
}

/// A plugin id: what the host accepts, so that a typo fails before any request.
fn plugin_id(text: &str) -> Result<String, String> {
    if tessera::plugins::valid_id(text) {
        Ok(text.to_string())
    } else {
        Err("plugin ids are 1-64 characters of a-z, 0-9 and -".into())
    }
}

/// A new plugin's name: a plugin id that is also a crate name (starts with a letter).
fn crate_name(text: &str) -> Result<String, String> {
    let id = plugin_id(text)?;
    if id.starts_with(|c: char| c.is_ascii_lowercase()) && !id.ends_with('-') {
        Ok(id)
    } else {
        Err("a plugin name starts with a letter (a-z) and does not end with -".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        plugin: PluginArgs,
    }

    fn parse(args: &[&str]) -> Result<PluginArgs, clap::Error> {
        let argv = std::iter::once("tessera-plugin").chain(args.iter().copied());
        Cli::try_parse_from(argv).map(|cli| cli.plugin)
    }

    #[test]
    fn new_takes_a_kind_and_a_crate_name() {
        let args = parse(&["new", "segment-rule", "vip-rule", "--dir", "/tmp"]).unwrap();
        let PluginCommand::New { kind, name, .. } = args.command else {
            panic!("new expected")
        };
        assert_eq!((kind, name.as_str()), (Kind::SegmentRule, "vip-rule"));
        for bad in ["Acme", "9lives", "acme-", "a_b"] {
            assert!(parse(&["new", "connector", bad]).is_err(), "{bad}");
        }
        assert!(parse(&["new", "mailer", "acme"]).is_err());
    }

    #[test]
    fn canary_limits_need_a_canary_and_shadow_excludes_it() {
        assert!(parse(&["activate", "acme", "--max-p99-ms", "50"]).is_err());
        assert!(parse(&["activate", "acme", "--canary", "5", "--shadow"]).is_err());
        let args = parse(&["activate", "acme", "--canary", "5", "--min-calls", "10"]).unwrap();
        let PluginCommand::Activate(a) = args.command else {
            panic!("activate expected")
        };
        assert_eq!((a.canary, a.min_calls, a.sha), (Some(5.0), Some(10), None));
    }

    #[test]
    fn replay_locally_needs_wasm_and_manifest_and_excludes_version() {
        assert!(parse(&["replay", "acme", "3", "--wasm", "a.wasm"]).is_err());
        assert!(
            parse(&[
                "replay",
                "acme",
                "3",
                "--version",
                "ab",
                "--wasm",
                "a.wasm",
                "--manifest",
                "p.toml"
            ])
            .is_err()
        );
        assert!(
            parse(&[
                "replay",
                "acme",
                "3",
                "--wasm",
                "a.wasm",
                "--manifest",
                "p.toml"
            ])
            .is_ok()
        );
        assert!(parse(&["replay", "acme", "3"]).is_ok());
    }

    #[test]
    fn host_and_json_are_global() {
        let args = parse(&["list", "--host", "http://h:1", "--json"]).unwrap();
        assert_eq!(args.host.as_deref(), Some("http://h:1"));
        assert!(args.json);
    }
}
