//! Journeys through the real host: definitions over HTTP checked step by step, runs started
//! by events and segment entries, waits, branches, sends queued in the outbox, trait updates
//! through the log, pause and resume, re-entry, versions, and runs that survive SIGKILL.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tessera_tests::process::{HostOptions, HostProcess};
use tessera_tests::{Api, TestHost};

/// Waits until the profile stage has applied every logged event and the journey stage has
/// looked at all of them.
async fn caught_up(api: &Api) {
    api.wait_for("/v1/status", |s| {
        s["profiles"]["behind"] == 0 && s["journeys"]["behind"] == 0
    })
    .await;
}

async fn define(api: &Api, def: Value) {
    let (status, body) = api.post("/v1/journeys", &def).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

async fn runs_of(api: &Api, contact: &str) -> Vec<Value> {
    let (status, body) = api.get(&format!("/v1/contacts/{contact}/journeys")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["runs"].as_array().expect("runs").clone()
}

async fn deliveries(api: &Api, query: &str) -> Vec<Value> {
    let (status, body) = api.get(&format!("/v1/deliveries?{query}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["deliveries"].as_array().expect("deliveries").clone()
}

fn step<'a>(journey: &'a Value, id: &str) -> &'a Value {
    journey["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|s| s["id"] == id)
        .unwrap_or_else(|| panic!("no step {id} in {journey}"))
}

#[tokio::test]
async fn an_event_starts_a_run_that_waits_branches_and_queues_a_send() {
    let host = TestHost::start().await;
    let key = host.create_source("web").await;
    define(
        &host,
        json!({
            "id": "welcome",
            "trigger": { "event": "Signed Up", "where": [{ "property": "plan", "equals": "pro" }] },
            "steps": [
                { "id": "pause", "wait": { "duration": "300ms" } },
                { "id": "is-vip", "branch": { "all": [{ "trait": "vip", "equals": true }], "then": "vip-mail" } },
                { "id": "plain-mail", "send": { "channel": "webhook-channel", "template": "welcome", "data": { "tone": "warm" } } },
                { "id": "done", "exit": {} },
                { "id": "vip-mail", "send": { "channel": "webhook-channel", "template": "welcome-vip" } }
            ]
        }),
    )
    .await;
    host.identify(&key, "vip", json!({ "vip": true })).await;
    host.identify(&key, "plain", json!({ "vip": false })).await;
    host.identify(&key, "free", json!({})).await;
    host.track(&key, "vip", "Signed Up", json!({ "plan": "pro" }))
        .await;
    host.track(&key, "plain", "Signed Up", json!({ "plan": "pro" }))
        .await;
    host.track(&key, "free", "Signed Up", json!({ "plan": "free" }))
        .await;
    let (vip, plain, free) = (
        host.contact_id("vip").await,
        host.contact_id("plain").await,
        host.contact_id("free").await,
    );

    let ended = |r: &Value| r["state"] == "completed" || r["state"] == "exited";
    host.wait_for("/v1/journeys/welcome/runs", |b| {
        b["runs"]
            .as_array()
            .is_some_and(|r| r.len() == 2 && r.iter().all(ended))
    })
    .await;
    caught_up(&host).await;

    // The VIP went through the branch's `then`, the other down the plain path to the exit.
    let vip_runs = runs_of(&host, &vip).await;
    assert_eq!(vip_runs.len(), 1, "{vip_runs:?}");
    assert_eq!(vip_runs[0]["state"], "completed");
    assert_eq!(vip_runs[0]["version"], 1);
    let plain_runs = runs_of(&host, &plain).await;
    assert_eq!(plain_runs[0]["state"], "exited");
    assert_eq!(plain_runs[0]["exit_reason"], "exit step");
    assert!(
        runs_of(&host, &free).await.is_empty(),
        "the property condition held it out"
    );

    let sent = deliveries(&host, "journey=welcome").await;
    assert_eq!(sent.len(), 2, "{sent:?}");
    let vip_mail = deliveries(&host, &format!("contact={vip}")).await;
    assert_eq!(vip_mail.len(), 1);
    assert_eq!(vip_mail[0]["template"], "welcome-vip");
    assert_eq!(vip_mail[0]["state"], "queued");
    let run_id = vip_runs[0]["id"].as_str().unwrap();
    assert_eq!(
        vip_mail[0]["id"],
        format!("{run_id}.4"),
        "idempotency key is run.step"
    );
    let plain_mail = deliveries(&host, &format!("contact={plain}&state=queued")).await;
    assert_eq!(plain_mail[0]["template"], "welcome");
    assert_eq!(plain_mail[0]["data"], json!({ "tone": "warm" }));
    assert_eq!(plain_mail[0]["channel"], "webhook-channel");
    let id = plain_mail[0]["id"].as_str().unwrap();
    let (status, one) = host.get(&format!("/v1/deliveries/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{one}");
    assert_eq!(one["journey"]["journey"], "welcome");
    let (status, _) = host.get("/v1/deliveries/nope.1").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // The channel is not installed: its messages wait, queued, none sent.
    let (status, body) = host.get("/v1/deliveries?state=sent").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["deliveries"], json!([]));
    let (status, body) = host.get("/v1/deliveries?state=lost").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // Per-step counts.
    let (_, journey) = host.get("/v1/journeys/welcome").await;
    let counts = |id: &str| {
        let s = step(&journey, id);
        (
            s["entered"].clone(),
            s["waiting"].clone(),
            s["completed"].clone(),
            s["exited"].clone(),
        )
    };
    assert_eq!(
        counts("pause"),
        (json!(2), json!(0), json!(2), json!(0)),
        "{journey}"
    );
    assert_eq!(counts("is-vip"), (json!(2), json!(0), json!(2), json!(0)));
    assert_eq!(
        counts("plain-mail"),
        (json!(1), json!(0), json!(1), json!(0))
    );
    assert_eq!(counts("done"), (json!(1), json!(0), json!(0), json!(1)));
    assert_eq!(counts("vip-mail"), (json!(1), json!(0), json!(1), json!(0)));
    assert_eq!(journey["state"], "live");
    assert_eq!(journey["definition"]["id"], "welcome");
}

#[tokio::test]
async fn trait_updates_reach_the_contact_once_through_the_log() {
    let host = TestHost::start().await;
    let key = host.create_source("web").await;
    define(
        &host,
        json!({
            "id": "trial",
            "trigger": { "event": "Trial Started" },
            "steps": [
                { "update_traits": { "stage": "trial", "score": 10 } },
                { "branch": { "all": [{ "trait": "stage", "equals": "trial" }], "else": "exit" } },
                { "send": { "channel": "webhook-channel", "template": "trial-tips" } }
            ]
        }),
    )
    .await;
    host.track(&key, "ada", "Trial Started", json!({})).await;
    let ada = host.contact_id("ada").await;
    host.wait_contact("user_id:ada", |c| c["traits"]["stage"] == "trial")
        .await;
    caught_up(&host).await;
    let contact = host
        .wait_contact("user_id:ada", |c| c["traits"]["score"] == 10)
        .await;
    assert_eq!(contact["traits"]["stage"], "trial", "{contact}");
    // The branch right after the update saw the new value.
    assert_eq!(deliveries(&host, &format!("contact={ada}")).await.len(), 1);
    let (_, events) = host.get(&format!("/v1/contacts/{ada}/events")).await;
    let from_journey: Vec<&Value> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["event"]["message_id"]
                .as_str()
                .is_some_and(|m| m.starts_with("journey:"))
        })
        .collect();
    assert_eq!(from_journey.len(), 1, "{events}");
    let run = runs_of(&host, &ada).await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        from_journey[0]["event"]["message_id"],
        format!("journey:{run}:0")
    );
    assert_eq!(from_journey[0]["event"]["type"], "identify");

    // Erasing the contact drops its runs and queued messages with it.
    let response = host
        .request(reqwest::Method::DELETE, &format!("/v1/contacts/{ada}"))
        .send()
        .await
        .expect("erase");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(runs_of(&host, &ada).await.is_empty());
    assert!(
        deliveries(&host, &format!("contact={ada}"))
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn a_paused_journey_starts_nothing_and_resumes_where_it_stood() {
    let host = TestHost::start().await;
    let key = host.create_source("web").await;
    define(
        &host,
        json!({
            "id": "nudge",
            "trigger": { "event": "Cart Created" },
            "reentry": "always",
            "steps": [
                { "id": "wait-order", "wait_until": { "event": "Order Completed", "timeout": "1h" } },
                { "id": "thanks", "send": { "channel": "webhook-channel", "template": "thanks" } }
            ]
        }),
    )
    .await;
    host.track(&key, "u1", "Cart Created", json!({})).await;
    let u1 = host.contact_id("u1").await;
    host.wait_for(&format!("/v1/contacts/{u1}/journeys"), |b| {
        b["runs"][0]["state"] == "waiting"
    })
    .await;

    let (status, body) = host.post("/v1/journeys/nudge/pause", &json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["state"], "paused");
    // While paused: no new run, and the awaited event moves nothing yet.
    host.track(&key, "u2", "Cart Created", json!({})).await;
    host.track(&key, "u1", "Order Completed", json!({})).await;
    caught_up(&host).await;
    let u2 = host.contact_id("u2").await;
    assert!(runs_of(&host, &u2).await.is_empty());
    assert_eq!(runs_of(&host, &u1).await[0]["state"], "waiting");
    assert!(deliveries(&host, "journey=nudge").await.is_empty());
    let (_, journey) = host.get("/v1/journeys/nudge").await;
    assert_eq!(step(&journey, "wait-order")["waiting"], 1, "{journey}");

    // Resumed: the run moves on with the event it got while paused.
    let (status, body) = host.post("/v1/journeys/nudge/resume", &json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["state"], "live");
    host.wait_for(&format!("/v1/contacts/{u1}/journeys"), |b| {
        b["runs"][0]["state"] == "completed"
    })
    .await;
    let sent = deliveries(&host, "journey=nudge").await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["contact"], u1.as_str());
    let run = &runs_of(&host, &u1).await[0];
    assert_eq!(run["visits"][0]["outcome"], "matched", "{run}");
    assert!(
        runs_of(&host, &u2).await.is_empty(),
        "events seen while paused start nothing later"
    );
}

#[tokio::test]
async fn reentry_follows_each_journeys_policy() {
    let host = TestHost::start().await;
    let key = host.create_source("web").await;
    for (id, reentry) in [
        ("once", json!("never")),
        ("every", json!("always")),
        ("daily", json!({ "after": "1d" })),
    ] {
        define(
            &host,
            json!({ "id": id, "trigger": { "event": "Visit" }, "reentry": reentry,
                    "steps": [{ "send": { "channel": "webhook-channel", "template": id } }] }),
        )
        .await;
    }
    // A run in progress is never joined again, whatever the policy.
    define(
        &host,
        json!({ "id": "busy", "trigger": { "event": "Visit" }, "reentry": "always",
                "steps": [{ "wait_until": { "event": "Never Sent", "timeout": "1d" } }] }),
    )
    .await;
    for _ in 0..3 {
        host.track(&key, "v", "Visit", json!({})).await;
    }
    caught_up(&host).await;
    let v = host.contact_id("v").await;
    let runs = runs_of(&host, &v).await;
    let count = |j: &str| runs.iter().filter(|r| r["journey"] == j).count();
    assert_eq!(count("once"), 1, "{runs:?}");
    assert_eq!(count("every"), 3, "{runs:?}");
    assert_eq!(count("daily"), 1, "{runs:?}");
    assert_eq!(count("busy"), 1, "{runs:?}");
    assert_eq!(deliveries(&host, &format!("contact={v}")).await.len(), 5);
}

#[tokio::test]
async fn bad_definitions_are_refused_with_the_place_that_is_wrong() {
    let host = TestHost::start().await;
    let refused = |body: Value| {
        let host = &host;
        async move {
            let (status, answer) = host.post("/v1/journeys", &body).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
            assert_eq!(answer["error"]["code"], "invalid_journey", "{answer}");
            answer["error"]["path"].as_str().expect("path").to_string()
        }
    };
    let steps = json!([
        { "wait": { "duration": "1h" } },
        { "send": { "channel": "webhook-channel", "template": "t" } },
        { "wait": { "duration": "soon" } }
    ]);
    assert_eq!(
        refused(json!({ "id": "j", "trigger": { "event": "E" }, "steps": steps })).await,
        "steps[2].wait.duration"
    );
    assert_eq!(
        refused(json!({ "id": "j", "steps": [{ "exit": {} }] })).await,
        "trigger"
    );
    assert_eq!(
        refused(json!({ "id": "j", "trigger": { "event": "E" },
                        "steps": [{ "branch": { "all": [{ "trait": "a", "gt": "x" }], "then": "exit" } }] }))
        .await,
        "steps[0].branch.all[0].gt"
    );
    assert_eq!(
        refused(json!({ "id": "j", "trigger": { "event": "E" },
                        "steps": [{ "id": "a", "exit": {} }, { "branch": { "any": [{ "in_segment": "s" }], "then": "a" } }] }))
        .await,
        "steps[1].branch.then"
    );
    assert_eq!(
        refused(
            json!({ "id": "Not An Id", "trigger": { "event": "E" }, "steps": [{ "exit": {} }] })
        )
        .await,
        "id"
    );
    let (status, body) = host
        .request(reqwest::Method::POST, "/v1/journeys")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .map(|r| (r.status(), ()))
        .expect("sent");
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body:?}");
    let good = json!({ "id": "j", "trigger": { "event": "E" }, "steps": [{ "exit": {} }] });
    define(&host, good.clone()).await;
    let (status, _) = host.post("/v1/journeys", &good).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, body) = host
        .put(
            "/v1/journeys/j",
            &json!({ "trigger": { "event": "E" }, "steps": [{ "wait": {} }] }),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["path"], "steps[0].wait", "{body}");
    let (status, _) = host.get("/v1/journeys/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = host.post("/v1/journeys/nope/pause", &json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, list) = host.get("/v1/journeys").await;
    assert_eq!(list["journeys"].as_array().map(Vec::len), Some(1), "{list}");
    let response = host
        .request(reqwest::Method::DELETE, "/v1/journeys/j")
        .send()
        .await
        .expect("delete");
    assert_eq!(response.status(), StatusCode::OK);
    let (status, _) = host.get("/v1/journeys/j").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_run_stays_on_the_version_it_started_on() {
    let host = TestHost::start().await;
    let key = host.create_source("web").await;
    define(
        &host,
        json!({ "id": "offer", "trigger": { "event": "Browse" },
                "steps": [
                    { "wait_until": { "event": "Go", "timeout": "1d" } },
                    { "send": { "channel": "webhook-channel", "template": "offer-v1" } }
                ] }),
    )
    .await;
    host.track(&key, "early", "Browse", json!({})).await;
    let early = host.contact_id("early").await;
    host.wait_for(&format!("/v1/contacts/{early}/journeys"), |b| {
        b["runs"][0]["state"] == "waiting"
    })
    .await;
    let (status, body) = host
        .put(
            "/v1/journeys/offer",
            &json!({ "trigger": { "event": "Browse" },
                     "steps": [{ "send": { "channel": "webhook-channel", "template": "offer-v2" } }] }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["version"], 2);
    host.track(&key, "late", "Browse", json!({})).await;
    host.track(&key, "early", "Go", json!({})).await;
    let late = host.contact_id("late").await;
    host.wait_for("/v1/journeys/offer/runs?state=completed", |b| {
        b["runs"].as_array().is_some_and(|r| r.len() == 2)
    })
    .await;
    let early_run = &runs_of(&host, &early).await[0];
    assert_eq!(early_run["version"], 1);
    assert_eq!(
        deliveries(&host, &format!("contact={early}")).await[0]["template"],
        "offer-v1"
    );
    let late_run = &runs_of(&host, &late).await[0];
    assert_eq!(late_run["version"], 2);
    assert_eq!(
        deliveries(&host, &format!("contact={late}")).await[0]["template"],
        "offer-v2"
    );
    let (_, journey) = host.get("/v1/journeys/offer").await;
    assert_eq!(journey["versions"][0]["version"], 2, "{journey}");
    assert_eq!(journey["versions"][0]["steps"][0]["completed"], 1);
    assert_eq!(journey["versions"][1]["version"], 1);
    assert_eq!(journey["versions"][1]["steps"][1]["completed"], 1);
    let (status, v1) = host.get("/v1/journeys/offer/versions/1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v1["definition"]["steps"][1]["send"]["template"], "offer-v1");
}

#[tokio::test]
async fn a_segment_entry_starts_a_run_and_leaving_the_segment_ends_it() {
    let host = TestHost::start().await;
    host.install("trait-rule", "trait-rule").await;
    let key = host.create_source("web").await;
    let (status, body) = host
        .post(
            "/v1/segments",
            &json!({ "id": "pros", "rule": "trait-rule", "params": { "trait": "plan", "equals": "pro" } }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    define(
        &host,
        json!({ "id": "pro-onboarding", "trigger": { "segment": "pros" },
                "exit_on_segment_exit": "pros",
                "steps": [
                    { "id": "hold", "wait_until": { "event": "Never Happens", "timeout": "1d" } },
                    { "send": { "channel": "webhook-channel", "template": "pro" } }
                ] }),
    )
    .await;
    host.identify(&key, "p", json!({ "plan": "pro" })).await;
    let p = host.contact_id("p").await;
    host.wait_for(&format!("/v1/contacts/{p}/journeys"), |b| {
        b["runs"][0]["state"] == "waiting"
    })
    .await;
    host.identify(&key, "p", json!({ "plan": "free" })).await;
    let done = host
        .wait_for(&format!("/v1/contacts/{p}/journeys"), |b| {
            b["runs"][0]["state"] == "exited"
        })
        .await;
    assert_eq!(
        done["runs"][0]["exit_reason"], "left segment pros",
        "{done}"
    );
    let (_, journey) = host.get("/v1/journeys/pro-onboarding").await;
    let hold = step(&journey, "hold");
    assert_eq!(
        (
            hold["entered"].clone(),
            hold["waiting"].clone(),
            hold["exited"].clone()
        ),
        (json!(1), json!(0), json!(1)),
        "{journey}"
    );
    assert!(deliveries(&host, "journey=pro-onboarding").await.is_empty());
}

/// xorshift64: kill times that differ from run to run, with the seed printed so a failure
/// can be replayed.
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[tokio::test]
async fn runs_killed_mid_journey_finish_with_every_effect_once() {
    const CONTACTS: usize = 30;
    let mut host = HostProcess::start(HostOptions::default());
    let key = host.create_source("web").await;
    define(
        &host,
        json!({ "id": "crashy", "trigger": { "event": "Go" },
                "steps": [
                    { "id": "mark", "update_traits": { "crash_marked": true } },
                    { "id": "first-wait", "wait": { "duration": "150ms" } },
                    { "id": "first", "send": { "channel": "webhook-channel", "template": "first" } },
                    { "id": "second-wait", "wait": { "duration": "250ms" } },
                    { "id": "second", "send": { "channel": "webhook-channel", "template": "second" } },
                    { "id": "remark", "update_traits": { "crash_done": true } }
                ] }),
    )
    .await;
    for i in 0..CONTACTS {
        host.track(&key, &format!("c{i}"), "Go", json!({ "i": i }))
            .await;
    }
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    eprintln!("kill schedule seed {seed}");
    // The first kill comes before the last run can have finished its 400 ms of waits.
    let mut killed_mid_journey = 0;
    for round in 0..6 {
        let pause = if round == 0 {
            next_random(&mut seed) % 100
        } else {
            20 + next_random(&mut seed) % 400
        };
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let (_, done) = host
            .get("/v1/journeys/crashy/runs?state=completed&limit=1000")
            .await;
        if done["runs"].as_array().map_or(0, Vec::len) < CONTACTS {
            killed_mid_journey += 1;
        }
        host.restart();
    }
    assert!(killed_mid_journey > 0, "no kill landed mid-journey");
    let done = host
        .wait_for("/v1/journeys/crashy/runs?state=completed&limit=1000", |b| {
            b["runs"].as_array().is_some_and(|r| r.len() == CONTACTS)
        })
        .await;
    caught_up(&host).await;
    let (_, all) = host.get("/v1/journeys/crashy/runs?limit=1000").await;
    assert_eq!(
        all["runs"].as_array().unwrap().len(),
        CONTACTS,
        "one run per event: {all}"
    );
    for run in done["runs"].as_array().unwrap() {
        let contact = run["contact"].as_str().unwrap();
        let sent = deliveries(&host, &format!("contact={contact}")).await;
        let templates: Vec<&str> = sent
            .iter()
            .map(|d| d["template"].as_str().unwrap())
            .collect();
        assert_eq!(templates, ["first", "second"], "{run}");
        let (_, events) = host.get(&format!("/v1/contacts/{contact}/events")).await;
        let updates = events["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["event"]["source"] == "journeys")
            .count();
        assert_eq!(updates, 2, "each trait update logged once: {events}");
        let (_, c) = host.get(&format!("/v1/contacts/{contact}")).await;
        assert_eq!(c["traits"]["crash_marked"], true, "{c}");
        assert_eq!(c["traits"]["crash_done"], true, "{c}");
    }
    assert_eq!(
        deliveries(&host, "journey=crashy&limit=1000").await.len(),
        2 * CONTACTS
    );
    // No step was counted twice: every run entered and completed each step once.
    let (_, journey) = host.get("/v1/journeys/crashy").await;
    for s in journey["steps"].as_array().unwrap() {
        assert_eq!(s["entered"], CONTACTS, "{journey}");
        assert_eq!(s["completed"], CONTACTS, "{journey}");
        assert_eq!(s["waiting"], 0, "{journey}");
        assert_eq!(s["exited"], 0, "{journey}");
    }
}
