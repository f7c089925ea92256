//! Pull connectors: the json-feed plugin polls a loopback feed page by page, never re-imports,
//! backs off while the feed fails, and resumes from its persisted cursor after a restart.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::Query;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use tessera_tests::TestHost;

/// One request the feed received.
#[derive(Debug, Clone)]
struct Seen {
    cursor: Option<String>,
    limit: Option<String>,
    authorization: Option<String>,
}

/// A loopback feed: events `feed-1`..`feed-12` in pages of 5, 5 and 2 (cursors `c1`..`c3`),
/// then nothing new, or `feed-13` and `feed-14` once `extra` is set; 500 while `failing`.
struct Feed {
    addr: String,
    seen: Mutex<Vec<Seen>>,
    failing: AtomicBool,
    extra: AtomicBool,
}

fn events(range: std::ops::RangeInclusive<u32>) -> Vec<Value> {
    range
        .map(|i| {
            json!({ "type": "track", "messageId": format!("feed-{i}"), "userId": "feed-user",
                    "event": "Feed Item", "properties": { "n": i } })
        })
        .collect()
}

impl Feed {
    async fn start() -> Arc<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let feed = Arc::new(Self {
            addr: listener.local_addr().unwrap().to_string(),
            seen: Mutex::new(Vec::new()),
            failing: AtomicBool::new(false),
            extra: AtomicBool::new(false),
        });
        let state = feed.clone();
        let app = axum::Router::new().fallback(
            move |Query(query): Query<HashMap<String, String>>, headers: HeaderMap| {
                let feed = state.clone();
                async move { feed.answer(query, &headers) }
            },
        );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        feed
    }

    fn answer(&self, query: HashMap<String, String>, headers: &HeaderMap) -> (StatusCode, String) {
        let cursor = query.get("cursor").cloned();
        self.seen.lock().unwrap().push(Seen {
            cursor: cursor.clone(),
            limit: query.get("limit").cloned(),
            authorization: headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
        });
        if self.failing.load(Ordering::SeqCst) {
            return (StatusCode::INTERNAL_SERVER_ERROR, "feed is down".into());
        }
        let (events, next, more) = match cursor.as_deref() {
            None => (events(1..=5), json!("c1"), true),
            Some("c1") => (events(6..=10), json!("c2"), true),
            Some("c2") => (events(11..=12), json!("c3"), false),
            Some("c3") if self.extra.load(Ordering::SeqCst) => {
                (events(13..=14), json!("c4"), false)
            }
            _ => (Vec::new(), Value::Null, false),
        };
        let page = json!({ "events": events, "next_cursor": next, "has_more": more });
        (StatusCode::OK, page.to_string())
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits until the requests seen so far satisfy `check`.
    async fn wait(&self, what: &str, check: impl Fn(&[Seen]) -> bool) -> Vec<Seen> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let seen = self.seen();
            if check(&seen) {
                return seen;
            }
            assert!(
                Instant::now() < deadline,
                "the feed never saw {what}: {seen:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn cursors(seen: &[Seen], cursor: &str) -> usize {
    seen.iter()
        .filter(|s| s.cursor.as_deref() == Some(cursor))
        .count()
}

/// Waits until the plugin's poll state satisfies `check`.
async fn wait_poll(host: &TestHost, id: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, state) = host.get(&format!("/v1/plugins/{id}/poll")).await;
        assert_eq!(status, reqwest::StatusCode::OK, "{state}");
        if check(&state) {
            return state;
        }
        assert!(
            Instant::now() < deadline,
            "poll state never {what}: {state}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn events_of(host: &TestHost, contact: &Value) -> usize {
    let id = contact["id"].as_str().unwrap();
    let (_, events) = host.get(&format!("/v1/contacts/{id}/events")).await;
    events["events"].as_array().unwrap().len()
}

async fn start_host(feed: &Feed, data_dir: Option<&std::path::Path>) -> TestHost {
    let granted = vec![feed.addr.clone()];
    match data_dir {
        None => TestHost::start_with(move |c| c.allow_addresses = granted).await,
        Some(dir) => TestHost::start_in(dir, move |c| c.allow_addresses = granted).await,
    }
}

#[tokio::test]
async fn json_feed_is_polled_to_the_end_backs_off_and_resumes_after_a_restart() {
    let feed = Feed::start().await;
    let host = start_host(&feed, None).await;
    let manifest = tessera_tests::manifest("json-feed")
        .replace("http = []", &format!("http = [\"{}\"]", feed.addr))
        .replace("interval_secs = 60", "interval_secs = 1");
    let sha = host.upload_with("json-feed", &manifest).await;
    let (status, body) = host
        .put(
            "/v1/plugins/json-feed/config",
            &json!({ "url": format!("http://{}/feed", feed.addr), "token": "feed-token", "page_size": 5 }),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::OK, "{body}");
    host.activate("json-feed", &sha).await;

    // All three pages land, in one round.
    let contact = host
        .wait_contact("user_id:feed-user", |c| c["counters"]["Feed Item"] == 12)
        .await;
    let seen = feed
        .wait("two polls after the last page", |s| cursors(s, "c3") >= 2)
        .await;
    let first: Vec<_> = seen[..4].iter().map(|s| s.cursor.as_deref()).collect();
    assert_eq!(first, [None, Some("c1"), Some("c2"), Some("c3")]);
    assert!(
        seen.iter().all(|s| s.limit.as_deref() == Some("5")
            && s.authorization.as_deref() == Some("Bearer feed-token")),
        "{seen:?}"
    );
    assert!(
        seen[3..].iter().all(|s| s.cursor.as_deref() == Some("c3")),
        "later polls start from the last cursor: {seen:?}"
    );
    // Nothing was imported twice.
    let contact = host
        .wait_contact("user_id:feed-user", |c| c["id"] == contact["id"])
        .await;
    assert_eq!(contact["counters"]["Feed Item"], 12, "{contact}");
    assert_eq!(events_of(&host, &contact).await, 12);
    let state = wait_poll(&host, "json-feed", "settled", |s| {
        s["events_accepted"] == 12
    })
    .await;
    assert_eq!(state["cursor"], "c3", "{state}");
    assert_eq!(state["polling"], true, "{state}");
    assert_eq!(state["interval_secs"], 1, "{state}");
    assert_eq!(state["events_duplicate"], 0, "{state}");
    assert_eq!(state["consecutive_failures"], 0, "{state}");
    assert!(state["last_error"].is_null(), "{state}");

    // The feed fails: the host keeps running and backs off longer after each failure.
    feed.failing.store(true, Ordering::SeqCst);
    let failed = wait_poll(&host, "json-feed", "failing", |s| {
        s["consecutive_failures"] != 0
    })
    .await;
    let error = failed["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains("upstream") && error.contains("HTTP 500"),
        "{failed}"
    );
    let failures = failed["consecutive_failures"].as_u64().unwrap();
    let again = wait_poll(&host, "json-feed", "failing again", |s| {
        s["consecutive_failures"].as_u64() > Some(failures)
    })
    .await;
    assert!(
        again["backoff_ms"].as_u64() > failed["backoff_ms"].as_u64(),
        "the wait grows: {failed} then {again}"
    );
    assert_eq!(
        again["cursor"], "c3",
        "a failure leaves the cursor: {again}"
    );
    let (status, _) = host.get("/readyz").await;
    assert_eq!(status, reqwest::StatusCode::OK);
    let contact = host
        .wait_contact("user_id:feed-user", |c| c["id"] == contact["id"])
        .await;
    assert_eq!(contact["counters"]["Feed Item"], 12, "{contact}");

    // A restart resumes from the persisted cursor.
    let data_dir = host.data_dir.clone();
    let tmp = host.stop().await;
    let before = feed.seen().len();
    feed.failing.store(false, Ordering::SeqCst);
    feed.extra.store(true, Ordering::SeqCst);
    let host = start_host(&feed, Some(&data_dir)).await;
    let seen = feed
        .wait("a poll after the restart", |s| s.len() > before)
        .await;
    assert_eq!(
        seen[before].cursor.as_deref(),
        Some("c3"),
        "the first poll after the restart starts from the saved cursor"
    );
    let contact = host
        .wait_contact("user_id:feed-user", |c| c["counters"]["Feed Item"] == 14)
        .await;
    feed.wait("a poll after the new page", |s| cursors(s, "c4") >= 1)
        .await;
    let state = wait_poll(&host, "json-feed", "caught up", |s| s["cursor"] == "c4").await;
    assert_eq!(state["events_accepted"], 2, "only the new events: {state}");
    assert_eq!(state["consecutive_failures"], 0, "{state}");
    let contact = host
        .wait_contact("user_id:feed-user", |c| c["id"] == contact["id"])
        .await;
    assert_eq!(contact["counters"]["Feed Item"], 14, "{contact}");
    assert_eq!(events_of(&host, &contact).await, 14);
    host.stop().await;
    drop(tmp);
}

#[tokio::test]
async fn poll_state_is_for_connectors_and_a_version_that_does_not_poll_is_left_alone() {
    let host = TestHost::start().await;
    host.install("trait-rule", "trait-rule").await;
    let (status, body) = host.get("/v1/plugins/trait-rule/poll").await;
    assert_eq!(status, reqwest::StatusCode::CONFLICT, "{body}");
    let (status, _) = host.get("/v1/plugins/nope/poll").await;
    assert_eq!(status, reqwest::StatusCode::NOT_FOUND);

    // A manifest may not give [poll] to a non-connector.
    let with_poll = |name: &str| {
        format!(
            "{}\n[poll]\ninterval_secs = 1\n",
            tessera_tests::manifest(name)
        )
    };
    let component = |name: &str| std::fs::read(tessera_tests::artifact(name)).unwrap();
    let (status, body) = host
        .upload_bytes(component("trait-rule"), &with_poll("trait-rule"))
        .await;
    assert_eq!(status, reqwest::StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "invalid_manifest", "{body}");

    // A webhook-only connector whose manifest asks to be polled answers `unsupported`
    // once; the poller then leaves that version alone.
    let sha = host
        .upload_with("webhook-connector", &with_poll("webhook-connector"))
        .await;
    host.put(
        "/v1/plugins/generic-webhook/config",
        &json!({ "secret": "s" }),
    )
    .await;
    host.activate("generic-webhook", &sha).await;
    let state = wait_poll(&host, "generic-webhook", "unsupported", |s| {
        s["unsupported"].is_string()
    })
    .await;
    assert_eq!(state["polling"], false, "{state}");
    assert_eq!(state["consecutive_failures"], 0, "{state}");
    assert!(state["next_poll_in_ms"].is_null(), "{state}");
}
