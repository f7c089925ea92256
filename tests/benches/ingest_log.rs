//! Ingest log bench: the group-committed event log against the durable-write limit of this
//! disk at the same concurrency (raw framed appends, one syncer, the same `fdatasync`:
//! `support/durable_limit.rs`, run right before each log case), against one `fdatasync` per
//! record, and, for reference only, sled's weaker flush, with the same payload in the same run.
//!
//! Run: `cargo bench -p tessera-tests --bench ingest_log` (`-- --quick` for a tenth of the work)

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tessera_tests::percentile;

use tessera::store::EventLog;

#[path = "support/durable_limit.rs"]
mod durable_limit;

const WRITERS: usize = 64;
const BATCH: usize = 1_000;
const BATCH_WRITERS: usize = 4;

/// A Segment-style track event, padded to exactly 650 bytes.
fn payload() -> Vec<u8> {
    let head = r#"{"type":"track","event":"Order Completed","messageId":"msg-3f1c2a9e-7d41-4b7a-9a55-0c6e2b1d8f00","anonymousId":"anon-7a1b2c3d","userId":"user-000123","timestamp":"2025-01-01T12:00:00.000Z","context":{"library":{"name":"analytics.js","version":"4.1.0"},"ip":"203.0.113.7","userAgent":"Mozilla/5.0"},"properties":{"orderId":"ord-98121","total":129.5,"currency":"EUR","items":3,"note":""#;
    let tail = r#""}}"#;
    let pad = 650 - head.len() - tail.len();
    let body = format!("{head}{}{tail}", "x".repeat(pad));
    assert_eq!(body.len(), 650);
    serde_json::from_str::<serde_json::Value>(&body).expect("valid JSON");
    body.into_bytes()
}

struct Row {
    case: &'static str,
    records: usize,
    elapsed: Duration,
    latency: Option<(Duration, Duration)>,
}

impl Row {
    fn rate(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64()
    }
}

/// (1) 64 tasks, each appending one record at a time.
async fn log_single_records(dir: &Path, records: usize, body: &[u8]) -> Row {
    let log = Arc::new(EventLog::open(dir).unwrap());
    let per_writer = records / WRITERS;
    let start = Instant::now();
    let tasks: Vec<_> = (0..WRITERS)
        .map(|_| {
            let log = log.clone();
            let body = body.to_vec();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(per_writer);
                for _ in 0..per_writer {
                    let t = Instant::now();
                    log.append(vec![body.clone()]).await.unwrap();
                    latencies.push(t.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(records);
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    let elapsed = start.elapsed();
    latencies.sort();
    assert_eq!(log.next_seq() as usize, per_writer * WRITERS + 1);
    Row {
        case: "event log, 64 writers x 1 record",
        records: per_writer * WRITERS,
        elapsed,
        latency: Some((percentile(&latencies, 0.50), percentile(&latencies, 0.99))),
    }
}

/// (2) A few tasks, each appending batches of 1,000 records.
async fn log_batches(dir: &Path, records: usize, body: &[u8]) -> Row {
    let log = Arc::new(EventLog::open(dir).unwrap());
    let batches_per_writer = (records / BATCH / BATCH_WRITERS).max(1);
    let start = Instant::now();
    let tasks: Vec<_> = (0..BATCH_WRITERS)
        .map(|_| {
            let log = log.clone();
            let body = body.to_vec();
            tokio::spawn(async move {
                for _ in 0..batches_per_writer {
                    log.append(vec![body.clone(); BATCH]).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let elapsed = start.elapsed();
    Row {
        case: "event log, 4 writers x batches of 1,000",
        records: batches_per_writer * BATCH_WRITERS * BATCH,
        elapsed,
        latency: None,
    }
}

/// (3) sled's own policy: inserts, `flush()` per 1,000. Not a limit: sled's flush uses
/// `sync_file_range`, weaker than the log's `fdatasync`, and runs on one thread.
fn sled_flush_per_batch(dir: &Path, records: usize, body: &[u8]) -> Row {
    let db = sled::open(dir).unwrap();
    let tree = db.open_tree("events").unwrap();
    let records = records / BATCH * BATCH;
    let start = Instant::now();
    for seq in 0..records as u64 {
        tree.insert(seq.to_be_bytes(), body).unwrap();
        if (seq + 1).is_multiple_of(BATCH as u64) {
            tree.flush().unwrap();
        }
    }
    Row {
        case: "sled insert + flush() per 1,000, 1 thread (sync_file_range: weaker than fdatasync, reference only)",
        records,
        elapsed: start.elapsed(),
        latency: None,
    }
}

/// (4) No group commit: one `write_all` + `sync_data` per record.
fn fdatasync_per_record(dir: &Path, records: usize, body: &[u8]) -> Row {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("raw.log"))
        .unwrap();
    let mut latencies = Vec::with_capacity(records);
    let start = Instant::now();
    for _ in 0..records {
        let t = Instant::now();
        file.write_all(body).unwrap();
        file.sync_data().unwrap();
        latencies.push(t.elapsed());
    }
    let elapsed = start.elapsed();
    latencies.sort();
    Row {
        case: "write_all + fdatasync per record, 1 writer",
        records,
        elapsed,
        latency: Some((percentile(&latencies, 0.50), percentile(&latencies, 0.99))),
    }
}

/// (5) The durable-write limit at the log case's concurrency.
fn limit(
    case: &'static str,
    dir: &Path,
    body: &[u8],
    writers: usize,
    per_append: usize,
    records: usize,
) -> (Row, f64) {
    let limit = durable_limit::measure(dir, body, writers, per_append, records);
    let records = (records / writers / per_append).max(1) * writers * per_append;
    (
        Row {
            case,
            records,
            elapsed: Duration::from_secs_f64(records as f64 / limit.records_per_s),
            latency: None,
        },
        limit.records_per_sync,
    )
}

/// Writes back every dirty page first: on ext4 an `fdatasync` also waits for other files'
/// pending data (a build's output, the previous case's files), which would blur the figures.
fn settle() {
    let _ = std::process::Command::new("sync").status();
}

fn micros(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let scale = if quick { 10 } else { 1 };
    let records = 200_000 / scale;
    let raw_records = 5_000 / scale;
    let body = payload();
    let root = tempfile::tempdir().unwrap();
    let sub = |name: &str| {
        let dir = root.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    settle();
    let raw = fdatasync_per_record(&sub("raw"), raw_records, &body);
    settle();
    let (single_limit, single_per_sync) = limit(
        "durable-write limit, 64 writer threads x 1 record, one syncer, fdatasync",
        &sub("single-limit"),
        &body,
        WRITERS,
        1,
        records,
    );
    settle();
    let single = runtime.block_on(log_single_records(&sub("single"), records, &body));
    settle();
    let (batched_limit, batched_per_sync) = limit(
        "durable-write limit, 4 writer threads x batches of 1,000, one syncer, fdatasync",
        &sub("batched-limit"),
        &body,
        BATCH_WRITERS,
        BATCH,
        records,
    );
    settle();
    let batched = runtime.block_on(log_batches(&sub("batched"), records, &body));
    settle();
    let sled = sled_flush_per_batch(&sub("sled"), records, &body);

    println!(
        "\n{} B JSON payload, {} cores\n",
        body.len(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "| case | records | records/s | p50 | p99 | x fsync per record | x limit at the same concurrency |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let rows = [
        (&single, Some(&single_limit)),
        (&single_limit, Some(&single_limit)),
        (&batched, Some(&batched_limit)),
        (&batched_limit, Some(&batched_limit)),
        (&sled, None),
        (&raw, None),
    ];
    for (row, against) in rows {
        let (p50, p99) = row
            .latency
            .map_or(("-".into(), "-".into()), |(a, b)| (micros(a), micros(b)));
        println!(
            "| {} | {} | {:.0} | {} | {} | {:.2} | {} |",
            row.case,
            row.records,
            row.rate(),
            p50,
            p99,
            row.rate() / raw.rate(),
            against.map_or("-".into(), |l| format!("{:.2}", row.rate() / l.rate())),
        );
    }
    println!(
        "\nrecords per fdatasync in the limit runs: {single_per_sync:.1} (64 x 1), {batched_per_sync:.0} (4 x 1,000)"
    );
}
