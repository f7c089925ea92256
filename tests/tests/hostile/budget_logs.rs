//! A plugin that logs huge fields (16 fields pointing at one 4 MiB buffer, 100 lines; a line of
//! 1,000 such fields) has its fields truncated like its message, fails with `log_limit` past
//! the per-call log budget, and cannot grow the host, its log ring or its stdout.

// Each test holds its turn (`crate::serial`) across its awaits on purpose: one attack at a time.
#![allow(clippy::await_holding_lock)]

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use tessera_tests::process::{HostOptions, HostProcess};

use crate::budget_probe::{TrackProbe, assert_host_held, cause, mib};

const ID: &str = "budget-log-flood";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_flood_is_truncated_bounded_and_fails_with_log_limit() {
    let _turn = crate::serial();
    let host = HostProcess::start(HostOptions::default());
    host.install(ID, ID).await;
    let key = host.create_source("neighbour").await;
    let call = |path: &str, body: &str| json!({ "request": { "path": path, "body": body } });
    let (status, out) = host.call(ID, &call("/lines", "10")).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    let baseline = host.resident_bytes();
    let output_before = host.output_bytes();

    let probe = TrackProbe::start(&host.base, &key);
    // One line of 1,000 fields, each the whole 4 MiB buffer: 4 GB if every field is copied.
    let (status_wide, wide) = host.call(ID, &call("/fields", "1 1000 4")).await;
    // 100 lines of 16 such fields: 6.4 GB of log if nothing is cut.
    let (status_flood, flood) = host.call(ID, &call("/fields", "100 16 4")).await;
    let (answered, failed, slowest) = probe.stop().await;
    let mut host = host;
    assert!(
        host.is_alive(),
        "the host died (killed for memory: {})",
        host.killed_for_memory()
    );
    let peak = host.peak_resident_bytes();
    let written = host.output_bytes() - output_before;
    let started = Instant::now();
    let (status, logs) = host.get(&format!("/v1/plugins/{ID}/logs?limit=1000")).await;
    let logs_took = started.elapsed();
    println!(
        "logs: baseline {} MiB, peak {} MiB, stdout +{} KiB, GET logs {logs_took:?}; /v1/track {answered} answered, {failed} failed, slowest {slowest:?}",
        mib(baseline),
        mib(peak),
        written >> 10
    );
    assert_eq!(
        status_wide,
        StatusCode::OK,
        "one line within the budget: {wide}"
    );
    assert_eq!(status_flood, StatusCode::BAD_GATEWAY, "{flood}");
    assert_eq!(cause(&flood), "log_limit", "{flood}");
    assert_eq!(status, StatusCode::OK, "{logs}");
    let lines = logs["lines"].as_array().expect("lines");
    let longest = lines
        .iter()
        .map(|l| l["message"].as_str().unwrap_or_default().len())
        .max()
        .unwrap_or(0);
    assert!(longest < 64 << 10, "a kept line is {longest} bytes");
    assert!(
        logs_took < Duration::from_secs(1),
        "GET logs took {logs_took:?}"
    );
    assert!(
        written < 4 << 20,
        "the host wrote {} KiB of log",
        written >> 10
    );
    assert_host_held(baseline, peak, 128 << 20, (answered, failed, slowest));
}
