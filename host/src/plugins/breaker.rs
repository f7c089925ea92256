//! A circuit breaker per plugin slot: N consecutive failed calls open it; after a cool-down
//! one probe call is let through (half-open) and its outcome closes or re-opens it.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

/// Breaker settings.
#[derive(Debug, Clone, Copy)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker.
    pub failure_threshold: u32,
    /// How long it stays open before a probe.
    pub cool_down: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            cool_down: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

/// The breaker's state as the API shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum BreakerView {
    /// Calls flow; `consecutive_failures` so far.
    Closed {
        /// Failures in a row.
        consecutive_failures: u32,
    },
    /// Calls are refused for `retry_in_ms` more.
    Open {
        /// Milliseconds until a probe is allowed.
        retry_in_ms: u64,
    },
    /// One probe call decides.
    HalfOpen,
}

/// A circuit breaker.
pub struct Breaker {
    config: BreakerConfig,
    state: Mutex<State>,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig) -> Self {
        Self {
            config,
            state: Mutex::new(State::Closed { failures: 0 }),
        }
    }

    /// The state, also after a panic elsewhere poisoned the lock (a lease's drop takes it
    /// while unwinding: a second panic there would abort the process).
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// May a call go through now? `Err` carries the time left open.
    pub fn admit(&self) -> Result<(), Duration> {
        let mut state = self.lock();
        match *state {
            State::Closed { .. } => Ok(()),
            State::Open { until } => {
                let now = Instant::now();
                if now < until {
                    return Err(until - now);
                }
                *state = State::HalfOpen { probing: true };
                Ok(())
            }
            State::HalfOpen { probing: true } => Err(Duration::ZERO),
            State::HalfOpen { probing: false } => {
                *state = State::HalfOpen { probing: true };
                Ok(())
            }
        }
    }

    /// Records the outcome of an admitted call.
    pub fn record(&self, ok: bool) {
        let mut state = self.lock();
        *state = match (*state, ok) {
            (_, true) => State::Closed { failures: 0 },
            (State::Closed { failures }, false) if failures + 1 < self.config.failure_threshold => {
                State::Closed {
                    failures: failures + 1,
                }
            }
            (_, false) => State::Open {
                until: crate::tasks::instant_after(Instant::now(), self.config.cool_down),
            },
        };
    }

    /// An admitted call ended without an outcome: a half-open breaker may probe again.
    pub fn abandon(&self) {
        let mut state = self.lock();
        if let State::HalfOpen { .. } = *state {
            *state = State::HalfOpen { probing: false };
        }
    }

    /// Closes the breaker (a new version went live).
    pub fn reset(&self) {
        *self.lock() = State::Closed { failures: 0 };
    }

    /// The state for the API.
    pub fn view(&self) -> BreakerView {
        match *self.lock() {
            State::Closed { failures } => BreakerView::Closed {
                consecutive_failures: failures,
            },
            State::Open { until } => BreakerView::Open {
                retry_in_ms: until.saturating_duration_since(Instant::now()).as_millis() as u64,
            },
            State::HalfOpen { .. } => BreakerView::HalfOpen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_and_probes_after_cool_down() {
        let b = Breaker::new(BreakerConfig {
            failure_threshold: 3,
            cool_down: Duration::from_millis(20),
        });
        for _ in 0..2 {
            b.admit().unwrap();
            b.record(false);
        }
        b.admit().unwrap();
        b.record(false);
        assert!(b.admit().is_err(), "open after 3 failures");
        std::thread::sleep(Duration::from_millis(30));
        b.admit().unwrap();
        assert!(b.admit().is_err(), "only one probe while half-open");
        b.record(false);
        assert!(b.admit().is_err(), "a failed probe re-opens");
        std::thread::sleep(Duration::from_millis(30));
        b.admit().unwrap();
        b.record(true);
        b.admit().unwrap();
        assert!(matches!(
            b.view(),
            BreakerView::Closed {
                consecutive_failures: 0
            }
        ));
    }

    #[test]
    fn a_success_resets_the_count() {
        let b = Breaker::new(BreakerConfig {
            failure_threshold: 2,
            cool_down: Duration::from_secs(60),
        });
        b.record(false);
        b.record(true);
        b.record(false);
        assert!(b.admit().is_ok());
    }
}
