//! Canary and shadow runs: a candidate version beside the live one, who gets which call,
//! per-arm counters, the automatic-rollback verdict, and the shadow run's differences.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::runtime::{LatencyHistogram, SandboxedPlugin};

/// Canary settings given on activation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanaryPlan {
    /// Share of calls the candidate takes, percent (0 < p <= 100).
    pub percent: f64,
    /// Roll back when the candidate's error rate exceeds the live version's (same window)
    /// by more than this (0..1). Errors are traps, deadlines, limits and errors the plugin
    /// returns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_error_rate: Option<f64>,
    /// Roll back when the candidate's p99 latency exceeds this, milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_p99_ms: Option<u64>,
    /// Candidate calls before a verdict is made (default 20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_calls: Option<u64>,
}

/// Default number of candidate calls before the thresholds are judged.
pub const DEFAULT_MIN_CALLS: u64 = 20;
/// Differing outputs a shadow run keeps as samples.
const MAX_SAMPLES: usize = 20;
/// Shadow calls in flight at once; more are skipped (counted) rather than queued.
pub const MAX_SHADOW_IN_FLIGHT: u64 = 64;

impl CanaryPlan {
    /// Checks the numbers are usable.
    pub fn validate(&self) -> Result<(), CanaryPlanError> {
        if !(self.percent > 0.0 && self.percent <= 100.0) {
            return Err(CanaryPlanError::Percent(self.percent));
        }
        if let Some(r) = self.max_error_rate
            && !(0.0..=1.0).contains(&r)
        {
            return Err(CanaryPlanError::ErrorRate(r));
        }
        Ok(())
    }
}

/// A canary plan whose numbers cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CanaryPlanError {
    /// The share of calls is not a percentage above zero.
    #[error("canary percent must be in (0, 100], not {0}")]
    Percent(f64),
    /// The error-rate threshold is not a fraction.
    #[error("max_error_rate must be within 0..1, not {0}")]
    ErrorRate(f64),
}

/// How a candidate runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutMode {
    /// Takes a share of real calls, with effects.
    Canary(CanaryPlan),
    /// Runs on copies of live inputs without effects; outputs are compared.
    Shadow,
}

/// Calls, errors and latency of one side of a rollout, since it started.
#[derive(Default)]
pub struct Arm {
    calls: AtomicU64,
    errors: AtomicU64,
    latency: LatencyHistogram,
}

/// An [`Arm`] as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ArmView {
    /// Calls.
    pub calls: u64,
    /// Calls that failed or returned an error.
    pub errors: u64,
    /// errors / calls.
    pub error_rate: f64,
    /// Median latency, microseconds.
    pub p50_micros: u64,
    /// 99th percentile latency, microseconds.
    pub p99_micros: u64,
    /// Largest linear memory the version has used (since it was loaded), bytes.
    pub peak_memory_bytes: u64,
}

impl Arm {
    /// Counts one call.
    pub fn record(&self, micros: u64, error: bool) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if error {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        self.latency.record(micros);
    }

    fn rate(&self) -> (u64, f64) {
        let calls = self.calls.load(Ordering::Relaxed);
        let errors = self.errors.load(Ordering::Relaxed);
        (calls, errors as f64 / calls.max(1) as f64)
    }

    fn view(&self, plugin: &SandboxedPlugin) -> ArmView {
        let (calls, error_rate) = self.rate();
        ArmView {
            calls,
            errors: self.errors.load(Ordering::Relaxed),
            error_rate,
            p50_micros: self.latency.quantile(0.5),
            p99_micros: self.latency.quantile(0.99),
            peak_memory_bytes: plugin.stats().peak_memory_bytes,
        }
    }
}

/// One input on which live and candidate answered differently.
#[derive(Debug, Clone, Serialize)]
pub struct ShadowSample {
    /// When, Unix milliseconds.
    pub at_ms: u64,
    /// The input, secrets redacted.
    pub input: Value,
    /// The live version's outcome.
    pub live: Value,
    /// The candidate's outcome.
    pub candidate: Value,
    /// HTTP requests the candidate tried (answered by the host's stub, not sent).
    pub candidate_requests: Vec<String>,
}

/// What a shadow run found so far.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ShadowReport {
    /// Inputs run on both versions.
    pub compared: u64,
    /// Identical outcomes.
    pub same: u64,
    /// Different outcomes.
    pub different: u64,
    /// Inputs not run on the candidate because too many shadow calls were in flight.
    pub skipped: u64,
    /// The newest differing inputs, oldest first.
    pub samples: VecDeque<ShadowSample>,
    /// Set when a shadow call panicked in the host: why shadow calls stopped (the live
    /// version keeps serving; abort or promote the run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
}

/// A candidate running beside the live version.
pub struct Rollout {
    /// Canary or shadow.
    pub mode: RolloutMode,
    /// The candidate version.
    pub candidate: Arc<SandboxedPlugin>,
    /// When it started, Unix milliseconds.
    pub started_ms: u64,
    /// Calls on the live version during the rollout.
    pub live_arm: Arm,
    /// Calls on the candidate.
    pub candidate_arm: Arm,
    shadow: Mutex<ShadowReport>,
    shadow_in_flight: AtomicU64,
    ended: AtomicBool,
    keyless: AtomicU64,
}

/// A rollout as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RolloutView {
    /// `canary` or `shadow`.
    pub mode: &'static str,
    /// Canary settings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanaryPlan>,
    /// The candidate's sha256.
    pub candidate: String,
    /// The candidate's manifest version.
    pub candidate_version: String,
    /// Start, Unix milliseconds.
    pub started_ms: u64,
    /// The live version's calls during the rollout.
    pub live: ArmView,
    /// The candidate's calls.
    pub candidate_calls: ArmView,
    /// Shadow comparisons (shadow mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowReport>,
}

/// 64-bit FNV-1a: a stable hash (same on every run and build) for canary routing.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Why a canary whose arms read so must be rolled back, if it must: nothing before the
/// candidate has `min_calls` calls; then its error rate against the live arm's over the same
/// window (only a rise beyond `max_error_rate` counts), then its own p99 against
/// `max_p99_ms` (an absolute limit: a slow live version does not excuse a slow candidate).
fn judge(plan: &CanaryPlan, live: &Arm, candidate: &Arm) -> Option<String> {
    let (calls, rate) = candidate.rate();
    if calls < plan.min_calls.unwrap_or(DEFAULT_MIN_CALLS) {
        return None;
    }
    let (_, live_rate) = live.rate();
    if let Some(max) = plan.max_error_rate
        && rate - live_rate > max
    {
        return Some(format!(
            "error rate {rate:.3} over {calls} calls exceeds the live version's {live_rate:.3} by more than {max}"
        ));
    }
    let p99 = candidate.latency.quantile(0.99);
    match plan.max_p99_ms {
        Some(max_ms) if p99 > max_ms.saturating_mul(1_000) => Some(format!(
            "p99 latency {p99} µs over {calls} calls exceeds {max_ms} ms"
        )),
        _ => None,
    }
}

impl Rollout {
    /// A rollout of `candidate` in `mode`.
    pub fn new(mode: RolloutMode, candidate: Arc<SandboxedPlugin>, started_ms: u64) -> Self {
        Self {
            mode,
            candidate,
            started_ms,
            live_arm: Arm::default(),
            candidate_arm: Arm::default(),
            shadow: Mutex::new(ShadowReport::default()),
            shadow_in_flight: AtomicU64::new(0),
            ended: AtomicBool::new(false),
            keyless: AtomicU64::new(0),
        }
    }

    /// For a canary: does the call with routing key `key` go to the candidate? The same key
    /// always gets the same answer; calls without a key are spread evenly.
    pub fn routes_to_candidate(&self, key: Option<&[u8]>) -> bool {
        let RolloutMode::Canary(plan) = &self.mode else {
            return false;
        };
        let bucket = match key {
            Some(k) => fnv1a(k) % 10_000,
            None => {
                self.keyless
                    .fetch_add(1, Ordering::Relaxed)
                    .wrapping_mul(7_919)
                    % 10_000
            }
        };
        (bucket as f64) < plan.percent * 100.0
    }

    /// For a canary: why the candidate must be rolled back now, if it must. Answers once.
    pub fn verdict(&self) -> Option<String> {
        let RolloutMode::Canary(plan) = &self.mode else {
            return None;
        };
        let reason = judge(plan, &self.live_arm, &self.candidate_arm)?;
        (!self.ended.swap(true, Ordering::AcqRel)).then_some(reason)
    }

    /// Marks the rollout over (promoted or aborted): no further verdicts.
    pub fn end(&self) {
        self.ended.store(true, Ordering::Release);
    }

    /// Reserves a shadow call slot; false when too many are in flight (counted as skipped).
    pub fn begin_shadow(&self) -> bool {
        if self.shadow_stopped() {
            self.shadow
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .skipped += 1;
            return false;
        }
        if self.shadow_in_flight.fetch_add(1, Ordering::AcqRel) >= MAX_SHADOW_IN_FLIGHT {
            self.shadow_in_flight.fetch_sub(1, Ordering::AcqRel);
            self.shadow
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .skipped += 1;
            return false;
        }
        true
    }

    fn shadow_stopped(&self) -> bool {
        self.shadow
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .stopped
            .is_some()
    }

    /// A shadow call was cancelled (the host is stopping): frees its slot.
    pub fn shadow_abandoned(&self) {
        self.shadow_in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    /// A shadow call panicked in the host: frees its slot and stops further shadow calls.
    pub fn shadow_panicked(&self, message: &str) {
        self.shadow_in_flight.fetch_sub(1, Ordering::AcqRel);
        self.shadow
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .stopped = Some(format!(
            "a shadow call panicked ({message}); shadow calls stopped, abort or promote the run"
        ));
    }

    /// Records a shadow comparison and frees its slot.
    pub fn finish_shadow(&self, sample: ShadowSample) {
        self.shadow_in_flight.fetch_sub(1, Ordering::AcqRel);
        let mut report = self.shadow.lock().unwrap_or_else(|e| e.into_inner());
        report.compared += 1;
        if sample.live == sample.candidate {
            report.same += 1;
            return;
        }
        report.different += 1;
        if report.samples.len() == MAX_SAMPLES {
            report.samples.pop_front();
        }
        report.samples.push_back(sample);
    }

    /// The rollout's state; `live` is the slot's live version.
    pub fn view(&self, live: Option<&SandboxedPlugin>) -> RolloutView {
        let (mode, canary) = match &self.mode {
            RolloutMode::Canary(plan) => ("canary", Some(plan.clone())),
            RolloutMode::Shadow => ("shadow", None),
        };
        RolloutView {
            mode,
            canary,
            candidate: self.candidate.spec().sha256.clone(),
            candidate_version: self.candidate.spec().version.clone(),
            started_ms: self.started_ms,
            live: self.live_arm.view(live.unwrap_or(&self.candidate)),
            candidate_calls: self.candidate_arm.view(&self.candidate),
            shadow: matches!(self.mode, RolloutMode::Shadow).then(|| {
                self.shadow
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone()
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_stable_and_spreads() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        let share = (0..10_000)
            .filter(|i| fnv1a(format!("contact-{i}").as_bytes()) % 10_000 < 500)
            .count();
        assert!((350..650).contains(&share), "5% of 10,000 keys: {share}");
    }

    #[test]
    fn plans_are_checked() {
        let plan = |percent| CanaryPlan {
            percent,
            max_error_rate: None,
            max_p99_ms: None,
            min_calls: None,
        };
        assert!(plan(5.0).validate().is_ok());
        assert!(plan(0.0).validate().is_err());
        assert!(plan(101.0).validate().is_err());
    }
    /// An arm with `calls` calls of `micros` each, the first `errors` of them failed.
    fn arm(calls: u64, errors: u64, micros: u64) -> Arm {
        let arm = Arm::default();
        for i in 0..calls {
            arm.record(micros, i < errors);
        }
        arm
    }

    fn canary(max_error_rate: Option<f64>, max_p99_ms: Option<u64>) -> CanaryPlan {
        CanaryPlan {
            percent: 50.0,
            max_error_rate,
            max_p99_ms,
            min_calls: Some(10),
        }
    }

    #[test]
    fn no_verdict_before_the_candidate_has_its_minimum_calls() {
        let plan = canary(Some(0.0), Some(1));
        assert_eq!(judge(&plan, &arm(100, 0, 10), &arm(9, 9, 1_000_000)), None);
        assert!(judge(&plan, &arm(100, 0, 10), &arm(10, 10, 1_000_000)).is_some());
    }

    #[test]
    fn the_error_rule_compares_with_the_live_arm() {
        let plan = canary(Some(0.1), None);
        // As bad as the live version: kept.
        assert_eq!(judge(&plan, &arm(100, 50, 10), &arm(20, 10, 10)), None);
        // Worse, but within the allowed rise (0.30 against 0.25): kept.
        assert_eq!(judge(&plan, &arm(100, 25, 10), &arm(20, 6, 10)), None);
        // Worse by more than the allowed rise (0.50 against 0.25): rolled back.
        let why = judge(&plan, &arm(100, 25, 10), &arm(20, 10, 10)).expect("rolled back");
        assert!(
            why.contains("error rate 0.500") && why.contains("0.250"),
            "{why}"
        );
        // With no live calls yet the live rate counts as 0.
        assert!(judge(&plan, &arm(0, 0, 10), &arm(20, 3, 10)).is_some());
        // Without a threshold errors never decide.
        assert_eq!(
            judge(&canary(None, None), &arm(10, 0, 10), &arm(20, 20, 10)),
            None
        );
    }

    #[test]
    fn the_p99_rule_is_an_absolute_limit_on_the_candidate() {
        let plan = canary(None, Some(50));
        // 98 fast calls and 2 slow ones: the 99th percentile is slow.
        let candidate = arm(98, 0, 10_000);
        for _ in 0..2 {
            candidate.record(80_000, false);
        }
        let why = judge(&plan, &arm(10, 0, 10_000), &candidate).expect("rolled back");
        assert!(
            why.contains("p99 latency") && why.contains("exceeds 50 ms"),
            "{why}"
        );
        // Under the limit: kept, however fast the live arm is.
        assert_eq!(judge(&plan, &arm(100, 0, 1), &arm(100, 0, 40_000)), None);
        // Over it: rolled back, however slow the live arm is.
        assert!(judge(&plan, &arm(100, 0, 900_000), &arm(100, 0, 60_000)).is_some());
    }
}
