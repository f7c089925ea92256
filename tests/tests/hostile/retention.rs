//! Unauthenticated disk fill: webhook floods at a connector that is not live, or that refuses
//! their signature, retain nothing and evict no real failure; replay streams what is retained.

// Each test holds its turn (`crate::serial`) across awaits on purpose: attacks never overlap.
#![allow(clippy::await_holding_lock)]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::Sha256;
use tessera_tests::process::{HostOptions, HostProcess};

const SECRET: &str = "whsec_retention";
/// Just under the webhook route's 2 MiB body limit.
const BIG: usize = 2_000_000;

/// Bytes of every file under `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// The data dir's size once sled has had time to write what it buffered.
async fn settled_bytes(host: &HostProcess) -> u64 {
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    dir_bytes(&host.data_dir)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A `Stripe-Signature` header for `body`, signed with `secret`.
fn stripe_signature(secret: &str, body: &str) -> String {
    let t = now();
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// A Stripe event of a type the connector acknowledges without an event, `size` bytes long.
fn padded_event(n: usize, size: usize) -> String {
    let head =
        json!({ "id": format!("evt_pad_{n}"), "object": "event", "type": "retention.padding",
        "created": now(), "data": { "object": { "pad": "" } } })
        .to_string();
    let pad = "x".repeat(size.saturating_sub(head.len()));
    head.replace(r#""pad":"""#, &format!(r#""pad":"{pad}""#))
}

async fn post_webhook(
    client: &reqwest::Client,
    host: &HostProcess,
    id: &str,
    signature: Option<String>,
    body: String,
) -> StatusCode {
    let mut rb = client
        .post(format!("{}/v1/connectors/{id}/webhook", host.base))
        .body(body);
    if let Some(s) = signature {
        rb = rb.header("stripe-signature", s);
    }
    rb.send().await.expect("webhook sent").status()
}

/// Makes the bundled `stripe` connector live with `SECRET` (and `extra` config).
async fn make_stripe_live(host: &HostProcess, extra: Value) {
    let mut config = json!({ "secret": SECRET });
    if let (Some(c), Some(e)) = (config.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    let (status, body) = host.put("/v1/plugins/stripe/config", &config).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, view) = host.get("/v1/plugins/stripe").await;
    let sha = view["versions"][0]["sha256"]
        .as_str()
        .unwrap_or_else(|| panic!("no stripe version: {view}"))
        .to_string();
    host.activate("stripe", &sha).await;
}

async fn failures(host: &HostProcess, id: &str) -> Vec<Value> {
    let (status, body) = host.get(&format!("/v1/plugins/{id}/failures")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["failures"].as_array().cloned().unwrap_or_default()
}

/// 100 unsigned 2 MB requests to a bundled connector that is not live, and 120 badly signed
/// ones to a live connector, grow the data dir by no more than the same number of tiny
/// requests do (plus 32 MB), and the live connector's real failure is still kept.
/// Before: +709 MB (not live) and +670 MB with every kept failure evicted (bad signatures).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_floods_neither_fill_the_disk_nor_evict_real_failures() {
    let _turn = crate::serial();
    let host = HostProcess::start(HostOptions {
        bundled_plugins: true,
        ..Default::default()
    });
    make_stripe_live(&host, json!({})).await;
    let client = reqwest::Client::new();

    // A real failure: a correctly signed request the connector cannot read.
    let broken = "{not json".to_string();
    let status = post_webhook(
        &client,
        &host,
        "stripe",
        Some(stripe_signature(SECRET, &broken)),
        broken,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let kept = failures(&host, "stripe").await;
    assert_eq!(kept.len(), 1, "the real failure is kept: {kept:?}");
    let real_failure = kept[0]["id"].clone();

    // The baseline: the same number of tiny requests.
    for n in 0..100 {
        post_webhook(&client, &host, "shopify", None, format!("{{\"n\":{n}}}")).await;
        let body = padded_event(n, 0);
        let status = post_webhook(
            &client,
            &host,
            "stripe",
            Some(stripe_signature("whsec_wrong", &body)),
            body,
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let baseline = settled_bytes(&host).await;

    let started = Instant::now();
    for n in 0..100 {
        let status = post_webhook(&client, &host, "shopify", None, padded_event(n, BIG)).await;
        assert_eq!(
            status,
            StatusCode::SERVICE_UNAVAILABLE,
            "shopify is not live"
        );
    }
    let not_live = settled_bytes(&host).await;
    for n in 0..120 {
        let body = padded_event(n, BIG);
        let status = post_webhook(
            &client,
            &host,
            "stripe",
            Some(stripe_signature("whsec_wrong", &body)),
            body,
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let bad_signatures = settled_bytes(&host).await;
    let mb = |b: u64| b as f64 / 1e6;
    let kept = failures(&host, "stripe").await;
    eprintln!(
        "disk fill: baseline {:.1} MB; +{:.1} MB after 100 x 2 MB to a connector that is not live; \
         +{:.1} MB more after 120 x 2 MB with bad signatures ({:.1} s); {} kept failures",
        mb(baseline),
        mb(not_live.saturating_sub(baseline)),
        mb(bad_signatures.saturating_sub(not_live)),
        started.elapsed().as_secs_f64(),
        kept.len()
    );
    assert!(
        not_live.saturating_sub(baseline) < 32_000_000,
        "requests to a connector that is not live are not retained: +{:.1} MB",
        mb(not_live.saturating_sub(baseline))
    );
    assert!(
        bad_signatures.saturating_sub(not_live) < 32_000_000,
        "requests refused for their signature are not retained: +{:.1} MB",
        mb(bad_signatures.saturating_sub(not_live))
    );
    assert!(
        kept.iter().any(|f| f["id"] == real_failure),
        "the real failure survives the signature flood: {kept:?}"
    );
}

/// Replaying 100 retained 2 MB requests pages through them: the host's resident memory rises
/// by less than 100 MB while it runs. Before: +274 MB (every request loaded at once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_streams_retained_requests() {
    let _turn = crate::serial();
    let host = Arc::new(HostProcess::start(HostOptions {
        bundled_plugins: true,
        // Room for all 100 requests (the defaults keep fewer).
        args: [
            "--webhook-retention-connector-mb",
            "400",
            "--webhook-retention-total-mb",
            "400",
        ]
        .map(String::from)
        .to_vec(),
        ..Default::default()
    }));
    // Signatures are checked again on replay: no tolerance, so they never go stale.
    make_stripe_live(&host, json!({ "tolerance_secs": 0 })).await;
    let client = reqwest::Client::new();
    for n in 0..100 {
        let body = padded_event(n, BIG);
        let status = post_webhook(
            &client,
            &host,
            "stripe",
            Some(stripe_signature(SECRET, &body)),
            body,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = host.resident_bytes();
    let peak = Arc::new(AtomicU64::new(before));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (host, peak, done) = (host.clone(), peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(host.resident_bytes(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let started = Instant::now();
    let (status, report) = host.post("/v1/connectors/stripe/replay", &json!({})).await;
    done.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    assert_eq!(status, StatusCode::OK, "{report}");
    let rise = peak.load(Ordering::Relaxed).saturating_sub(before);
    eprintln!(
        "replay of {} retained requests in {:.1} s: resident memory +{:.1} MB (from {:.1} MB)",
        report["replayed"],
        started.elapsed().as_secs_f64(),
        rise as f64 / 1e6,
        before as f64 / 1e6
    );
    assert_eq!(report["replayed"], 100, "{report}");
    assert!(
        rise < 100_000_000,
        "replay pages through retained requests: +{:.1} MB",
        rise as f64 / 1e6
    );
}
