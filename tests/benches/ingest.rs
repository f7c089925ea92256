//! Ingest bench, through the running host over HTTP with durability on: events/s through
//! `/v1/batch`, ack latency of single `/v1/track` calls at a fixed rate, webhooks/s through the
//! Shopify connector; and, as the limit, the durable-write limit of this disk: the same
//! event bytes appended by as many writer threads as there are clients, group-committed with
//! the event log's `fdatasync` (`support/durable_limit.rs`), measured right before and right
//! after each host run in the same process.
//!
//! Run: `scripts/build-plugins.sh && cargo bench -p tessera-tests --bench ingest [-- --quick]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tessera_tests::{TestHost, percentile};

#[path = "support/durable_limit.rs"]
mod durable_limit;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BATCH: usize = 100;

fn event(i: usize) -> Value {
    json!({ "type": "track", "userId": format!("user-{}", i % 5_000), "event": "Order Completed",
            "messageId": format!("m-{i}-{}", rand_suffix()),
            "timestamp": "2026-11-24T12:00:00.000Z",
            "properties": { "order_id": format!("o-{i}"), "total": 42.5, "currency": "USD",
                            "products": [{ "sku": "SKU-1", "name": "Mug", "price": 20.0, "quantity": 2 }] },
            "context": { "library": { "name": "bench", "version": "1" }, "ip": "203.0.113.9",
                         "userAgent": "Mozilla/5.0 (X11; Linux x86_64) bench" } })
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Request bodies are built before the clock starts: the load generator shares the cores
/// with the host, so it does as little as it can while measured.
fn batch_bodies(total: usize) -> Vec<Vec<u8>> {
    (0..total / BATCH)
        .map(|b| {
            let items: Vec<Value> = (0..BATCH).map(|i| event(b * BATCH + i)).collect();
            serde_json::to_vec(&json!({ "batch": items })).unwrap()
        })
        .collect()
}

async fn post_all(
    host: &Arc<TestHost>,
    key: &str,
    path: &str,
    bodies: Vec<Vec<u8>>,
    clients: usize,
) -> f64 {
    let client = reqwest::Client::new();
    let (count, bodies) = (bodies.len(), Arc::new(bodies));
    let start = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (client, url, key, bodies) = (
                client.clone(),
                format!("{}{path}", host.base),
                key.to_string(),
                bodies.clone(),
            );
            tokio::spawn(async move {
                for body in bodies.iter().skip(c).step_by(clients) {
                    let r = client
                        .post(&url)
                        .basic_auth(&key, Some(""))
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await
                        .unwrap();
                    assert!(r.status().is_success(), "{}", r.status());
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    count as f64 / start.elapsed().as_secs_f64()
}

async fn fixed_rate(
    host: &Arc<TestHost>,
    key: &str,
    rate: u64,
    seconds: u64,
) -> (Duration, Duration, usize) {
    let client = reqwest::Client::new();
    let total = (rate * seconds) as usize;
    let bodies: Vec<Vec<u8>> = (0..total)
        .map(|i| serde_json::to_vec(&event(1_000_000 + i)).unwrap())
        .collect();
    let interval = Duration::from_nanos(1_000_000_000 / rate);
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(total);
    // At most this many requests in flight (file descriptors are finite); a request waiting
    // for a slot is still timed from its scheduled send time.
    let in_flight = Arc::new(tokio::sync::Semaphore::new(512));
    for (i, body) in bodies.into_iter().enumerate() {
        // Open loop: latency counts from the scheduled send time, so a slow server cannot
        // hide its queueing by slowing the sender down.
        let due = start + interval * i as u32;
        tokio::time::sleep_until(due).await;
        let (client, base, key, in_flight) = (
            client.clone(),
            host.base.clone(),
            key.to_string(),
            in_flight.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let _slot = in_flight.acquire().await.unwrap();
            let r = client
                .post(format!("{base}/v1/track"))
                .basic_auth(&key, Some(""))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success());
            due.elapsed()
        }));
    }
    let mut latencies = Vec::with_capacity(total);
    for t in tasks {
        latencies.push(t.await.unwrap());
    }
    latencies.sort();
    (
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        total,
    )
}

async fn shopify(host: &Arc<TestHost>, total: usize, clients: usize) -> f64 {
    let body = json!({ "id": 9001, "email": "shopper@example.com", "currency": "USD", "total_price": "25.00",
                       "customer": { "id": 7001, "email": "shopper@example.com" },
                       "line_items": [{ "product_id": 1, "sku": "SKU1", "title": "Mug", "price": "20.00", "quantity": 1 }] })
    .to_string();
    let mut mac = Hmac::<Sha256>::new_from_slice(b"bench-secret").unwrap();
    mac.update(body.as_bytes());
    let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    let client = reqwest::Client::new();
    let per_client = total / clients;
    let start = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (client, base, body, sig) =
                (client.clone(), host.base.clone(), body.clone(), sig.clone());
            tokio::spawn(async move {
                for n in 0..per_client {
                    let r = client
                        .post(format!("{base}/v1/connectors/shopify/webhook"))
                        .header("x-shopify-topic", "orders/create")
                        .header("x-shopify-webhook-id", format!("wh-{c}-{n}"))
                        .header("x-shopify-hmac-sha256", &sig)
                        .body(body.clone())
                        .send()
                        .await
                        .unwrap();
                    assert!(r.status().is_success(), "{}", r.status());
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    (per_client * clients) as f64 / start.elapsed().as_secs_f64()
}

/// The durable-write limit for `writers` clients appending `per_append` events at a time,
/// off the runtime's threads (the host under test shares them).
async fn limit(writers: usize, per_append: usize, total: usize) -> durable_limit::Limit {
    tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().unwrap();
        let payload = serde_json::to_vec(&event(0)).unwrap();
        durable_limit::measure(dir.path(), &payload, writers, per_append, total)
    })
    .await
    .unwrap()
}

/// The mean of the limit measured before and after a host run, and both figures.
fn both(before: durable_limit::Limit, after: durable_limit::Limit) -> (f64, String) {
    (
        f64::midpoint(before.records_per_s, after.records_per_s),
        format!(
            "{:.0} before, {:.0} after; {:.0} / {:.0} records per fdatasync",
            before.records_per_s,
            after.records_per_s,
            before.records_per_sync,
            after.records_per_sync
        ),
    )
}

#[tokio::main]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let scale = if quick { 10 } else { 1 };
    let host = Arc::new(TestHost::start().await);
    let key = host.create_source("bench").await;
    let sha = host.upload("shopify").await;
    host.put(
        "/v1/plugins/shopify/config",
        &json!({ "secret": "bench-secret" }),
    )
    .await;
    host.activate("shopify", &sha).await;
    let size = serde_json::to_vec(&event(0)).unwrap().len();

    let total = 200_000 / scale;
    let bodies = batch_bodies(total);
    let batch_before = limit(16, BATCH, total).await;
    let started = Instant::now();
    let batch_rate = BATCH as f64 * post_all(&host, &key, "/v1/batch", bodies, 16).await;
    let applied = host.wait_profiles_applied(Duration::from_secs(600)).await;
    let applied_rate = applied as f64 / started.elapsed().as_secs_f64();
    let batch_after = limit(16, BATCH, total).await;
    let (batch_limit, batch_limits) = both(batch_before, batch_after);
    let seconds = if quick { 1 } else { 5 };
    let mut rates = Vec::new();
    for rate in [2_000, 10_000] {
        rates.push((rate, fixed_rate(&host, &key, rate, seconds).await));
    }
    let hooks = 20_000 / scale;
    let hook_before = limit(32, 1, hooks).await;
    let hook_rate = shopify(&host, hooks, 32).await;
    let hook_after = limit(32, 1, hooks).await;
    let (hook_limit, hook_limits) = both(hook_before, hook_after);

    println!(
        "# Tessera ingest bench{} (events of {size} bytes, durable before the 2xx)",
        if quick { " (quick)" } else { "" }
    );
    println!("| case | figure | vs the durable-write limit |");
    println!("|---|---|---|");
    println!(
        "| `/v1/batch`, 16 clients, {BATCH} events per batch | {batch_rate:.0} events/s | {:.2}x |",
        batch_rate / batch_limit
    );
    println!(
        "| the same, until profiles have applied them | {applied_rate:.0} events/s | {:.2}x |",
        applied_rate / batch_limit
    );
    println!(
        "| durable-write limit: 16 writer threads x {BATCH} framed records, one syncer, `fdatasync` per group | {batch_limit:.0} events/s ({batch_limits}) | 1.00x |"
    );
    for (rate, (p50, p99, n)) in rates {
        println!(
            "| `/v1/track` at {rate} req/s, {n} calls | p50 {:.2} ms, p99 {:.2} ms | |",
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3
        );
    }
    println!(
        "| Shopify webhooks, 32 clients | {hook_rate:.0} webhooks/s | {:.2}x |",
        hook_rate / hook_limit
    );
    println!(
        "| durable-write limit: 32 writer threads x 1 framed record, one syncer, `fdatasync` per group | {hook_limit:.0} records/s ({hook_limits}) | 1.00x |"
    );
}
