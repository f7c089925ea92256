//! Contact administration: undoing a merge by replaying the contacts' events.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tessera_tests::TestHost;

fn id(c: &Value) -> String {
    c["id"].as_str().expect("contact id").to_string()
}

fn identity_keys(c: &Value) -> Vec<String> {
    let mut keys: Vec<String> = c["identities"]
        .as_array()
        .expect("identities")
        .iter()
        .map(|i| {
            format!(
                "{}:{}",
                i["kind"].as_str().unwrap(),
                i["value"].as_str().unwrap()
            )
        })
        .collect();
    keys.sort();
    keys
}

async fn event_ids(host: &TestHost, contact: &str) -> Vec<String> {
    let (status, body) = host.get(&format!("/v1/contacts/{contact}/events")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["event"]["message_id"].as_str().unwrap().to_string())
        .collect()
}

/// Two anonymous visitors, the second known by email, linked by one identify: one contact.
async fn merged_pair(host: &TestHost, key: &str) -> (String, String) {
    host.segment(
        "/v1/track",
        key,
        &json!({ "anonymousId": "anon-1", "event": "Viewed Pricing", "messageId": "m-1" }),
    )
    .await;
    let first = host
        .wait_contact("anonymous_id:anon-1", |c| {
            c["counters"]["Viewed Pricing"] == 1
        })
        .await;
    host.segment("/v1/identify", key, &json!({ "anonymousId": "anon-2", "messageId": "m-2",
            "traits": { "email": "ada@example.com", "plan": "free" }, "timestamp": "2030-01-01T00:00:00Z" }))
        .await;
    let second = host
        .wait_contact("email:ada@example.com", |c| c["traits"]["plan"] == "free")
        .await;
    assert_ne!(id(&first), id(&second));
    host.segment("/v1/identify", key, &json!({ "anonymousId": "anon-1", "userId": "u-1", "messageId": "m-3",
            "traits": { "email": "ada@example.com", "plan": "pro" }, "timestamp": "2030-01-02T00:00:00Z" }))
        .await;
    host.segment(
        "/v1/track",
        key,
        &json!({ "userId": "u-1", "event": "Order Completed", "messageId": "m-4" }),
    )
    .await;
    let merged = host
        .wait_contact("anonymous_id:anon-2", |c| {
            c["counters"]["Order Completed"] == 1
        })
        .await;
    assert_eq!(
        id(&merged),
        id(&first),
        "merged into the older contact: {merged}"
    );
    assert_eq!(merged["traits"]["plan"], "pro");
    (id(&first), id(&second))
}

#[tokio::test]
async fn an_unmerge_splits_a_linked_contact_back_by_replaying_its_events() {
    let host = TestHost::start().await;
    let key = host.create_source("web").await;
    let (survivor, restored) = merged_pair(&host, &key).await;

    let (status, body) = host
        .post(&format!("/v1/contacts/{survivor}/unmerge"), &json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (s, r) = (&body["survivor"], &body["restored"]);
    assert_eq!((id(s), id(r)), (survivor.clone(), restored.clone()));
    assert_eq!(identity_keys(s), ["anonymous_id:anon-1", "user_id:u-1"]);
    assert_eq!(
        identity_keys(r),
        ["anonymous_id:anon-2", "email:ada@example.com"]
    );
    assert_eq!(s["traits"]["plan"], "pro", "{s}");
    assert_eq!(r["traits"]["plan"], "free", "{r}");
    assert_eq!(
        s["counters"],
        json!({ "Viewed Pricing": 1, "Order Completed": 1 })
    );
    assert_eq!(r["counters"], json!({}));
    assert_eq!(event_ids(&host, &survivor).await, ["m-1", "m-3", "m-4"]);
    assert_eq!(event_ids(&host, &restored).await, ["m-2"]);
    let (_, read) = host.get(&format!("/v1/contacts/{restored}")).await;
    assert_eq!(
        id(&read),
        restored,
        "the restored contact is its own again: {read}"
    );

    // Later events land on the right contact, and the linking identities do not merge again.
    host.segment(
        "/v1/track",
        &key,
        &json!({ "anonymousId": "anon-2", "event": "Booked", "messageId": "m-5" }),
    )
    .await;
    host.segment(
        "/v1/identify",
        &key,
        &json!({ "userId": "u-1", "messageId": "m-6",
            "traits": { "email": "ada@example.com" } }),
    )
    .await;
    host.segment(
        "/v1/track",
        &key,
        &json!({ "userId": "u-1", "event": "Marker", "messageId": "m-7" }),
    )
    .await;
    let by_user = host
        .wait_contact("user_id:u-1", |c| c["counters"]["Marker"] == 1)
        .await;
    assert_eq!(id(&by_user), survivor);
    let by_email = host.wait_contact("email:ada@example.com", |_| true).await;
    assert_eq!(id(&by_email), restored);
    assert_eq!(by_email["counters"], json!({ "Booked": 1 }));
    assert_eq!(event_ids(&host, &restored).await, ["m-2", "m-5"]);
}

#[tokio::test]
async fn unmerge_answers_404_409_and_is_in_the_merge_log() {
    let host = TestHost::start().await;
    let key = host.create_source("web").await;
    let (status, body) = host.post("/v1/contacts/ct_nope/unmerge", &json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    let (survivor, restored) = merged_pair(&host, &key).await;
    let (status, body) = host
        .post(
            &format!("/v1/contacts/{survivor}/unmerge"),
            &json!({ "merge": "ct_other" }),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, body) = host
        .post(
            &format!("/v1/contacts/{survivor}/unmerge"),
            &json!({ "merge": restored }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = host
        .post(&format!("/v1/contacts/{survivor}/unmerge"), &json!({}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "nothing left to undo: {body}");
    assert_eq!(body["error"]["code"], "conflict");
    let (_, log) = host.get(&format!("/v1/contacts/{restored}/merges")).await;
    let actions: Vec<&str> = log["merges"]
        .as_array()
        .expect("merges")
        .iter()
        .map(|m| m["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["merge", "unmerge"], "{log}");
    assert_eq!(log["merges"][1]["survivor"], survivor.as_str());

    // Still apart after a restart (the applier catches up from the same state): an identify
    // that links the two contacts' identities again, sent after the restart, would merge them
    // if the kept-apart pair had been lost.
    let dir = host.data_dir.clone();
    let tmp = host.stop().await;
    let host = TestHost::start_in(&dir, |_| {}).await;
    host.wait_profiles_applied(Duration::from_secs(10)).await;
    host.segment(
        "/v1/identify",
        &key,
        &json!({ "anonymousId": "anon-1", "userId": "u-1", "messageId": "m-after-restart",
            "traits": { "email": "ada@example.com" } }),
    )
    .await;
    host.segment(
        "/v1/track",
        &key,
        &json!({ "userId": "u-1", "event": "Marker", "messageId": "m-marker-after-restart" }),
    )
    .await;
    let by_user = host
        .wait_contact("user_id:u-1", |c| c["counters"]["Marker"] == 1)
        .await;
    host.wait_profiles_applied(Duration::from_secs(10)).await;
    let by_email = host.wait_contact("email:ada@example.com", |_| true).await;
    assert_eq!(
        (id(&by_user), id(&by_email)),
        (survivor.clone(), restored.clone()),
        "the linking identify after the restart merged the kept-apart pair again"
    );
    let (_, a) = host.get(&format!("/v1/contacts/{survivor}")).await;
    let (_, b) = host.get(&format!("/v1/contacts/{restored}")).await;
    assert_eq!((id(&a), id(&b)), (survivor, restored));
    host.stop().await;
    drop(tmp);
}
