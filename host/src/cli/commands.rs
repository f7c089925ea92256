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

// ---------------------------------------------------------------- requests

/// `/v1/plugins/{id}` and below.
fn plugin_path(id: &str, rest: &str) -> String {
    format!("/v1/plugins/{id}{rest}")
}

/// `{"reason": ...}` when a reason is given; no body otherwise.
fn reason_body(reason: Option<&str>) -> Option<Value> {
    reason.map(|r| json!({ "reason": r }))
}

/// `POST /v1/plugins/{id}/activate` for version `sha` with the options given.
fn activate_call(args: &ActivateArgs, sha: &str) -> ApiCall {
    let mut body = Map::new();
    body.insert("sha256".into(), sha.into());
    if args.approve {
        body.insert("approve".into(), true.into());
    }
    if args.shadow {
        body.insert("shadow".into(), true.into());
    }
    if let Some(percent) = args.canary {
        let mut canary = json!({ "percent": percent });
        let limits = [
            ("max_error_rate", args.max_error_rate.map(Value::from)),
            ("max_p99_ms", args.max_p99_ms.map(Value::from)),
            ("min_calls", args.min_calls.map(Value::from)),
        ];
        for (key, value) in limits {
            if let Some(value) = value {
                canary[key] = value;
            }
        }
        body.insert("canary".into(), canary);
    }
    if let Some(reason) = &args.reason {
        body.insert("reason".into(), reason.as_str().into());
    }
    ApiCall::post(
        plugin_path(&args.id, "/activate"),
        Some(Value::Object(body)),
    )
}

/// `POST /v1/plugins/{id}/{verb}` (promote, abort, rollback, disable, enable).
fn action_call(verb: &str, args: &ActionArgs) -> ApiCall {
    ApiCall::post(
        plugin_path(&args.id, &format!("/{verb}")),
        reason_body(args.reason.as_deref()),
    )
}

/// One `KEY=VALUE` (text) or `KEY:=JSON` pair.
fn parse_pair(pair: &str) -> anyhow::Result<(String, Value)> {
    let (key, value) = pair
        .split_once('=')
        .with_context(|| format!("`{pair}` is not KEY=VALUE (or KEY:=JSON)"))?;
    let (key, value) = match key.strip_suffix(':') {
        Some(key) => {
            let value = serde_json::from_str(value)
                .with_context(|| format!("the value of `{key}:=` is not valid JSON"))?;
            (key, value)
        }
        None => (key, Value::String(value.to_string())),
    };
    anyhow::ensure!(!key.is_empty(), "`{pair}` has an empty key");
    Ok((key.to_string(), value))
}

/// `PUT /v1/plugins/{id}/config` with exactly the pairs given.
fn config_call(id: &str, pairs: &[String]) -> anyhow::Result<ApiCall> {
    let mut config = Map::new();
    for pair in pairs {
        let (key, value) = parse_pair(pair)?;
        anyhow::ensure!(
            config.insert(key.clone(), value).is_none(),
            "`{key}` is given twice"
        );
    }
    Ok(ApiCall::put(
        plugin_path(id, "/config"),
        Value::Object(config),
    ))
}

/// `GET /v1/audit`, optionally for one plugin.
fn audit_call(plugin: Option<&str>, limit: usize) -> ApiCall {
    let filter = plugin.map_or_else(String::new, |p| format!("&plugin={p}"));
    ApiCall::get(format!("/v1/audit?limit={limit}{filter}"))
}

/// The version `given` names (a sha256 or a unique prefix of one), or the newest upload.
fn resolve_sha(view: &Value, given: Option<&str>) -> anyhow::Result<String> {
    let id = view["id"].as_str().unwrap_or("?");
    let versions = view["versions"].as_array().map_or(&[][..], Vec::as_slice);
    let sha = |v: &Value| v["sha256"].as_str().unwrap_or_default().to_string();
    let Some(given) = given else {
        return versions
            .iter()
            .max_by_key(|v| v["uploaded_at_ms"].as_u64().unwrap_or(0))
            .map(sha)
            .with_context(|| format!("`{id}` has no uploaded version; push one first"));
    };
    let matching: Vec<String> = versions
        .iter()
        .map(sha)
        .filter(|s| s.starts_with(&given.to_ascii_lowercase()))
        .collect();
    match matching.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!("`{id}` has no version {given}; `tessera plugin list --json` shows them"),
        _ => bail!(
            "{given} matches {} versions of `{id}`; give more of the sha256",
            matching.len()
        ),
    }
}

// ---------------------------------------------------------------- printing

/// `2026-11-24 12:58:16` (UTC) for Unix milliseconds.
fn timestamp(ms: u64) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| ms.to_string())
}

/// The first 12 hex digits of a sha256, enough to tell versions apart and to pass back.
fn short(sha: &Value) -> &str {
    let sha = sha.as_str().unwrap_or("-");
    &sha[..sha.len().min(12)]
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or("-")
}

/// A plugin's state after an action: live version and any rollout.
fn print_plugin(view: &Value) {
    let live = match view["live_version"].as_str() {
        Some(version) => format!("{version} ({})", short(&view["live"])),
        None => "none".to_string(),
    };
    println!(
        "{}: {}, live version {live}",
        text(&view["id"]),
        text(&view["state"])
    );
    let rollout = &view["rollout"];
    if rollout.is_object() {
        let share = rollout["canary"]["percent"]
            .as_f64()
            .map_or_else(String::new, |p| format!(" on {p}% of calls"));
        println!(
            "  {}{share}: candidate {} ({}); end it with `tessera plugin promote` or `abort`",
            text(&rollout["mode"]),
            text(&rollout["candidate_version"]),
            short(&rollout["candidate"])
        );
    }
}

/// Microseconds as milliseconds with two decimals.
fn millis(micros: &Value) -> String {
    micros
        .as_u64()
        .map_or_else(|| "-".into(), |m| format!("{:.2}", m as f64 / 1000.0))
}

/// One row of call figures: a version's stats or a rollout arm.
fn print_figures(label: &str, figures: &Value) {
    if !figures.is_object() {
        println!("  {label:<22} not loaded in this process");
        return;
    }
    let errors = figures["errors"]
        .as_u64()
        .or_else(|| figures["failures"].as_u64())
        .unwrap_or(0);
    let fuel = figures["fuel_consumed"]
        .as_u64()
        .map_or_else(String::new, |f| format!(" fuel {f}"));
    println!(
        "  {label:<22} calls {:>8} errors {errors:>6} p50 {:>8} ms p99 {:>8} ms peak {:>6} KiB{fuel}",
        figures["calls"].as_u64().unwrap_or(0),
        millis(&figures["p50_micros"]),
        millis(&figures["p99_micros"]),
        figures["peak_memory_bytes"].as_u64().unwrap_or(0) / 1024,
    );
}

/// Both arms of a rollout.
fn print_arms(rollout: &Value) {
    print_figures("live (during rollout)", &rollout["live"]);
    print_figures("candidate", &rollout["candidate_calls"]);
}

/// What a version asks for beyond the live one.
fn print_review(review: &Value) {
    let changes = review["changes"].as_array().map_or(&[][..], Vec::as_slice);
    let baseline = if review["against"].is_null() {
        "the defaults (first version)"
    } else {
        "the live version"
    };
    if changes.is_empty() {
        println!("  review     nothing beyond {baseline}");
        return;
    }
    let approval = if review["needs_approval"].as_bool() == Some(true) {
        " (activate with --approve once you have read it)"
    } else {
        ""
    };
    println!("  review     asks for more than {baseline}{approval}:");
    for change in changes {
        println!("    - {}", text(change));
    }
}

/// Prints a call report under `label`.
fn print_report(label: String) -> impl FnOnce(&Value) {
    move |report| println!("{}", sandbox::format_report(&label, report))
}

// ---------------------------------------------------------------- commands

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

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::Method;

    fn activate_args(extra: impl FnOnce(&mut ActivateArgs)) -> ActivateArgs {
        let mut args = ActivateArgs {
            id: "acme".into(),
            sha: None,
            canary: None,
            max_error_rate: None,
            max_p99_ms: None,
            min_calls: None,
            shadow: false,
            approve: false,
            reason: None,
        };
        extra(&mut args);
        args
    }

    #[test]
    fn a_plain_activation_sends_only_the_sha() {
        let call = activate_call(&activate_args(|_| {}), "ab12");
        assert_eq!(call.method, Method::POST);
        assert_eq!(call.path, "/v1/plugins/acme/activate");
        assert_eq!(call.body, Some(json!({"sha256": "ab12"})));
    }

    #[test]
    fn a_canary_activation_carries_its_limits_approval_and_reason() {
        let args = activate_args(|a| {
            a.canary = Some(5.0);
            a.max_error_rate = Some(0.02);
            a.max_p99_ms = Some(50);
            a.approve = true;
            a.reason = Some("new field".into());
        });
        let call = activate_call(&args, "ab12");
        let want = json!({
            "sha256": "ab12", "approve": true, "reason": "new field",
            "canary": {"percent": 5.0, "max_error_rate": 0.02, "max_p99_ms": 50}
        });
        assert_eq!(call.body, Some(want));
        let shadow = activate_call(&activate_args(|a| a.shadow = true), "ab12");
        assert_eq!(shadow.body, Some(json!({"sha256": "ab12", "shadow": true})));
    }

    #[test]
    fn actions_post_to_their_verb_with_an_optional_reason() {
        let args = |reason: Option<&str>| ActionArgs {
            id: "acme".into(),
            reason: reason.map(str::to_string),
        };
        for verb in ["promote", "abort", "rollback", "disable", "enable"] {
            let call = action_call(verb, &args(None));
            assert_eq!(call.path, format!("/v1/plugins/acme/{verb}"));
            assert_eq!((call.method, call.body), (Method::POST, None));
        }
        let call = action_call("rollback", &args(Some("bad deploy")));
        assert_eq!(call.body, Some(json!({"reason": "bad deploy"})));
    }

    #[test]
    fn config_sets_exactly_the_pairs_given() {
        let pairs = ["secret=a=b", "retries:=3", "dry_run:=true", "empty="].map(String::from);
        let call = config_call("acme", &pairs).unwrap();
        assert_eq!(
            (call.method, call.path.as_str()),
            (Method::PUT, "/v1/plugins/acme/config")
        );
        let want = json!({"secret": "a=b", "retries": 3, "dry_run": true, "empty": ""});
        assert_eq!(call.body, Some(want));
        for bad in ["novalue", "=x", "n:=nope"] {
            assert!(config_call("acme", &[bad.to_string()]).is_err(), "{bad}");
        }
        let twice = ["a=1", "a=2"].map(String::from);
        assert!(
            config_call("acme", &twice)
                .unwrap_err()
                .to_string()
                .contains("twice")
        );
    }

    #[test]
    fn reads_go_to_their_routes() {
        assert_eq!(audit_call(None, 20).path, "/v1/audit?limit=20");
        assert_eq!(
            audit_call(Some("acme"), 5).path,
            "/v1/audit?limit=5&plugin=acme"
        );
        assert_eq!(
            plugin_path("acme", "/failures/7"),
            "/v1/plugins/acme/failures/7"
        );
    }

    #[test]
    fn the_default_version_is_the_newest_upload_and_prefixes_resolve() {
        let view = json!({"id": "acme", "versions": [
            {"sha256": "aaaa1111", "uploaded_at_ms": 2},
            {"sha256": "aaaa2222", "uploaded_at_ms": 3},
            {"sha256": "bbbb3333", "uploaded_at_ms": 1}
        ]});
        assert_eq!(resolve_sha(&view, None).unwrap(), "aaaa2222");
        assert_eq!(resolve_sha(&view, Some("BBBB")).unwrap(), "bbbb3333");
        assert!(
            resolve_sha(&view, Some("aaaa"))
                .unwrap_err()
                .to_string()
                .contains("matches 2")
        );
        assert!(resolve_sha(&view, Some("cc")).is_err());
        let empty = json!({"id": "acme", "versions": []});
        assert!(
            resolve_sha(&empty, None)
                .unwrap_err()
                .to_string()
                .contains("push one")
        );
    }

    #[test]
    fn timestamps_are_utc() {
        assert_eq!(timestamp(0), "1970-01-01 00:00:00");
        assert_eq!(timestamp(1_700_000_000_123), "2023-11-14 22:13:20");
    }
}
