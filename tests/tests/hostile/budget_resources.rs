//! A plugin with a 16 MiB memory cap and no capability creates `wasi:http` header maps with big
//! values and keeps them: the handles and their payloads are charged to the plugin, and the
//! call fails with `resource_limit` long before the host grows.

// Each test holds its turn (`crate::serial`) across its awaits on purpose: one attack at a time.
#![allow(clippy::await_holding_lock)]

use reqwest::StatusCode;
use serde_json::json;
use tessera_tests::process::{HostOptions, HostProcess};

use crate::budget_probe::{TrackProbe, assert_host_held, cause, mib, outcome};

const ID: &str = "budget-resource-hoarder";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hoarded_header_maps_fail_the_call_with_resource_limit() {
    let _turn = crate::serial();
    let host = HostProcess::start(HostOptions::default());
    host.install(ID, ID).await;
    let key = host.create_source("neighbour").await;
    let fields = |count: usize, size: usize| json!({ "request": { "path": "/fields", "body": format!("{count} {size}") } });
    // A few small header maps are what a plugin that makes requests needs: they work.
    let (status, out) = host.call(ID, &fields(20, 1_000)).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(outcome(&out), "kept:20", "{out}");
    let baseline = host.resident_bytes();

    let probe = TrackProbe::start(&host.base, &key);
    // 45,000 maps of a 100 KB value: 4.5 GB of host memory for 100 KB of guest memory.
    let (status, big) = host.call(ID, &fields(45_000, 100_000)).await;
    // Values under the per-map limit: the number of handles is what stops it.
    let (status_many, many) = host.call(ID, &fields(45_000, 20_000)).await;
    let (answered, failed, slowest) = probe.stop().await;
    let mut host = host;
    assert!(
        host.is_alive(),
        "the host died (killed for memory: {})",
        host.killed_for_memory()
    );
    let peak = host.peak_resident_bytes();
    println!(
        "resources: baseline {} MiB, peak {} MiB; /v1/track {answered} answered, {failed} failed, slowest {slowest:?}",
        mib(baseline),
        mib(peak)
    );
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{big}");
    assert_eq!(cause(&big), "resource_limit", "{big}");
    assert_eq!(status_many, StatusCode::BAD_GATEWAY, "{many}");
    assert_eq!(cause(&many), "resource_limit", "{many}");
    // The plugin's memory cap is 16 MiB; what it may make the host hold is of that order.
    assert_host_held(baseline, peak, 128 << 20, (answered, failed, slowest));
    let (status, out) = host.call(ID, &fields(20, 1_000)).await;
    assert_eq!(status, StatusCode::OK, "the plugin still serves: {out}");
}
