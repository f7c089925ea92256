//! Segments and journeys bench, through the running host over HTTP with durability on:
//! the latency from an event's acknowledgement to its `Segment Entered` event in the log at a
//! fixed offered rate; the sustained end-to-end rate (acknowledged, applied through profiles
//! and decided by every segment) beside the same events through a host without segments, in
//! the same run; a recompute of many contacts against a trait rule; journey steps and timers
//! with five journeys live on that host (steps taken while a fresh load runs through every
//! stage, and timers that all come due at once, fired while a journey is resumed).
//!
//! Run: `scripts/build-plugins.sh && cargo bench -p tessera-tests --bench segments [-- --quick]`

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::StatusCode;
use serde_json::{Value, json};
use tessera_tests::{Api, TestHost, percentile, resident_bytes};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BATCH: usize = 100;
const CLIENTS: usize = 16;

/// Unix microseconds on the wall clock the host stamps `received_at` with.
fn wall_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_micros() as i64
}

/// Event `i` of the sustained load: identifies (traits the trait segments read) and orders
/// (what the windowed segments count), spread over `users` users named `{prefix}-{n}`; the
/// prefix keeps message ids apart from another load's, which ingest would drop as repeats.
fn event(prefix: &str, i: usize, users: usize) -> Value {
    let user = format!("{prefix}-{}", i % users);
    if i.is_multiple_of(4) {
        json!({ "type": "identify", "userId": user, "messageId": format!("{prefix}-e-{i}"),
                "traits": { "plan": if i.is_multiple_of(8) { "pro" } else { "free" }, "country": "DE",
                            "score": i % 100, "email": format!("{user}@example.com") } })
    } else {
        json!({ "type": "track", "userId": user, "event": "Order Completed",
                "messageId": format!("{prefix}-e-{i}"),
                "properties": { "order_id": format!("{prefix}-o-{i}"), "total": (i % 200) as f64, "currency": "USD" } })
    }
}

fn batches(events: impl Iterator<Item = Value>) -> Vec<Vec<u8>> {
    let events: Vec<Value> = events.collect();
    events
        .chunks(BATCH)
        .map(|chunk| serde_json::to_vec(&json!({ "batch": chunk })).expect("body"))
        .collect()
}

/// Posts every body to `/v1/batch` from `CLIENTS` clients at once.
async fn post_all(api: &Api, key: &str, bodies: Vec<Vec<u8>>) {
    let bodies = Arc::new(bodies);
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (client, url, key, bodies) = (
                reqwest::Client::new(),
                format!("{}/v1/batch", api.base),
                key.to_string(),
                bodies.clone(),
            );
            tokio::spawn(async move {
                for body in bodies.iter().skip(c).step_by(CLIENTS) {
                    let r = client
                        .post(&url)
                        .basic_auth(&key, Some(""))
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await
                        .expect("send");
                    assert!(r.status().is_success(), "{}", r.status());
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("client");
    }
}

/// Waits until every logged event is applied by the profile stage and, with `segments`,
/// decided by the segment stage (which appends its own events, so twice in a row); returns
/// the last logged sequence.
async fn wait_caught_up(api: &Api, segments: bool) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(1_800);
    let mut settled = 0;
    loop {
        let (_, status) = api.get("/v1/status").await;
        let done =
            status["profiles"]["behind"] == 0 && (!segments || status["segments"]["behind"] == 0);
        settled = if done { settled + 1 } else { 0 };
        if settled == 2 {
            return status["event_log"]["last_seq"].as_u64().expect("last_seq");
        }
        assert!(Instant::now() < deadline, "never caught up: {status}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The ten segments: five on traits, five on orders in a window.
fn segment_defs() -> Vec<Value> {
    let traits = [
        ("pro", json!({ "trait": "plan", "equals": "pro" })),
        ("germany", json!({ "trait": "country", "equals": "DE" })),
        ("high-score", json!({ "trait": "score", "gt": 50 })),
        ("has-email", json!({ "trait": "email", "exists": true })),
        (
            "example-mail",
            json!({ "trait": "email", "contains": "@example.com" }),
        ),
    ];
    let windows = [
        ("buyer-1d", 1, 1, 0.0),
        ("repeat-7d", 2, 7, 0.0),
        ("big-spender", 2, 30, 100.0),
        ("loyal-30d", 5, 30, 0.0),
        ("whale-30d", 3, 30, 150.0),
    ];
    let mut defs: Vec<Value> = traits
        .into_iter()
        .map(|(id, params)| json!({ "id": id, "rule": "trait-rule", "params": params }))
        .collect();
    defs.extend(windows.into_iter().map(|(id, n, days, over)| {
        json!({ "id": id, "rule": "event-window", "params": window_params(n, days, over) })
    }));
    defs
}

/// "Performed `Order Completed` at least `n` times within `days` days, each with a total
/// above `over`".
fn window_params(n: u64, days: u64, over: f64) -> Value {
    json!({ "event": "Order Completed", "at_least": n, "within": { "days": days },
            "where": { "property": "total", "gt": over } })
}

async fn create(api: &Api, path: &str, body: &Value) {
    let (status, answer) = api.post(path, body).await;
    assert_eq!(status, StatusCode::CREATED, "{path}: {answer}");
}

/// Sustained: `total` events, acknowledged and applied end to end; events/s.
async fn sustained(host: &TestHost, key: &str, total: usize, users: usize, segments: bool) -> f64 {
    let bodies = batches((0..total).map(|i| event("user", i, users)));
    let started = Instant::now();
    post_all(&host.api, key, bodies).await;
    wait_caught_up(&host.api, segments).await;
    total as f64 / started.elapsed().as_secs_f64()
}

/// Offers `rate` identifies a second for `seconds`, each making a new contact that enters the
/// `pro` segment; returns p50 and p99 of acknowledgement -> `Segment Entered` in the log.
async fn entered_latency(
    host: &TestHost,
    key: &str,
    rate: u64,
    seconds: u64,
) -> (Duration, Duration, usize) {
    let total = (rate * seconds) as usize;
    let client = reqwest::Client::new();
    let bodies: Vec<Vec<u8>> = (0..total)
        .map(|i| {
            serde_json::to_vec(
                &json!({ "userId": format!("lat-{rate}-{i}"), "traits": { "plan": "pro" } }),
            )
            .expect("body")
        })
        .collect();
    let interval = Duration::from_nanos(1_000_000_000 / rate);
    let in_flight = Arc::new(tokio::sync::Semaphore::new(512));
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(total);
    for (i, body) in bodies.into_iter().enumerate() {
        tokio::time::sleep_until(start + interval * i as u32).await;
        let (client, url, key, in_flight) = (
            client.clone(),
            format!("{}/v1/identify", host.api.base),
            key.to_string(),
            in_flight.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let _slot = in_flight.acquire().await.expect("semaphore");
            let r = client
                .post(url)
                .basic_auth(&key, Some(""))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .expect("send");
            assert!(r.status().is_success());
            wall_micros()
        }));
    }
    let mut acked = Vec::with_capacity(total);
    for t in tasks {
        acked.push(t.await.expect("client"));
    }
    wait_caught_up(&host.api, true).await;
    let mut latencies = Vec::with_capacity(total);
    for (i, ack) in acked.into_iter().enumerate() {
        let entered = entered_at(&host.api, &format!("lat-{rate}-{i}"), "pro").await;
        // `received_at` has millisecond precision: an entry in the same millisecond as the
        // acknowledgement reads as up to 1 ms early.
        latencies.push(Duration::from_micros((entered - ack).max(0) as u64));
    }
    latencies.sort();
    (
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        total,
    )
}

/// When user `user`'s `Segment Entered` event for `segment` was logged, Unix microseconds.
async fn entered_at(api: &Api, user: &str, segment: &str) -> i64 {
    let (status, contact) = api
        .get(&format!("/v1/contacts?identity=user_id:{user}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{contact}");
    let id = contact["contacts"][0]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no contact {user}: {contact}"));
    let (_, events) = api.get(&format!("/v1/contacts/{id}/events")).await;
    let entered = events["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| &e["event"])
        .find(|e| e["event"] == "Segment Entered" && e["properties"]["segment_id"] == segment)
        .unwrap_or_else(|| panic!("{user} never entered {segment}: {events}"));
    let at = entered["received_at"].as_str().expect("received_at");
    let at = time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
        .expect("RFC 3339");
    (at.unix_timestamp_nanos() / 1_000) as i64
}

/// Creates a trait segment over `contacts` contacts already applied and times its recompute;
/// contacts/s and the process's peak resident memory while it ran.
async fn recompute(host: &TestHost, key: &str, contacts: usize) -> (f64, u64, u64) {
    let bodies = batches((0..contacts).map(|i| {
        json!({ "type": "identify", "userId": format!("many-{i}"), "messageId": format!("many-{i}"),
                "traits": { "tier": if i.is_multiple_of(2) { "gold" } else { "silver" } } })
    }));
    post_all(&host.api, key, bodies).await;
    wait_caught_up(&host.api, true).await;
    let before = resident_bytes();
    let peak = Arc::new(AtomicU64::new(before));
    let running = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (peak, running) = (peak.clone(), running.clone());
        std::thread::spawn(move || {
            while running.load(Ordering::Relaxed) {
                peak.fetch_max(resident_bytes(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let started = Instant::now();
    create(
        &host.api,
        "/v1/segments",
        &json!({ "id": "gold", "rule": "trait-rule", "params": { "trait": "tier", "equals": "gold" } }),
    )
    .await;
    loop {
        let (_, segment) = host.api.get("/v1/segments/gold").await;
        if segment["recompute"]["state"] == "done" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1_800),
            "recompute never finished: {segment}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let rate = contacts as f64 / started.elapsed().as_secs_f64();
    running.store(false, Ordering::Relaxed);
    sampler.join().expect("sampler");
    (rate, before, peak.load(Ordering::Relaxed))
}

/// The five journeys, started by what the load does: big orders (a branch on a trait and a
/// send), entries into three of the segments (short waits, trait updates, branches on
/// segments, sends), and `Drain Started` events (a wait of `hold`, then a branch, a trait
/// update and a send), whose timers [`timer_drain`] fires all at once.
fn journey_defs(hold: &str) -> Vec<Value> {
    let send =
        |template: &str| json!({ "send": { "channel": "webhook-channel", "template": template } });
    vec![
        json!({ "id": "big-order", "reentry": "always",
                "trigger": { "event": "Order Completed", "where": [{ "property": "total", "gt": 150 }] },
                "steps": [
                    { "branch": { "all": [{ "trait": "plan", "equals": "pro" }], "then": "pro-thanks" } },
                    send("thanks"),
                    { "exit": {} },
                    { "id": "pro-thanks", "send": { "channel": "webhook-channel", "template": "pro-thanks" } }
                ] }),
        json!({ "id": "new-big-spender", "trigger": { "segment": "big-spender" },
                "steps": [
                    { "wait": { "duration": "1s" } },
                    { "update_traits": { "big_spender": true } },
                    send("big-spender")
                ] }),
        json!({ "id": "pro-welcome", "trigger": { "segment": "pro" },
                "steps": [
                    { "wait": { "duration": "500ms" } },
                    { "branch": { "all": [{ "in_segment": "germany" }], "then": "de-mail" } },
                    { "exit": {} },
                    { "id": "de-mail", "send": { "channel": "webhook-channel", "template": "willkommen" } }
                ] }),
        json!({ "id": "repeat-buyer", "trigger": { "segment": "repeat-7d" },
                "steps": [
                    { "update_traits": { "repeat_buyer": true } },
                    { "wait": { "duration": "1s" } },
                    send("come-back")
                ] }),
        json!({ "id": "drain", "reentry": "always", "trigger": { "event": "Drain Started" },
                "steps": [
                    { "id": "hold", "wait": { "duration": hold } },
                    { "branch": { "all": [{ "trait": "plan", "equals": "pro" }], "then": "pro-drain" } },
                    { "update_traits": { "drained": true } },
                    send("drained"),
                    { "exit": {} },
                    { "id": "pro-drain", "send": { "channel": "webhook-channel", "template": "pro-drained" } }
                ] }),
    ]
}

/// The journeys started by the load (every one but `drain`).
const LOAD_JOURNEYS: [&str; 4] = [
    "big-order",
    "new-big-spender",
    "pro-welcome",
    "repeat-buyer",
];

/// The per-step counts of a journey's current version.
async fn journey_steps(api: &Api, id: &str) -> Vec<Value> {
    let (status, journey) = api.get(&format!("/v1/journeys/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{journey}");
    journey["steps"].as_array().expect("steps").clone()
}

/// `field` summed over `steps` (only those of type `kind`, when given).
fn step_sum(steps: &[Value], field: &str, kind: Option<&str>) -> u64 {
    steps
        .iter()
        .filter(|s| kind.is_none_or(|k| s["type"] == k))
        .map(|s| s[field].as_u64().expect("count"))
        .sum()
}

/// Waits until profiles, segments and journeys have caught up with the log and no run of
/// `journeys` is waiting, twice in a row (each stage may log events another reads).
async fn wait_journeys_at_rest(api: &Api, journeys: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(1_800);
    let mut settled = 0;
    while settled < 2 {
        let (_, status) = api.get("/v1/status").await;
        let mut done = status["profiles"]["behind"] == 0
            && status["segments"]["behind"] == 0
            && status["journeys"]["behind"] == 0;
        for id in journeys {
            done = done && step_sum(&journey_steps(api, id).await, "waiting", None) == 0;
        }
        settled = if done { settled + 1 } else { 0 };
        assert!(
            Instant::now() < deadline,
            "journeys never at rest: {status}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// With the five journeys live, posts `total` load events over `users` fresh users and times
/// until every stage has caught up and every run they started is at rest (the last short
/// waits included). Returns runs started, steps taken, timers fired and seconds.
async fn journey_load(
    host: &TestHost,
    key: &str,
    total: usize,
    users: usize,
) -> (u64, u64, u64, f64) {
    let bodies = batches((0..total).map(|i| event("journey-user", i, users)));
    let started = Instant::now();
    post_all(&host.api, key, bodies).await;
    wait_journeys_at_rest(&host.api, &LOAD_JOURNEYS).await;
    let seconds = started.elapsed().as_secs_f64();
    let (mut runs, mut steps, mut timers) = (0, 0, 0);
    for id in LOAD_JOURNEYS {
        let counts = journey_steps(&host.api, id).await;
        runs += counts[0]["entered"].as_u64().expect("entered");
        steps += step_sum(&counts, "entered", None);
        timers += step_sum(&counts, "completed", Some("wait"))
            + step_sum(&counts, "exited", Some("wait"));
    }
    (runs, steps, timers, seconds)
}

/// Starts `users` runs of `drain`, each waiting `hold_ms`; pauses the journey once they all
/// wait, lets every timer come due, then resumes it and times until none waits: every timer
/// due at once, fired in due order, each run moved on through its remaining steps. Returns
/// timers fired, the steps they took and seconds.
async fn timer_drain(host: &TestHost, key: &str, users: usize, hold_ms: u64) -> (u64, u64, f64) {
    let bodies = batches((0..users).map(|i| {
        json!({ "type": "track", "userId": format!("journey-user-{i}"), "event": "Drain Started",
                "messageId": format!("drain-{i}"), "properties": {} })
    }));
    let posted = Instant::now();
    post_all(&host.api, key, bodies).await;
    loop {
        let hold = &journey_steps(&host.api, "drain").await[0];
        if hold["entered"] == users as u64 {
            break;
        }
        assert!(
            posted.elapsed() < Duration::from_secs(600),
            "runs never started: {hold}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (status, body) = host.api.post("/v1/journeys/drain/pause", &json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let hold = journey_steps(&host.api, "drain").await[0].clone();
    assert_eq!(
        hold["completed"], 0,
        "a timer fired before the pause: hold longer ({hold})"
    );
    tokio::time::sleep(Duration::from_millis(hold_ms + 100)).await;
    let waiting = hold["waiting"].as_u64().expect("waiting");
    let started = Instant::now();
    let (status, body) = host.api.post("/v1/journeys/drain/resume", &json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    loop {
        let steps = journey_steps(&host.api, "drain").await;
        if steps[0]["waiting"] == 0 {
            let seconds = started.elapsed().as_secs_f64();
            let taken =
                step_sum(&steps, "entered", None) - steps[0]["entered"].as_u64().expect("n");
            return (waiting, taken, seconds);
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "timers never fired: {steps:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::main]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let scale = if quick { 10 } else { 1 };
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);

    // Profiles alone, then the same events with ten segments, one after the other.
    let total = 200_000 / scale;
    let users = 5_000;
    let plain = TestHost::start().await;
    let plain_key = plain.api.create_source("bench").await;
    let plain_rate = sustained(&plain, &plain_key, total, users, false).await;
    drop(plain.stop().await);

    let host = TestHost::start().await;
    let key = host.api.create_source("bench").await;
    host.api.install("trait-rule", "trait-rule").await;
    host.api.install("event-window", "event-window").await;
    for def in segment_defs() {
        create(&host.api, "/v1/segments", &def).await;
    }
    let with_rate = sustained(&host, &key, total, users, true).await;

    let seconds = if quick { 1 } else { 5 };
    let mut latency = Vec::new();
    for rate in [1_000, 10_000] {
        latency.push((rate, entered_latency(&host, &key, rate, seconds).await));
    }

    host.api.upload("webhook-channel").await;
    let hold_ms = 10_000;
    for def in journey_defs(&format!("{hold_ms}ms")) {
        create(&host.api, "/v1/journeys", &def).await;
    }
    let (journey_total, journey_users) = (50_000 / scale, 5_000 / scale);
    let (runs, steps, load_timers, load_seconds) =
        journey_load(&host, &key, journey_total, journey_users).await;
    let (drained, drain_steps, drain_seconds) =
        timer_drain(&host, &key, journey_users, hold_ms).await;

    let contacts = 1_000_000 / scale;
    let (recompute_rate, rss_before, rss_peak) = recompute(&host, &key, contacts).await;

    println!(
        "# Tessera segments bench{} (10 segments: 5 trait, 5 windowed; 5 journeys)",
        if quick { " (quick)" } else { "" }
    );
    println!("| case | figure |");
    println!("|---|---|");
    println!(
        "| end to end, profiles only, {total} events over {users} users, {CLIENTS} clients x {BATCH} | {plain_rate:.0} events/s |"
    );
    println!(
        "| end to end, profiles and 10 segments, same events | {with_rate:.0} events/s ({:.2} of profiles only) |",
        with_rate / plain_rate
    );
    for (rate, (p50, p99, n)) in latency {
        println!(
            "| ack -> `Segment Entered` in the log, {rate} identifies/s offered, {n} contacts | p50 {:.2} ms, p99 {:.2} ms |",
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3
        );
    }
    println!(
        "| journeys: {journey_total} events over {journey_users} new users with 5 journeys live, posted -> every stage caught up and every run at rest | {:.0} journey steps/s ({steps} steps of {runs} runs, {load_timers} timers fired, in {load_seconds:.1} s) |",
        steps as f64 / load_seconds
    );
    println!(
        "| journeys: {drained} timers due at once (a paused journey resumed) -> none waiting | {:.0} timers fired/s ({drain_steps} steps after them, {:.0} steps/s, in {drain_seconds:.2} s) |",
        drained as f64 / drain_seconds,
        drain_steps as f64 / drain_seconds
    );
    println!(
        "| recompute of {contacts} contacts against a trait rule | {recompute_rate:.0} contacts/s ({:.1} s); RSS {:.0} MiB before, peak {:.0} MiB |",
        contacts as f64 / recompute_rate,
        mib(rss_before),
        mib(rss_peak)
    );
    drop(host.stop().await);
}
