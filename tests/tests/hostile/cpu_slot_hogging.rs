//! One plugin cannot hold every instance slot: a flood of sleeping calls to one connector
//! fills only its share of the pool, the excess is refused with `503` and `Retry-After`, and
//! another plugin's call answers at once.

// Each test holds its turn (a std mutex) for its whole length, awaits included, on purpose.
#![allow(clippy::await_holding_lock)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use tessera_tests::process::{HostOptions, HostProcess};
use tessera_tests::rule_batch;

/// More sleeping calls than the whole default instance pool (512).
const HOG_CALLS: usize = 560;
/// How long each hog call sleeps inside the guest.
const HOG_SLEEP_MS: u64 = 8_000;
/// The slowest answer the other plugin may give while the hog is busy. The old host made it
/// wait for a hog call to end (14.8 s with 520 calls).
const NEIGHBOUR_BOUND: Duration = Duration::from_millis(2_000);

/// The `hostile` guest as a connector whose `/sleep` calls may last [`HOG_SLEEP_MS`].
fn hog_manifest(id: &str, extra: &str) -> String {
    format!(
        "id = \"{id}\"\nkind = \"connector\"\nversion = \"0.1.0\"\ncontract = \"0.2\"\n\
         [limits]\nmemory_mb = 32\ntimeout_ms = 12000\n{extra}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_plugin_flooded_with_sleeping_calls_leaves_slots_for_the_others() {
    let _turn = crate::serial();
    let host = Arc::new(HostProcess::start(HostOptions::default()));
    let sha = host
        .upload_with("hostile", &hog_manifest("cpu-hog", ""))
        .await;
    host.activate("cpu-hog", &sha).await;
    host.install("trait-rule", "trait-rule").await;
    let rule_call =
        json!({ "params": { "trait": "plan", "equals": "pro" }, "batch": rule_batch(2) });
    let (status, out) = host.call("trait-rule", &rule_call).await;
    assert_eq!(status, StatusCode::OK, "{out}");

    let started = Instant::now();
    let hogs: Vec<_> = (0..HOG_CALLS)
        .map(|_| {
            let host = host.clone();
            tokio::spawn(async move {
                let response = host
                    .request(reqwest::Method::POST, "/v1/plugins/cpu-hog/call")
                    .json(&json!({ "request": { "path": "/sleep", "body": HOG_SLEEP_MS.to_string() } }))
                    .send()
                    .await
                    .expect("hog call answered");
                let status = response.status();
                let retry_after = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok());
                let body: serde_json::Value = response.json().await.unwrap_or_default();
                (status, retry_after, body, started.elapsed())
            })
        })
        .collect();
    // Let the flood arrive and take its slots.
    tokio::time::sleep(Duration::from_millis(1_500)).await;

    let asked = Instant::now();
    let (status, out) = host.call("trait-rule", &rule_call).await;
    let neighbour = asked.elapsed();
    assert_eq!(status, StatusCode::OK, "the neighbour failed: {out}");

    let mut ok = 0;
    let mut refused = 0;
    let mut slowest_refusal = Duration::ZERO;
    for hog in hogs {
        let (status, retry_after, body, took) = hog.await.expect("hog task");
        match status {
            StatusCode::OK => ok += 1,
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_eq!(body["error"]["code"], "concurrency_limit", "{body}");
                assert!(
                    retry_after.is_some_and(|s| s >= 1),
                    "a refusal says when to retry: {body}"
                );
                refused += 1;
                slowest_refusal = slowest_refusal.max(took);
            }
            other => panic!("hog call answered {other}: {body}"),
        }
    }
    eprintln!(
        "{HOG_CALLS} sleeping calls: {ok} ran, {refused} refused (slowest refusal after \
         {slowest_refusal:?}); the neighbour answered in {neighbour:?}"
    );
    assert!(
        neighbour < NEIGHBOUR_BOUND,
        "the neighbour waited {neighbour:?} for slots (bound {NEIGHBOUR_BOUND:?})"
    );
    // The default share is a quarter of the 512-instance pool.
    assert_eq!(ok, 128, "the hog ran exactly its share at once");
    assert_eq!(refused, HOG_CALLS - 128);
    assert!(
        slowest_refusal < Duration::from_millis(HOG_SLEEP_MS),
        "refusals came after a short wait, not after a slot freed: {slowest_refusal:?}"
    );

    // Refusals are load, not faults: the breaker stays closed and the hog still answers.
    let (_, view) = host.get("/v1/plugins/cpu-hog").await;
    assert_eq!(view["breaker"]["state"], "closed", "{view}");
    let (status, out) = host.webhook("cpu-hog", "/ok", "after").await;
    assert_eq!(status, StatusCode::OK, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_manifest_sets_its_share_within_the_operator_limit() {
    let _turn = crate::serial();
    // A 16-instance pool: the default share is 4, the most a manifest may ask for 8.
    let host = Arc::new(HostProcess::start(HostOptions {
        args: vec!["--max-instances".into(), "16".into()],
        ..Default::default()
    }));
    for (id, asks, runs) in [
        ("cpu-hog-two", "max_concurrency = 2\n", 2),
        ("cpu-hog-greedy", "max_concurrency = 1000\n", 8),
        ("cpu-hog-default", "", 4),
    ] {
        let manifest = hog_manifest(id, asks);
        let sha = host.upload_with("hostile", &manifest).await;
        host.activate(id, &sha).await;
        let calls: Vec<_> = (0..12)
            .map(|_| {
                let (host, id) = (host.clone(), id.to_string());
                tokio::spawn(async move { host.webhook(&id, "/sleep", "2500").await })
            })
            .collect();
        let mut ran = 0;
        for call in calls {
            let (status, out) = call.await.expect("call task");
            match status {
                StatusCode::OK => ran += 1,
                StatusCode::SERVICE_UNAVAILABLE => {
                    assert_eq!(out["error"]["code"], "concurrency_limit", "{out}")
                }
                other => panic!("{id}: {other}: {out}"),
            }
        }
        assert_eq!(ran, runs, "{id} ran its share ({asks:?})");
    }
}
