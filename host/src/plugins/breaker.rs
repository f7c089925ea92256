//! A circuit breaker per plugin slot: N consecutive failed calls open it; after a cool-down
//! one probe call is let through (half-open) and its outcome closes or re-opens it.

use std::sync::{Arc, Mutex};
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

/// Where the breaker reads the time: `Instant::now` in production, a hand-moved clock in tests.
pub type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;

/// A circuit breaker.
pub struct Breaker {
    config: BreakerConfig,
    state: Mutex<State>,
    now: Clock,
}

impl Breaker {
    /// A closed breaker on the system clock.
    pub fn new(config: BreakerConfig) -> Self {
        Self::with_clock(config, Arc::new(Instant::now))
    }

    /// A closed breaker that reads the time from `now`.
    pub fn with_clock(config: BreakerConfig, now: Clock) -> Self {
        Self {
            config,
            state: Mutex::new(State::Closed { failures: 0 }),
            now,
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
                let now = (self.now)();
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
                until: crate::tasks::instant_after((self.now)(), self.config.cool_down),
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
                retry_in_ms: u64::try_from(
                    until.saturating_duration_since((self.now)()).as_millis(),
                )
                .unwrap_or(u64::MAX),
            },
            State::HalfOpen { .. } => BreakerView::HalfOpen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A clock that moves only when the test moves it.
    struct ManualClock {
        start: Instant,
        offset: Mutex<Duration>,
    }

    impl ManualClock {
        fn new() -> Arc<Self> {
            Arc::new(Self {
                start: Instant::now(),
                offset: Mutex::new(Duration::ZERO),
            })
        }

        fn advance(&self, by: Duration) {
            *self.offset.lock().expect("clock lock") += by;
        }

        fn clock(self: &Arc<Self>) -> Clock {
            let me = Arc::clone(self);
            Arc::new(move || me.start + *me.offset.lock().expect("clock lock"))
        }
    }

    #[test]
    fn opens_after_threshold_and_probes_after_cool_down() {
        let clock = ManualClock::new();
        let b = Breaker::with_clock(
            BreakerConfig {
                failure_threshold: 3,
                cool_down: Duration::from_millis(20),
            },
            clock.clock(),
        );
        for _ in 0..2 {
            b.admit().unwrap();
            b.record(false);
        }
        b.admit().unwrap();
        b.record(false);
        assert_eq!(
            b.admit(),
            Err(Duration::from_millis(20)),
            "open after 3 failures"
        );
        assert!(matches!(b.view(), BreakerView::Open { retry_in_ms: 20 }));
        clock.advance(Duration::from_millis(19));
        assert_eq!(
            b.admit(),
            Err(Duration::from_millis(1)),
            "still open 1 ms before the end"
        );
        clock.advance(Duration::from_millis(1));
        b.admit().unwrap();
        assert!(matches!(b.view(), BreakerView::HalfOpen));
        assert!(b.admit().is_err(), "only one probe while half-open");
        b.record(false);
        assert!(b.admit().is_err(), "a failed probe re-opens");
        clock.advance(Duration::from_millis(20));
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
    fn an_abandoned_probe_lets_another_through() {
        let clock = ManualClock::new();
        let b = Breaker::with_clock(
            BreakerConfig {
                failure_threshold: 1,
                cool_down: Duration::from_secs(30),
            },
            clock.clock(),
        );
        b.admit().unwrap();
        b.record(false);
        assert!(b.admit().is_err());
        clock.advance(Duration::from_secs(30));
        b.admit().unwrap();
        assert!(b.admit().is_err(), "the probe is in flight");
        b.abandon();
        b.admit().unwrap();
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
