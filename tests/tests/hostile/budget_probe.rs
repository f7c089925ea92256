//! A neighbour that keeps calling `/v1/track` while an attack runs and reports its slowest answer.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

/// `/v1/track` calls in a loop until [`TrackProbe::stop`].
pub struct TrackProbe {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<(usize, usize, Duration)>,
}

impl TrackProbe {
    /// Starts calling `/v1/track` on the host at `base` with `write_key`.
    pub fn start(base: &str, write_key: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, url, key) = (
            stop.clone(),
            format!("{base}/v1/track"),
            write_key.to_string(),
        );
        let client = reqwest::Client::new();
        let task = tokio::spawn(async move {
            let (mut ok, mut failed, mut slowest) = (0, 0, Duration::ZERO);
            let mut n = 0u64;
            while !flag.load(Ordering::Relaxed) {
                n += 1;
                let started = Instant::now();
                let rb = client
                    .post(&url)
                    .basic_auth(&key, Some(""))
                    .json(&json!({ "userId": "probe", "event": "Probe", "messageId": format!("probe-{n}-{:?}", Instant::now()) }))
                    .timeout(Duration::from_secs(30));
                match rb.send().await {
                    Ok(r) if r.status().is_success() => ok += 1,
                    _ => failed += 1,
                }
                slowest = slowest.max(started.elapsed());
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (ok, failed, slowest)
        });
        Self { stop, task }
    }

    /// Stops the loop; returns (answered, failed, slowest answer).
    pub async fn stop(self) -> (usize, usize, Duration) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("probe task")
    }
}

/// A plugin failure's `cause`, or a panic that shows what came back instead.
pub fn cause(out: &serde_json::Value) -> &str {
    out["error"]["cause"]
        .as_str()
        .unwrap_or_else(|| panic!("expected a typed plugin failure, got {out}"))
}

/// The `outcome` property of the first event a console call returned.
pub fn outcome(out: &serde_json::Value) -> String {
    let props = &out["ok"]["events"][0]["properties"];
    assert!(props.is_object(), "expected an event, got {out}");
    props["outcome"].as_str().unwrap_or_default().to_string()
}

/// MiB, for messages.
pub fn mib(bytes: u64) -> u64 {
    bytes >> 20
}

/// The host's peak resident memory stayed within `bound` bytes of `baseline`, and the
/// neighbour's `/v1/track` calls (`probe`: answered, failed, slowest) all succeeded quickly.
pub fn assert_host_held(baseline: u64, peak: u64, bound: u64, probe: (usize, usize, Duration)) {
    let (answered, failed, slowest) = probe;
    assert!(
        peak.saturating_sub(baseline) < bound,
        "peak {} MiB from a baseline of {} MiB (bound +{} MiB)",
        mib(peak),
        mib(baseline),
        mib(bound)
    );
    assert_eq!(failed, 0, "/v1/track failed while the attack ran");
    assert!(
        answered > 0 && slowest < Duration::from_secs(5),
        "slowest /v1/track {slowest:?}"
    );
}
