//! Segment rules of contract 0.2 through the real host: `describe` over HTTP, windowed rules
//! judged by event time (imports with old timestamps included), a window sliding past that
//! exits a contact through its recheck timer, consent traits, and a 0.1 rule that still
//! decides beside them.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use tessera_tests::{Api, TestHost, artifact, manifest};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::segments::{logged, members, wait_segment};

/// How long the stages get to catch up in each wait.
const CATCH_UP: Duration = Duration::from_secs(30);

/// RFC 3339 text for `days` days before now.
fn days_ago(days: i64) -> String {
    (OffsetDateTime::now_utc() - time::Duration::days(days))
        .format(&Rfc3339)
        .expect("formats")
}

/// Creates a segment and waits until its first recompute is done.
async fn define(api: &Api, segment: Value) {
    let id = segment["id"].as_str().expect("id").to_string();
    let (status, body) = api.post("/v1/segments", &segment).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    wait_segment(api, &id, |s| s["recompute"]["state"] == "done").await;
}

/// Waits until the segment stage has evaluated every event logged so far, then until the
/// segment's members are `expected` (a rule call that failed under load is retried by the
/// stage); the failure shows the segment, with its last rule error.
async fn expect_members(api: &Api, segment: &str, expected: Vec<String>) {
    api.wait_segments_caught_up(CATCH_UP).await;
    let deadline = Instant::now() + CATCH_UP;
    loop {
        let found = members(api, segment).await;
        if found == expected {
            return;
        }
        if Instant::now() >= deadline {
            let (_, def) = api.get(&format!("/v1/segments/{segment}")).await;
            panic!("members of {segment}: {found:?}, expected {expected:?}; segment {def}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

#[tokio::test]
async fn a_0_1_rule_still_decides_next_to_0_2_rules() {
    let host = TestHost::start().await;
    host.install("rule-v0-1", "rule-v0-1").await;
    let (_, view) = host.get("/v1/plugins/rule-v0-1").await;
    assert_eq!(view["versions"][0]["contract"], "0.1", "{view}");

    // A 0.1 rule cannot say what it reads: it is taken to read everything, no window.
    let pros = json!({ "trait": "plan", "equals": "pro" });
    let (status, needs) = host
        .post("/v1/plugins/rule-v0-1/describe", &json!({ "params": pros }))
        .await;
    assert_eq!(status, StatusCode::OK, "{needs}");
    assert_eq!(
        needs,
        json!({ "events": ["*"], "traits": ["*"], "window_ms": null })
    );
    // Its params are still checked, by deciding an empty batch.
    let (status, body) = host
        .post(
            "/v1/plugins/rule-v0-1/describe",
            &json!({ "params": { "equals": "pro" } }),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "invalid_params", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("params need `trait`")),
        "{body}"
    );

    let key = host.create_source("web").await;
    host.identify(&key, "u1", json!({ "plan": "pro" })).await;
    host.identify(&key, "u2", json!({ "plan": "free" })).await;
    let (u1, u2) = (host.contact_id("u1").await, host.contact_id("u2").await);
    define(
        &host,
        json!({ "id": "pros-v01", "rule": "rule-v0-1", "params": pros }),
    )
    .await;
    expect_members(&host, "pros-v01", vec![u1.clone()]).await;
    host.identify(&key, "u2", json!({ "plan": "pro" })).await;
    host.identify(&key, "u1", json!({ "plan": "free" })).await;
    expect_members(&host, "pros-v01", vec![u2.clone()]).await;
    let exits = logged(&host, &u1)
        .await
        .into_iter()
        .filter(|(name, _)| name == "Segment Exited")
        .count();
    assert_eq!(exits, 1);

    // The console answers bools for it, as before, and no recheck times.
    let (status, out) = host
        .call(
            "rule-v0-1",
            &json!({ "params": pros, "batch": tessera_tests::rule_batch(2) }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["ok"]["decisions"], json!([true, false]), "{out}");
    assert_eq!(out["ok"]["recheck_at_ms"], json!([null, null]), "{out}");
}

#[tokio::test]
async fn describe_answers_a_rules_needs_or_says_why_not() {
    let host = TestHost::start().await;
    host.install("trait-rule", "trait-rule").await;
    host.install("event-window", "event-window").await;
    host.install("version-a", "versioned").await;

    let (status, needs) = host
        .post(
            "/v1/plugins/trait-rule/describe",
            &json!({ "params": { "all": [
                { "trait": "plan", "in": ["pro", "team"] },
                { "event": "Order Completed", "at_least": 1 }
            ] } }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{needs}");
    assert_eq!(
        needs,
        json!({ "events": ["Order Completed"], "traits": ["plan"], "window_ms": null })
    );
    let (status, needs) = host
        .post(
            "/v1/plugins/event-window/describe",
            &json!({ "params": { "event": "Login", "at_least": 3, "within": { "hours": 2 } } }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{needs}");
    assert_eq!(
        needs,
        json!({ "events": ["Login"], "traits": [], "window_ms": 7_200_000 })
    );

    // The rule's own reason for refusing the params.
    let (status, body) = host
        .post(
            "/v1/plugins/event-window/describe",
            &json!({ "params": { "event": "Login", "at_least": 3, "within": { "weeks": 2 } } }),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "invalid_params", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("params.within: must be one of")),
        "{body}"
    );
    let (status, body) = host
        .post(
            "/v1/plugins/no-such-rule/describe",
            &json!({ "params": {} }),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["code"], "unknown_plugin", "{body}");
    let (status, body) = host
        .post("/v1/plugins/versioned/describe", &json!({ "params": {} }))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "wrong_kind", "{body}");
    for bad in [json!({ "parms": {} }), json!({ "params": [1] }), json!({})] {
        let (status, body) = host.post("/v1/plugins/trait-rule/describe", &bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "bad_request", "{bad}: {body}");
    }

    // A segment whose params the rule refuses is refused with the same reason.
    let (status, body) = host
        .post(
            "/v1/segments",
            &json!({ "id": "bad", "rule": "event-window",
                     "params": { "event": "Login", "within": { "days": 1 } } }),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "invalid_params", "{body}");
    // A segment keeps what its rule said it reads.
    define(
        &host,
        json!({ "id": "logins", "rule": "event-window",
                "params": { "event": "Login", "at_least": 3, "within": { "hours": 2 } } }),
    )
    .await;
    let (_, def) = host.get("/v1/segments/logins").await;
    assert_eq!(def["needs"]["window_ms"], 7_200_000, "{def}");
    assert_eq!(def["needs"]["events"], json!(["Login"]), "{def}");
}

/// The "big spender": performed `Order Completed` with `total > 100` twice in 30
/// days, judged by when the orders happened, not when the host heard of them.
#[tokio::test]
async fn an_event_window_segment_counts_by_event_time() {
    let host = TestHost::start().await;
    host.install("event-window", "event-window").await;
    let key = host.create_source("shop").await;
    define(
        &host,
        json!({ "id": "big-spenders", "rule": "event-window", "params": {
            "event": "Order Completed", "at_least": 2, "within": { "days": 30 },
            "where": { "property": "total", "gt": 100 } } }),
    )
    .await;

    // Live orders: the small one does not count, the second big one enters u1.
    host.track(&key, "u1", "Order Completed", json!({ "total": 150 }))
        .await;
    host.track(&key, "u1", "Order Completed", json!({ "total": 50 }))
        .await;
    let u1 = host.contact_id("u1").await;
    expect_members(&host, "big-spenders", Vec::<String>::new()).await;
    host.track(&key, "u1", "Page Viewed", json!({ "total": 500 }))
        .await;
    expect_members(&host, "big-spenders", Vec::<String>::new()).await;
    host.track(&key, "u1", "Order Completed", json!({ "total": 250 }))
        .await;
    expect_members(&host, "big-spenders", vec![u1.clone()]).await;

    // Imported history: u2's orders of 10 and 40 days ago make one in the window; one of 5
    // days ago, imported later, makes two. u3's two orders are both older than the window.
    let order = |user: &str, id: &str, days: i64| {
        json!({ "type": "track", "userId": user, "event": "Order Completed",
                "messageId": id, "timestamp": days_ago(days), "properties": { "total": 300 } })
    };
    let (status, body) = host
        .segment(
            "/v1/import",
            &key,
            &json!({ "batch": [
                order("u2", "u2-a", 10), order("u2", "u2-b", 40),
                order("u3", "u3-a", 31), order("u3", "u3-b", 45)
            ] }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (u2, u3) = (host.contact_id("u2").await, host.contact_id("u3").await);
    expect_members(&host, "big-spenders", vec![u1.clone()]).await;
    let (status, body) = host
        .segment(
            "/v1/import",
            &key,
            &json!({ "batch": [order("u2", "u2-c", 5)] }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    expect_members(&host, "big-spenders", sorted(vec![u1.clone(), u2.clone()])).await;
    assert!(!members(&host, "big-spenders").await.contains(&u3));

    // A recompute reads the same history back from the log: a second segment defined now
    // finds the same members.
    define(
        &host,
        json!({ "id": "big-spenders-2", "rule": "event-window", "params": {
            "event": "Order Completed", "at_least": 2, "within": { "days": 30 },
            "where": { "property": "total", "gt": 100 } } }),
    )
    .await;
    assert_eq!(
        members(&host, "big-spenders-2").await,
        sorted(vec![u1.clone(), u2.clone()])
    );
    // Membership events name the segment and the rule version that decided.
    let entered: Vec<Value> = logged(&host, &u2)
        .await
        .into_iter()
        .filter(|(name, _)| name == "Segment Entered")
        .map(|(_, props)| props)
        .collect();
    assert_eq!(entered.len(), 2, "{entered:?}");
    assert_eq!(entered[0]["segment_id"], "big-spenders");
    assert_eq!(entered[0]["rule_plugin"], "event-window");
}

/// A window of a few seconds: the contact enters on its event and, with no other event, is
/// taken out by the recheck timer the rule asked for when that event leaves the window.
#[tokio::test]
async fn a_short_window_sliding_past_exits_the_contact_by_its_recheck_timer() {
    let host = TestHost::start().await;
    host.install("event-window", "event-window").await;
    let key = host.create_source("app").await;
    define(
        &host,
        json!({ "id": "pinged", "rule": "event-window", "params": {
            "event": "Ping", "at_least": 1, "within": { "seconds": 2 } } }),
    )
    .await;
    host.track(&key, "u1", "Ping", json!({})).await;
    let u1 = host.contact_id("u1").await;
    let deadline = Instant::now() + CATCH_UP;
    let names = loop {
        let names: Vec<String> = logged(&host, &u1)
            .await
            .into_iter()
            .map(|(name, _)| name)
            .filter(|name| name.starts_with("Segment"))
            .collect();
        if names.iter().any(|n| n == "Segment Exited") {
            break names;
        }
        assert!(
            Instant::now() < deadline,
            "no exit as the window slid past: {names:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(names, vec!["Segment Entered", "Segment Exited"]);
    expect_members(&host, "pinged", Vec::<String>::new()).await;
    let (_, def) = host.get("/v1/segments/pinged").await;
    assert_eq!(def["members"], 0, "{def}");

    // Another ping enters it again: the timer left nothing stale behind.
    host.track(&key, "u1", "Ping", json!({})).await;
    wait_segment(&host, "pinged", |s| s["members"] == 1).await;
}

#[tokio::test]
async fn a_subscribed_segment_follows_consent_traits() {
    let host = TestHost::start().await;
    host.install("subscribed", "subscribed").await;
    let key = host.create_source("crm").await;
    host.identify(&key, "u1", json!({ "subscriptions": { "email": true } }))
        .await;
    host.identify(&key, "u2", json!({ "email_subscribed": false }))
        .await;
    host.identify(&key, "u3", json!({ "name": "Ada" })).await;
    let (u1, u2) = (host.contact_id("u1").await, host.contact_id("u2").await);
    host.contact_id("u3").await;
    define(
        &host,
        json!({ "id": "email-ok", "rule": "subscribed", "params": { "channel": "email" } }),
    )
    .await;
    expect_members(&host, "email-ok", vec![u1.clone()]).await;
    host.identify(&key, "u2", json!({ "email_subscribed": true }))
        .await;
    expect_members(&host, "email-ok", sorted(vec![u1.clone(), u2.clone()])).await;
    // Segment's global opt-out wins over the channel's trait.
    host.identify(&key, "u1", json!({ "unsubscribed": true }))
        .await;
    expect_members(&host, "email-ok", vec![u2.clone()]).await;
}

/// A new live version of a segment's rule describes the segment again and recomputes it.
#[tokio::test]
async fn a_new_rule_version_recomputes_its_segments() {
    let host = TestHost::start().await;
    host.install("trait-rule", "trait-rule").await;
    let key = host.create_source("web").await;
    host.identify(&key, "u1", json!({ "plan": "pro" })).await;
    host.contact_id("u1").await;
    define(
        &host,
        json!({ "id": "pros", "rule": "trait-rule",
                "params": { "trait": "plan", "equals": "pro" } }),
    )
    .await;
    // The same rule with a custom section appended: another component, another version.
    let mut bytes = std::fs::read(artifact("trait-rule")).unwrap();
    bytes.extend_from_slice(&[0, 5, 4]);
    bytes.extend_from_slice(b"next");
    let next = manifest("trait-rule").replacen("version = \"0.2.0\"", "version = \"0.2.1\"", 1);
    let (status, uploaded) = host.upload_bytes(bytes, &next).await;
    assert_eq!(status, StatusCode::CREATED, "{uploaded}");
    host.activate("trait-rule", uploaded["sha256"].as_str().unwrap())
        .await;
    let def = wait_segment(&host, "pros", |s| {
        s["recompute"]["reason"] == "rule_version" && s["recompute"]["state"] == "done"
    })
    .await;
    assert_eq!(def["rule_version"], "0.2.1", "{def}");
    assert_eq!(def["needs"]["traits"], json!(["plan"]), "{def}");
    assert_eq!(def["members"], 1, "{def}");
}

/// An event stamped a little in the future (a client clock ahead) counts from its time on:
/// the contact is evaluated again when it comes due, and enters then, not before.
#[tokio::test]
async fn an_event_stamped_in_the_future_counts_when_its_time_comes() {
    let host = TestHost::start().await;
    host.install("event-window", "event-window").await;
    let key = host.create_source("app").await;
    define(
        &host,
        json!({ "id": "soon", "rule": "event-window", "params": {
            "event": "Ping", "at_least": 1, "within": { "minutes": 10 } } }),
    )
    .await;
    let at = OffsetDateTime::now_utc() + time::Duration::seconds(2);
    let (status, body) = host
        .segment(
            "/v1/track",
            &key,
            &json!({ "userId": "u1", "event": "Ping", "timestamp": at.format(&Rfc3339).unwrap() }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let u1 = host.contact_id("u1").await;
    wait_segment(&host, "soon", |s| s["members"] == 1).await;
    let (status, events) = host.get(&format!("/v1/contacts/{u1}/events")).await;
    assert_eq!(status, StatusCode::OK, "{events}");
    let entered = events["events"]
        .as_array()
        .expect("events")
        .iter()
        .find(|e| e["event"]["event"] == "Segment Entered")
        .expect("an entry event");
    let entered_at = OffsetDateTime::parse(
        entered["event"]["timestamp"].as_str().expect("timestamp"),
        &Rfc3339,
    )
    .expect("RFC 3339");
    assert!(
        entered_at >= at.replace_nanosecond(0).unwrap(),
        "entered at {entered_at}, before the event's time {at}"
    );
}

/// A rule written against the SDK's 0.1 `SegmentRule` trait, unchanged, still builds as a 0.1
/// component and decides.
#[tokio::test]
async fn a_rule_on_the_sdks_0_1_trait_builds_as_a_0_1_component_and_decides() {
    let host = TestHost::start().await;
    host.install("rule-sdk-v0-1", "rule-sdk-v0-1").await;
    let (_, view) = host.get("/v1/plugins/rule-sdk-v0-1").await;
    assert_eq!(view["versions"][0]["contract"], "0.1", "{view}");
    let pros = json!({ "trait": "plan", "equals": "pro" });
    let (status, out) = host
        .call(
            "rule-sdk-v0-1",
            &json!({ "params": pros, "batch": tessera_tests::rule_batch(3) }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["ok"]["decisions"], json!([true, false, true]), "{out}");
    let (status, needs) = host
        .post(
            "/v1/plugins/rule-sdk-v0-1/describe",
            &json!({ "params": pros }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{needs}");
    assert_eq!(needs["traits"], json!(["*"]), "{needs}");
}
