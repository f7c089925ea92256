//! A restarted host serves the same live versions, config and kv, from the compiled cache.

use serde_json::json;
use tessera_tests::{TestHost, rule_batch};

fn compiled_files(dir: &std::path::Path) -> Vec<(String, std::time::SystemTime)> {
    let mut files: Vec<_> = std::fs::read_dir(dir.join("compiled"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().unwrap().modified().unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

#[tokio::test]
async fn restart_serves_the_same_live_versions_without_recompiling() {
    let host = TestHost::start().await;
    host.install("version-a", "versioned").await;
    let b = host.upload("version-b").await;
    host.activate("versioned", &b).await;
    host.install("trait-rule", "trait-rule").await;
    host.put("/v1/plugins/trait-rule/config", &json!({ "note": "kept" }))
        .await;
    host.post("/v1/plugins/trait-rule/disable", &json!({}))
        .await;
    let data_dir = host.data_dir.clone();
    let before = compiled_files(&data_dir);
    assert_eq!(before.len(), 3, "one compiled file per version: {before:?}");
    let tmp = host.stop().await;

    let host = TestHost::start_in(&data_dir, |_| {}).await;
    let (_, view) = host.get("/v1/plugins/versioned").await;
    assert_eq!(view["live"], b.as_str());
    let (_, out) = host.webhook("versioned", "/", "after-restart").await;
    assert_eq!(out["ok"]["events"][0]["name"], "b");
    assert_eq!(out["ok"]["events"][0]["id"], "after-restart");

    let (_, rule) = host.get("/v1/plugins/trait-rule").await;
    assert_eq!(rule["state"], "disabled");
    assert_eq!(rule["config"]["note"], "kept");
    host.post("/v1/plugins/trait-rule/enable", &json!({})).await;
    let (_, out) = host
        .call(
            "trait-rule",
            &json!({ "params": { "trait": "plan", "equals": "free" }, "batch": rule_batch(2) }),
        )
        .await;
    assert_eq!(out["ok"]["decisions"], json!([false, true]));

    assert_eq!(compiled_files(&data_dir), before, "nothing was recompiled");
    host.stop().await;
    drop(tmp);
}
