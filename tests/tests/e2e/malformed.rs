//! Guest answers that break the contract (an empty or over-long event id, properties or
//! traits that are not a JSON object, the wrong number of rule decisions) are typed
//! `malformed_output` failures: nothing of the answer is stored, the failure is kept with
//! its input, and the plugin's stats count it by cause.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use tessera_tests::{TestHost, rule_batch};

#[tokio::test]
async fn malformed_connector_events_are_typed_failures_and_store_nothing() {
    // Ten failures in a row would open the breaker at its default threshold.
    let host = TestHost::start_with(|c| c.registry.breaker.failure_threshold = 100).await;
    host.install("malformed-connector", "malformed-connector")
        .await;
    let url = format!("{}/v1/connectors/malformed-connector/webhook", host.base);
    let client = reqwest::Client::new();

    let cases = [
        ("empty-id", "id must be 1 to 256 bytes"),
        ("long-id", "id must be 1 to 256 bytes"),
        ("array-properties", "properties is not a JSON object"),
        ("text-traits", "traits is not a JSON object"),
        ("second-bad", "event 1: properties is not a JSON object"),
    ];
    for (i, (case, why)) in cases.iter().enumerate() {
        // Through the console: the failure's cause and the host's reason.
        let (status, out) = host
            .webhook("malformed-connector", "/", &format!("{case} console-{i}"))
            .await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{out}");
        assert_eq!(out["error"]["cause"], "malformed_output", "{case}: {out}");
        let message = out["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(why),
            "{case}: `{message}` should say {why}"
        );

        // Through the public route: a 502, and the event log does not move (the good first
        // event of `/second-bad` is not stored alone).
        let before = host.wait_profiles_applied(Duration::from_secs(10)).await;
        let response = client
            .post(&url)
            .body(format!("{case} public-{i}"))
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (StatusCode::BAD_GATEWAY, Some("plugin_failed")),
            "{case}: {body}"
        );
        assert_eq!(
            host.wait_profiles_applied(Duration::from_secs(10)).await,
            before,
            "{case}: a malformed answer stored events"
        );
    }

    // The well-formed route still works, and every failure was kept, typed.
    let response = client.post(&url).body("ok fine-1").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    host.wait_contact("user_id:malformed", |c| c["counters"]["malformed"] == 1)
        .await;
    let (status, list) = host.get("/v1/plugins/malformed-connector/failures").await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let failures = list["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 2 * cases.len(), "{list}");
    assert!(
        failures.iter().all(|f| f["code"] == "malformed_output"),
        "{list}"
    );
    let (_, view) = host.get("/v1/plugins/malformed-connector").await;
    let live = view["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["live"] == true)
        .expect("the live version")
        .clone();
    assert_eq!(
        live["stats"]["failures_by_cause"]["malformed_output"],
        2 * cases.len(),
        "{live}"
    );
}

#[tokio::test]
async fn a_rule_answering_the_wrong_number_of_decisions_is_a_typed_failure() {
    let host = TestHost::start().await;
    host.install("malformed-rule", "malformed-rule").await;
    let (status, out) = host
        .call(
            "malformed-rule",
            &json!({ "params": {}, "batch": rule_batch(3) }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["ok"]["decisions"], json!([true, true, true]), "{out}");
    for (params, answered) in [(json!({ "extra": 2 }), 5), (json!({ "missing": 1 }), 2)] {
        let (status, out) = host
            .call(
                "malformed-rule",
                &json!({ "params": params, "batch": rule_batch(3) }),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{out}");
        assert_eq!(out["error"]["cause"], "malformed_output", "{out}");
        let message = out["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(&format!("{answered} decisions for a batch of 3")),
            "{message}"
        );
    }
}

#[tokio::test]
async fn the_public_webhook_route_never_echoes_what_a_plugin_wrote() {
    let host = TestHost::start().await;
    host.install("malformed-connector", "malformed-connector")
        .await;
    let url = format!("{}/v1/connectors/malformed-connector/webhook", host.base);
    let client = reqwest::Client::new();
    for (case, status, code) in [
        ("panic", StatusCode::BAD_GATEWAY, "plugin_failed"),
        ("refuse", StatusCode::BAD_REQUEST, "bad_request"),
        ("empty-id", StatusCode::BAD_GATEWAY, "plugin_failed"),
    ] {
        let secret = format!("sk_live_{case}_do_not_echo");
        let response = client
            .post(&url)
            .body(format!("{case} {secret}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{case}");
        let text = response.text().await.unwrap();
        let body: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(body["error"]["code"], code, "{case}: {body}");
        for leak in [
            secret.as_str(),
            "guest",
            "quoting",
            "malformed-connector@",
            "sha256",
        ] {
            assert!(
                !text.contains(leak),
                "{case}: the answer shows `{leak}`: {text}"
            );
        }
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{case}: a stable message: {body}"
        );
    }
    // The operator has the details.
    let (_, failures) = host.get("/v1/plugins/malformed-connector/failures").await;
    let messages = failures.to_string();
    assert!(
        messages.contains("guest panic quoting the request"),
        "{failures}"
    );
    assert!(
        messages.contains("guest refusal quoting the request"),
        "{failures}"
    );
}
