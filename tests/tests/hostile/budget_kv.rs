//! kv quotas hold under concurrent writers, and a total kv budget across plugins (and a byte
//! cap per plugin) refuses writes once it is used.

// Each test holds its turn (`crate::serial`) across its awaits on purpose: one attack at a time.
#![allow(clippy::await_holding_lock)]

use reqwest::StatusCode;
use serde_json::json;
use tessera_tests::process::{HostOptions, HostProcess};
use tessera_tests::{artifact, manifest};

use crate::budget_probe::outcome;

const GUEST: &str = "budget-kv-race";

fn fill(prefix: &str, count: usize, size: usize) -> serde_json::Value {
    json!({ "request": { "path": "/fill", "body": format!("{prefix} {count} {size}") } })
}

/// Keys a `/fill` call stored, from its `stored:N ...` outcome.
fn stored(out: &serde_json::Value) -> usize {
    let outcome = outcome(out);
    outcome
        .strip_prefix("stored:")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected outcome {outcome}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_never_exceed_the_key_quota() {
    let _turn = crate::serial();
    // A quota of 20 keys, 10 of them used: (the default is 10,000, and filling that many keys
    // took the old check, which counted the namespace on every write, over 20 s).
    let host = HostProcess::start(HostOptions {
        args: ["--kv-plugin-keys", "20"].map(String::from).to_vec(),
        ..HostOptions::default()
    });
    host.install(GUEST, GUEST).await;
    let (status, out) = host.call(GUEST, &fill("base", 10, 1)).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(stored(&out), 10, "{out}");
    // 16 writers at once, 4 distinct keys each: 64 attempts for 10 free keys.
    let writers = (0..16).map(|w| {
        let api = tessera_tests::Api::new(host.base.clone());
        tokio::spawn(async move { api.call(GUEST, &fill(&format!("w{w}"), 4, 1)).await })
    });
    let mut total = 0;
    let mut refused = 0;
    for writer in writers {
        let (status, out) = writer.await.expect("writer");
        assert_eq!(status, StatusCode::OK, "{out}");
        total += stored(&out);
        refused += usize::from(outcome(&out).contains("QuotaExceeded"));
    }
    println!("16 concurrent writers stored {total} keys where 10 were free ({refused} refused)");
    assert_eq!(total, 10, "the quota of 20 keys was exceeded or under-used");
    assert!(refused > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_total_kv_budget_refuses_a_second_plugin_once_used() {
    let _turn = crate::serial();
    let host = HostProcess::start(HostOptions {
        args: [
            "--kv-plugin-bytes",
            "1048576",
            "--kv-total-bytes",
            "1572864",
        ]
        .map(String::from)
        .to_vec(),
        ..HostOptions::default()
    });
    let component = std::fs::read(artifact(GUEST)).expect("component");
    for id in ["kv-a", "kv-b", "kv-c"] {
        let text = manifest(GUEST).replace(&format!("id = \"{GUEST}\""), &format!("id = \"{id}\""));
        let (status, body) = host.upload_bytes(component.clone(), &text).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        host.activate(id, body["sha256"].as_str().expect("sha"))
            .await;
    }
    // 16 KiB values: a 1 MiB per-plugin cap holds fewer than 64 of them.
    let (_, a) = host.call("kv-a", &fill("a", 100, 16 << 10)).await;
    let (_, b) = host.call("kv-b", &fill("b", 100, 16 << 10)).await;
    let (_, c) = host.call("kv-c", &fill("c", 1, 16 << 10)).await;
    println!(
        "kv-a {}, kv-b {}, kv-c {}",
        outcome(&a),
        outcome(&b),
        outcome(&c)
    );
    for (out, why) in [(&b, "all plugins"), (&c, "all plugins")] {
        assert!(
            outcome(out).contains(why),
            "refused by the total budget: {out}"
        );
    }
    let (a, b, c) = (stored(&a), stored(&b), stored(&c));
    assert!(
        (60..64).contains(&a),
        "kv-a stored {a} values of 16 KiB under a 1 MiB cap"
    );
    assert!(
        (28..34).contains(&b),
        "kv-b stored {b}: what the 1.5 MiB in total leaves"
    );
    assert_eq!(c, 0, "the total budget is used: kv-c must be refused");
}
