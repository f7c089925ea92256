//! Segments through the real host: definitions over HTTP, memberships decided by a rule
//! plugin as events arrive and by recomputes, and the membership events in the log.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use tessera_tests::{Api, TestHost};

/// Polls a segment until `check` accepts it.
pub async fn wait_segment(api: &Api, id: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = api.get(&format!("/v1/segments/{id}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if check(&body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "segment {id} never got there: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The contact ids of a segment's members, sorted.
pub async fn members(api: &Api, id: &str) -> Vec<String> {
    let (status, body) = api.get(&format!("/v1/segments/{id}/members")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut ids: Vec<String> = body["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| m["contact_id"].as_str().expect("contact_id").to_string())
        .collect();
    ids.sort();
    ids
}

/// The names and properties of a contact's events in the log, in order.
pub async fn logged(api: &Api, contact: &str) -> Vec<(String, Value)> {
    let (status, body) = api.get(&format!("/v1/contacts/{contact}/events")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| {
            (
                e["event"]["event"].as_str().unwrap_or_default().to_string(),
                e["event"]["properties"].clone(),
            )
        })
        .collect()
}

fn pros() -> Value {
    json!({ "id": "pros", "name": "Pro plan", "rule": "trait-rule",
            "params": { "trait": "plan", "equals": "pro" } })
}

#[tokio::test]
async fn a_segment_is_recomputed_then_follows_events_and_logs_every_change() {
    let host = TestHost::start().await;
    host.install("trait-rule", "trait-rule").await;
    let key = host.create_source("web").await;
    host.identify(&key, "u1", json!({ "plan": "pro" })).await;
    host.identify(&key, "u2", json!({ "plan": "free" })).await;
    let u1 = host.wait_contact("user_id:u1", |_| true).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let u2 = host.wait_contact("user_id:u2", |_| true).await["id"]
        .as_str()
        .unwrap()
        .to_string();

    // Bad definitions are refused with the rule's or the host's reason.
    let (status, body) = host
        .post(
            "/v1/segments",
            &json!({ "id": "bad", "rule": "trait-rule", "params": { "trait": "plan", "frobs": 1 } }),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "invalid_params", "{body}");
    let (status, body) = host
        .post(
            "/v1/segments",
            &json!({ "id": "x", "rule": "no-such-rule" }),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["code"], "unknown_plugin", "{body}");
    let (status, body) = host
        .post(
            "/v1/segments",
            &json!({ "id": "Bad Id", "rule": "trait-rule", "params": {} }),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "invalid_segment", "{body}");

    // Created: a recompute finds the contact already on the pro plan.
    let (status, body) = host.post("/v1/segments", &pros()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["version"], 1);
    let (status, body) = host.post("/v1/segments", &pros()).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let def = wait_segment(&host, "pros", |s| s["recompute"]["state"] == "done").await;
    assert_eq!(def["members"], 1, "{def}");
    assert_eq!(def["recompute"]["evaluated"], 2, "{def}");
    assert_eq!(def["recompute"]["entered"], 1, "{def}");
    assert_eq!(members(&host, "pros").await, vec![u1.clone()]);

    // Incremental: an identify moves u2 in and u1 out, each an event in the log.
    host.identify(&key, "u2", json!({ "plan": "pro" })).await;
    host.identify(&key, "u1", json!({ "plan": "free" })).await;
    wait_segment(&host, "pros", |s| s["members"] == 1).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while members(&host, "pros").await != vec![u2.clone()] {
        assert!(Instant::now() < deadline, "u2 never replaced u1");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_, contact) = host.get(&format!("/v1/contacts/{u2}")).await;
    assert_eq!(contact["segments"], json!(["pros"]), "{contact}");
    let (_, contact) = host.get(&format!("/v1/contacts/{u1}")).await;
    assert_eq!(contact["segments"], json!([]), "{contact}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let u1_events = loop {
        let events = logged(&host, &u1).await;
        if events.iter().any(|(n, _)| n == "Segment Exited") {
            break events;
        }
        assert!(Instant::now() < deadline, "no exit event: {events:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let names: Vec<&str> = u1_events
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| n.starts_with("Segment"))
        .collect();
    assert_eq!(names, vec!["Segment Entered", "Segment Exited"]);
    let (_, props) = &u1_events
        .iter()
        .find(|(n, _)| n == "Segment Exited")
        .unwrap();
    assert_eq!(props["segment_id"], "pros");
    assert_eq!(props["segment_version"], 1);
    assert_eq!(props["rule_plugin"], "trait-rule");
    assert!(
        props["rule_version"]
            .as_str()
            .is_some_and(|v| !v.is_empty()),
        "{props}"
    );

    // A new definition version re-evaluates everyone.
    let (status, body) = host
        .put(
            "/v1/segments/pros",
            &json!({ "rule": "trait-rule", "params": { "trait": "plan", "equals": "free" } }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["version"], 2);
    let def = wait_segment(&host, "pros", |s| {
        s["recompute"]["state"] == "done" && s["recompute"]["reason"] == "updated"
    })
    .await;
    assert_eq!(def["members"], 1, "{def}");
    assert_eq!(members(&host, "pros").await, vec![u1.clone()]);

    // Listed, then deleted with its members.
    let (_, list) = host.get("/v1/segments").await;
    assert_eq!(list["segments"].as_array().map(Vec::len), Some(1), "{list}");
    let (status, _) = host
        .request(reqwest::Method::DELETE, "/v1/segments/pros")
        .send()
        .await
        .map(|r| (r.status(), ()))
        .expect("delete");
    assert_eq!(status, StatusCode::OK);
    let (status, body) = host.get("/v1/segments/pros/members").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (_, contact) = host.get(&format!("/v1/contacts/{u1}")).await;
    assert_eq!(contact["segments"], json!([]), "{contact}");
}

#[tokio::test]
async fn memberships_and_the_stages_place_survive_a_restart() {
    let host = TestHost::start().await;
    host.install("trait-rule", "trait-rule").await;
    let key = host.create_source("web").await;
    let (status, body) = host.post("/v1/segments", &pros()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    host.identify(&key, "u1", json!({ "plan": "pro" })).await;
    wait_segment(&host, "pros", |s| s["members"] == 1).await;
    let data = host.stop().await.expect("data dir");
    let host = TestHost::start_in(data.path(), |_| {}).await;
    let def = wait_segment(&host, "pros", |s| s["recompute"]["state"] == "done").await;
    assert_eq!(def["members"], 1, "{def}");
    // Nothing is entered twice: the restart did not re-run what was done.
    let u1 = host.wait_contact("user_id:u1", |_| true).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    host.identify(&key, "u2", json!({ "plan": "pro" })).await;
    wait_segment(&host, "pros", |s| s["members"] == 2).await;
    let entered = logged(&host, &u1)
        .await
        .iter()
        .filter(|(n, _)| n == "Segment Entered")
        .count();
    assert_eq!(entered, 1);
}
