//! Swap under load: two clients send webhooks through `POST /v1/connectors/{id}/webhook` at
//! full speed while the operator alternates activations and rollbacks of the connector; the
//! same clients first run a steady phase without swaps as the baseline. Every request body is
//! a unique event id; the bench compares the SET of acknowledged ids with the SET of stored
//! ids (every acknowledged id stored, nothing stored that was not acknowledged), and reports
//! failed requests and ack latency p50/p99 steady vs during swaps.
//!
//! Run: `scripts/build-plugins.sh && cargo bench -p tessera-tests --bench swap [-- --quick]`

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use tessera_tests::{TestHost, percentile};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CLIENTS: usize = 2;
const SWAPS: usize = 50;

/// What one phase of sending saw.
struct Phase {
    sent: u64,
    failed: u64,
    /// The ids (request bodies) of the requests answered 2xx.
    acknowledged: Vec<String>,
    latencies: Vec<Duration>,
    elapsed: Duration,
}

/// Sends webhooks from `CLIENTS` clients until `stop` is set; bodies are `{tag}-{client}-{n}`.
async fn send_until(host: &Arc<TestHost>, tag: &str, stop: Arc<AtomicBool>) -> Phase {
    let started = Instant::now();
    let failed = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (url, stop, failed) = (
                format!("{}/v1/connectors/versioned/webhook", host.base),
                stop.clone(),
                failed.clone(),
            );
            let tag = tag.to_string();
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let (mut latencies, mut acknowledged) = (Vec::new(), Vec::new());
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    let id = format!("{tag}-{c}-{n}");
                    let ok = client
                        .post(&url)
                        .body(id.clone())
                        .send()
                        .await
                        .is_ok_and(|r| r.status().is_success());
                    latencies.push(t.elapsed());
                    if ok {
                        acknowledged.push(id);
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                    n += 1;
                }
                (latencies, acknowledged)
            })
        })
        .collect();
    let (mut latencies, mut acknowledged) = (Vec::new(), Vec::new());
    for t in tasks {
        let (l, a) = t.await.expect("client");
        latencies.extend(l);
        acknowledged.extend(a);
    }
    latencies.sort();
    Phase {
        sent: latencies.len() as u64,
        failed: failed.load(Ordering::Relaxed),
        acknowledged,
        latencies,
        elapsed: started.elapsed(),
    }
}

/// Every stored event id of the contact the `versioned` connector writes to.
async fn stored_ids(host: &TestHost) -> Vec<String> {
    let contact = host.wait_contact("user_id:versioned", |_| true).await;
    let id = contact["id"].as_str().expect("contact id").to_string();
    let mut ids = Vec::new();
    let mut after = 0u64;
    loop {
        let (_, page) = host
            .get(&format!(
                "/v1/contacts/{id}/events?after={after}&limit=1000"
            ))
            .await;
        for e in page["events"].as_array().expect("events") {
            let id = e["event"]["message_id"].as_str().expect("message_id");
            ids.push(id.to_string());
        }
        match page["next_after"].as_u64() {
            Some(next) => after = next,
            None => return ids,
        }
    }
}

/// Waits until the profile stage has applied `expected` events (or 30 s pass).
async fn settle(host: &TestHost, expected: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let (_, found) = host.get("/v1/contacts?identity=user_id:versioned").await;
        let counters = &found["contacts"][0]["counters"];
        let applied = counters["a"].as_u64().unwrap_or(0) + counters["b"].as_u64().unwrap_or(0);
        if applied >= expected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn micros(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

#[tokio::main]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let steady_for = Duration::from_secs(if quick { 2 } else { 5 });
    let gap = Duration::from_millis(if quick { 40 } else { 100 });
    let host = Arc::new(TestHost::start().await);
    let a = host.install("version-a", "versioned").await;
    let b = host.upload("version-b").await;

    let stop = Arc::new(AtomicBool::new(false));
    let steady = {
        let sender = tokio::spawn({
            let (host, stop) = (host.clone(), stop.clone());
            async move { send_until(&host, "steady", stop).await }
        });
        tokio::time::sleep(steady_for).await;
        stop.store(true, Ordering::Relaxed);
        sender.await.expect("steady phase")
    };

    let stop = Arc::new(AtomicBool::new(false));
    let sender = tokio::spawn({
        let (host, stop) = (host.clone(), stop.clone());
        async move { send_until(&host, "swap", stop).await }
    });
    let swaps_started = Instant::now();
    let mut swap_times = Vec::new();
    for i in 0..SWAPS {
        tokio::time::sleep(gap).await;
        let t = Instant::now();
        let (status, body) = if i % 2 == 0 {
            host.post(
                "/v1/plugins/versioned/activate",
                &json!({ "sha256": b, "reason": "swap bench" }),
            )
            .await
        } else {
            host.post("/v1/plugins/versioned/rollback", &json!({}))
                .await
        };
        assert!(status.is_success(), "swap {i}: {body}");
        swap_times.push(t.elapsed());
    }
    let swapping_for = swaps_started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let swapping = sender.await.expect("swap phase");
    let live = host.get("/v1/plugins/versioned").await.1["live"].clone();
    assert_eq!(
        live,
        a.as_str(),
        "an even number of swaps ends on version a"
    );

    let acknowledged: HashSet<&str> = steady
        .acknowledged
        .iter()
        .chain(&swapping.acknowledged)
        .map(String::as_str)
        .collect();
    settle(&host, acknowledged.len() as u64).await;
    let ids = stored_ids(&host).await;
    let stored: HashSet<&str> = ids.iter().map(String::as_str).collect();
    let lost: Vec<&&str> = acknowledged.difference(&stored).collect();
    let unacknowledged: Vec<&&str> = stored.difference(&acknowledged).collect();
    swap_times.sort();

    println!("# Swap under load{}", if quick { " (quick)" } else { "" });
    println!(
        "{CLIENTS} clients at full speed; {SWAPS} activations and rollbacks alternating over {:.1} s",
        swapping_for.as_secs_f64()
    );
    println!("| phase | requests | req/s | failed | p50 | p99 | max |");
    println!("|---|---|---|---|---|---|---|");
    for (name, p) in [("steady", &steady), ("during swaps", &swapping)] {
        println!(
            "| {name} | {} | {:.0} | {} | {} | {} | {} |",
            p.sent,
            p.sent as f64 / p.elapsed.as_secs_f64(),
            p.failed,
            micros(percentile(&p.latencies, 0.50)),
            micros(percentile(&p.latencies, 0.99)),
            micros(*p.latencies.last().unwrap_or(&Duration::ZERO)),
        );
    }
    println!(
        "p99 during swaps / steady: {:.2}x; swap call p50 {} p99 {}",
        percentile(&swapping.latencies, 0.99).as_secs_f64()
            / percentile(&steady.latencies, 0.99).as_secs_f64(),
        micros(percentile(&swap_times, 0.5)),
        micros(percentile(&swap_times, 0.99)),
    );
    println!(
        "event ids: {} acknowledged, {} stored; acknowledged but not stored: {}; stored but not acknowledged: {}",
        acknowledged.len(),
        stored.len(),
        lost.len(),
        unacknowledged.len()
    );
    assert_eq!(steady.failed + swapping.failed, 0, "failed requests");
    assert!(lost.is_empty(), "acknowledged ids not stored: {lost:?}");
    assert!(
        unacknowledged.is_empty(),
        "stored ids never acknowledged: {unacknowledged:?}"
    );
}
