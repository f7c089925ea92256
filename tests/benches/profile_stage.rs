//! Ingest and profile stage without HTTP: the same Segment batches as the HTTP bench parsed,
//! deduplicated and logged durably (`Ingest::ingest`), then applied to profiles by the
//! profile stage (`catch_up`, a page of 1,000 per atomic batch in sled); and, as the limit, the
//! durable-write limit of this disk (the same bytes, 16 writer threads x 100 framed records,
//! group-committed with `fdatasync`: `support/durable_limit.rs`), measured right before and
//! right after the ingest run.
//!
//! `--contacts N` spreads the events over N distinct users (default 5,000; each page of the
//! log then names 1,000 different contacts), `--events N` sets how many (default 200,000,
//! 20,000 with `--quick`). The apply row also prints the peak resident memory of the process
//! while the profile stage ran (`VmHWM`, reset once the ingest run's request bodies are
//! dropped) and the size of the store on disk afterwards.
//!
//! Run: `cargo bench -p tessera-tests --bench profile_stage [-- --quick] [--contacts N]
//! [--events N]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tessera::ingest::{Ingest, segment};
use tessera::profiles::{Profiles, catch_up};
use tessera::store::EventLog;

#[path = "support/durable_limit.rs"]
mod durable_limit;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BATCH: usize = 100;

fn event(i: usize, contacts: usize) -> Value {
    json!({ "type": "track", "userId": format!("user-{}", i % contacts), "event": "Order Completed",
            "messageId": format!("m-{i}"), "timestamp": "2026-11-24T12:00:00.000Z",
            "properties": { "order_id": format!("o-{i}"), "total": 42.5, "currency": "USD",
                            "products": [{ "sku": "SKU-1", "name": "Mug", "price": 20.0, "quantity": 2 }] },
            "context": { "library": { "name": "bench", "version": "1" }, "ip": "203.0.113.9",
                         "userAgent": "Mozilla/5.0 (X11; Linux x86_64) bench" } })
}

fn bodies(total: usize, contacts: usize) -> Vec<Vec<u8>> {
    (0..total / BATCH)
        .map(|b| {
            let items: Vec<Value> = (0..BATCH).map(|i| event(b * BATCH + i, contacts)).collect();
            serde_json::to_vec(&json!({ "batch": items })).expect("body")
        })
        .collect()
}

/// Parses and ingests every body from `writers` concurrent tasks; returns the time taken.
async fn ingest_all(ingest: &Arc<Ingest>, bodies: Vec<Vec<u8>>, writers: usize) -> Duration {
    let bodies = Arc::new(bodies);
    let start = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let (ingest, bodies) = (ingest.clone(), bodies.clone());
            tokio::spawn(async move {
                for body in bodies.iter().skip(w).step_by(writers) {
                    let now = time::OffsetDateTime::now_utc();
                    let events = segment::parse(body, None, now, "source:bench").expect("parse");
                    ingest.ingest(events).await.expect("ingest");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("writer");
    }
    start.elapsed()
}

fn limit(total: usize) -> durable_limit::Limit {
    let dir = tempfile::tempdir().expect("dir");
    let payload = serde_json::to_vec(&event(0, 1)).expect("event");
    durable_limit::measure(dir.path(), &payload, 16, BATCH, total)
}

/// The value of `--name N` on the command line.
fn arg(name: &str) -> Option<usize> {
    let args: Vec<String> = std::env::args().collect();
    let at = args.iter().position(|a| a == name)?;
    let value = args.get(at + 1)?.replace('_', "");
    Some(value.parse().expect("a number"))
}

/// A line of `/proc/self/status` (`VmHWM`, `VmRSS`), in MiB.
fn status_mib(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Starts the peak resident memory (`VmHWM`) over from what is resident now.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn disk_mib(dir: &std::path::Path) -> f64 {
    fn walk(dir: &std::path::Path) -> u64 {
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| match e.metadata() {
                Ok(m) if m.is_dir() => walk(&e.path()),
                Ok(m) => m.len(),
                Err(_) => 0,
            })
            .sum()
    }
    walk(dir) as f64 / (1024.0 * 1024.0)
}

#[tokio::main]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let contacts = arg("--contacts").unwrap_or(5_000).max(1);
    let total = arg("--events").unwrap_or(if quick { 20_000 } else { 200_000 });
    let total = total / BATCH * BATCH;
    let dir = tempfile::tempdir().expect("dir");
    let db = tessera::store::SledEngine::open(&dir.path().join("db")).expect("sled");
    let log = Arc::new(EventLog::open(&dir.path().join("log")).expect("log"));
    let ingest = Arc::new(Ingest::new(log, &db, Duration::from_secs(86_400)).expect("ingest"));
    let profiles = Profiles::open(&db).expect("profiles");

    let bodies = bodies(total, contacts);
    let before = tokio::task::spawn_blocking(move || limit(total))
        .await
        .expect("limit");
    let ingest_time = ingest_all(&ingest, bodies, 16).await;
    let after = tokio::task::spawn_blocking(move || limit(total))
        .await
        .expect("limit");
    let limit_rate = f64::midpoint(before.records_per_s, after.records_per_s);
    let peak_before_apply = status_mib("VmHWM");
    reset_peak_rss();
    let rss_at_apply = status_mib("VmRSS");
    let start = Instant::now();
    let mut applied = 0;
    while applied < total {
        applied += catch_up(&ingest, &profiles).expect("catch up");
    }
    let apply_time = start.elapsed();
    let peak_apply = status_mib("VmHWM");
    let db_mib = disk_mib(&dir.path().join("db"));
    let log_mib = disk_mib(&dir.path().join("log"));

    let ingest_rate = total as f64 / ingest_time.as_secs_f64();
    let apply_rate = total as f64 / apply_time.as_secs_f64();
    println!(
        "# Tessera profile stage bench{} ({total} events, {contacts} users)",
        if quick { " (quick)" } else { "" }
    );
    println!("| case | events/s | vs the durable-write limit |");
    println!("|---|---:|---:|");
    println!(
        "| parse + dedupe + durable log append, 16 writers, {BATCH} per call | {ingest_rate:.0} | {:.2}x |",
        ingest_rate / limit_rate
    );
    println!(
        "| profile stage: dedupe index + identity + traits + counters + event index | {apply_rate:.0} | {:.2}x |",
        apply_rate / limit_rate
    );
    println!(
        "| profile stage: peak resident memory while applying (VmHWM) | {peak_apply:.0} MiB (resident at the start {rss_at_apply:.0} MiB; peak of the ingest run {peak_before_apply:.0} MiB) | |"
    );
    println!(
        "| on disk after applying: store (sled) / event log | {db_mib:.0} MiB / {log_mib:.0} MiB | |"
    );
    println!(
        "| durable-write limit: 16 writer threads x {BATCH} framed records, one syncer, `fdatasync` per group ({:.0} before, {:.0} after the ingest run; {:.0} / {:.0} records per fdatasync) | {limit_rate:.0} | 1.00x |",
        before.records_per_s, after.records_per_s, before.records_per_sync, after.records_per_sync
    );
}
