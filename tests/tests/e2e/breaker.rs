//! The circuit breaker seen from outside: refused requests do not open it, and an open one
//! answers 503 with `Retry-After`.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::RETRY_AFTER;
use serde_json::json;
use tessera_tests::{ADMIN_KEY, TestHost};

use crate::hostile_guests::hostile_manifest;

#[tokio::test]
async fn unsigned_request_floods_leave_a_connectors_breaker_closed() {
    let host = TestHost::start_with(|c| {
        c.registry.breaker.failure_threshold = 3;
        c.registry.breaker.cool_down = Duration::from_secs(30);
    })
    .await;
    let sha = host.upload("webhook-connector").await;
    host.put(
        "/v1/plugins/generic-webhook/config",
        &json!({ "secret": "s3" }),
    )
    .await;
    host.activate("generic-webhook", &sha).await;
    let client = reqwest::Client::new();
    let url = format!("{}/v1/connectors/generic-webhook/webhook", host.base);
    let before = host.wait_profiles_applied(Duration::from_secs(10)).await;
    // Ten times the threshold: unsigned, and signed with a wrong secret.
    for i in 0..30 {
        let body = json!({ "type": "track", "event": "Flood", "userId": "flood", "messageId": format!("flood-{i}") })
            .to_string();
        let mut rb = client.post(&url).body(body);
        if i % 2 == 1 {
            rb = rb.header("x-tessera-signature", format!("sha256={}", "0".repeat(64)));
        }
        let r = rb.send().await.unwrap();
        let status = r.status();
        let b: serde_json::Value = r.json().await.unwrap();
        assert_eq!(
            (status, b["error"]["code"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("bad_signature")),
            "request {i}: {b}"
        );
    }
    let (_, view) = host.get("/v1/plugins/generic-webhook").await;
    assert_eq!(
        view["breaker"],
        json!({ "state": "closed", "consecutive_failures": 0 }),
        "refused requests are the connector doing its job, not failures: {view}"
    );
    assert_eq!(
        host.wait_profiles_applied(Duration::from_secs(10)).await,
        before,
        "nothing refused was stored"
    );

    // A signed delivery still goes through.
    let body =
        json!({ "type": "track", "event": "Real", "userId": "flood", "messageId": "real-1" })
            .to_string();
    let sig = {
        use hmac::{Hmac, Mac};
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"s3").unwrap();
        mac.update(body.as_bytes());
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    };
    let r = client
        .post(&url)
        .header("x-tessera-signature", sig)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn an_open_breaker_answers_503_with_retry_after() {
    let host = TestHost::start_with(|c| {
        c.registry.breaker.failure_threshold = 3;
        c.registry.breaker.cool_down = Duration::from_secs(30);
    })
    .await;
    let sha = host.upload_with("hostile", &hostile_manifest(&[])).await;
    host.activate("hostile", &sha).await;
    let call = |path: &'static str| {
        reqwest::Client::new()
            .post(format!("{}/v1/plugins/hostile/call", host.base))
            .bearer_auth(ADMIN_KEY)
            .json(&json!({ "request": { "path": path, "body": "" } }))
            .send()
    };
    let r = call("/ok").await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers().get(RETRY_AFTER).is_none());
    for _ in 0..3 {
        let r = call("/panic").await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
        assert!(
            r.headers().get(RETRY_AFTER).is_none(),
            "a failed call is not a refusal"
        );
    }
    let r = call("/ok").await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let retry_after: u64 = r
        .headers()
        .get(RETRY_AFTER)
        .expect("an open breaker sends Retry-After")
        .to_str()
        .unwrap()
        .parse()
        .expect("Retry-After in whole seconds");
    assert!(
        (1..=30).contains(&retry_after),
        "Retry-After is the cool-down left, in seconds: {retry_after}"
    );
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "breaker_open", "{body}");
}
