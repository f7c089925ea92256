//! Each bundled plugin kind, uploaded, activated and called through the API.

use std::sync::{Arc, Mutex};

use axum::http::HeaderMap;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tessera_tests::{TestHost, artifact, manifest, rule_batch};

use tessera_tests::tessera_signature as sign;

/// The contract version is read from the component's exports: a component built against
/// `tessera:cx@0.9.0` whose manifest claims `0.1` is refused with a 400 that names both, and
/// nothing is stored; a 0.2 component is taken when it claims 0.2 and refused as 0.1.
#[tokio::test]
async fn a_manifest_that_names_another_contract_than_the_component_is_refused() {
    let host = TestHost::start().await;
    let (status, body) = host
        .upload_bytes(
            std::fs::read(artifact("contract-next")).unwrap(),
            &manifest("contract-next"),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "contract_mismatch", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    for part in ["`0.1`", "0.9", "tessera:cx/source@0.9.0"] {
        assert!(message.contains(part), "{part} in {message}");
    }
    let (status, _) = host.get("/v1/plugins/contract-next").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing was stored");

    let claimed = manifest("version-a");
    assert!(claimed.contains("contract = \"0.2\""), "{claimed}");
    // Claimed as 0.1, a 0.2 component is refused: its exports say 0.2.
    let (status, body) = host
        .upload_bytes(
            std::fs::read(artifact("version-a")).unwrap(),
            &claimed.replace("contract = \"0.2\"", "contract = \"0.1\""),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "contract_mismatch", "{body}");
    let (status, body) = host
        .upload_bytes(std::fs::read(artifact("version-a")).unwrap(), &claimed)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["contract"], "0.2", "{body}");
}

#[tokio::test]
async fn trait_rule_decides_a_batch() {
    let host = TestHost::start().await;
    host.install("trait-rule", "trait-rule").await;
    let (status, out) = host
        .call(
            "trait-rule",
            &json!({ "params": { "trait": "plan", "equals": "pro" }, "batch": rule_batch(4) }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["ok"]["decisions"], json!([true, false, true, false]));
    let (_, bad) = host
        .call(
            "trait-rule",
            &json!({ "params": { "trait": "plan", "bogus": 1 }, "batch": rule_batch(1) }),
        )
        .await;
    assert!(
        bad["err"].is_string(),
        "bad params are the rule's error, not a crash: {bad}"
    );
}

#[tokio::test]
async fn webhook_connector_verifies_signatures_with_its_configured_secret() {
    let host = TestHost::start().await;
    let sha = host.upload("webhook-connector").await;
    let (status, body) = host
        .post(
            "/v1/plugins/generic-webhook/activate",
            &json!({ "sha256": sha }),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "needs its secret first: {body}"
    );
    assert_eq!(body["error"]["code"], "self_test_failed");

    let (status, view) = host
        .put(
            "/v1/plugins/generic-webhook/config",
            &json!({ "secret": "whsec_test" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["config"]["secret"], "********", "secrets are redacted");
    host.activate("generic-webhook", &sha).await;

    let event =
        json!({ "type": "track", "event": "Order Completed", "userId": "u1", "messageId": "m-1",
                        "properties": { "total": 30 } })
        .to_string();
    let request = |sig: &str| json!({ "request": { "headers": { "X-Tessera-Signature": sig }, "body": event } });
    let (status, out) = host
        .call("generic-webhook", &request(&sign("whsec_test", &event)))
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    let events = &out["ok"]["events"];
    assert_eq!(events[0]["id"], "m-1");
    assert_eq!(events[0]["name"], "Order Completed");
    assert_eq!(events[0]["contact"]["user_id"], "u1");

    let (_, out) = host
        .call("generic-webhook", &request(&sign("wrong", &event)))
        .await;
    assert!(
        out["err"]["code"] == "unauthorized" && out["err"]["message"].is_string(),
        "a wrong signature is refused: {out}"
    );
}

/// A loopback HTTP sink recording what it receives.
async fn sink(status: u16) -> (String, Arc<Mutex<Vec<(HeaderMap, String)>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let app = axum::Router::new().fallback(move |headers: HeaderMap, body: String| {
        let record = record.clone();
        async move {
            record.lock().unwrap().push((headers, body));
            (
                axum::http::StatusCode::from_u16(status).unwrap(),
                [("x-request-id", "req-42")],
                "{}",
            )
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, seen)
}

fn channel_manifest(allowed: &str) -> String {
    tessera_tests::manifest("webhook-channel")
        .replace("http = []", &format!("http = [\"{allowed}\"]"))
}

fn message(to: &str) -> Value {
    json!({ "message": { "id": "run-1:step-2", "channel": "webhook", "to": to, "sender": null, "subject": "Hi",
                         "body": "{\"hello\":1}", "content_type": "application/json", "metadata": "{}" } })
}

#[tokio::test]
async fn webhook_channel_delivers_to_a_granted_address() {
    let (addr, seen) = sink(200).await;
    let granted = addr.clone();
    let host = TestHost::start_with(move |c| c.allow_addresses = vec![granted]).await;
    let sha = host
        .upload_with("webhook-channel", &channel_manifest(&addr))
        .await;
    host.activate("webhook-channel", &sha).await;
    let (status, out) = host
        .call("webhook-channel", &message(&format!("http://{addr}/hook")))
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["ok"]["delivery"]["provider_id"], "req-42", "{out}");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].0["idempotency-key"], "run-1:step-2");
    let sent: Value = serde_json::from_str(&seen[0].1).unwrap();
    assert_eq!(sent["subject"], "Hi");
}

#[tokio::test]
async fn webhook_channel_reports_retryable_and_refused_sends() {
    let (addr, seen) = sink(503).await;
    let granted = addr.clone();
    let host = TestHost::start_with(move |c| c.allow_addresses = vec![granted]).await;
    let sha = host
        .upload_with("webhook-channel", &channel_manifest(&addr))
        .await;
    host.activate("webhook-channel", &sha).await;
    let (_, out) = host
        .call("webhook-channel", &message(&format!("http://{addr}/hook")))
        .await;
    assert!(out["err"]["code"] == "retryable", "503 is retryable: {out}");

    // Allowed by the manifest but an internal address the operator did not grant.
    let host2 = TestHost::start().await;
    let sha = host2
        .upload_with("webhook-channel", &channel_manifest(&addr))
        .await;
    host2.activate("webhook-channel", &sha).await;
    let (_, out) = host2
        .call("webhook-channel", &message(&format!("http://{addr}/hook")))
        .await;
    // The host's address policy denies it (not a connection failure, which would be
    // retryable): the channel reports the denial as permanent.
    assert_eq!(
        out["err"]["code"], "permanent",
        "loopback without a grant is refused: {out}"
    );
    assert!(
        out["err"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("is not allowed by the plugin's http capability")),
        "the refusal is the host's address denial: {out}"
    );
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "the refused send never reached the sink"
    );
}

/// A message with an HTML part and headers, as the console takes it.
fn email_with_html(body: &str) -> Value {
    json!({ "message": { "id": "run-7.1", "channel": "email", "to": "ada@example.com",
        "sender": null, "subject": "Hi", "body": body, "content_type": "text/plain",
        "metadata": "{}", "html": "<p>Hello</p>",
        "headers": [{"name": "List-Unsubscribe", "value": "<https://example.com/u/1>"}] } })
}

#[tokio::test]
async fn a_0_1_channel_still_sends_and_gets_the_text_part() {
    let host = TestHost::start().await;
    host.install("channel-v0-1", "channel-v0-1").await;
    let (status, out) = host.call("channel-v0-1", &email_with_html("Hello")).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["ok"]["delivery"]["provider_id"], "run-7.1", "{out}");
    assert_eq!(
        out["ok"]["delivery"]["detail"], "text/plain Hi Hello",
        "{out}"
    );
    // Only HTML: a 0.1 channel, which has no HTML part, gets the HTML as its body.
    let (_, out) = host.call("channel-v0-1", &email_with_html("")).await;
    assert_eq!(
        out["ok"]["delivery"]["detail"], "text/html Hi <p>Hello</p>",
        "{out}"
    );
    // A 0.1 channel has no status export: the host answers for it.
    let (status, out) = host
        .call("channel-v0-1", &json!({ "request": { "body": "{}" } }))
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(
        out["err"], "this channel takes no status callbacks",
        "{out}"
    );
}

#[tokio::test]
async fn an_sdk_channel_without_status_callbacks_says_so() {
    let host = TestHost::start().await;
    let sha = host
        .upload_with("webhook-channel", &channel_manifest("hooks.example.com"))
        .await;
    host.activate("webhook-channel", &sha).await;
    let (status, out) = host
        .call(
            "webhook-channel",
            &json!({ "request": { "body": "{\"status\":\"delivered\"}" } }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(
        out["err"], "this channel takes no status callbacks",
        "{out}"
    );
}
