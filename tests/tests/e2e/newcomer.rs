//! A newcomer's path, as the README's "Write a plugin" tells it: the real `tessera serve`
//! binary, then `tessera plugin new connector acme`, `build`, `test`, `push`, `config`,
//! `activate`, and a signed webhook that lands as an event on a contact. Then the operator's
//! side with the same CLI: a second version that asks for more (review, `--approve`), a
//! shadow run and its differences, a canary and its arms, promotion, kept failures and their
//! replay, rollback and the audit log.
//!
//! A second test takes the path of a third party who has only the binary: a copy of it in an
//! empty folder outside the repository scaffolds a plugin on the SDK the binary carries, which
//! builds, passes its tests and is pushed to a running host.
//!
//! The scaffolded crates build into `target/newcomer-plugin/` and `target/newcomer-alone/`,
//! kept between runs, so only the first run compiles their dependencies.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::Value;
use sha2::Sha256;
use tessera_tests::ADMIN_KEY;
use tessera_tests::process::{HostOptions, HostProcess, tessera_binary};
use tessera_tests::workspace;

const SECRET: &str = "whsec_newcomer";

/// Runs `tessera plugin ARGS` in `dir` against the host, as a newcomer's shell would.
struct Cli<'a> {
    binary: &'a Path,
    serve: &'a HostProcess,
    home: &'a Path,
    /// Under the workspace's `target/`: where cargo builds the crate, and the sandbox cache.
    target: &'a str,
    timings: Vec<(String, Duration)>,
}

impl Cli<'_> {
    fn command(&self, dir: &Path, args: &[&str]) -> Command {
        let mut command = Command::new(self.binary);
        command
            .arg("plugin")
            .args(args)
            .current_dir(dir)
            .env("TESSERA_HOST", &self.serve.base)
            .env("TESSERA_ADMIN_KEY", ADMIN_KEY)
            .env("CARGO_TARGET_DIR", workspace().join(self.target))
            .env("XDG_CONFIG_HOME", self.home.join("config"))
            .env(
                "XDG_CACHE_HOME",
                workspace().join(self.target).join("cache"),
            );
        command
    }

    fn run(&mut self, dir: &Path, args: &[&str]) -> String {
        let started = Instant::now();
        let output: Output = self
            .command(dir, args)
            .output()
            .expect("tessera plugin runs");
        let elapsed = started.elapsed();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "`tessera plugin {}` failed ({})\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n--- host log\n{}",
            args.join(" "),
            output.status,
            self.serve.output()
        );
        eprintln!("tessera plugin {} ({elapsed:.1?})", args.join(" "));
        self.timings.push((args[0].to_string(), elapsed));
        stdout
    }

    /// Runs a command that must fail; returns its stderr.
    fn run_failing(&mut self, dir: &Path, args: &[&str]) -> String {
        let output = self
            .command(dir, args)
            .output()
            .expect("tessera plugin runs");
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(
            !output.status.success(),
            "`tessera plugin {}` should fail; it printed\n{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout)
        );
        stderr
    }

    /// `run` with `--json`, parsed.
    fn json(&mut self, dir: &Path, args: &[&str]) -> Value {
        let mut with_json = vec!["--json"];
        with_json.extend_from_slice(args);
        let out = self.run(dir, &with_json);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    }
}

fn signature(body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

async fn webhook(base: &str, signature: &str, body: &str) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .post(format!("{base}/v1/connectors/acme/webhook"))
        .header("content-type", "application/json")
        .header("x-signature", signature)
        .body(body.to_string())
        .send()
        .await
        .expect("webhook sent");
    let status = response.status();
    (status, response.json().await.expect("JSON answer"))
}

async fn admin_get(base: &str, path: &str) -> Value {
    reqwest::Client::new()
        .get(format!("{base}{path}"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .expect("request sent")
        .json()
        .await
        .expect("JSON answer")
}

/// The contact with `identity` once its events include one named `name`.
async fn wait_for_event(base: &str, identity: &str, name: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let found = admin_get(base, &format!("/v1/contacts?identity={identity}")).await;
        if let Some(id) = found["contacts"][0]["id"].as_str() {
            let events = admin_get(base, &format!("/v1/contacts/{id}/events")).await;
            if let Some(event) = events["events"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|e| e["event"]["event"] == name)
            {
                return event["event"].clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "no `{name}` event on {identity}; last answer {found}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scaffolded_connector_goes_from_new_to_live_events_unchanged() {
    let started = Instant::now();
    let binary = tessera_binary();
    let tmp = tempfile::tempdir().unwrap();
    let serve = HostProcess::start_in(
        &tmp.path().join("data"),
        HostOptions {
            bundled_plugins: true,
            ..HostOptions::default()
        },
    );
    let ready = started.elapsed();
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let crate_dir = work.join("acme");
    let mut cli = Cli {
        binary: &binary,
        serve: &serve,
        home: tmp.path(),
        target: "target/newcomer-plugin",
        timings: Vec::new(),
    };

    cli.run(&work, &["new", "connector", "acme"]);
    let built = cli.run(&crate_dir, &["build"]);
    assert!(built.contains("sha256"), "{built}");
    let tested = cli.run(&crate_dir, &["test"]);
    assert!(tested.contains("order-created.json"), "{tested}");
    assert!(tested.contains("All 2 sandbox runs succeeded"), "{tested}");
    let pushed = cli.run(&crate_dir, &["push"]);
    let sha = pushed
        .lines()
        .find_map(|l| l.trim().strip_prefix("sha256"))
        .map(str::trim)
        .expect("push prints the sha256");
    assert!(
        built.contains(sha),
        "push uploads what build built: {built}"
    );
    cli.run(&crate_dir, &["config", "acme", &format!("secret={SECRET}")]);
    let activated = cli.run(&crate_dir, &["activate", "acme"]);
    assert!(activated.contains("acme: live"), "{activated}");

    let body = r#"{"id":"evt_42","type":"order.created","email":"newcomer@example.com","data":{"total":42}}"#;
    let (status, answer) = webhook(&serve.base, "sha256=00", body).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    let (status, answer) = webhook(&serve.base, &signature(body), body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let event = wait_for_event(&serve.base, "email:newcomer@example.com", "order.created").await;
    assert_eq!(event["properties"]["total"], 42, "{event}");
    assert_eq!(event["source"], "connector:acme", "{event}");

    let audit = cli.run(&crate_dir, &["audit", "--plugin", "acme"]);
    for action in ["upload", "config", "activate"] {
        assert!(audit.contains(action), "{audit}");
    }

    operate_a_second_version(&mut cli, &crate_dir, &serve.base, sha).await;
    eprintln!(
        "newcomer path: host ready in {ready:.1?}; {}; total {:.1?}",
        cli.timings
            .iter()
            .map(|(step, t)| format!("{step} {t:.1?}"))
            .collect::<Vec<_>>()
            .join(", "),
        started.elapsed()
    );
}

/// Only the binary: copied into an empty folder outside the repository, it scaffolds a
/// connector on the SDK (and WIT) it carries, unpacked into the crate, and the crate builds,
/// passes `tessera plugin test` and is pushed to a running host, with no checkout involved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_of_the_binary_alone_scaffolds_a_plugin_that_builds_and_is_pushed() {
    let tmp = tempfile::tempdir().unwrap();
    let outside = std::fs::canonicalize(tmp.path()).unwrap();
    let checkout = std::fs::canonicalize(workspace()).unwrap();
    assert!(
        !outside.starts_with(&checkout),
        "the copy must live outside the repository: {}",
        outside.display()
    );
    let alone = outside.join("bin/tessera");
    std::fs::create_dir_all(alone.parent().unwrap()).unwrap();
    std::fs::copy(tessera_binary(), &alone).unwrap();
    let serve = HostProcess::start_in(&outside.join("data"), HostOptions::default());
    let work = outside.join("work");
    std::fs::create_dir_all(&work).unwrap();
    let mut cli = Cli {
        binary: &alone,
        serve: &serve,
        home: &outside,
        target: "target/newcomer-alone",
        timings: Vec::new(),
    };

    let created = cli.run(&work, &["new", "connector", "acme"]);
    assert!(created.contains("carried by this binary"), "{created}");
    let crate_dir = work.join("acme");
    let cargo_toml = std::fs::read_to_string(crate_dir.join("Cargo.toml")).unwrap();
    let checkout_text = checkout.display().to_string();
    assert!(
        !cargo_toml.contains(&checkout_text),
        "nothing points into the checkout: {cargo_toml}"
    );
    let cargo: toml::Table = toml::from_str(&cargo_toml).unwrap();
    let sdk = cargo["dependencies"]["tessera-sdk"]["path"]
        .as_str()
        .expect("a path dependency")
        .to_string();
    assert!(sdk.starts_with("vendor/tessera-sdk-"), "{sdk}");
    let vendored = crate_dir.join(&sdk);
    for file in [
        "Cargo.toml",
        "src/lib.rs",
        "wit/v0.1.0/plugins.wit",
        "wit/v0.2.0/plugins.wit",
    ] {
        assert!(
            vendored.join(file).is_file(),
            "{file} in {}",
            vendored.display()
        );
    }
    let sdk_manifest = std::fs::read_to_string(vendored.join("Cargo.toml")).unwrap();
    assert!(!sdk_manifest.contains("workspace"), "{sdk_manifest}");
    assert!(
        crate_dir.join("Cargo.lock").is_file(),
        "the lock file is seeded"
    );

    let built = cli.run(&crate_dir, &["build"]);
    assert!(built.contains("sha256"), "{built}");
    let tested = cli.run(&crate_dir, &["test"]);
    assert!(tested.contains("All 2 sandbox runs succeeded"), "{tested}");
    let pushed = cli.run(&crate_dir, &["push"]);
    let sha = pushed
        .lines()
        .find_map(|l| l.trim().strip_prefix("sha256"))
        .map(str::trim)
        .expect("push prints the sha256");
    assert!(
        built.contains(sha),
        "push uploads what build built: {built}"
    );
    let view = admin_get(&serve.base, "/v1/plugins/acme").await;
    assert_eq!(view["versions"][0]["sha256"], sha, "{view}");
    assert_eq!(view["versions"][0]["contract"], "0.2", "{view}");
}

/// Sends `n` signed webhooks with ids `{prefix}-0..n`, each answered 200.
async fn send_orders(base: &str, prefix: &str, n: usize) {
    for i in 0..n {
        let body = format!(
            r#"{{"id":"{prefix}-{i}","type":"order.created","email":"{prefix}-{i}@example.com","data":{{"total":{i}}}}}"#
        );
        let (status, answer) = webhook(base, &signature(&body), &body).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }
}

/// Version 0.2.0 of the scaffolded connector renames its events and asks for an HTTP host;
/// the operator reviews it, shadows it, canaries it, promotes it, replays a failure on both
/// versions and rolls back, all with `tessera plugin`.
async fn operate_a_second_version(cli: &mut Cli<'_>, crate_dir: &Path, base: &str, v1: &str) {
    let edit = |file: &str, from: &str, to: &str| {
        let path = crate_dir.join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{file} has no `{from}`");
        std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    };
    edit("plugin.toml", "version = \"0.1.0\"", "version = \"0.2.0\"");
    edit("plugin.toml", "http = []", "http = [\"api.acme.example\"]");
    edit(
        "src/lib.rs",
        ", name, contact)",
        ", format!(\"{name} (v2)\"), contact)",
    );
    cli.run(crate_dir, &["build"]);
    let pushed = cli.run(crate_dir, &["push"]);
    assert!(
        pushed.contains("api.acme.example"),
        "the review names the new host: {pushed}"
    );
    let v2 = pushed
        .lines()
        .find_map(|l| l.trim().strip_prefix("sha256"))
        .map(str::trim)
        .expect("push prints the sha256")
        .to_string();

    let refused = cli.run_failing(crate_dir, &["activate", "acme", "--shadow"]);
    assert!(
        refused.contains("--approve"),
        "the error names the fix: {refused}"
    );
    let shadowing = cli.run(crate_dir, &["activate", "acme", "--shadow", "--approve"]);
    assert!(shadowing.contains("shadow"), "{shadowing}");
    send_orders(base, "shadowed", 3).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let report = cli.json(crate_dir, &["shadow", "acme"]);
        if report["report"]["different"].as_u64() == Some(3) {
            let sample = &report["report"]["samples"][0];
            assert!(sample["candidate"].to_string().contains("(v2)"), "{sample}");
            break;
        }
        assert!(Instant::now() < deadline, "no 3 differences: {report}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let shown = cli.run(crate_dir, &["shadow", "acme"]);
    assert!(shown.contains("different 3"), "{shown}");
    wait_for_event(base, "email:shadowed-0@example.com", "order.created").await;
    cli.run(crate_dir, &["abort", "acme", "--reason", "seen enough"]);

    cli.run(
        crate_dir,
        &[
            "activate",
            "acme",
            "--canary",
            "50",
            "--approve",
            "--min-calls",
            "1000",
        ],
    );
    send_orders(base, "canary", 40).await;
    let view = cli.json(crate_dir, &["show", "acme"]);
    let (live, candidate) = (
        view["rollout"]["live"]["calls"].as_u64().unwrap_or(0),
        view["rollout"]["candidate_calls"]["calls"]
            .as_u64()
            .unwrap_or(0),
    );
    assert_eq!(live + candidate, 40, "{view}");
    assert!(live > 0 && candidate > 0, "both arms take calls: {view}");
    let shown = cli.run(crate_dir, &["show", "acme"]);
    assert!(
        shown.contains("candidate") && shown.contains("0.2.0"),
        "{shown}"
    );
    let promoted = cli.run(crate_dir, &["promote", "acme"]);
    assert!(promoted.contains("live version 0.2.0"), "{promoted}");
    send_orders(base, "promoted", 1).await;
    wait_for_event(base, "email:promoted-0@example.com", "order.created (v2)").await;

    let body = r#"{"id":"bad","type":"order.created","email":"bad@example.com"}"#;
    let (status, _) = webhook(base, "sha256=00", body).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let failures = cli.json(crate_dir, &["failures", "acme"]);
    let failure = failures["failures"][0]["id"]
        .as_u64()
        .expect("the refused webhook is kept")
        .to_string();
    let replayed = cli.run(crate_dir, &["replay", "acme", &failure]);
    assert!(replayed.contains("does not match"), "{replayed}");
    let on_v1 = cli.json(crate_dir, &["replay", "acme", &failure, "--version", v1]);
    assert_eq!(on_v1["ok"], false, "{on_v1}");
    assert!(on_v1["micros"].is_u64(), "replay reports its cost: {on_v1}");

    let rolled = cli.run(crate_dir, &["rollback", "acme", "--reason", "back to v1"]);
    assert!(rolled.contains("live version 0.1.0"), "{rolled}");
    let audit = cli.run(crate_dir, &["audit", "--plugin", "acme"]);
    for action in [
        "shadow",
        "abort",
        "canary",
        "promote",
        "rollback",
        "back to v1",
    ] {
        assert!(audit.contains(action), "{action} in {audit}");
    }
    assert!(audit.contains(&v2[..12]), "{audit}");
}
