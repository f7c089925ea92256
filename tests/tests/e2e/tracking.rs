//! The Segment-compatible tracking API: auth, validation, durability, dedupe, profiles.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tessera_tests::TestHost;

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

#[tokio::test]
async fn tracked_events_land_on_one_merged_profile() {
    let host = TestHost::start().await;
    let key = host.create_source("web").await;

    let (status, body) = host
        .segment(
            "/v1/track",
            &key,
            &json!({ "anonymousId": "anon-1", "event": "Viewed Pricing", "messageId": "t-1" }),
        )
        .await;
    assert_eq!(
        (status, body.clone()),
        (StatusCode::OK, json!({ "success": true }))
    );
    host.wait_contact("anonymous_id:anon-1", |c| {
        c["counters"]["Viewed Pricing"] == 1
    })
    .await;

    // A second anonymous visitor, known only by email...
    host.segment("/v1/identify", &key, &json!({ "anonymousId": "anon-2", "traits": { "email": "Ada@Example.com", "plan": "free" } }))
        .await;
    host.wait_contact("email:ada@example.com", |c| c["traits"]["plan"] == "free")
        .await;

    // ...then the user logs in on the first device with the same email: one person.
    let (status, _) = host
        .segment("/v1/batch", &key, &json!({ "batch": [
            { "type": "identify", "userId": "u-1", "anonymousId": "anon-1",
              "traits": { "email": "ada@example.com", "plan": "pro" }, "timestamp": "2030-01-01T00:00:00Z" },
            { "type": "track", "userId": "u-1", "event": "Order Completed", "properties": { "total": 30 } }
        ]}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let c = host
        .wait_contact("user_id:u-1", |c| c["counters"]["Order Completed"] == 1)
        .await;
    assert_eq!(c["traits"]["plan"], "pro", "the later identify wins: {c}");
    let by_email = host.wait_contact("email:ada@example.com", |_| true).await;
    let by_anon2 = host.wait_contact("anonymous_id:anon-2", |_| true).await;
    assert_eq!(by_email["id"], c["id"]);
    assert_eq!(
        by_anon2["id"], c["id"],
        "the anon-2 profile was merged in: {by_anon2}"
    );
    assert_eq!(
        c["counters"]["Viewed Pricing"], 1,
        "counters survive the merge"
    );

    let (_, events) = host
        .get(&format!(
            "/v1/contacts/{}/events",
            c["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(events["events"].as_array().unwrap().len(), 4, "{events}");
}

#[tokio::test]
async fn a_duplicate_message_id_is_acknowledged_and_stored_once() {
    let host = TestHost::start().await;
    let key = host.create_source("app").await;
    let call = json!({ "userId": "u-9", "event": "Signed Up", "messageId": "dup-1" });
    for _ in 0..3 {
        let (status, _) = host.segment("/v1/track", &key, &call).await;
        assert_eq!(status, StatusCode::OK);
    }
    host.segment(
        "/v1/track",
        &key,
        &json!({ "userId": "u-9", "event": "Marker", "messageId": "m-2" }),
    )
    .await;
    let c = host
        .wait_contact("user_id:u-9", |c| c["counters"]["Marker"] == 1)
        .await;
    assert_eq!(c["counters"]["Signed Up"], 1, "{c}");
    let logged = host.wait_profiles_applied(Duration::from_secs(20)).await;
    assert_eq!(logged, 2, "one record per distinct message id");
}

#[tokio::test]
async fn bad_tracking_calls_get_the_right_errors() {
    let host = TestHost::start().await;
    let key = host.create_source("app").await;
    let raw = |path: &str, key: Option<&str>, body: Vec<u8>| {
        let mut rb = reqwest::Client::new()
            .post(format!("{}{path}", host.base))
            .body(body);
        if let Some(k) = key {
            rb = rb.basic_auth(k, Some(""));
        }
        async move {
            let r = rb.send().await.unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        }
    };
    let (s, b) = raw("/v1/track", Some(&key), b"{nope".to_vec()).await;
    assert_eq!(
        (s, code(&b)),
        (StatusCode::BAD_REQUEST, "malformed_json"),
        "{b}"
    );
    let (s, b) = host
        .segment("/v1/track", &key, &json!({ "event": "x" }))
        .await;
    assert_eq!((s, code(&b)), (StatusCode::BAD_REQUEST, "invalid_event"));
    let (s, b) = host
        .segment("/v1/batch", &key, &json!({ "batch": [{ "type": "track", "event": "x", "userId": "u" }, { "type": "shout", "userId": "u" }] }))
        .await;
    assert_eq!((s, code(&b)), (StatusCode::BAD_REQUEST, "invalid_event"));
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("event 1:"),
        "{b}"
    );
    let (s, b) = host
        .segment(
            "/v1/track",
            "wk_unknown",
            &json!({ "userId": "u", "event": "x" }),
        )
        .await;
    assert_eq!((s, code(&b)), (StatusCode::UNAUTHORIZED, "unauthorized"));
    let (s, _) = raw(
        "/v1/track",
        None,
        serde_json::to_vec(&json!({ "userId": "u", "event": "x" })).unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = raw(
        "/v1/track",
        None,
        serde_json::to_vec(&json!({ "writeKey": key, "userId": "u", "event": "x" })).unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "writeKey in the body works too");
    let big = "x".repeat(40 * 1024);
    let items: Vec<Value> = (0..20).map(|i| json!({ "type": "track", "event": "x", "userId": "u", "properties": { "i": i, "pad": &big[..30_000] } })).collect();
    let (s, b) = host
        .segment("/v1/batch", &key, &json!({ "batch": items }))
        .await;
    assert_eq!(
        (s, code(&b)),
        (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
        "{b}"
    );
    let (s, b) = host.segment("/v1/batch", &key, &json!({ "batch": [{ "type": "track", "event": "x", "userId": "u", "properties": { "pad": big } }] })).await;
    assert_eq!((s, code(&b)), (StatusCode::BAD_REQUEST, "invalid_event"));
    assert!(
        b["error"]["message"].as_str().unwrap().contains("event 0"),
        "{b}"
    );
}

#[tokio::test]
async fn signed_webhooks_land_as_events_and_bad_signatures_store_nothing() {
    let host = TestHost::start().await;
    let sha = host.upload("webhook-connector").await;
    host.put(
        "/v1/plugins/generic-webhook/config",
        &json!({ "secret": "s3" }),
    )
    .await;
    host.activate("generic-webhook", &sha).await;
    let ticket = |message_id: &str| {
        json!({ "type": "track", "event": "Ticket Opened", "userId": "wh-1", "messageId": message_id })
            .to_string()
    };
    let sig = |secret: &str, body: &str| {
        use hmac::{Hmac, Mac};
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(body.as_bytes());
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    };
    let client = reqwest::Client::new();
    let url = format!("{}/v1/connectors/generic-webhook/webhook", host.base);
    // The refused request has its own message id: were it stored, deduplication of the good
    // delivery below could not hide it, and the log's last sequence would move.
    let forged = ticket("wh-m-forged");
    let before = host.wait_profiles_applied(Duration::from_secs(10)).await;
    let r = client
        .post(&url)
        .header("x-tessera-signature", sig("wrong", &forged))
        .body(forged)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let b: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        (status, b["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("bad_signature")),
        "{b}"
    );
    assert_eq!(
        host.wait_profiles_applied(Duration::from_secs(10)).await,
        before,
        "a refused webhook stored events"
    );
    let body = ticket("wh-m1");
    for _ in 0..2 {
        let r = client
            .post(&url)
            .header("x-tessera-signature", sig("s3", &body))
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    let c = host
        .wait_contact("user_id:wh-1", |c| c["counters"]["Ticket Opened"] == 1)
        .await;
    let (_, events) = host
        .get(&format!(
            "/v1/contacts/{}/events",
            c["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(
        events["events"].as_array().unwrap().len(),
        1,
        "redelivery stored once: {events}"
    );
    assert_eq!(
        events["events"][0]["event"]["source"],
        "connector:generic-webhook"
    );
}

#[tokio::test]
async fn erasing_a_contact_deletes_it_and_suppresses_its_identities() {
    let host = TestHost::start().await;
    let key = host.create_source("app").await;
    host.segment(
        "/v1/identify",
        &key,
        &json!({ "userId": "gone-1", "traits": { "email": "gone@example.com" } }),
    )
    .await;
    let c = host.wait_contact("user_id:gone-1", |_| true).await;
    let id = c["id"].as_str().unwrap();

    let response = host
        .request(reqwest::Method::DELETE, &format!("/v1/contacts/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["redacted_events"], 1, "{answer}");
    assert_eq!(answer["dropped_raw_webhooks"], 0, "{answer}");
    let (status, _) = host.get(&format!("/v1/contacts/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // The event's bytes are gone from the log file itself, not only from the API.
    let log = std::fs::read(host.data_dir.join("log/events.log")).unwrap();
    let text = String::from_utf8_lossy(&log);
    assert!(!text.contains("gone@example.com") && !text.contains("gone-1"));

    // Later events about the erased person are acknowledged but not stored.
    let (status, _) = host
        .segment(
            "/v1/track",
            &key,
            &json!({ "userId": "gone-1", "event": "Came Back" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    host.segment("/v1/track", &key, &json!({ "anonymousId": "x", "traits": {}, "context": { "traits": { "email": "GONE@example.com" } }, "event": "Sneaky" })).await;
    host.segment(
        "/v1/track",
        &key,
        &json!({ "userId": "marker", "event": "After" }),
    )
    .await;
    host.wait_contact("user_id:marker", |_| true).await;
    for identity in ["user_id:gone-1", "email:gone@example.com", "anonymous_id:x"] {
        let (_, found) = host.get(&format!("/v1/contacts?identity={identity}")).await;
        assert_eq!(
            found["contacts"],
            json!([]),
            "{identity} stays erased: {found}"
        );
    }
    let response = host
        .request(reqwest::Method::DELETE, &format!("/v1/contacts/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    // The redacted log reopens, and the person stays erased after a restart.
    let dir = host.stop().await;
    let host = TestHost::start_in(dir.as_ref().unwrap().path(), |_| {}).await;
    let (_, found) = host.get("/v1/contacts?identity=user_id:gone-1").await;
    assert_eq!(found["contacts"], json!([]), "{found}");
    host.wait_contact("user_id:marker", |_| true).await;
}

#[tokio::test]
async fn erasing_a_contact_drops_the_retained_webhooks_that_mention_it_and_only_those() {
    let host = TestHost::start().await;
    let url = host.generic_webhook("s3").await;
    let deliveries = [
        ("wh-ada", "ada@example.com", "m-ada-1"),
        ("wh-ada", "ada@example.com", "m-ada-2"),
        ("wh-bob", "bob@example.com", "m-bob-1"),
        ("wh-adam", "adam@example.com", "m-adam-1"),
    ];
    for (user, email, message) in deliveries {
        let body = json!({
            "type": "identify", "userId": user, "messageId": message,
            "traits": { "email": email }
        });
        assert_eq!(host.post_signed(&url, "s3", &body).await, StatusCode::OK);
    }
    let ada = host.wait_contact("user_id:wh-ada", |_| true).await;
    host.wait_contact("user_id:wh-adam", |_| true).await;

    let response = host
        .request(
            reqwest::Method::DELETE,
            &format!("/v1/contacts/{}", ada["id"].as_str().unwrap()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(
        answer["dropped_raw_webhooks"], 2,
        "ada's two requests, not adam's: {answer}"
    );

    // What is left to replay is bob's and adam's requests, already stored.
    let (status, report) = host
        .post("/v1/connectors/generic-webhook/replay", &json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(
        (report["replayed"].clone(), report["duplicates"].clone()),
        (json!(2), json!(2)),
        "{report}"
    );
    let (_, found) = host.get("/v1/contacts?identity=user_id:wh-ada").await;
    assert_eq!(found["contacts"], json!([]), "{found}");
}

#[tokio::test]
async fn an_alias_through_a_connector_links_both_identities_into_one_profile() {
    let host = TestHost::start().await;
    let url = host.generic_webhook("s3").await;
    let calls = [
        json!({ "type": "track", "anonymousId": "anon-alias-1", "event": "Browsed", "messageId": "al-m1" }),
        json!({ "type": "track", "userId": "user-alias-1", "event": "Bought", "messageId": "al-m2" }),
        json!({ "type": "alias", "userId": "user-alias-1", "previousId": "anon-alias-1", "messageId": "al-m3" }),
        json!({ "type": "group", "userId": "user-alias-1", "groupId": "org-7", "messageId": "al-m4" }),
    ];
    for call in calls {
        assert_eq!(host.post_signed(&url, "s3", &call).await, StatusCode::OK);
    }
    host.wait_profiles_applied(Duration::from_secs(10)).await;
    let user = host
        .wait_contact("user_id:user-alias-1", |c| {
            c["counters"]["Browsed"] == 1 && c["counters"]["Bought"] == 1
        })
        .await;
    let (_, by_anon) = host
        .get("/v1/contacts?identity=anonymous_id:anon-alias-1")
        .await;
    assert_eq!(by_anon["contacts"][0]["id"], user["id"], "{by_anon}");
    let (_, events) = host
        .get(&format!(
            "/v1/contacts/{}/events",
            user["id"].as_str().unwrap()
        ))
        .await;
    let stored: Vec<&Value> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["event"])
        .collect();
    let alias = stored.iter().find(|e| e["type"] == "alias").expect("alias");
    assert_eq!(alias["previous_id"], "anon-alias-1", "{alias}");
    let group = stored.iter().find(|e| e["type"] == "group").expect("group");
    assert_eq!(group["group_id"], "org-7", "{group}");
}

/// The fields both ways in carry, from one stored event.
fn mapped(event: &Value) -> Value {
    let pick = |k: &str| event.get(k).cloned().unwrap_or(Value::Null);
    let mut identities: Vec<String> = event["identities"]
        .as_array()
        .map(|ids| {
            ids.iter()
                .map(|i| {
                    format!(
                        "{}:{}",
                        i["kind"].as_str().unwrap_or(""),
                        i["value"].as_str().unwrap_or("")
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    identities.sort();
    let properties = pick("properties");
    json!({
        "type": pick("type"), "event": pick("event"), "user_id": pick("user_id"),
        "anonymous_id": pick("anonymous_id"), "timestamp": pick("timestamp"),
        "properties": properties, "traits": pick("traits"), "identities": identities,
        "group_id": pick("group_id"), "previous_id": pick("previous_id"),
    })
}

#[tokio::test]
async fn segments_spec_maps_the_same_through_the_tracking_api_and_a_connector() {
    let host = TestHost::start().await;
    let key = host.create_source("fixtures").await;
    let url = host.generic_webhook("s3").await;
    // Segment's documented shapes, each once per way in (different users, same fields).
    let fixtures = |user: &str, phone: &str| {
        // (A page's category and a track's context.traits included.)
        vec![
            json!({ "type": "identify", "userId": user, "anonymousId": format!("{user}-anon"),
                    "timestamp": "2030-01-02T03:04:05.000Z",
                    "traits": { "email": format!("{user}@example.com"), "plan": "pro", "logins": 3 },
                    "context": { "traits": { "phone": phone } } }),
            json!({ "type": "track", "userId": user, "event": "Order Completed",
                    "timestamp": "2030-01-02T03:04:06.000Z",
                    "properties": { "revenue": 42.5, "currency": "EUR", "products": [{ "sku": "a" }] } }),
            json!({ "type": "page", "userId": user, "name": "Pricing", "category": "Docs",
                    "context": { "traits": { "tier": "gold" } }, "timestamp": "2030-01-02T03:04:07.000Z",
                    "properties": { "url": "https://example.com/pricing" } }),
            json!({ "type": "screen", "userId": user, "name": "Home", "timestamp": "2030-01-02T03:04:08.000Z",
                    "properties": { "variation": "blue" } }),
            json!({ "type": "group", "userId": user, "groupId": format!("{user}-org"),
                    "timestamp": "2030-01-02T03:04:09.000Z", "traits": { "name": "Initech" } }),
            json!({ "type": "alias", "userId": user, "previousId": format!("{user}-old"),
                    "timestamp": "2030-01-02T03:04:10.000Z" }),
        ]
    };
    for (i, call) in fixtures("via-api", "+15550101").into_iter().enumerate() {
        let mut call = call;
        call["messageId"] = json!(format!("fx-api-{i}"));
        let (status, body) = host
            .segment("/v1/batch", &key, &json!({ "batch": [call] }))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    for (i, call) in fixtures("via-hook", "+15550102").into_iter().enumerate() {
        let mut call = call;
        call["messageId"] = json!(format!("fx-hook-{i}"));
        assert_eq!(host.post_signed(&url, "s3", &call).await, StatusCode::OK);
    }
    host.wait_profiles_applied(Duration::from_secs(10)).await;
    let stored = |user: &'static str, phone: &'static str| {
        let host = &host;
        async move {
            let c = host
                .wait_contact(&format!("user_id:{user}"), |_| true)
                .await;
            let (_, events) = host
                .get(&format!(
                    "/v1/contacts/{}/events",
                    c["id"].as_str().unwrap()
                ))
                .await;
            events["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| {
                    let text = mapped(&e["event"])
                        .to_string()
                        .replace(user, "USER")
                        .replace(phone, "PHONE");
                    serde_json::from_str::<Value>(&text).unwrap()
                })
                .collect::<Vec<_>>()
        }
    };
    let via_api = stored("via-api", "+15550101").await;
    let via_hook = stored("via-hook", "+15550102").await;
    assert_eq!(via_api.len(), 6, "{via_api:#?}");
    for (a, h) in via_api.iter().zip(&via_hook) {
        assert_eq!(a, h, "the tracking API and the SDK's mapping disagree");
    }
}
