//! Per-version cost accounting: calls, failures by cause, a latency histogram, peak memory,
//! kept in atomics for the API and mirrored to Prometheus metrics labelled by plugin and version.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

use super::error::CallFailure;

/// Sub-buckets per power of two: bucket bounds grow by 2^(1/4), about 19% each.
const STEPS: u32 = 4;
/// Buckets up to 2^32 µs (over an hour), more than any deadline.
const BUCKETS: usize = (32 * STEPS) as usize;

/// A lock-free latency histogram in microseconds with ~19% wide buckets.
pub struct LatencyHistogram {
    counts: [AtomicU64; BUCKETS],
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// The upper bound of bucket `i`, microseconds.
fn bucket_bound(i: usize) -> u64 {
    2f64.powf((i as f64 + 1.0) / STEPS as f64).ceil() as u64
}

impl LatencyHistogram {
    /// Counts one observation.
    pub fn record(&self, micros: u64) {
        let i = if micros <= 1 {
            0
        } else {
            ((micros as f64).log2() * STEPS as f64).floor() as usize
        };
        self.counts[i.min(BUCKETS - 1)].fetch_add(1, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// The `q` quantile (0..=1), as the upper bound of its bucket; 0 without observations.
    pub fn quantile(&self, q: f64) -> u64 {
        let counts: Vec<u64> = self
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return bucket_bound(i);
            }
        }
        bucket_bound(BUCKETS - 1)
    }
}

/// Per-version call counters, kept while the version is loaded.
pub struct CallStats {
    plugin: String,
    version: String,
    calls: AtomicU64,
    failures: AtomicU64,
    total_micros: AtomicU64,
    max_micros: AtomicU64,
    peak_memory: AtomicU64,
    fuel: AtomicU64,
    metered: std::sync::atomic::AtomicBool,
    latency: LatencyHistogram,
    by_cause: Mutex<BTreeMap<&'static str, u64>>,
    metrics: VersionMetrics,
}

/// Prometheus handles of one version, resolved once.
struct VersionMetrics {
    calls: metrics::Counter,
    seconds: metrics::Histogram,
    peak_memory: metrics::Gauge,
    fuel: metrics::Counter,
}

/// A point-in-time copy of [`CallStats`], for the API.
#[derive(Debug, Clone, Serialize)]
pub struct CallStatsSnapshot {
    /// Calls started.
    pub calls: u64,
    /// Calls that failed with a [`super::CallError`].
    pub failures: u64,
    /// Failures by cause code.
    pub failures_by_cause: BTreeMap<&'static str, u64>,
    /// Mean call latency, microseconds.
    pub mean_micros: u64,
    /// Median call latency (bucket bound, ~19% resolution), microseconds.
    pub p50_micros: u64,
    /// 99th percentile call latency, microseconds.
    pub p99_micros: u64,
    /// Slowest call, microseconds.
    pub max_micros: u64,
    /// Largest linear memory seen, bytes.
    pub peak_memory_bytes: u64,
    /// Fuel (about one unit per wasm instruction) used by all calls, when the host meters it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fuel_consumed: Option<u64>,
}

impl CallStats {
    /// Counters for one version; its metrics carry `plugin`, `version` and `sha` labels.
    pub fn new(plugin: &str, version: &str, sha256: &str) -> Self {
        let labels = [
            ("plugin", plugin.to_string()),
            ("version", version.to_string()),
            ("sha", sha256.chars().take(12).collect::<String>()),
        ];
        Self {
            plugin: plugin.to_string(),
            version: version.to_string(),
            calls: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            total_micros: AtomicU64::new(0),
            max_micros: AtomicU64::new(0),
            peak_memory: AtomicU64::new(0),
            fuel: AtomicU64::new(0),
            metered: std::sync::atomic::AtomicBool::new(false),
            latency: LatencyHistogram::default(),
            by_cause: Mutex::new(BTreeMap::new()),
            metrics: VersionMetrics {
                calls: metrics::counter!("tessera_plugin_calls_total", &labels),
                seconds: metrics::histogram!("tessera_plugin_call_duration_seconds", &labels),
                peak_memory: metrics::gauge!("tessera_plugin_peak_memory_bytes", &labels),
                fuel: metrics::counter!("tessera_plugin_fuel_consumed_total", &labels),
            },
        }
    }

    /// Records one finished call; `fuel` is what it used when the engine meters fuel.
    pub fn record(
        &self,
        elapsed: Duration,
        peak_memory: usize,
        fuel: Option<u64>,
        failure: Option<&CallFailure>,
    ) {
        if let Some(used) = fuel {
            self.metered.store(true, Ordering::Relaxed);
            self.fuel.fetch_add(used, Ordering::Relaxed);
            self.metrics.fuel.increment(used);
        }
        let micros = elapsed.as_micros() as u64;
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.total_micros.fetch_add(micros, Ordering::Relaxed);
        self.max_micros.fetch_max(micros, Ordering::Relaxed);
        self.latency.record(micros);
        let before = self
            .peak_memory
            .fetch_max(peak_memory as u64, Ordering::Relaxed);
        self.metrics.calls.increment(1);
        self.metrics.seconds.record(elapsed.as_secs_f64());
        if peak_memory as u64 > before {
            self.metrics.peak_memory.set(peak_memory as f64);
        }
        if let Some(f) = failure {
            self.record_failure(f);
        }
    }

    /// Records a failure found after the call (a contract violation in its output).
    pub fn record_failure(&self, failure: &CallFailure) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        *self
            .by_cause
            .lock()
            .expect("stats lock")
            .entry(failure.code())
            .or_default() += 1;
        metrics::counter!(
            "tessera_plugin_failures_total",
            "plugin" => self.plugin.clone(),
            "version" => self.version.clone(),
            "cause" => failure.code(),
        )
        .increment(1);
    }

    /// Copies the counters.
    pub fn snapshot(&self) -> CallStatsSnapshot {
        let calls = self.calls.load(Ordering::Relaxed);
        CallStatsSnapshot {
            calls,
            failures: self.failures.load(Ordering::Relaxed),
            failures_by_cause: self.by_cause.lock().expect("stats lock").clone(),
            mean_micros: self
                .total_micros
                .load(Ordering::Relaxed)
                .checked_div(calls)
                .unwrap_or(0),
            p50_micros: self.latency.quantile(0.50),
            p99_micros: self.latency.quantile(0.99),
            max_micros: self.max_micros.load(Ordering::Relaxed),
            peak_memory_bytes: self.peak_memory.load(Ordering::Relaxed),
            fuel_consumed: self
                .metered
                .load(Ordering::Relaxed)
                .then(|| self.fuel.load(Ordering::Relaxed)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_land_within_a_bucket_of_the_truth() {
        let h = LatencyHistogram::default();
        for micros in 1..=1000 {
            h.record(micros);
        }
        let p50 = h.quantile(0.5);
        let p99 = h.quantile(0.99);
        assert!((500..=600).contains(&p50), "p50 {p50}");
        assert!((990..=1200).contains(&p99), "p99 {p99}");
        assert_eq!(h.count(), 1000);
        assert_eq!(LatencyHistogram::default().quantile(0.99), 0);
    }

    #[test]
    fn failures_are_counted_by_cause() {
        let stats = CallStats::new("p", "1.0.0", "abcdef");
        stats.record(Duration::from_micros(10), 1 << 16, None, None);
        stats.record(
            Duration::from_micros(30),
            1 << 20,
            Some(500),
            Some(&CallFailure::StackOverflow),
        );
        let s = stats.snapshot();
        assert_eq!((s.calls, s.failures), (2, 1));
        assert_eq!(s.failures_by_cause.get("stack_overflow"), Some(&1));
        assert_eq!(s.peak_memory_bytes, 1 << 20);
        assert_eq!(s.max_micros, 30);
        assert_eq!(s.fuel_consumed, Some(500));
    }
}
