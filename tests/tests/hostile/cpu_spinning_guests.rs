//! Guests that spin the CPU until their deadline must not freeze the API: `/healthz`,
//! `/v1/track` and the admin API keep answering while more spinners than cores run, and
//! while a breaker's half-open probe spins.

// Each test holds its turn (a std mutex) for its whole length, awaits included, on purpose.
#![allow(clippy::await_holding_lock)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use tessera_tests::process::{HostOptions, HostProcess};

/// More spinners than the machine has cores (the old host ran one async worker per core).
const SPINNERS: usize = 8;
/// Each spinner's deadline.
const DEADLINE_MS: u64 = 4_000;
/// The slowest answer any probe may take while guests spin. The old host stalled for the
/// spinners' whole deadline (8.8 s with 8 calls of 3 s; 31 s with 30 s deadlines).
const PROBE_BOUND: Duration = Duration::from_millis(1_000);

/// The `hostile` guest as a connector whose calls may spin for [`DEADLINE_MS`].
fn spinner_manifest(id: &str) -> String {
    format!(
        "id = \"{id}\"\nkind = \"connector\"\nversion = \"0.1.0\"\ncontract = \"0.2\"\n\
         [limits]\nmemory_mb = 32\ntimeout_ms = {DEADLINE_MS}\n"
    )
}

/// Slowest answer of each probe, while `busy` holds.
#[derive(Debug, Default, Clone, Copy)]
struct Worst {
    healthz: Duration,
    track: Duration,
    admin: Duration,
    rounds: usize,
}

/// Probes `/healthz`, `/v1/track` and an admin route in turn until `stop`, keeping the worst
/// latency of each; every probe must succeed.
async fn probe_until(host: Arc<HostProcess>, write_key: String, stop: Arc<AtomicBool>) -> Worst {
    let mut worst = Worst::default();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("client");
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let health = client
            .get(format!("{}/healthz", host.base))
            .send()
            .await
            .expect("healthz answered");
        assert_eq!(health.status(), StatusCode::OK);
        worst.healthz = worst.healthz.max(started.elapsed());

        let started = Instant::now();
        let (status, body) = host
            .segment(
                "/v1/track",
                &write_key,
                &json!({ "userId": "probe", "event": "Probe", "messageId": format!("m{}", worst.rounds) }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        worst.track = worst.track.max(started.elapsed());

        let started = Instant::now();
        let (status, body) = host.get("/v1/plugins").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        worst.admin = worst.admin.max(started.elapsed());

        worst.rounds += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    worst
}

/// Fires `n` `/loop` calls at once; returns their statuses and causes.
async fn spin(host: &Arc<HostProcess>, id: &str, n: usize) -> Vec<(StatusCode, String)> {
    let calls: Vec<_> = (0..n)
        .map(|_| {
            let (host, id) = (host.clone(), id.to_string());
            tokio::spawn(async move {
                let (status, out) = host.webhook(&id, "/loop", "").await;
                let cause = out["error"]["cause"]
                    .as_str()
                    .or(out["error"]["code"].as_str())
                    .unwrap_or_default()
                    .to_string();
                (status, cause)
            })
        })
        .collect();
    let mut out = Vec::new();
    for call in calls {
        out.push(call.await.expect("spinner task"));
    }
    out
}

/// Runs `attack` while probing; returns the probes' worst latencies and the attack's output.
async fn while_probing<T>(
    host: &Arc<HostProcess>,
    write_key: &str,
    attack: impl Future<Output = T>,
) -> (Worst, T) {
    let stop = Arc::new(AtomicBool::new(false));
    let probes = tokio::spawn(probe_until(
        host.clone(),
        write_key.to_string(),
        stop.clone(),
    ));
    let out = attack.await;
    stop.store(true, Ordering::Relaxed);
    (probes.await.expect("probe task"), out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn spinning_guests_do_not_stall_health_tracking_or_admin() {
    let _turn = crate::serial();
    let host = Arc::new(HostProcess::start(HostOptions {
        args: vec!["--breaker-cool-down-secs".into(), "1".into()],
        ..Default::default()
    }));
    let sha = host
        .upload_with("hostile", &spinner_manifest("cpu-spinner"))
        .await;
    host.activate("cpu-spinner", &sha).await;
    let write_key = host.create_source("cpu-probe").await;
    let (status, out) = host.webhook("cpu-spinner", "/ok", "warm").await;
    assert_eq!(status, StatusCode::OK, "{out}");

    // More spinners than cores, each until its deadline.
    let started = Instant::now();
    let (worst, outcomes) = while_probing(&host, &write_key, async {
        // Let the probes take a baseline first.
        tokio::time::sleep(Duration::from_millis(200)).await;
        spin(&host, "cpu-spinner", SPINNERS).await
    })
    .await;
    eprintln!(
        "{SPINNERS} spinners of {DEADLINE_MS} ms answered in {:?}; worst probe latencies: {worst:?}",
        started.elapsed()
    );
    assert!(worst.rounds >= 3, "the probes ran: {worst:?}");
    for (what, latency) in [
        ("/healthz", worst.healthz),
        ("/v1/track", worst.track),
        ("admin", worst.admin),
    ] {
        assert!(
            latency < PROBE_BOUND,
            "{what} took {latency:?} while guests spun (bound {PROBE_BOUND:?}): {worst:?}"
        );
    }
    // They all ran at once, each until its own deadline.
    for (status, cause) in &outcomes {
        assert_eq!(
            (*status, cause.as_str()),
            (StatusCode::BAD_GATEWAY, "deadline"),
            "every spinner ends at its deadline: {outcomes:?}"
        );
    }

    // Eight failures opened the breaker; after its cool-down one half-open probe spins
    // while the other calls are refused at once.
    let (_, view) = host.get("/v1/plugins/cpu-spinner").await;
    assert_eq!(view["breaker"]["state"], "open", "{view}");
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let (worst, outcomes) = while_probing(&host, &write_key, async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        spin(&host, "cpu-spinner", SPINNERS).await
    })
    .await;
    eprintln!("half-open probe: worst probe latencies: {worst:?}; outcomes {outcomes:?}");
    let probes = outcomes.iter().filter(|(_, c)| c == "deadline").count();
    let refused = outcomes.iter().filter(|(_, c)| c == "breaker_open").count();
    assert_eq!(
        (probes, refused),
        (1, SPINNERS - 1),
        "one probe, the rest refused: {outcomes:?}"
    );
    for (what, latency) in [
        ("/healthz", worst.healthz),
        ("/v1/track", worst.track),
        ("admin", worst.admin),
    ] {
        assert!(
            latency < PROBE_BOUND,
            "{what} took {latency:?} during a half-open probe (bound {PROBE_BOUND:?}): {worst:?}"
        );
    }
}
