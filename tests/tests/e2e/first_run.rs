//! A new operator's first run: the bundled plugins served by default, a bundled connector
//! that waits for its secret and goes live when it is set, a not-live connector that says
//! how to fix it, and contact lookups in Segment's spellings.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::json;
use sha2::Sha256;
use tessera_tests::process::{HostOptions, HostProcess};
use tessera_tests::{TestHost, workspace};

fn shopify_signature(secret: &str, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[tokio::test]
async fn a_bundled_connector_waiting_for_its_secret_goes_live_when_it_is_set() {
    let host = TestHost::start_with(|c| {
        c.bundled_plugins = Some(workspace().join("target/plugins"));
    })
    .await;
    let (_, view) = host.get("/v1/plugins/shopify").await;
    assert_eq!(view["state"], "inactive", "no secret yet: {view}");

    // A webhook now: 503, saying what is wrong and which call fixes it.
    let body = json!({ "id": 1 }).to_string();
    let url = format!("{}/v1/connectors/shopify/webhook", host.base);
    let client = reqwest::Client::new();
    let send = || {
        client
            .post(&url)
            .header("x-shopify-topic", "products/update")
            .header(
                "x-shopify-hmac-sha256",
                shopify_signature("shpss_first", &body),
            )
            .body(body.clone())
            .send()
    };
    let response = send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let answer: serde_json::Value = response.json().await.unwrap();
    assert_eq!(answer["error"]["code"], "not_live", "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("no live version")
            && message.contains("PUT /v1/plugins/shopify/config")
            && message.contains("POST /v1/plugins/shopify/activate"),
        "{message}"
    );

    // A config without the secret is refused, and nothing goes live.
    let (status, err) = host.put("/v1/plugins/shopify/config", &json!({})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    assert_eq!(err["error"]["code"], "invalid_config", "{err}");
    let (_, view) = host.get("/v1/plugins/shopify").await;
    assert_eq!(view["state"], "inactive", "{view}");
    assert_eq!(
        view["config"],
        json!({}),
        "the refused config was not kept: {view}"
    );

    // With the secret it goes live, and a signed webhook is served.
    let (status, view) = host
        .put(
            "/v1/plugins/shopify/config",
            &json!({ "secret": "shpss_first" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["state"], "live", "{view}");
    let response = send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn contacts_are_found_by_segments_spellings_of_the_id_kinds() {
    let host = TestHost::start().await;
    let key = host.create_source("app").await;
    let (status, _) = host
        .segment(
            "/v1/identify",
            &key,
            &json!({ "userId": "spell-1", "anonymousId": "anon-spell-1", "traits": {} }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let contact = host.wait_contact("user_id:spell-1", |_| true).await;
    for identity in [
        "userId:spell-1",
        "userid:spell-1",
        "anonymousId:anon-spell-1",
        "anonymous_id:anon-spell-1",
    ] {
        let (status, found) = host.get(&format!("/v1/contacts?identity={identity}")).await;
        assert_eq!(status, StatusCode::OK, "{found}");
        assert_eq!(
            found["contacts"][0]["id"], contact["id"],
            "{identity}: {found}"
        );
    }
}

#[tokio::test]
async fn an_installed_binary_serves_the_plugins_shipped_beside_it_with_no_flags() {
    // An unpacked release: the binary, and its plugins in `plugins/` beside it, far from the
    // source tree.
    let release = tempfile::tempdir().unwrap();
    let binary = release.path().join("tessera");
    std::fs::copy(tessera_tests::process::tessera_binary(), &binary).unwrap();
    std::fs::create_dir(release.path().join("plugins")).unwrap();
    let mut shipped = Vec::new();
    for entry in std::fs::read_dir(workspace().join("target/plugins")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(
            &path,
            release
                .path()
                .join("plugins")
                .join(path.file_name().unwrap()),
        )
        .unwrap();
        if path.extension().is_some_and(|x| x == "wasm") {
            shipped.push(path.file_stem().unwrap().to_string_lossy().into_owned());
        }
    }
    assert!(!shipped.is_empty());
    let host = HostProcess::start(HostOptions {
        binary: Some(binary.clone()),
        ..HostOptions::default()
    });
    let (status, list) = host.get("/v1/plugins").await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let loaded = list["plugins"].as_array().unwrap().len();
    assert_eq!(loaded, shipped.len(), "every shipped plugin: {list}");
    // Those that need no config are live; the others wait for theirs.
    let (_, rule) = host.get("/v1/plugins/trait-rule").await;
    assert_eq!(rule["state"], "live", "{rule}");
    let (_, feed) = host.get("/v1/plugins/json-feed").await;
    assert_eq!(
        feed["state"], "inactive",
        "json-feed waits for its url: {feed}"
    );
    drop(host);

    // `--no-bundled-plugins` starts empty.
    let host = HostProcess::start(HostOptions {
        binary: Some(binary),
        args: vec!["--no-bundled-plugins".into()],
        ..HostOptions::default()
    });
    let (_, list) = host.get("/v1/plugins").await;
    assert_eq!(list["plugins"], json!([]), "{list}");
}
