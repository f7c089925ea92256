//! A connector whose output costs the host far more than its own memory (10,000 events sharing
//! one 12 KB buffer, a 15 MB event) is refused with `output_limit`, within a bounded host memory.

// Each test holds its turn (`crate::serial`) across its awaits on purpose: one attack at a time.
#![allow(clippy::await_holding_lock)]

use std::time::Duration;

use reqwest::StatusCode;
use tessera_tests::process::{HostOptions, HostProcess};

use crate::budget_probe::{TrackProbe, assert_host_held, cause, mib};

const ID: &str = "budget-output-amplification";

/// Posts `body` to the connector's real webhook route (what a vendor, or an attacker, does).
async fn webhook(host: &HostProcess, body: &str) -> (StatusCode, serde_json::Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/v1/connectors/{ID}/webhook", host.base))
        .body(body.to_string())
        .timeout(Duration::from_secs(120))
        .send()
        .await
        .expect("the host answers");
    let status = response.status();
    let text = response.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("non-JSON answer ({status}): {text}")),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amplified_connector_output_is_refused_and_the_host_stays_small() {
    let _turn = crate::serial();
    // The breaker would open after five failures; this test fails the plugin on purpose.
    let host = HostProcess::start(HostOptions {
        args: ["--breaker-threshold", "1000"].map(String::from).to_vec(),
        ..HostOptions::default()
    });
    host.install(ID, ID).await;
    let key = host.create_source("neighbour").await;
    let (status, out) = webhook(&host, "ok warm-up").await;
    assert_eq!(status, StatusCode::OK, "{out}");
    // Output well inside the budget still goes through.
    let (status, out) = webhook(&host, "shared 50").await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["accepted"], 50, "{out}");
    let baseline = host.resident_bytes();

    let probe = TrackProbe::start(&host.base, &key);
    // Three at once: 10,000 events x 12 KB each, all pointing at one guest buffer.
    let (a, b, c) = tokio::join!(
        webhook(&host, "shared 10000"),
        webhook(&host, "shared 10000"),
        webhook(&host, "shared 10000")
    );
    let answers = [a, b, c];
    let (answered, failed, slowest) = probe.stop().await;
    let mut host = host;
    assert!(
        host.is_alive(),
        "the host died (killed for memory: {})",
        host.killed_for_memory()
    );
    let peak = host.peak_resident_bytes();
    println!(
        "amplification: baseline {} MiB, peak {} MiB; /v1/track {answered} answered, {failed} failed, slowest {slowest:?}",
        mib(baseline),
        mib(peak)
    );
    for (status, out) in &answers {
        assert_eq!(*status, StatusCode::BAD_GATEWAY, "{out}");
        assert_eq!(cause(out), "output_limit", "{out}");
    }
    // Three calls over a 32 MiB budget each: far less than the 120 MB of text, let alone
    // the 2.7 GB one call cost when every event was copied and parsed twice.
    assert_host_held(baseline, peak, 256 << 20, (answered, failed, slowest));

    // One oversized event is the plugin's fault, whatever its size; nothing is stored.
    for mb in ["15", "17"] {
        let (status, out) = webhook(&host, &format!("big {mb}")).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{mb} MB: {out}");
        assert_eq!(cause(&out), "output_limit", "{mb} MB: {out}");
    }
    let (status, out) = webhook(&host, "ok after").await;
    assert_eq!(status, StatusCode::OK, "{out}");
}
