//! A plugin's kv namespace end to end: writes survive a restart, and shadow runs and
//! self-tests may read it but every write they try is refused as read-only.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tessera_tests::{TestHost, manifest};

/// One call through the console: the properties of the kv-counter's event.
async fn count(host: &TestHost, id: &str) -> Value {
    let (status, out) = host.webhook("counter", "/count", id).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["ok"]["events"][0]["name"], "counted", "{out}");
    out["ok"]["events"][0]["properties"].clone()
}

/// `name`'s manifest under the plugin id `counter`.
fn as_counter(name: &str) -> String {
    manifest(name)
        .lines()
        .map(|line| {
            if line.starts_with("id = ") {
                "id = \"counter\"".to_string()
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The shadow report once `compared` comparisons are in.
async fn shadow_report(host: &TestHost, compared: u64) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, report) = host.get("/v1/plugins/counter/shadow").await;
        assert_eq!(status, StatusCode::OK, "{report}");
        if report["report"]["compared"] == compared {
            return report["report"].clone();
        }
        assert!(std::time::Instant::now() < deadline, "{report}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn kv_writes_survive_a_restart_and_shadow_runs_and_self_tests_cannot_write() {
    let host = TestHost::start().await;
    // version-a is live; the kv-counter runs beside it in shadow. Its self-test ran at
    // activation and passed only because its kv write was refused as read-only.
    let live = host
        .upload_with("version-a", &as_counter("version-a"))
        .await;
    host.activate("counter", &live).await;
    let counter = host
        .upload_with("kv-counter", &as_counter("kv-counter"))
        .await;
    let (status, view) = host
        .post(
            "/v1/plugins/counter/activate",
            &json!({ "sha256": counter, "shadow": true, "approve": true }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{view}");
    for i in 0..3 {
        let (status, out) = host.webhook("counter", "/count", &format!("s-{i}")).await;
        assert_eq!(status, StatusCode::OK, "{out}");
        assert_eq!(
            out["ok"]["events"][0]["name"], "a",
            "the live version answers"
        );
    }
    let report = shadow_report(&host, 3).await;
    let samples = report["samples"].as_array().expect("samples");
    assert_eq!(samples.len(), 3, "{report}");
    for sample in samples {
        let props = &sample["candidate"]["ok"][0]["properties"];
        assert_eq!(
            (props["count"].clone(), props["write"].clone()),
            (json!(1), json!("KvError::ReadOnly")),
            "each shadow call found nothing written and could not write: {sample}"
        );
    }

    // Promoted, the counter writes: nothing the shadow runs or the self-test tried is there.
    let (status, view) = host.post("/v1/plugins/counter/promote", &json!({})).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    for expected in 1..=3 {
        let props = count(&host, &format!("live-{expected}")).await;
        assert_eq!(
            props,
            json!({ "count": expected, "write": "ok", "self_test_wrote": false }),
        );
    }

    // A restart keeps what was written.
    let data_dir = host.data_dir.clone();
    let tmp = host.stop().await;
    let host = TestHost::start_in(&data_dir, |_| {}).await;
    let props = count(&host, "after-restart").await;
    assert_eq!(
        props,
        json!({ "count": 4, "write": "ok", "self_test_wrote": false }),
        "kv lost writes across the restart"
    );

    // Activating a version again runs its self-test again, still without a write.
    let (status, view) = host
        .post(
            "/v1/plugins/counter/activate",
            &json!({ "sha256": live, "approve": true }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{view}");
    host.activate("counter", &counter).await;
    let props = count(&host, "after-reactivation").await;
    assert_eq!(
        props,
        json!({ "count": 5, "write": "ok", "self_test_wrote": false })
    );
    host.stop().await;
    drop(tmp);
}
