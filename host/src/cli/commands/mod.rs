//! The operator commands: each builds its admin API request ([`ApiCall`]) from the
//! arguments, sends it, and prints a summary of the answer (or the JSON with `--json`).

use std::path::Path;

use anyhow::{Context, bail};
use serde_json::{Map, Value, json};
use tessera::plugins::CallInput;

use super::args::{ActionArgs, ActivateArgs, PluginCommand, ReplayArgs};
use super::build::{Component, PluginCrate};
use super::client::{ApiCall, Client};
use super::sandbox;

mod render;
mod requests;
#[cfg(test)]
mod tests;

use render::*;
use requests::*;

/// A client and how to print answers.
pub struct Ctx {
    /// The admin API.
    pub client: Client,
    /// Print raw JSON instead of summaries.
    pub json: bool,
}

impl Ctx {
    /// Prints `value` as JSON when asked to, else runs `summary` on it.
    fn show(&self, value: &Value, summary: impl FnOnce(&Value)) {
        if self.json {
            println!(
                "{}",
                serde_json::to_string_pretty(value).unwrap_or_default()
            );
        } else {
            summary(value);
        }
    }
}

/// Runs an operator command (every subcommand but new, build and test).
pub async fn run(command: PluginCommand, ctx: Ctx) -> anyhow::Result<()> {
    match command {
        PluginCommand::Push(args) => push(&ctx, &args.path).await,
        PluginCommand::List => list(&ctx).await,
        PluginCommand::Show { id } => show(&ctx, &id).await,
        PluginCommand::Shadow { id } => shadow(&ctx, &id).await,
        PluginCommand::Activate(args) => activate(&ctx, &args).await,
        PluginCommand::Promote(args) => action(&ctx, "promote", &args).await,
        PluginCommand::Abort(args) => action(&ctx, "abort", &args).await,
        PluginCommand::Rollback(args) => action(&ctx, "rollback", &args).await,
        PluginCommand::Disable(args) => action(&ctx, "disable", &args).await,
        PluginCommand::Enable(args) => action(&ctx, "enable", &args).await,
        PluginCommand::Config { id, pairs } => config(&ctx, &id, &pairs).await,
        PluginCommand::Logs { id, limit } => logs(&ctx, &id, limit).await,
        PluginCommand::Failures { id } => failures(&ctx, &id).await,
        PluginCommand::Replay(args) => replay(&ctx, &args).await,
        PluginCommand::Audit { plugin, limit } => audit(&ctx, plugin.as_deref(), limit).await,
        PluginCommand::New { .. } | PluginCommand::Build(_) | PluginCommand::Test(_) => {
            unreachable!("authoring commands need no host")
        }
    }
}

async fn push(ctx: &Ctx, dir: &Path) -> anyhow::Result<()> {
    let component = Component::read_for_upload(&PluginCrate::locate(dir)?)?;
    let id = component.manifest.id.clone();
    let answer = ctx
        .client
        .upload(component.manifest_text, component.bytes)
        .await?;
    ctx.show(&answer, |v| {
        println!("Uploaded {id} {}", text(&v["version"]));
        println!("  sha256     {}", text(&v["sha256"]));
        print_review(&v["review"]);
        let approve = if v["review"]["needs_approval"].as_bool() == Some(true) {
            " --approve"
        } else {
            ""
        };
        println!("Next: tessera plugin activate {id}{approve}");
    });
    Ok(())
}

async fn list(ctx: &Ctx) -> anyhow::Result<()> {
    let answer = ctx.client.call(&ApiCall::get("/v1/plugins")).await?;
    ctx.show(&answer, |v| {
        let plugins = v["plugins"].as_array().map_or(&[][..], Vec::as_slice);
        if plugins.is_empty() {
            println!("No plugins yet; push one with `tessera plugin push`.");
            return;
        }
        println!(
            "{:<24} {:<13} {:<9} {:<10} {:<13} {:>8}",
            "ID", "KIND", "STATE", "LIVE", "SHA256", "VERSIONS"
        );
        for p in plugins {
            println!(
                "{:<24} {:<13} {:<9} {:<10} {:<13} {:>8}",
                text(&p["id"]),
                text(&p["kind"]),
                text(&p["state"]),
                text(&p["live_version"]),
                short(&p["live"]),
                p["versions"].as_array().map_or(0, Vec::len)
            );
        }
    });
    Ok(())
}

async fn show(ctx: &Ctx, id: &str) -> anyhow::Result<()> {
    let view = ctx.client.call(&ApiCall::get(plugin_path(id, ""))).await?;
    ctx.show(&view, |v| {
        print_plugin(v);
        if v["rollout"].is_object() {
            print_arms(&v["rollout"]);
        }
        println!("versions (newest last):");
        for version in v["versions"].as_array().into_iter().flatten() {
            let live = if version["live"].as_bool() == Some(true) {
                " live"
            } else {
                ""
            };
            println!(
                "  {} {}{live}, uploaded {}",
                short(&version["sha256"]),
                text(&version["version"]),
                timestamp(version["uploaded_at_ms"].as_u64().unwrap_or(0))
            );
            print_figures("", &version["stats"]);
        }
    });
    Ok(())
}

async fn shadow(ctx: &Ctx, id: &str) -> anyhow::Result<()> {
    let answer = ctx
        .client
        .call(&ApiCall::get(plugin_path(id, "/shadow")))
        .await?;
    ctx.show(&answer, |v| {
        let report = &v["report"];
        println!(
            "{id}: shadow of {} ({}) since {}",
            text(&v["candidate_version"]),
            short(&v["candidate"]),
            timestamp(v["started_ms"].as_u64().unwrap_or(0))
        );
        println!(
            "  compared {}, same {}, different {}, skipped {}",
            report["compared"].as_u64().unwrap_or(0),
            report["same"].as_u64().unwrap_or(0),
            report["different"].as_u64().unwrap_or(0),
            report["skipped"].as_u64().unwrap_or(0)
        );
        print_arms(v);
        for sample in report["samples"].as_array().into_iter().flatten() {
            println!(
                "- {}\n  input     {}\n  live      {}\n  candidate {}",
                timestamp(sample["at_ms"].as_u64().unwrap_or(0)),
                sample["input"],
                sample["live"],
                sample["candidate"]
            );
            for request in sample["candidate_requests"]
                .as_array()
                .into_iter()
                .flatten()
            {
                println!("  stubbed   {}", text(request));
            }
        }
    });
    Ok(())
}

async fn activate(ctx: &Ctx, args: &ActivateArgs) -> anyhow::Result<()> {
    let view = ctx
        .client
        .call(&ApiCall::get(plugin_path(&args.id, "")))
        .await?;
    let sha = resolve_sha(&view, args.sha.as_deref())?;
    let answer = ctx.client.call(&activate_call(args, &sha)).await?;
    ctx.show(&answer, print_plugin);
    Ok(())
}

async fn action(ctx: &Ctx, verb: &str, args: &ActionArgs) -> anyhow::Result<()> {
    let answer = ctx.client.call(&action_call(verb, args)).await?;
    ctx.show(&answer, print_plugin);
    Ok(())
}

async fn config(ctx: &Ctx, id: &str, pairs: &[String]) -> anyhow::Result<()> {
    let answer = ctx.client.call(&config_call(id, pairs)?).await?;
    ctx.show(&answer, |v| {
        let keys: Vec<&str> = v["config"]
            .as_object()
            .map(|c| c.keys().map(String::as_str).collect())
            .unwrap_or_default();
        println!(
            "{id}: config replaced; keys now {} (secrets are never shown)",
            keys.join(", ")
        );
    });
    Ok(())
}

async fn logs(ctx: &Ctx, id: &str, limit: usize) -> anyhow::Result<()> {
    let path = plugin_path(id, &format!("/logs?limit={limit}"));
    let answer = ctx.client.call(&ApiCall::get(path)).await?;
    ctx.show(&answer, |v| {
        for line in v["lines"].as_array().into_iter().flatten() {
            println!(
                "{} {:<5} {} {}",
                timestamp(line["at_ms"].as_u64().unwrap_or(0)),
                text(&line["level"]),
                text(&line["version"]),
                text(&line["message"])
            );
        }
    });
    Ok(())
}

async fn failures(ctx: &Ctx, id: &str) -> anyhow::Result<()> {
    let answer = ctx
        .client
        .call(&ApiCall::get(plugin_path(id, "/failures")))
        .await?;
    ctx.show(&answer, |v| {
        let list = v["failures"].as_array().map_or(&[][..], Vec::as_slice);
        if list.is_empty() {
            println!("{id} has no kept failures.");
        }
        for f in list {
            println!(
                "{:>6} {} {:<8} {:<14} {:<12} {}",
                f["id"].as_u64().unwrap_or(0),
                timestamp(f["at_ms"].as_u64().unwrap_or(0)),
                text(&f["version"]),
                text(&f["call"]),
                text(&f["code"]),
                text(&f["message"])
            );
        }
        if !list.is_empty() {
            println!("Run one again with `tessera plugin replay {id} <failure id>`.");
        }
    });
    Ok(())
}

async fn replay(ctx: &Ctx, args: &ReplayArgs) -> anyhow::Result<()> {
    let (id, failure) = (&args.id, args.failure);
    let (Some(wasm), Some(manifest)) = (&args.wasm, &args.manifest) else {
        let sha = match &args.version {
            Some(given) => {
                let view = ctx.client.call(&ApiCall::get(plugin_path(id, ""))).await?;
                Some(resolve_sha(&view, Some(given))?)
            }
            None => None,
        };
        let body = sha.map(|sha| json!({ "sha256": sha }));
        let path = plugin_path(id, &format!("/failures/{failure}/replay"));
        let answer = ctx.client.call(&ApiCall::post(path, body)).await?;
        ctx.show(&answer, print_report(format!("failure {failure}")));
        return Ok(());
    };
    let record = ctx
        .client
        .call(&ApiCall::get(plugin_path(
            id,
            &format!("/failures/{failure}"),
        )))
        .await?;
    let input: CallInput = serde_json::from_value(record["input"].clone())
        .context("the host's failure record has no input this CLI can read")?;
    let manifest = std::fs::read_to_string(manifest)
        .with_context(|| format!("reading {}", manifest.display()))?;
    let wasm = std::fs::read(wasm).with_context(|| format!("reading {}", wasm.display()))?;
    let config = match &args.config {
        Some(path) => sandbox::read_config(path)?,
        None => Map::new(),
    };
    let local = sandbox::Local::open()?;
    let plugin = local.load_parts(&manifest, &wasm)?;
    let report = sandbox::run_to_json(&local, &plugin, config, &input).await;
    ctx.show(&report, print_report(format!("failure {failure} (local)")));
    Ok(())
}

async fn audit(ctx: &Ctx, plugin: Option<&str>, limit: usize) -> anyhow::Result<()> {
    let answer = ctx.client.call(&audit_call(plugin, limit)).await?;
    ctx.show(&answer, |v| {
        for e in v["entries"].as_array().into_iter().flatten() {
            println!(
                "{:>5} {} {:<10} {:<14} {:<20} {:<12} {}",
                e["seq"].as_u64().unwrap_or(0),
                timestamp(e["at_ms"].as_u64().unwrap_or(0)),
                text(&e["key_id"]),
                text(&e["action"]),
                text(&e["plugin"]),
                short(&e["sha256"]),
                e["reason"].as_str().unwrap_or("")
            );
        }
    });
    Ok(())
}
