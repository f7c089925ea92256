//! Hostile manifests and uploads: numbers that overflowed the host, a poll round the process
//! died in, environment grants that read the host's own secrets, and uploads that left
//! compiled code behind or silently kept an earlier manifest.

// Each test holds its turn (`crate::serial`) for its whole length, awaits included.
#![allow(clippy::await_holding_lock)]

use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use tessera_tests::artifact;
use tessera_tests::process::{HostOptions, HostProcess};

/// A connector manifest for one of the built test guests, with `extra` TOML appended.
fn connector_manifest(id: &str, extra: &str) -> String {
    format!("id = \"{id}\"\nkind = \"connector\"\nversion = \"1.0.0\"\ncontract = \"0.2\"\n{extra}")
}

fn component(name: &str) -> Vec<u8> {
    std::fs::read(artifact(name)).expect("built component")
}

/// The files in the host's compiled-code cache.
fn compiled_files(data_dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(data_dir.join("compiled"))
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

/// Item 14: a component refused by the world check used to be compiled and cached first, so
/// every refused upload left a compiled file in DATA/compiled/.
#[tokio::test]
async fn a_refused_upload_leaves_no_compiled_code() {
    let _turn = crate::serial();
    let host = HostProcess::start(HostOptions::default());
    let before = compiled_files(&host.data_dir);
    // A connector component uploaded as a channel: it does not export the channel world.
    let wrong_kind = connector_manifest("manifest-wrong-kind", "").replace("connector", "channel");
    let (status, body) = host.upload_bytes(component("version-a"), &wrong_kind).await;
    assert!(status.is_client_error(), "{status}: {body}");
    assert_eq!(code(&body), "world_mismatch", "{body}");
    assert_eq!(
        compiled_files(&host.data_dir),
        before,
        "a refused component left compiled code behind"
    );
    // The same component with the right kind is accepted and cached: the check can see a write.
    let right = connector_manifest("manifest-wrong-kind", "");
    let (status, body) = host.upload_bytes(component("version-a"), &right).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(compiled_files(&host.data_dir).len(), before.len() + 1);
}

/// Item 14: re-uploading the same component with another manifest answered 201 and kept the
/// first manifest without a word.
#[tokio::test]
async fn a_reupload_with_another_manifest_is_refused() {
    let _turn = crate::serial();
    let host = HostProcess::start(HostOptions::default());
    let first = connector_manifest("manifest-reupload", "description = \"first\"\n");
    let (status, body) = host.upload_bytes(component("version-a"), &first).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let sha = body["sha256"].as_str().expect("sha256").to_string();
    // The identical upload stays idempotent.
    let (status, again) = host.upload_bytes(component("version-a"), &first).await;
    assert_eq!(status, StatusCode::CREATED, "{again}");
    assert_eq!(again["sha256"], sha.as_str());
    // Another manifest for the same bytes is refused, naming the way out.
    let second = connector_manifest(
        "manifest-reupload",
        "description = \"second\"\n[limits]\nmemory_mb = 128\n",
    );
    let (status, body) = host.upload_bytes(component("version-a"), &second).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(code(&body), "manifest_conflict", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("bump the version") && message.contains("different component"),
        "{message}"
    );
    let (_, version) = host
        .get(&format!("/v1/plugins/manifest-reupload/versions/{sha}"))
        .await;
    assert_eq!(version["description"], "first", "{version}");
}

/// Polls `path` until `check` accepts the answer, or panics after `timeout` with the last one.
async fn wait_for(
    host: &HostProcess,
    path: &str,
    timeout: Duration,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let (_, body) = host.get(path).await;
        if check(&body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{path} never as expected: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Item 4: `[poll] interval_secs = u64::MAX` passed validation; the first poll round panicked
/// on `Instant + Duration` while holding the poll-state lock, the cleanup panicked again on
/// the poisoned lock, and the process aborted (and again on every restart).
#[tokio::test]
async fn a_huge_poll_interval_is_refused_at_upload() {
    let _turn = crate::serial();
    let mut host = HostProcess::start(HostOptions::default());
    let huge = connector_manifest(
        "manifest-huge-interval",
        "[poll]\ninterval_secs = 18446744073709551615\n",
    );
    let (status, body) = host.upload_bytes(component("version-a"), &huge).await;
    if status == StatusCode::CREATED {
        // What the host did with it: make it live and watch the first round.
        let sha = body["sha256"].as_str().unwrap_or_default().to_string();
        let (activated, _) = host
            .post(
                "/v1/plugins/manifest-huge-interval/activate",
                &json!({ "sha256": sha, "approve": true }),
            )
            .await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        panic!(
            "the interval was accepted (activate: {activated}); 3 s later the host is alive: {}",
            host.is_alive()
        );
    }
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(code(&body), "invalid_manifest", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("poll.interval_secs must be within 1..=604800"),
        "{message}"
    );
    // Every other number is bounded the same way.
    let huge_limit = connector_manifest(
        "manifest-huge-interval",
        "[limits]\ntimeout_ms = 18446744073709551615\n",
    );
    let (status, body) = host.upload_bytes(component("version-a"), &huge_limit).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("limits.timeout_ms must be within")),
        "{body}"
    );
    let (status, _) = host.get("/healthz").await;
    assert_eq!(status, StatusCode::OK);
    assert!(host.is_alive());
}

/// Item 4: a host that died during a poll round restarts and serves, and leaves that plugin's
/// polling off with the reason (visible in its poll status and the audit log) instead of
/// running the same round again; enabling the plugin turns polling back on.
#[tokio::test]
async fn a_host_killed_during_a_poll_round_restarts_with_that_polling_off() {
    let _turn = crate::serial();
    let mut host = HostProcess::start(HostOptions::default());
    let sha = host
        .install("manifest-slow-poll", "manifest-slow-poll")
        .await;
    // A webhook-only plugin beside it keeps working throughout.
    host.install("version-a", "versioned").await;
    let status_path = "/v1/plugins/manifest-slow-poll/poll";
    wait_for(&host, status_path, Duration::from_secs(10), |s| {
        s["polling"] == true
    })
    .await;
    // The first round starts at the next tick (1 s) and takes 20 s: kill the host inside it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (_, during) = host.get(status_path).await;
    assert!(
        during["last_poll_at_ms"].is_null(),
        "the round should still be running: {during}"
    );
    host.kill();
    let started = Instant::now();
    host.restart();
    let (status, _) = host.get("/healthz").await;
    assert_eq!(status, StatusCode::OK);
    let serving_after = started.elapsed();
    let (status, out) = host.webhook("versioned", "/", "after-the-crash").await;
    assert_eq!(status, StatusCode::OK, "other plugins answer: {out}");
    // Several ticks later the slow connector has not been polled again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(host.is_alive());
    let (_, after) = host.get(status_path).await;
    eprintln!("restarted and serving in {serving_after:?}; 3 s later, poll status: {after}");
    let reason = after["disabled"].as_str().unwrap_or_default();
    assert!(
        reason.contains("stopped during a poll round") && reason.contains(&sha),
        "the restarted host should leave this polling off with the reason: {after}"
    );
    assert_eq!(after["polling"], false, "{after}");
    let (_, audit) = host.get("/v1/audit?plugin=manifest-slow-poll").await;
    assert!(
        audit["entries"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["action"] == "poll-disabled")),
        "{audit}"
    );
    // Still off after another restart; enabling the plugin turns polling back on.
    host.restart();
    let (_, again) = host.get(status_path).await;
    assert!(again["disabled"].is_string(), "{again}");
    let (status, view) = host
        .post("/v1/plugins/manifest-slow-poll/enable", &json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{view}");
    wait_for(&host, status_path, Duration::from_secs(10), |s| {
        s["polling"] == true && s["disabled"].is_null()
    })
    .await;
}

/// Item 8: a first upload with `env = ["TESSERA_ADMIN_KEY"]` was reviewed as needing no
/// approval, went live, and read the admin key.
#[tokio::test]
async fn the_hosts_own_environment_can_never_be_granted() {
    let _turn = crate::serial();
    let host = HostProcess::start(HostOptions {
        args: vec!["--secret-env".into(), "MANIFEST_DB_PASSWORD".into()],
        env: vec![("MANIFEST_DB_PASSWORD".into(), "hunter2".into())],
        ..HostOptions::default()
    });
    for name in [
        "TESSERA_ADMIN_KEY",
        "TESSERA_DATA_DIR",
        "MANIFEST_DB_PASSWORD",
    ] {
        let asks = connector_manifest(
            "manifest-reads-secrets",
            &format!("[capabilities]\nenv = [\"{name}\"]\n"),
        );
        let (status, body) = host.upload_bytes(component("version-a"), &asks).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name}: {body}");
        assert_eq!(code(&body), "host_secret", "{body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(name) && message.contains("can never be granted"),
            "{message}"
        );
    }
    let (_, listed) = host.get("/v1/plugins").await;
    assert_eq!(listed["plugins"], json!([]), "nothing was stored: {listed}");
}

/// The other side of item 8: a variable the manifest names and the operator approved
/// reaches the guest with the host's value; one it does not name never does.
#[tokio::test]
async fn a_granted_env_variable_reaches_the_guest_and_no_other_does() {
    let _turn = crate::serial();
    let host = HostProcess::start(HostOptions {
        env: vec![
            ("ACME_REGION".into(), "eu-west-1".into()),
            ("ACME_NOT_GRANTED".into(), "hidden".into()),
        ],
        ..HostOptions::default()
    });
    let asks = connector_manifest(
        "manifest-reads-env",
        "[capabilities]\nenv = [\"ACME_REGION\"]\n",
    );
    let (status, uploaded) = host.upload_bytes(component("hostile"), &asks).await;
    assert_eq!(status, StatusCode::CREATED, "{uploaded}");
    let changes = uploaded["review"]["changes"].to_string();
    assert!(
        changes.contains("`ACME_REGION`"),
        "the grant is reviewed: {changes}"
    );
    let (status, view) = host
        .post(
            "/v1/plugins/manifest-reads-env/activate",
            &json!({ "sha256": uploaded["sha256"], "approve": true }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{view}");
    for (name, want) in [
        ("ACME_REGION", "set:eu-west-1"),
        ("ACME_NOT_GRANTED", "unset"),
        ("PATH", "unset"),
        ("TESSERA_ADMIN_KEY", "unset"),
    ] {
        let (status, out) = host
            .call(
                "manifest-reads-env",
                &json!({ "request": { "path": "/env-var", "body": name } }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{out}");
        assert_eq!(
            out["ok"]["events"][0]["properties"]["outcome"], want,
            "{name}: {out}"
        );
    }
}

/// Item 8: what a first version asks for beyond the defaults is reviewed like a change to a
/// live version: it needs the operator's approval.
#[tokio::test]
async fn a_first_upload_asking_for_more_than_the_defaults_needs_approval() {
    let _turn = crate::serial();
    let host = HostProcess::start(HostOptions {
        bundled_plugins: true,
        ..HostOptions::default()
    });
    let asks = connector_manifest(
        "manifest-first-asks",
        "[capabilities]\nenv = [\"HOME\"]\nhttp = [\"api.example.com\"]\n\
         [limits]\ntimeout_ms = 20000\n",
    );
    let (status, uploaded) = host.upload_bytes(component("version-a"), &asks).await;
    assert_eq!(status, StatusCode::CREATED, "{uploaded}");
    let review = &uploaded["review"];
    assert_eq!(review["needs_approval"], true, "{uploaded}");
    let changes = review["changes"].to_string();
    for want in ["`HOME`", "`api.example.com`", "-> 20000 ms"] {
        assert!(changes.contains(want), "{want}: {changes}");
    }
    let sha = uploaded["sha256"].as_str().unwrap().to_string();
    let path = "/v1/plugins/manifest-first-asks/activate";
    let (status, err) = host.post(path, &json!({ "sha256": sha })).await;
    assert_eq!(status, StatusCode::CONFLICT, "{err}");
    assert_eq!(code(&err), "approval_required", "{err}");
    assert_eq!(err["error"]["review"]["needs_approval"], true, "{err}");
    let (status, view) = host
        .post(path, &json!({ "sha256": sha, "approve": true }))
        .await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["live"], sha.as_str());

    // Asking for nothing beyond the defaults needs no approval.
    let plain = connector_manifest("manifest-first-plain", "");
    let (status, uploaded) = host.upload_bytes(component("version-a"), &plain).await;
    assert_eq!(status, StatusCode::CREATED, "{uploaded}");
    assert_eq!(uploaded["review"]["needs_approval"], false, "{uploaded}");
    let (status, view) = host
        .post(
            "/v1/plugins/manifest-first-plain/activate",
            &json!({ "sha256": uploaded["sha256"] }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{view}");

    // Bundled plugins are the operator's own: json-feed raises its deadline and response
    // limit, and is trusted as shipped.
    let (status, feed) = host.get("/v1/plugins/json-feed").await;
    assert_eq!(status, StatusCode::OK, "{feed}");
    assert_eq!(
        feed["versions"][0]["review"]["needs_approval"], false,
        "{feed}"
    );
}
