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

/// Uploads the bundled webhook channel, so send steps may name `webhook-channel` (it needs
/// no config to be named; nothing is sent yet).
async fn channel(api: &Api) {
    api.upload("webhook-channel").await;
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
    channel(&host).await;
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
    channel(&host).await;
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
    channel(&host).await;
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
    channel(&host).await;
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
    // A send step names an installed channel plugin: unknown ids and other kinds are refused
    // at the step's `channel`.
    let sends = |channel: &str| {
        json!({ "id": "j", "trigger": { "event": "E" },
                "steps": [{ "wait": { "duration": "1h" } },
                          { "send": { "channel": channel, "template": "t" } }] })
    };
    let (status, answer) = host.post("/v1/journeys", &sends("webhook-channel")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(answer["error"]["path"], "steps[1].send.channel", "{answer}");
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("no plugin `webhook-channel`"), "{answer}");
    host.install("trait-rule", "trait-rule").await;
    let (_, answer) = host.post("/v1/journeys", &sends("trait-rule")).await;
    assert_eq!(answer["error"]["path"], "steps[1].send.channel", "{answer}");
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("not a channel"), "{answer}");
    // Uploaded is enough: a channel may need its config before it goes live.
    channel(&host).await;
    define(&host, sends("webhook-channel")).await;
    let (status, body) = host
        .put(
            "/v1/journeys/j",
            &json!({ "trigger": { "event": "E" },
                     "steps": [{ "send": { "channel": "no-such-channel", "template": "t" } }] }),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["path"], "steps[0].send.channel", "{body}");
    let (_, journey) = host.get("/v1/journeys/j").await;
    assert_eq!(
        journey["version"], 1,
        "a refused update makes no version: {journey}"
    );
    host.request(reqwest::Method::DELETE, "/v1/journeys/j")
        .send()
        .await
        .expect("delete");
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
    channel(&host).await;
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
    channel(&host).await;
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
    channel(&host).await;
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

#[tokio::test]
async fn a_wait_until_a_time_of_day_waits_for_it_in_the_contacts_time_zone() {
    let host = TestHost::start().await;
    channel(&host).await;
    let key = host.create_source("web").await;
    // Kathmandu is UTC+05:45 all year (no DST), so the expected instant needs no tz database.
    let kathmandu = time::UtcOffset::from_hms(5, 45, 0).expect("offset");
    // Far enough ahead that the run has begun waiting on a loaded machine before it comes.
    let target = time::OffsetDateTime::now_utc() + Duration::from_secs(30);
    let target = target.replace_nanosecond(0).expect("whole second");
    let local = target.to_offset(kathmandu);
    let until = format!(
        "{:02}:{:02}:{:02}",
        local.hour(),
        local.minute(),
        local.second()
    );
    let due_ms = (target.unix_timestamp_nanos() / 1_000_000) as i64;
    define(
        &host,
        json!({ "id": "local-time", "trigger": { "event": "Booked" },
                "steps": [
                    { "id": "until-local", "wait": { "until": until, "default_timezone": "America/New_York" } },
                    { "id": "remind", "send": { "channel": "webhook-channel", "template": "reminder" } }
                ] }),
    )
    .await;
    host.identify(&key, "nepal", json!({ "timezone": "Asia/Kathmandu" }))
        .await;
    host.identify(&key, "no-zone", json!({})).await;
    host.track(&key, "nepal", "Booked", json!({})).await;
    host.track(&key, "no-zone", "Booked", json!({})).await;
    let (nepal, no_zone) = (
        host.contact_id("nepal").await,
        host.contact_id("no-zone").await,
    );
    let waiting = |r: &Value| r["runs"][0]["state"] == "waiting";
    let run = host
        .wait_for(&format!("/v1/contacts/{nepal}/journeys"), waiting)
        .await;
    assert_eq!(
        run["runs"][0]["waiting"]["due_ms"], due_ms,
        "due at {until} in Kathmandu: {run}"
    );
    // The other contact has no `timezone` trait: the step's default zone, hours away.
    let other = host
        .wait_for(&format!("/v1/contacts/{no_zone}/journeys"), waiting)
        .await;
    let other_due = other["runs"][0]["waiting"]["due_ms"].as_i64().expect("due");
    assert!(
        other_due > due_ms + 3_600_000 && other_due <= due_ms + 86_400_000,
        "{until} in New York is another instant: {other}"
    );

    let done = host
        .wait_for(&format!("/v1/contacts/{nepal}/journeys"), |b| {
            b["runs"][0]["state"] == "completed"
        })
        .await;
    let ended = done["runs"][0]["ended_ms"].as_i64().expect("ended_ms");
    assert!(ended >= due_ms, "fired at {ended}, due {due_ms}: {done}");
    let sent = deliveries(&host, &format!("contact={nepal}")).await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["template"], "reminder");
    assert!(
        deliveries(&host, &format!("contact={no_zone}"))
            .await
            .is_empty(),
        "the other run still waits"
    );
}

/// The runs of `journey` among a contact's runs.
fn run_of<'a>(runs: &'a [Value], journey: &str) -> Vec<&'a Value> {
    runs.iter().filter(|r| r["journey"] == journey).collect()
}

#[tokio::test]
async fn a_merge_keeps_one_run_per_journey_going_on_the_surviving_contact() {
    let host = TestHost::start().await;
    channel(&host).await;
    let key = host.create_source("web").await;
    define(
        &host,
        json!({ "id": "checkout", "trigger": { "event": "Visited" }, "reentry": "never",
                "steps": [
                    { "id": "until-paid", "wait_until": { "event": "Paid", "timeout": "1d" } },
                    { "id": "thanks", "send": { "channel": "webhook-channel", "template": "thanks" } }
                ] }),
    )
    .await;
    // The known user is the older contact, so she survives the merge.
    host.identify(&key, "ana", json!({ "name": "Ana" })).await;
    let ana = host.contact_id("ana").await;
    let (status, body) = host
        .segment(
            "/v1/track",
            &key,
            &json!({ "anonymousId": "anon-7", "event": "Visited", "properties": {} }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let anon = host.wait_contact("anonymous_id:anon-7", |_| true).await["id"]
        .as_str()
        .expect("id")
        .to_string();
    assert_ne!(anon, ana);
    host.wait_for(&format!("/v1/contacts/{anon}/journeys"), |b| {
        b["runs"][0]["state"] == "waiting"
    })
    .await;
    host.track(&key, "ana", "Visited", json!({})).await;
    host.wait_for(&format!("/v1/contacts/{ana}/journeys"), |b| {
        b["runs"][0]["state"] == "waiting"
    })
    .await;
    let anon_run = runs_of(&host, &anon).await[0]["id"].clone();

    // Signing in links the anonymous visitor to Ana: one contact, in the journey once.
    let (status, body) = host
        .segment(
            "/v1/identify",
            &key,
            &json!({ "anonymousId": "anon-7", "userId": "ana", "traits": {} }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    caught_up(&host).await;
    let runs = runs_of(&host, &ana).await;
    let checkout = run_of(&runs, "checkout");
    assert_eq!(checkout.len(), 2, "{runs:?}");
    assert!(
        checkout.iter().all(|r| r["contact"] == ana.as_str()),
        "{runs:?}"
    );
    let going_on: Vec<_> = checkout
        .iter()
        .filter(|r| r["state"] == "waiting")
        .collect();
    assert_eq!(going_on.len(), 1, "one run goes on: {runs:?}");
    assert_eq!(going_on[0]["id"], anon_run, "the first to start goes on");
    let merged = checkout
        .iter()
        .find(|r| r["state"] == "exited")
        .expect("exited");
    assert!(
        merged["exit_reason"]
            .as_str()
            .is_some_and(|r| r.starts_with(&format!("merged into {ana}"))),
        "{merged}"
    );
    // The merged-away id answers for the survivor.
    assert_eq!(runs_of(&host, &anon).await.len(), 2);

    // The run goes on there: paying moves it, once; visiting again starts nothing (`never`).
    host.track(&key, "ana", "Paid", json!({})).await;
    host.track(&key, "ana", "Visited", json!({})).await;
    let (status, body) = host
        .segment(
            "/v1/track",
            &key,
            &json!({ "anonymousId": "anon-7", "event": "Visited", "properties": {} }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    host.wait_for("/v1/journeys/checkout/runs?state=completed", |b| {
        b["runs"].as_array().is_some_and(|r| r.len() == 1)
    })
    .await;
    caught_up(&host).await;
    let runs = runs_of(&host, &ana).await;
    assert_eq!(run_of(&runs, "checkout").len(), 2, "no new run: {runs:?}");
    let sent = deliveries(&host, "journey=checkout").await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["contact"], ana.as_str());
    let (_, journey) = host.get("/v1/journeys/checkout").await;
    let wait = step(&journey, "until-paid");
    assert_eq!(
        (
            &wait["entered"],
            &wait["waiting"],
            &wait["completed"],
            &wait["exited"]
        ),
        (&json!(2), &json!(0), &json!(1), &json!(1)),
        "{journey}"
    );
}

#[tokio::test]
async fn a_run_moved_by_an_alias_keeps_the_survivor_out_until_it_ends() {
    let host = TestHost::start().await;
    channel(&host).await;
    let key = host.create_source("web").await;
    define(
        &host,
        json!({ "id": "nudge", "trigger": { "event": "Browsed" }, "reentry": "always",
                "steps": [
                    { "id": "until-bought", "wait_until": { "event": "Bought", "timeout": "1d" } },
                    { "id": "thanks", "send": { "channel": "webhook-channel", "template": "thanks" } }
                ] }),
    )
    .await;
    // The survivor's own run has ended; the merged contact's run is still waiting.
    host.track(&key, "old-id", "Browsed", json!({})).await;
    host.track(&key, "old-id", "Bought", json!({})).await;
    let old = host.contact_id("old-id").await;
    host.wait_for(&format!("/v1/contacts/{old}/journeys"), |b| {
        b["runs"][0]["state"] == "completed"
    })
    .await;
    host.track(&key, "new-id", "Browsed", json!({})).await;
    let new = host.contact_id("new-id").await;
    host.wait_for(&format!("/v1/contacts/{new}/journeys"), |b| {
        b["runs"][0]["state"] == "waiting"
    })
    .await;
    let (status, body) = host
        .segment(
            "/v1/alias",
            &key,
            &json!({ "previousId": "new-id", "userId": "old-id" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    caught_up(&host).await;
    assert_eq!(
        host.contact_id("new-id").await,
        old,
        "merged into the older"
    );

    // In the journey now (the moved run): browsing again does not enter it a second time.
    host.track(&key, "old-id", "Browsed", json!({})).await;
    caught_up(&host).await;
    let runs = runs_of(&host, &old).await;
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_eq!(
        runs.iter().filter(|r| r["state"] == "waiting").count(),
        1,
        "{runs:?}"
    );
    // Once it ends, `always` lets her in again.
    host.track(&key, "old-id", "Bought", json!({})).await;
    caught_up(&host).await;
    host.track(&key, "old-id", "Browsed", json!({})).await;
    caught_up(&host).await;
    let runs = runs_of(&host, &old).await;
    assert_eq!(runs.len(), 3, "{runs:?}");
    assert_eq!(deliveries(&host, "journey=nudge").await.len(), 2);
}
