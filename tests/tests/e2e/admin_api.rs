//! The admin API's answers to good and bad requests: versions, rollback, disable, errors.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tessera_tests::{ADMIN_KEY, TestHost, artifact, manifest};

fn versioned_event(out: &Value) -> &str {
    out["ok"]["events"][0]["name"]
        .as_str()
        .unwrap_or_else(|| panic!("no event in {out}"))
}

#[tokio::test]
async fn activate_rollback_disable_enable() {
    let host = TestHost::start().await;
    let a = host.install("version-a", "versioned").await;
    let b = host.upload("version-b").await;
    let (_, out) = host.webhook("versioned", "/", "x").await;
    assert_eq!(versioned_event(&out), "a");

    host.activate("versioned", &b).await;
    let (_, out) = host.webhook("versioned", "/", "x").await;
    assert_eq!(versioned_event(&out), "b");

    let (status, view) = host
        .post("/v1/plugins/versioned/rollback", &json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["live"], a.as_str());
    assert_eq!(view["history"].as_array().unwrap().len(), 3);
    let (_, out) = host.webhook("versioned", "/", "x").await;
    assert_eq!(versioned_event(&out), "a");

    let (_, view) = host.post("/v1/plugins/versioned/disable", &json!({})).await;
    assert_eq!(view["state"], "disabled");
    let (status, err) = host.webhook("versioned", "/", "x").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(err["error"]["code"], "disabled");
    host.post("/v1/plugins/versioned/enable", &json!({})).await;
    let (status, _) = host.webhook("versioned", "/", "x").await;
    assert_eq!(status, StatusCode::OK);

    let (status, view) = host.get("/v1/plugins/versioned").await;
    assert_eq!(status, StatusCode::OK);
    let versions = view["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2);
    let live: Vec<_> = versions.iter().filter(|v| v["live"] == true).collect();
    assert_eq!(live.len(), 1);
    assert!(
        live[0]["stats"]["calls"].as_u64().unwrap() >= 2,
        "calls are counted per version: {view}"
    );
}

#[tokio::test]
async fn bad_requests_get_json_errors_with_the_right_status() {
    let host = TestHost::start().await;
    let code = |v: &Value| v["error"]["code"].as_str().unwrap_or("").to_string();

    let (status, err) = host
        .upload_bytes(b"\0asm\x0d\0\x01\0garbage".to_vec(), &manifest("version-a"))
        .await;
    assert_eq!(
        (status, code(&err).as_str()),
        (StatusCode::BAD_REQUEST, "invalid_component"),
        "{err}"
    );

    let (status, err) = host
        .upload_bytes(
            std::fs::read(artifact("version-a")).unwrap(),
            "id = \"x\"\nkind = 3",
        )
        .await;
    assert_eq!(
        (status, code(&err).as_str()),
        (StatusCode::BAD_REQUEST, "invalid_manifest"),
        "{err}"
    );

    let wrong_world =
        manifest("trait-rule").replace("kind = \"segment-rule\"", "kind = \"channel\"");
    let (status, err) = host
        .upload_bytes(std::fs::read(artifact("trait-rule")).unwrap(), &wrong_world)
        .await;
    assert_eq!(
        (status, code(&err).as_str()),
        (StatusCode::CONFLICT, "world_mismatch"),
        "{err}"
    );

    let (status, err) = host.get("/v1/plugins/nope").await;
    assert_eq!(
        (status, code(&err).as_str()),
        (StatusCode::NOT_FOUND, "unknown_plugin")
    );

    host.upload("version-a").await;
    let (status, err) = host
        .post(
            "/v1/plugins/versioned/activate",
            &json!({ "sha256": "00".repeat(32) }),
        )
        .await;
    assert_eq!(
        (status, code(&err).as_str()),
        (StatusCode::NOT_FOUND, "unknown_version")
    );

    let (status, err) = host
        .post("/v1/plugins/versioned/rollback", &json!({}))
        .await;
    assert_eq!(
        (status, code(&err).as_str()),
        (StatusCode::CONFLICT, "nothing_to_roll_back")
    );

    let (status, err) = host.webhook("versioned", "/", "x").await;
    assert_eq!(
        (status, code(&err).as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "not_live")
    );

    let response = host
        .request(reqwest::Method::POST, "/v1/plugins/versioned/activate")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(code(&response.json().await.unwrap()), "bad_request");

    let big = vec![0u8; 40 << 20];
    let (status, err) = host.upload_bytes(big, &manifest("version-a")).await;
    assert_eq!(
        (status, code(&err).as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
        "{err}"
    );

    let hostile = host.upload("hostile").await;
    host.put(
        "/v1/plugins/hostile/config",
        &json!({ "self_test": "fail" }),
    )
    .await;
    let (status, err) = host
        .post(
            "/v1/plugins/hostile/activate",
            &json!({ "sha256": hostile, "approve": true }),
        )
        .await;
    assert_eq!(
        (status, code(&err).as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, "self_test_failed"),
        "{err}"
    );
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("self-test asked to fail")
    );
}

#[tokio::test]
async fn admin_routes_need_the_admin_key() {
    let host = TestHost::start().await;
    let client = reqwest::Client::new();
    for key in [None, Some("wrong")] {
        let mut rb = client.get(format!("{}/v1/plugins", host.base));
        if let Some(k) = key {
            rb = rb.bearer_auth(k);
        }
        let response = rb.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unauthorized");
    }
    let ok = client
        .get(format!("{}/v1/plugins", host.base))
        .basic_auth(ADMIN_KEY, Some(""))
        .send()
        .await
        .unwrap();
    assert_eq!(
        ok.status(),
        StatusCode::OK,
        "HTTP Basic with the key as user name works too"
    );
    let health = client
        .get(format!("{}/healthz", host.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK, "health needs no key");
    let ready = client
        .get(format!("{}/readyz", host.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
}
