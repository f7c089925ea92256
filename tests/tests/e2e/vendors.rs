//! Vendor webhooks signed the way Shopify, Stripe and Calendly sign them, sent to the running
//! host: good signatures land as events on profiles, bad or stale ones store nothing, and
//! redeliveries are stored once.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::Sha256;
use tessera_tests::TestHost;

fn mac(secret: &str, message: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `t=...,v1=...` over `"{t}.{body}"`, as Stripe and Calendly sign.
fn timestamped(secret: &str, t: u64, body: &str) -> String {
    format!(
        "t={t},v1={}",
        hex::encode(mac(secret, format!("{t}.{body}").as_bytes()))
    )
}

async fn connector(name: &str, secret: &str) -> TestHost {
    let host = TestHost::start().await;
    let sha = host.upload(name).await;
    host.put(
        &format!("/v1/plugins/{name}/config"),
        &json!({ "secret": secret }),
    )
    .await;
    host.activate(name, &sha).await;
    host
}

async fn post(
    host: &TestHost,
    id: &str,
    headers: &[(&str, String)],
    body: &str,
) -> (StatusCode, Value) {
    let mut rb = reqwest::Client::new()
        .post(format!("{}/v1/connectors/{id}/webhook", host.base))
        .body(body.to_string());
    for (k, v) in headers {
        rb = rb.header(*k, v);
    }
    let r = rb.send().await.unwrap();
    (r.status(), r.json().await.unwrap())
}

/// Posts a request the connector must refuse: 401 `bad_signature`, and the event log's last
/// sequence does not move (the caller gives the request its own event id, so a stored refusal
/// could not hide behind deduplication of a later good delivery).
async fn refused(host: &TestHost, id: &str, headers: &[(&str, String)], body: &str, why: &str) {
    let before = host.wait_profiles_applied(Duration::from_secs(10)).await;
    let (s, b) = post(host, id, headers, body).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("bad_signature")),
        "{id}: {why}: {b}"
    );
    let after = host.wait_profiles_applied(Duration::from_secs(10)).await;
    assert_eq!(
        after, before,
        "{id}: {why}: a refused request stored events"
    );
}

async fn events_of(host: &TestHost, contact: &Value) -> Vec<Value> {
    let (_, events) = host
        .get(&format!(
            "/v1/contacts/{}/events",
            contact["id"].as_str().unwrap()
        ))
        .await;
    events["events"].as_array().unwrap().clone()
}

#[tokio::test]
async fn stripe_signed_events_land_and_bad_or_stale_ones_do_not() {
    let host = connector("stripe", "whsec_e2e").await;
    let checkout = |event_id: &str| {
        json!({
            "id": event_id, "object": "event", "type": "checkout.session.completed", "created": now(),
            "data": { "object": { "id": "cs_test_1", "object": "checkout.session", "amount_total": 4200,
                "currency": "usd", "customer": "cus_E2E", "customer_details": { "email": "buyer@example.com" },
                "payment_status": "paid", "status": "complete" } }
        })
        .to_string()
    };
    let body = checkout("evt_e2e_1");
    let wrong = checkout("evt_e2e_wrong_secret");
    refused(
        &host,
        "stripe",
        &[(
            "stripe-signature",
            timestamped("whsec_wrong", now(), &wrong),
        )],
        &wrong,
        "wrong secret",
    )
    .await;
    let stale = checkout("evt_e2e_stale");
    refused(
        &host,
        "stripe",
        &[(
            "stripe-signature",
            timestamped("whsec_e2e", now() - 3_600, &stale),
        )],
        &stale,
        "a signature an hour old",
    )
    .await;
    let unsigned = checkout("evt_e2e_unsigned");
    refused(&host, "stripe", &[], &unsigned, "no signature header").await;
    for _ in 0..2 {
        let (s, b) = post(
            &host,
            "stripe",
            &[("stripe-signature", timestamped("whsec_e2e", now(), &body))],
            &body,
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{b}");
    }
    let c = host
        .wait_contact("stripe:customer:cus_E2E", |c| {
            c["counters"]["Order Completed"] == 1
        })
        .await;
    let by_email = host.wait_contact("email:buyer@example.com", |_| true).await;
    assert_eq!(by_email["id"], c["id"]);
    let events = events_of(&host, &c).await;
    assert_eq!(
        events.len(),
        1,
        "the redelivery was stored once: {events:?}"
    );
    assert_eq!(events[0]["event"]["properties"]["total"], 42.0);
}

#[tokio::test]
async fn shopify_orders_and_customers_land_on_one_profile() {
    let host = connector("shopify", "shpss_e2e").await;
    let sign = |body: &str| {
        base64::engine::general_purpose::STANDARD.encode(mac("shpss_e2e", body.as_bytes()))
    };
    let customer = json!({ "id": 7001, "email": "shopper@example.com", "first_name": "Ada", "last_name": "Lovelace",
                           "phone": null, "accepts_marketing": true, "tags": "vip", "created_at": "2026-11-01T10:00:00-05:00",
                           "updated_at": "2026-11-01T10:00:00-05:00" })
    .to_string();
    let headers = |topic: &str, id: &str, body: &str| {
        vec![
            ("x-shopify-topic", topic.to_string()),
            ("x-shopify-webhook-id", id.to_string()),
            ("x-shopify-hmac-sha256", sign(body)),
        ]
    };
    let (s, b) = post(
        &host,
        "shopify",
        &headers("customers/create", "wh-c1", &customer),
        &customer,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let order = json!({ "id": 9001, "email": "shopper@example.com", "currency": "USD", "total_price": "25.00",
                        "subtotal_price": "20.00", "total_tax": "5.00", "customer": { "id": 7001, "email": "shopper@example.com" },
                        "line_items": [{ "product_id": 1, "sku": "SKU1", "title": "Mug", "price": "20.00", "quantity": 1 }] })
    .to_string();
    let mut tampered = headers("orders/create", "wh-o-tampered", &order);
    tampered[2].1 = sign("{}");
    refused(
        &host,
        "shopify",
        &tampered,
        &order,
        "an HMAC over other bytes",
    )
    .await;
    for _ in 0..2 {
        let (s, b) = post(
            &host,
            "shopify",
            &headers("orders/create", "wh-o1", &order),
            &order,
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{b}");
    }
    let c = host
        .wait_contact("shopify:customer:7001", |c| {
            c["counters"]["Order Completed"] == 1
        })
        .await;
    assert_eq!(c["traits"]["firstName"], "Ada", "{c}");
    assert_eq!(
        events_of(&host, &c).await.len(),
        2,
        "identify + one order (redelivery deduped)"
    );
}

#[tokio::test]
async fn calendly_invitees_land_as_meetings() {
    let host = connector("calendly", "cal_e2e").await;
    let invitee = |invitee: &str, email: &str| {
        json!({
            "event": "invitee.created", "created_at": "2026-11-24T09:00:00.000000Z",
            "payload": { "uri": format!("https://api.calendly.com/scheduled_events/EV1/invitees/{invitee}"),
                "email": email, "name": "Grace Hopper", "status": "active",
                "event": "https://api.calendly.com/scheduled_events/EV1",
                "scheduled_event": { "uri": "https://api.calendly.com/scheduled_events/EV1", "name": "Intro call",
                    "start_time": "2026-12-01T15:00:00.000000Z", "end_time": "2026-12-01T15:30:00.000000Z" } }
        })
        .to_string()
    };
    let forged = invitee("INV-FORGED", "forged@example.com");
    refused(
        &host,
        "calendly",
        &[(
            "calendly-webhook-signature",
            timestamped("nope", now(), &forged),
        )],
        &forged,
        "wrong secret",
    )
    .await;
    let body = invitee("INV1", "guest@example.com");
    let (s, b) = post(
        &host,
        "calendly",
        &[(
            "calendly-webhook-signature",
            timestamped("cal_e2e", now(), &body),
        )],
        &body,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    host.wait_contact("email:guest@example.com", |c| {
        c["counters"]["Meeting Scheduled"] == 1
    })
    .await;
}

/// Posts `body` signed with `secret` (answered 200 with nothing accepted: vendors retry any
/// other answer for days), then signed with a wrong secret (still 401 `bad_signature`, and the
/// log does not move).
async fn acknowledged_empty(
    host: &TestHost,
    id: &str,
    secret: &str,
    body: &str,
    signed: impl Fn(&str) -> Vec<(&'static str, String)>,
) {
    let (s, b) = post(host, id, &signed(secret), body).await;
    assert_eq!(s, StatusCode::OK, "{id}: {b}");
    assert_eq!(
        (b["accepted"].as_u64(), b["duplicates"].as_u64()),
        (Some(0), Some(0)),
        "{id}: {b}"
    );
    refused(host, id, &signed("wrong"), body, "a bad signature").await;
}

#[tokio::test]
async fn signed_webhooks_of_unmapped_topics_are_acknowledged_with_no_events() {
    let shopify = connector("shopify", "shpss_e2e").await;
    let body = json!({ "id": 1, "title": "Mug" }).to_string();
    acknowledged_empty(&shopify, "shopify", "shpss_e2e", &body, |secret| {
        vec![
            ("x-shopify-topic", "products/update".to_string()),
            (
                "x-shopify-hmac-sha256",
                base64::engine::general_purpose::STANDARD.encode(mac(secret, body.as_bytes())),
            ),
        ]
    })
    .await;

    let stripe = connector("stripe", "whsec_e2e").await;
    let body = json!({ "id": "evt_other", "object": "event", "type": "payment_intent.created",
                       "created": now(), "data": { "object": { "id": "pi_1", "customer": "cus_1" } } })
    .to_string();
    acknowledged_empty(&stripe, "stripe", "whsec_e2e", &body, |secret| {
        vec![("stripe-signature", timestamped(secret, now(), &body))]
    })
    .await;

    let calendly = connector("calendly", "cal_e2e").await;
    let body =
        json!({ "event": "invitee_no_show.created", "created_at": "2026-11-24T09:00:00.000000Z",
                "payload": { "uri": "https://api.calendly.com/invitee_no_shows/NS1" } })
        .to_string();
    acknowledged_empty(&calendly, "calendly", "cal_e2e", &body, |secret| {
        vec![(
            "calendly-webhook-signature",
            timestamped(secret, now(), &body),
        )]
    })
    .await;
}
