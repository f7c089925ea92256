//! Real hostile guest code: each attack fails only its own call, with a typed error, while
//! other plugins keep answering.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use reqwest::StatusCode;
use serde_json::{Value, json};
use tessera_tests::{TestHost, counting_listener, rule_batch};

/// The hostile guest's manifest with tight limits; `http` lists what it may reach.
pub fn hostile_manifest(http: &[&str]) -> String {
    let http: Vec<String> = http.iter().map(|h| format!("\"{h}\"")).collect();
    format!(
        "id = \"hostile\"\nkind = \"connector\"\nversion = \"0.1.0\"\ncontract = \"0.2\"\n\
         [capabilities]\nhttp = [{}]\n[limits]\nmemory_mb = 32\ntimeout_ms = 500\n",
        http.join(", ")
    )
}

fn cause(out: &Value) -> &str {
    out["error"]["cause"]
        .as_str()
        .unwrap_or_else(|| panic!("expected a typed plugin failure, got {out}"))
}

fn outcome(out: &Value) -> String {
    let props = &out["ok"]["events"][0]["properties"];
    assert!(props.is_object(), "expected an event, got {out}");
    props["outcome"].as_str().unwrap_or_default().to_string()
}

async fn hostile_host(threshold: u32) -> TestHost {
    let host =
        TestHost::start_with(move |c| c.registry.breaker.failure_threshold = threshold).await;
    let sha = host
        .upload_with(
            "hostile",
            &hostile_manifest(&["localhost", "example.invalid"]),
        )
        .await;
    host.activate("hostile", &sha).await;
    host.install("trait-rule", "trait-rule").await;
    host
}

#[tokio::test]
async fn each_attack_fails_only_its_own_call() {
    let host = Arc::new(hostile_host(1_000).await);

    // A neighbour keeps answering the whole time.
    let stop = Arc::new(AtomicBool::new(false));
    let neighbour = {
        let (host, stop) = (host.clone(), stop.clone());
        tokio::spawn(async move {
            let mut answered = 0;
            while !stop.load(Ordering::Relaxed) {
                let (status, out) =
                    host.call("trait-rule", &json!({ "params": { "trait": "plan", "equals": "pro" }, "batch": rule_batch(2) })).await;
                assert_eq!(status, StatusCode::OK, "the neighbour failed: {out}");
                answered += 1;
            }
            answered
        })
    };

    for (path, body, want) in [
        ("/loop", "", "deadline"),
        ("/alloc", "", "memory_limit"),
        // Big frames overflow the guest's shadow stack in linear memory (an out-of-bounds
        // trap); tiny frames overflow the engine's stack.
        ("/recurse", "", "trap"),
        ("/recurse-deep", "", "stack_overflow"),
        ("/huge", "", "memory_limit"),
        ("/panic", "", "panic"),
        ("/sleep", "5000", "deadline"),
    ] {
        let (status, out) = host.webhook("hostile", path, body).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{path}: {out}");
        assert_eq!(cause(&out), want, "{path}: {out}");
        assert_eq!(out["error"]["plugin"], "hostile");
        assert_eq!(out["error"]["version"], "0.1.0");
        let (status, ok) = host.webhook("hostile", "/ok", "still-alive").await;
        assert_eq!(
            status,
            StatusCode::OK,
            "the same plugin answers right after {path}: {ok}"
        );
    }

    // Capabilities it was not granted fail inside the guest, as errors it can see.
    let (_, out) = host.webhook("hostile", "/read-file", "/etc/passwd").await;
    assert!(outcome(&out).starts_with("err"), "no filesystem: {out}");
    let (_, out) = host.webhook("hostile", "/env", "").await;
    assert!(
        outcome(&out).starts_with("vars:0 "),
        "no environment: {out}"
    );
    let (_, out) = host
        .webhook("hostile", "/http", "http://example.com/")
        .await;
    assert!(
        outcome(&out).starts_with("err:denied"),
        "host not on its list: {out}"
    );

    stop.store(true, Ordering::Relaxed);
    let answered = neighbour.await.unwrap();
    assert!(answered > 0);

    let (_, view) = host.get("/v1/plugins/hostile").await;
    let live = view["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["live"] == true)
        .unwrap()
        .clone();
    let by_cause = &live["stats"]["failures_by_cause"];
    assert_eq!(by_cause["deadline"], 2, "{view}");
    assert_eq!(by_cause["memory_limit"], 2, "{view}");
    assert_eq!(by_cause["stack_overflow"], 1, "{view}");
    assert_eq!(by_cause["panic"], 1, "{view}");
}

#[tokio::test]
async fn slow_upstream_past_the_deadline_fails_the_call() {
    let slow = axum::Router::new().fallback(|| async {
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        "late"
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, slow).await.unwrap() });
    let granted = addr.clone();
    let host = TestHost::start_with(move |c| c.allow_addresses = vec![granted]).await;
    let sha = host
        .upload_with("hostile", &hostile_manifest(&[&addr]))
        .await;
    host.activate("hostile", &sha).await;
    let (status, out) = host
        .webhook("hostile", "/http", &format!("http://{addr}/"))
        .await;
    // Either the host's clamped HTTP timeout answers the guest with a timeout error first, or
    // the call's deadline ends it; never a late success, and never another error (a refused
    // connection must not pass for a timeout).
    if status == StatusCode::OK {
        assert!(outcome(&out).starts_with("err:timeout:"), "{out}");
    } else {
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{out}");
        assert_eq!(cause(&out), "deadline", "{out}");
    }
}

#[tokio::test]
async fn repeated_failures_open_the_breaker_then_a_probe_closes_it() {
    // "Open" is asserted under a 30 s cool-down, which no pause of a busy machine outlasts.
    let host = TestHost::start_with(|c| {
        c.registry.breaker.failure_threshold = 3;
        c.registry.breaker.cool_down = std::time::Duration::from_secs(30);
    })
    .await;
    let sha = host.upload_with("hostile", &hostile_manifest(&[])).await;
    host.activate("hostile", &sha).await;
    for _ in 0..3 {
        let (status, _) = host.webhook("hostile", "/panic", "").await;
        assert_eq!(status, StatusCode::BAD_GATEWAY);
    }
    let (status, out) = host.webhook("hostile", "/ok", "x").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{out}");
    assert_eq!(out["error"]["code"], "breaker_open");
    let (_, view) = host.get("/v1/plugins/hostile").await;
    assert_eq!(view["breaker"]["state"], "open", "{view}");

    // The probe half needs the cool-down to pass, so it runs on a short one; it asserts only
    // what holds however late the test runs (after the cool-down, a probe goes through).
    let host = TestHost::start_with(|c| {
        c.registry.breaker.failure_threshold = 3;
        c.registry.breaker.cool_down = std::time::Duration::from_millis(300);
    })
    .await;
    let sha = host.upload_with("hostile", &hostile_manifest(&[])).await;
    host.activate("hostile", &sha).await;
    for _ in 0..3 {
        let (status, _) = host.webhook("hostile", "/panic", "").await;
        assert_eq!(status, StatusCode::BAD_GATEWAY);
    }
    let (_, view) = host.get("/v1/plugins/hostile").await;
    assert_ne!(view["breaker"]["state"], "closed", "{view}");
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let (status, out) = host.webhook("hostile", "/ok", "probe").await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the half-open probe goes through: {out}"
    );
    let (_, view) = host.get("/v1/plugins/hostile").await;
    assert_eq!(view["breaker"]["state"], "closed", "{view}");
}

#[tokio::test]
async fn inward_addresses_and_sockets_need_an_operator_grant() {
    let (addr, accepted) = counting_listener().await;
    let port = addr.rsplit(':').next().unwrap().to_string();
    let allowed_name = format!("localhost:{port}");

    // The manifest allows the name, but it resolves to loopback and the operator granted
    // nothing: refused before any connection is made. Raw TCP was never granted at all.
    let host = TestHost::start().await;
    let sha = host
        .upload_with("hostile", &hostile_manifest(&[&allowed_name]))
        .await;
    host.activate("hostile", &sha).await;
    let (_, out) = host
        .webhook("hostile", "/http", &format!("http://{allowed_name}/"))
        .await;
    assert!(
        outcome(&out).starts_with("err:denied"),
        "loopback behind an allowed name: {out}"
    );
    let (_, out) = host.webhook("hostile", "/tcp", &addr).await;
    assert!(outcome(&out).starts_with("err"), "no sockets: {out}");
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        0,
        "nothing reached the listener"
    );

    // Once the operator lists that exact address, the same request goes through.
    let granted = addr.clone();
    let host = TestHost::start_with(move |c| c.allow_addresses = vec![granted]).await;
    let sha = host
        .upload_with("hostile", &hostile_manifest(&[&allowed_name]))
        .await;
    host.activate("hostile", &sha).await;
    let (_, out) = host
        .webhook("hostile", "/http", &format!("http://{allowed_name}/"))
        .await;
    assert_eq!(outcome(&out), "ok:200", "{out}");
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}
