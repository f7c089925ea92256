//! Raw webhook retention and replay: requests a connector could not serve are kept, and a
//! replay over them stores what was missing and nothing twice.

use reqwest::StatusCode;
use serde_json::json;
use tessera_tests::TestHost;

async fn send(host: &TestHost, body: &str) -> StatusCode {
    reqwest::Client::new()
        .post(format!("{}/v1/connectors/versioned/webhook", host.base))
        .body(body.to_string())
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn replay_recovers_requests_that_arrived_while_the_connector_was_down() {
    let host = TestHost::start().await;
    host.install("version-a", "versioned").await;
    assert_eq!(send(&host, "served-1").await, StatusCode::OK);

    host.post("/v1/plugins/versioned/disable", &json!({})).await;
    assert_eq!(
        send(&host, "missed-1").await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        send(&host, "missed-2").await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    host.post("/v1/plugins/versioned/enable", &json!({})).await;

    let (status, report) = host
        .post("/v1/connectors/versioned/replay", &json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["replayed"], 3, "{report}");
    assert_eq!(report["accepted"], 2, "the two missed requests: {report}");
    assert_eq!(
        report["duplicates"], 1,
        "the served one is not stored twice: {report}"
    );

    let (_, again) = host
        .post("/v1/connectors/versioned/replay", &json!({}))
        .await;
    assert_eq!(
        (again["accepted"].clone(), again["duplicates"].clone()),
        (json!(0), json!(3)),
        "{again}"
    );
    let c = host
        .wait_contact("user_id:versioned", |c| c["counters"]["a"] == 3)
        .await;
    assert_eq!(c["counters"]["a"], 3);

    let (status, err) = host.post("/v1/connectors/nope/replay", &json!({})).await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("unknown_plugin"))
    );
    let (status, _) = host
        .post(
            "/v1/connectors/versioned/replay",
            &json!({ "since": "yesterday" }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}
