//! One customer through the whole pipeline of a host: signed Shopify webhooks land on a
//! profile, the orders put the contact in a windowed "big spender" segment, the entry starts
//! a journey that waits, branches on a trait and queues a send, another order keeps the
//! membership, and the window sliding past ends it with a `Segment Exited` event in the log.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::Sha256;
use tessera_tests::{Api, TestHost};

const SECRET: &str = "shpss_flow";
/// The segment's window: short, so the test sees it slide past.
const WINDOW_MS: i64 = 6_000;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .expect("time")
        .format(&time::format_description::well_known::Rfc3339)
        .expect("format")
}

fn parse_ms(text: &str) -> i64 {
    let at = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("{text}: {e}"));
    (at.unix_timestamp_nanos() / 1_000_000) as i64
}

/// Posts a webhook signed as Shopify signs it (base64 HMAC-SHA256 of the body).
async fn shopify(host: &TestHost, topic: &str, delivery: &str, body: &Value) {
    let body = body.to_string();
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("key");
    mac.update(body.as_bytes());
    let signature = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    let answer = reqwest::Client::new()
        .post(format!("{}/v1/connectors/shopify/webhook", host.base))
        .header("x-shopify-topic", topic)
        .header("x-shopify-webhook-id", delivery)
        .header("x-shopify-hmac-sha256", signature)
        .body(body)
        .send()
        .await
        .expect("send");
    assert_eq!(answer.status(), StatusCode::OK, "{topic} {delivery}");
}

async fn order(host: &TestHost, id: u64, total: &str, at_ms: i64) {
    let body = json!({ "id": id, "email": "ada@example.com", "currency": "USD", "total_price": total,
                       "processed_at": rfc3339(at_ms),
                       "customer": { "id": 7001, "email": "ada@example.com" },
                       "line_items": [{ "product_id": 1, "sku": "SKU1", "title": "Loom", "price": total, "quantity": 1 }] });
    shopify(host, "orders/create", &format!("wh-order-{id}"), &body).await;
}

/// The contact's `Segment Entered` / `Segment Exited` events for `segment`, oldest first,
/// as (name, received_at in Unix ms).
async fn memberships(api: &Api, contact: &str, segment: &str) -> Vec<(String, i64)> {
    let (_, events) = api.get(&format!("/v1/contacts/{contact}/events")).await;
    events["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| &e["event"])
        .filter(|e| e["properties"]["segment_id"] == segment)
        .map(|e| {
            (
                e["event"].as_str().expect("name").to_string(),
                parse_ms(e["received_at"].as_str().expect("received_at")),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_shopify_big_spender_enters_a_segment_starts_a_journey_and_ages_out() {
    let host = TestHost::start().await;
    let sha = host.upload("shopify").await;
    host.put("/v1/plugins/shopify/config", &json!({ "secret": SECRET }))
        .await;
    host.activate("shopify", &sha).await;
    host.install("event-window", "event-window").await;
    host.upload("webhook-channel").await;

    let (status, body) = host
        .post(
            "/v1/segments",
            &json!({ "id": "big-spender", "rule": "event-window",
                     "params": { "event": "Order Completed", "at_least": 2,
                                 "within": { "seconds": WINDOW_MS / 1_000 },
                                 "where": { "property": "total", "gt": 100 } } }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = host
        .post(
            "/v1/journeys",
            &json!({ "id": "big-spender-thanks", "trigger": { "segment": "big-spender" },
                     "steps": [
                         { "id": "settle", "wait": { "duration": "1s" } },
                         { "id": "is-ada", "branch": { "all": [{ "trait": "firstName", "equals": "Ada" }],
                                                       "then": "personal" } },
                         { "id": "generic", "send": { "channel": "webhook-channel", "template": "thanks" } },
                         { "id": "done", "exit": {} },
                         { "id": "personal", "send": { "channel": "webhook-channel", "template": "thanks-personal",
                                                       "data": { "tone": "warm" } } }
                     ] }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // The customer (an identify with her traits), then two orders over 100 and one under
    // it, which the segment's property condition leaves out.
    let customer = json!({ "id": 7001, "email": "ada@example.com", "first_name": "Ada",
                           "last_name": "Lovelace", "created_at": rfc3339(now_ms()) });
    shopify(&host, "customers/create", "wh-customer", &customer).await;
    let first = now_ms();
    order(&host, 1, "150.00", first).await;
    order(&host, 2, "40.00", first).await;
    let contact = host
        .wait_contact("shopify:customer:7001", |c| {
            c["counters"]["Order Completed"] == 2
        })
        .await;
    let id = contact["id"].as_str().expect("id").to_string();
    assert_eq!(contact["traits"]["firstName"], "Ada", "{contact}");
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let second = now_ms();
    order(&host, 3, "180.00", second).await;

    // Entered; the journey's run waits, takes the branch on her first name and queues one
    // message with its idempotency key.
    let runs = host
        .wait_for(&format!("/v1/contacts/{id}/journeys"), |b| {
            b["runs"][0]["state"] == "completed"
        })
        .await;
    let run = runs["runs"][0]["id"].as_str().expect("run id").to_string();
    let (_, queued) = host.get("/v1/deliveries?journey=big-spender-thanks").await;
    let queued = queued["deliveries"].as_array().expect("deliveries").clone();
    assert_eq!(queued.len(), 1, "{queued:?}");
    let delivery = &queued[0];
    assert_eq!(delivery["state"], "queued", "{delivery}");
    assert_eq!(delivery["contact"], id.as_str(), "{delivery}");
    // The idempotency key: the run and the index of its `personal` step.
    assert_eq!(delivery["id"], format!("{run}.4"), "{delivery}");
    assert_eq!(delivery["template"], "thanks-personal", "{delivery}");

    // A third order inside the window: when the first leaves it, two remain.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    order(&host, 4, "120.00", now_ms()).await;

    // The window slides past the second order too: one order left, the contact exits, and
    // the exit is an event in the log.
    let deadline = Instant::now() + Duration::from_secs(60);
    let changes = loop {
        let changes = memberships(&host, &id, "big-spender").await;
        if changes.iter().any(|(name, _)| name == "Segment Exited") {
            break changes;
        }
        assert!(Instant::now() < deadline, "never exited: {changes:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let names: Vec<&str> = changes.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["Segment Entered", "Segment Exited"], "{changes:?}");
    let (entered, exited) = (changes[0].1, changes[1].1);
    assert!(
        entered >= second,
        "entered {entered} before the second order {second}"
    );
    // Without the third order the contact would have left when the first order aged out
    // (first + window); it stayed until the second one did.
    assert!(
        exited >= second + WINDOW_MS,
        "exited at {exited}, before the second order left the window at {}",
        second + WINDOW_MS
    );
    let (_, members) = host.get("/v1/segments/big-spender/members").await;
    assert_eq!(members["members"], json!([]), "{members}");
    let (_, journey) = host.get("/v1/journeys/big-spender-thanks").await;
    assert_eq!(
        journey["steps"]
            .as_array()
            .map(|s| s.iter().filter(|s| s["completed"] == 1).count()),
        Some(3),
        "settle, is-ada and personal completed once each: {journey}"
    );
}
