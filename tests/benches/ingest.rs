//! Ingest bench, through the running host over HTTP with durability on: events/s through
//! `/v1/batch`, ack latency of single `/v1/track` calls at a fixed rate, webhooks/s through the
//! Shopify connector; and, as the limit, a raw loop appending the same bytes to sled with
//! sled's flush after each batch.
//!
//! Run: `scripts/build-plugins.sh && cargo bench -p tessera-tests --bench ingest [-- --quick]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tessera_tests::{TestHost, percentile};

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

fn sled_limit(total: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::open(dir.path()).unwrap();
    let tree = db.open_tree("events").unwrap();
    let bytes = serde_json::to_vec(&event(0)).unwrap();
    let start = Instant::now();
    for b in 0..total / BATCH {
        for i in 0..BATCH {
            tree.insert(((b * BATCH + i) as u64).to_be_bytes(), bytes.as_slice())
                .unwrap();
        }
        db.flush().unwrap();
    }
    total as f64 / start.elapsed().as_secs_f64()
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

    let bodies = batch_bodies(200_000 / scale);
    let started = Instant::now();
    let batch_rate = BATCH as f64 * post_all(&host, &key, "/v1/batch", bodies, 16).await;
    let applied = host.wait_profiles_applied(Duration::from_secs(600)).await;
    let applied_rate = applied as f64 / started.elapsed().as_secs_f64();
    let sled_rate = sled_limit(200_000 / scale);
    let seconds = if quick { 1 } else { 5 };
    let mut rates = Vec::new();
    for rate in [2_000, 10_000] {
        rates.push((rate, fixed_rate(&host, &key, rate, seconds).await));
    }
    let hook_rate = shopify(&host, 20_000 / scale, 32).await;

    println!(
        "# Tessera ingest bench{} (events of {size} bytes, durable before the 2xx)",
        if quick { " (quick)" } else { "" }
    );
    println!("| case | figure | vs the sled limit |");
    println!("|---|---|---|");
    println!(
        "| `/v1/batch`, 16 clients, {BATCH} events per batch | {batch_rate:.0} events/s | {:.2}x |",
        batch_rate / sled_rate
    );
    println!(
        "| the same, until profiles have applied them | {applied_rate:.0} events/s | {:.2}x |",
        applied_rate / sled_rate
    );
    println!(
        "| raw sled insert + `flush()` per {BATCH} (the limit) | {sled_rate:.0} events/s | 1.00x |"
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
        hook_rate / sled_rate
    );
}
