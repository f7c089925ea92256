//! Safe swaps: canary routing and promotion, automatic rollback, shadow runs without effects,
//! capability review, kept failures and their replay, logs, metrics and the audit log.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tessera_tests::{TestHost, artifact, counting_listener, manifest, tessera_signature};

/// The hostile guest's component under the `versioned` id: a candidate that panics on
/// `/panic` and asks for more than version-a (an HTTP host, more imports).
async fn upload_hostile_as_versioned(host: &TestHost) -> (StatusCode, Value) {
    let text = manifest("hostile").replace("id = \"hostile\"", "id = \"versioned\"");
    host.upload_bytes(std::fs::read(artifact("hostile")).unwrap(), &text)
        .await
}

/// Which version answered a console call with this body: `a` or `b`.
async fn answered_by(host: &TestHost, body: &str) -> String {
    let (status, out) = host.webhook("versioned", "/", body).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    out["ok"]["events"][0]["name"]
        .as_str()
        .expect("an event")
        .to_string()
}

async fn rollout(host: &TestHost) -> Value {
    host.get("/v1/plugins/versioned").await.1["rollout"].clone()
}

async fn audit_actions(host: &TestHost) -> Vec<String> {
    let (status, audit) = host.get("/v1/audit?plugin=versioned").await;
    assert_eq!(status, StatusCode::OK, "{audit}");
    audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect()
}

/// The `versioned` plugin's shadow report once `compared` comparisons are in.
async fn shadow_report(host: &TestHost, compared: u64) -> Value {
    shadow_report_within(host, compared, Duration::from_secs(10)).await
}

/// [`shadow_report`], waiting at most `wait`.
async fn shadow_report_within(host: &TestHost, compared: u64, wait: Duration) -> Value {
    let deadline = std::time::Instant::now() + wait;
    loop {
        let (status, report) = host.get("/v1/plugins/versioned/shadow").await;
        assert_eq!(status, StatusCode::OK, "{report}");
        if report["report"]["compared"] == compared {
            return report;
        }
        assert!(std::time::Instant::now() < deadline, "{report}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Makes version-a live and starts version-b beside it with `options` (canary or shadow);
/// returns both hashes and the plugin's view.
async fn a_live_b_candidate(host: &TestHost, options: Value) -> (String, String, Value) {
    let a = host.install("version-a", "versioned").await;
    let b = host.upload("version-b").await;
    let mut body = options;
    body["sha256"] = json!(b);
    let (status, view) = host.post("/v1/plugins/versioned/activate", &body).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    (a, b, view)
}

#[tokio::test]
async fn a_canary_takes_a_stable_share_and_is_promoted() {
    let host = TestHost::start().await;
    let (a, b, view) = a_live_b_candidate(
        &host,
        json!({ "canary": { "percent": 30.0 }, "reason": "try b" }),
    )
    .await;
    assert_eq!(view["live"], a.as_str(), "the live version stays");
    assert_eq!(view["rollout"]["mode"], "canary");

    let mut first = Vec::new();
    for i in 0..300 {
        first.push(answered_by(&host, &format!("event-{i}")).await);
    }
    let on_b = first.iter().filter(|v| *v == "b").count();
    assert!((45..=135).contains(&on_b), "30% of 300 calls: {on_b}");
    for (i, version) in first.iter().enumerate().take(100) {
        let again = answered_by(&host, &format!("event-{i}")).await;
        assert_eq!(&again, version, "the same input goes to the same version");
    }
    let r = rollout(&host).await;
    assert_eq!(
        r["live"]["calls"].as_u64().unwrap() + r["candidate_calls"]["calls"].as_u64().unwrap(),
        400,
        "{r}"
    );
    assert!(r["candidate_calls"]["p99_micros"].as_u64().unwrap() > 0);

    let (status, view) = host.post("/v1/plugins/versioned/promote", &json!({})).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["live"], b.as_str());
    assert!(view["rollout"].is_null());
    assert_eq!(answered_by(&host, "event-0").await, "b");
    let (status, err) = host.post("/v1/plugins/versioned/promote", &json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{err}");
    assert_eq!(err["error"]["code"], "no_rollout");
    let (status, err) = host
        .post(
            "/v1/plugins/versioned/activate",
            &json!({ "sha256": a, "canary": { "percent": 0 } }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    let (status, err) = host
        .post(
            "/v1/plugins/versioned/activate",
            &json!({ "sha256": b, "canary": { "percent": 5 } }),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "already live: {err}");
    assert_eq!(err["error"]["code"], "invalid_rollout");

    let actions = audit_actions(&host).await;
    for wanted in ["upload", "activate", "canary", "promote"] {
        assert!(
            actions.iter().any(|a| a == wanted),
            "{wanted} in {actions:?}"
        );
    }
    let (_, audit) = host.get("/v1/audit?plugin=versioned").await;
    let canary = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "canary")
        .unwrap();
    assert_eq!(canary["reason"], "try b");
    assert_eq!(canary["key_id"].as_str().unwrap().len(), 12);
}

#[tokio::test]
async fn a_failing_canary_is_rolled_back_by_the_host_and_its_failures_replay() {
    let host = TestHost::start().await;
    let a = host.install("version-a", "versioned").await;
    let (status, uploaded) = upload_hostile_as_versioned(&host).await;
    assert_eq!(status, StatusCode::CREATED, "{uploaded}");
    let bad = uploaded["sha256"].as_str().unwrap().to_string();
    let (status, view) = host
        .post(
            "/v1/plugins/versioned/activate",
            &json!({
                "sha256": bad, "approve": true,
                "canary": { "percent": 50.0, "max_error_rate": 0.2, "min_calls": 5 }
            }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{view}");

    let mut failed = 0;
    for i in 0..200 {
        let (status, _) = host.webhook("versioned", "/panic", &format!("p-{i}")).await;
        if status != StatusCode::OK {
            failed += 1;
        }
        if rollout(&host).await.is_null() {
            break;
        }
    }
    assert!(
        rollout(&host).await.is_null(),
        "the canary was not rolled back"
    );
    assert!(failed >= 5, "the candidate failed {failed} calls");
    let view = host.get("/v1/plugins/versioned").await.1;
    assert_eq!(view["live"], a.as_str());
    let (_, audit) = host.get("/v1/audit?plugin=versioned").await;
    let auto = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "auto-rollback")
        .expect("an auto-rollback entry")
        .clone();
    assert_eq!(auto["key_id"], "host");
    assert!(
        auto["reason"].as_str().unwrap().contains("error rate"),
        "{auto}"
    );
    // After the rollback every call is the live version's again.
    for i in 0..20 {
        let (status, out) = host.webhook("versioned", "/panic", &format!("q-{i}")).await;
        assert_eq!(status, StatusCode::OK, "{out}");
    }

    // The failures were kept with their exact input, and replay on any version.
    let (status, list) = host.get("/v1/plugins/versioned/failures").await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let first = &list["failures"][0];
    assert_eq!(first["code"], "panic", "{list}");
    assert_eq!(first["sha256"], bad.as_str());
    assert!(first.get("input").is_none(), "the list leaves inputs out");
    let id = first["id"].as_u64().unwrap();
    let (status, one) = host
        .get(&format!("/v1/plugins/versioned/failures/{id}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{one}");
    assert_eq!(one["input"]["call"], "webhook");
    assert_eq!(one["input"]["request"]["path"], "/panic");
    let replay = format!("/v1/plugins/versioned/failures/{id}/replay");
    let (status, again) = host.post(&replay, &json!({})).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["ok"], false);
    assert_eq!(again["outcome"]["failure"]["code"], "panic", "{again}");
    let (status, fixed) = host.post(&replay, &json!({ "sha256": a })).await;
    assert_eq!(status, StatusCode::OK, "{fixed}");
    assert_eq!(fixed["ok"], true, "{fixed}");
    assert_eq!(fixed["outcome"]["ok"][0]["name"], "a", "{fixed}");
    let (status, _) = host.get("/v1/plugins/versioned/failures/999999").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Per-version cost accounting reaches Prometheus, labelled by plugin and version.
    let metrics = host
        .request(reqwest::Method::GET, "/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let short = &bad[..12];
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("tessera_plugin_failures_total")
                && l.contains("plugin=\"versioned\"")
                && l.contains("cause=\"panic\"")),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("tessera_plugin_calls_total")
                && l.contains(&format!("sha=\"{short}\""))),
        "{metrics}"
    );
    assert!(metrics.contains("tessera_plugin_call_duration_seconds_bucket"));
    assert!(
        metrics.contains("# TYPE tessera_profiles_applied_seq gauge"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_shadow_run_compares_outputs_without_storing_its_events() {
    let host = TestHost::start().await;
    a_live_b_candidate(&host, json!({ "shadow": true })).await;
    let client = reqwest::Client::new();
    for i in 0..10 {
        let response = client
            .post(format!("{}/v1/connectors/versioned/webhook", host.base))
            .body(format!("shadow-{i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    let report = shadow_report(&host, 10).await;
    assert_eq!(report["report"]["different"], 10, "{report}");
    let sample = &report["report"]["samples"][0];
    assert_eq!(sample["live"]["ok"][0]["name"], "a", "{sample}");
    assert_eq!(sample["candidate"]["ok"][0]["name"], "b", "{sample}");

    // Only the live version's events were stored.
    let contact = host
        .wait_contact("user_id:versioned", |c| c["counters"]["a"] == 10)
        .await;
    assert!(contact["counters"].get("b").is_none(), "{contact}");

    let (status, view) = host
        .post(
            "/v1/plugins/versioned/abort",
            &json!({ "reason": "seen enough" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert!(view["rollout"].is_null());
    let (status, _) = host.get("/v1/plugins/versioned/shadow").await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(audit_actions(&host).await.contains(&"abort".to_string()));
}

#[tokio::test]
async fn a_version_asking_for_more_needs_approval() {
    let host = TestHost::start().await;
    host.install("version-a", "versioned").await;
    let (status, uploaded) = upload_hostile_as_versioned(&host).await;
    assert_eq!(status, StatusCode::CREATED, "{uploaded}");
    let review = &uploaded["review"];
    assert_eq!(review["needs_approval"], true, "{uploaded}");
    let changes: Vec<&str> = review["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert!(
        changes.iter().any(|c| c.contains("HTTP host `localhost`")),
        "{changes:?}"
    );
    assert!(
        changes
            .iter()
            .any(|c| c.contains("imports `wasi:sockets/tcp")),
        "the component's own imports are reviewed: {changes:?}"
    );
    let sha = uploaded["sha256"].as_str().unwrap();
    let (status, err) = host
        .post("/v1/plugins/versioned/activate", &json!({ "sha256": sha }))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{err}");
    assert_eq!(err["error"]["code"], "approval_required");
    assert_eq!(err["error"]["review"]["needs_approval"], true);
    let (status, err) = host
        .post(
            "/v1/plugins/versioned/activate",
            &json!({ "sha256": sha, "shadow": true }),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "shadows are reviewed too: {err}"
    );
    let (status, view) = host
        .post(
            "/v1/plugins/versioned/activate",
            &json!({ "sha256": sha, "approve": true, "reason": "reviewed" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["live"], sha);
}

#[tokio::test]
async fn logs_and_failures_are_kept_per_slot_with_secrets_redacted() {
    const SECRET: &str = "s3cret-value-1";
    let host = TestHost::start().await;
    let sha = host.upload("webhook-connector").await;
    let (status, _) = host
        .put(
            "/v1/plugins/generic-webhook/config",
            &json!({ "secret": SECRET }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    host.activate("generic-webhook", &sha).await;
    let body = json!({ "type": "track", "userId": "u1", "event": "Signed Up" }).to_string();
    let request = |body: &str, signature: String| {
        json!({ "request": {
            "headers": { "x-tessera-signature": signature, "authorization": "Bearer abc" },
            "body": body,
        }})
    };
    let (status, out) = host
        .call(
            "generic-webhook",
            &request(&body, tessera_signature(SECRET, &body)),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert!(out.get("ok").is_some(), "{out}");
    let (status, logs) = host.get("/v1/plugins/generic-webhook/logs?limit=10").await;
    assert_eq!(status, StatusCode::OK, "{logs}");
    let line = &logs["lines"][0];
    assert_eq!(line["message"], "mapped webhook events=1", "{logs}");
    assert_eq!(line["level"], "debug");
    assert!(
        line["version"]
            .as_str()
            .unwrap()
            .starts_with("generic-webhook@")
    );

    // A refused request (wrong signature) is kept, credentials and secret values blanked.
    let leaky = format!(r#"{{"type":"track","userId":"u1","event":"x","note":"{SECRET}"}}"#);
    let (_, out) = host
        .call("generic-webhook", &request(&leaky, "sha256=00".into()))
        .await;
    assert!(out.get("err").is_some(), "{out}");
    let (_, failures) = host.get("/v1/plugins/generic-webhook/failures").await;
    let kept = &failures["failures"][0];
    assert_eq!(kept["code"], "error", "{failures}");
    let id = kept["id"].as_u64().unwrap();
    let (_, one) = host
        .get(&format!("/v1/plugins/generic-webhook/failures/{id}"))
        .await;
    let text = one.to_string();
    assert!(!text.contains(SECRET), "the secret leaked: {text}");
    assert!(!text.contains("Bearer abc"), "a credential leaked: {text}");
    assert!(text.contains("********"), "{text}");
}

#[tokio::test]
async fn a_plugin_with_a_fuel_limit_is_metered_alone_and_its_budget_stops_a_loop() {
    let host = TestHost::start().await;
    host.install("version-a", "versioned").await;
    let (status, _) = host.webhook("versioned", "/", "unmetered-1").await;
    assert_eq!(status, StatusCode::OK);
    let text =
        manifest("hostile").replace("timeout_ms = 2000", "timeout_ms = 2000\nfuel = 5000000");
    let sha = host.upload_with("hostile", &text).await;
    host.activate("hostile", &sha).await;
    let (status, out) = host.webhook("hostile", "/ok", "hi").await;
    assert_eq!(status, StatusCode::OK, "{out}");
    let (status, err) = host.webhook("hostile", "/loop", "").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{err}");
    assert_eq!(err["error"]["cause"], "fuel", "{err}");
    let (_, version) = host
        .get(&format!("/v1/plugins/hostile/versions/{sha}"))
        .await;
    let stats = &version["stats"];
    assert!(
        stats["fuel_consumed"].as_u64().unwrap() >= 5_000_000,
        "the loop used its whole budget: {stats}"
    );
    assert_eq!(stats["failures_by_cause"]["fuel"], 1, "{stats}");
    assert!(stats["p99_micros"].as_u64().unwrap() > 0, "{stats}");
    let (_, plain) = host.get("/v1/plugins/versioned").await;
    let plain = &plain["versions"][0]["stats"];
    assert!(plain["calls"].as_u64() >= Some(1), "{plain}");
    assert!(
        plain.get("fuel_consumed").is_none(),
        "a plugin without a fuel limit is not metered: {plain}"
    );
}

#[tokio::test]
async fn a_shadow_candidates_requests_are_answered_by_a_stub_and_never_sent() {
    let (addr, accepted) = counting_listener().await;
    let port = addr.rsplit(':').next().unwrap().to_string();
    let granted = addr.clone();
    let host = TestHost::start_with(move |c| c.allow_addresses = vec![granted]).await;
    host.install("version-a", "versioned").await;
    let text = manifest("hostile")
        .replace("id = \"hostile\"", "id = \"versioned\"")
        .replace(
            "http = [\"localhost\"]",
            &format!("http = [\"localhost:{port}\"]"),
        );
    let (status, uploaded) = host
        .upload_bytes(std::fs::read(artifact("hostile")).unwrap(), &text)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{uploaded}");
    let sha = uploaded["sha256"].as_str().unwrap().to_string();
    let (status, view) = host
        .post(
            "/v1/plugins/versioned/activate",
            &json!({ "sha256": sha, "shadow": true, "approve": true }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{view}");
    let url = format!("http://localhost:{port}/");
    let (status, out) = host.webhook("versioned", "/http", &url).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    let report = shadow_report(&host, 1).await;
    let sample = &report["report"]["samples"][0];
    assert_eq!(
        sample["candidate_requests"][0],
        format!("GET {url}"),
        "{sample}"
    );
    let props = sample["candidate"]["ok"][0]["properties"].to_string();
    assert!(props.contains("ok:200"), "the stub answered 200: {sample}");
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 0);

    // Promoted, the same version really sends: the stub was the only thing in the way.
    let (status, _) = host.post("/v1/plugins/versioned/promote", &json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, out) = host.webhook("versioned", "/http", &url).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_canary_survives_a_restart() {
    let host = TestHost::start().await;
    let (a, b, _) = a_live_b_candidate(
        &host,
        json!({ "canary": { "percent": 50.0, "max_p99_ms": 1000 } }),
    )
    .await;
    let dir = host.stop().await.expect("temp dir");
    let host = TestHost::start_in(dir.path(), |_| {}).await;
    let r = rollout(&host).await;
    assert_eq!(r["mode"], "canary", "{r}");
    assert_eq!(r["candidate"], b.as_str());
    assert_eq!(r["canary"]["max_p99_ms"], 1000);
    let names: Vec<String> = {
        let mut v = Vec::new();
        for i in 0..40 {
            v.push(answered_by(&host, &format!("r-{i}")).await);
        }
        v
    };
    assert!(names.iter().any(|n| n == "a") && names.iter().any(|n| n == "b"));
    let (_, view) = host.post("/v1/plugins/versioned/abort", &json!({})).await;
    assert_eq!(view["live"], a.as_str());
    host.stop().await;
}

#[tokio::test]
async fn a_shadow_candidate_gets_the_live_calls_answers_without_a_second_request() {
    // An upstream whose every answer differs: `hit-1`, `hit-2`, ...
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut socket, _)) = listener.accept().await {
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            let mut request = [0u8; 4096];
            let _ = socket.read(&mut request).await;
            let body = format!("hit-{n}");
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = socket.write_all((head + &body).as_bytes()).await;
        }
    });
    let port = addr.rsplit(':').next().unwrap().to_string();
    let granted = addr.clone();
    let host = TestHost::start_with(move |c| c.allow_addresses = vec![granted]).await;
    let allow =
        |name: &str| manifest(name).replace("http = []", &format!("http = [\"localhost:{port}\"]"));
    let a = host.upload_with("version-a", &allow("version-a")).await;
    host.activate("versioned", &a).await;
    let b = host.upload_with("version-b", &allow("version-b")).await;
    let (status, view) = host
        .post(
            "/v1/plugins/versioned/activate",
            &json!({ "sha256": b, "shadow": true }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "same asks need no approval: {view}");

    let url = format!("http://localhost:{port}/price");
    let (status, out) = host.webhook("versioned", "/fetch", &url).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["ok"]["events"][0]["properties"]["answer"], "hit-1");
    let report = shadow_report(&host, 1).await;
    let sample = &report["report"]["samples"][0];
    let candidate = &sample["candidate"]["ok"][0];
    assert_eq!(
        candidate["properties"]["answer"], "hit-1",
        "the live call's answer, replayed: {sample}"
    );
    assert_eq!(candidate["name"], "b", "{sample}");
    assert_eq!(sample["candidate_requests"][0], format!("GET {url}"));
    assert_eq!(
        hits.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the upstream saw only the live call"
    );
}

#[tokio::test]
async fn a_rule_canary_splits_each_batch_by_contact() {
    let host = TestHost::start().await;
    let live = host.install("trait-rule", "trait-rule").await;
    // The same rule with a custom section appended: another component, the same decisions.
    let mut bytes = std::fs::read(artifact("trait-rule")).unwrap();
    bytes.extend_from_slice(&[0, 8, 7]);
    bytes.extend_from_slice(b"canary!");
    let (status, uploaded) = host.upload_bytes(bytes, &manifest("trait-rule")).await;
    assert_eq!(status, StatusCode::CREATED, "{uploaded}");
    let candidate = uploaded["sha256"].as_str().unwrap().to_string();
    assert_ne!(candidate, live);
    let (status, view) = host
        .post(
            "/v1/plugins/trait-rule/activate",
            &json!({ "sha256": candidate, "canary": { "percent": 50, "min_calls": 1000 } }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{view}");

    let batch = tessera_tests::rule_batch(40);
    let params = json!({ "trait": "plan", "equals": "pro" });
    let (status, out) = host
        .call("trait-rule", &json!({ "params": params, "batch": batch }))
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    let expected: Vec<bool> = (0..40).map(|i| i % 2 == 0).collect();
    assert_eq!(
        out["ok"]["decisions"],
        json!(expected),
        "in the batch's order"
    );
    let arms = host.get("/v1/plugins/trait-rule").await.1["rollout"].clone();
    assert_eq!(
        (
            arms["live"]["calls"].as_u64(),
            arms["candidate_calls"]["calls"].as_u64()
        ),
        (Some(1), Some(1)),
        "one call per arm, each with its own contacts: {arms}"
    );

    // One contact per call: each call goes to its contact's arm, and both arms get some.
    for contact in batch.as_array().unwrap() {
        let (status, _) = host
            .call(
                "trait-rule",
                &json!({ "params": params, "batch": [contact] }),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    let arms = host.get("/v1/plugins/trait-rule").await.1["rollout"].clone();
    let (on_live, on_candidate) = (
        arms["live"]["calls"].as_u64().unwrap() - 1,
        arms["candidate_calls"]["calls"].as_u64().unwrap() - 1,
    );
    assert_eq!(on_live + on_candidate, 40, "{arms}");
    assert!(on_live > 0 && on_candidate > 0, "{arms}");
}

/// Starts the hostile guest (as `versioned`) as a canary beside version-a with `plan`.
async fn hostile_canary(host: &TestHost, plan: Value) {
    let (status, uploaded) = upload_hostile_as_versioned(host).await;
    assert!(status.is_success(), "{uploaded}");
    let (status, view) = host
        .post(
            "/v1/plugins/versioned/activate",
            &json!({ "sha256": uploaded["sha256"], "approve": true, "canary": plan }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{view}");
}

#[tokio::test]
async fn a_canary_over_its_p99_limit_is_rolled_back_and_one_under_it_is_not() {
    let host = TestHost::start().await;
    let a = host.install("version-a", "versioned").await;
    // Under the limit: a candidate taking ~30 ms a call against a 2 s limit runs on.
    hostile_canary(
        &host,
        json!({ "percent": 50.0, "max_p99_ms": 2000, "min_calls": 5 }),
    )
    .await;
    for i in 0..30 {
        let (status, out) = host
            .webhook("versioned", "/sleep", &format!("30 {i}"))
            .await;
        assert_eq!(status, StatusCode::OK, "{out}");
    }
    let r = rollout(&host).await;
    assert!(
        r["candidate_calls"]["calls"].as_u64().unwrap() >= 5,
        "the candidate was judged: {r}"
    );
    assert!(
        r["candidate_calls"]["p99_micros"].as_u64().unwrap() >= 30_000,
        "{r}"
    );
    let (status, view) = host.post("/v1/plugins/versioned/abort", &json!({})).await;
    assert_eq!(status, StatusCode::OK, "{view}");

    // Over it: the same candidate at ~60 ms a call against a 20 ms limit is rolled back once
    // it has its five calls, with no error at all.
    hostile_canary(
        &host,
        json!({ "percent": 50.0, "max_p99_ms": 20, "min_calls": 5 }),
    )
    .await;
    let mut candidate_answers = 0;
    for i in 0..200 {
        let (status, out) = host
            .webhook("versioned", "/sleep", &format!("60 {i}"))
            .await;
        assert_eq!(status, StatusCode::OK, "{out}");
        candidate_answers += usize::from(out["ok"]["events"][0]["name"] == "sleep");
        if rollout(&host).await.is_null() {
            break;
        }
    }
    assert!(
        rollout(&host).await.is_null(),
        "the slow canary was not rolled back"
    );
    assert_eq!(candidate_answers, 5, "judged after exactly min_calls calls");
    let (_, view) = host.get("/v1/plugins/versioned").await;
    assert_eq!(view["live"], a.as_str());
    let (_, audit) = host.get("/v1/audit?plugin=versioned").await;
    let auto = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "auto-rollback")
        .expect("an auto-rollback entry")
        .clone();
    let reason = auto["reason"].as_str().unwrap();
    assert!(
        reason.contains("p99 latency") && reason.contains("exceeds 20 ms"),
        "{auto}"
    );
}

#[tokio::test]
async fn shadow_calls_beyond_64_in_flight_are_skipped_and_the_live_version_answers_them_all() {
    let host = TestHost::start_with(|c| c.engine.max_instances = 512).await;
    host.install("version-a", "versioned").await;
    // The hostile guest as the candidate, with a deadline long enough to sleep 5 s.
    let text = manifest("hostile")
        .replace("id = \"hostile\"", "id = \"versioned\"")
        .replace("timeout_ms = 2000", "timeout_ms = 10000");
    let sha = host.upload_with("hostile", &text).await;
    let (status, view) = host
        .post(
            "/v1/plugins/versioned/activate",
            &json!({ "sha256": sha, "approve": true, "shadow": true }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{view}");
    // 100 live calls at once; each shadow copy sleeps 5 s, so at most 64 run and the rest
    // are skipped, not queued.
    let calls = (0..100).map(|i| {
        let api = tessera_tests::Api::new(host.base.clone());
        tokio::spawn(async move {
            let (status, out) = api
                .call(
                    "versioned",
                    &json!({ "request": { "path": "/sleep", "body": "5000" } }),
                )
                .await;
            (i, status, out)
        })
    });
    for call in calls {
        let (i, status, out) = call.await.unwrap();
        assert_eq!(status, StatusCode::OK, "call {i}: {out}");
        assert_eq!(out["ok"]["events"][0]["name"], "a", "call {i}: {out}");
    }
    let (_, now) = host.get("/v1/plugins/versioned/shadow").await;
    let skipped = now["report"]["skipped"].as_u64().unwrap();
    assert!(
        (36..100).contains(&skipped),
        "100 calls at once with room for 64: {now}"
    );
    let report = shadow_report_within(&host, 100 - skipped, Duration::from_secs(30)).await;
    assert!(
        report["report"]["compared"].as_u64().unwrap() <= 64,
        "{report}"
    );
    assert_eq!(report["report"]["skipped"], skipped, "{report}");
}
