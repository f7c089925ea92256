//! How each channel's deliveries are paced and retried: back-off base and cap, attempts
//! allowed, concurrent sends; defaults from the host's config, overrides per channel.

use serde::{Deserialize, Serialize};

/// Bounds on every setting, so no value an operator types can stall or flood a channel.
pub mod bounds {
    /// Back-off base, ms.
    pub const BASE_MS: (u64, u64) = (10, 3_600_000);
    /// Back-off cap, ms (a week).
    pub const CAP_MS: (u64, u64) = (10, 7 * 24 * 3_600_000);
    /// Attempts before a message is dead.
    pub const MAX_ATTEMPTS: (u32, u32) = (1, 100);
    /// Sends in flight at once per channel.
    pub const CONCURRENCY: (u32, u32) = (1, 1_024);
}

/// The longest a provider's `Retry-After` is honoured: a day.
pub const MAX_RETRY_AFTER_MS: u64 = 24 * 3_600_000;

/// How one channel's deliveries are paced and retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySettings {
    /// The first retry waits about this long, each later one twice as long as the one before.
    pub base_ms: u64,
    /// No wait grows past this (a provider's `Retry-After` may ask for longer, up to a day).
    pub cap_ms: u64,
    /// Attempts (interrupted ones aside) before the message is dead.
    pub max_attempts: u32,
    /// Sends of this channel in flight at once.
    pub concurrency: u32,
}

impl Default for RetrySettings {
    /// About 2 s, 4 s, 8 s ... capped at an hour: twelve attempts span about two and a half
    /// hours, which rides out a provider's outage of that long without an operator.
    fn default() -> Self {
        Self {
            base_ms: 2_000,
            cap_ms: 3_600_000,
            max_attempts: 12,
            concurrency: 16,
        }
    }
}

/// Settings given in part (an operator's override): missing fields keep the defaults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryOverride {
    /// See [`RetrySettings::base_ms`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_ms: Option<u64>,
    /// See [`RetrySettings::cap_ms`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cap_ms: Option<u64>,
    /// See [`RetrySettings::max_attempts`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// See [`RetrySettings::concurrency`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
}

impl RetrySettings {
    /// The defaults with `o` applied.
    pub fn with(self, o: &RetryOverride) -> Self {
        Self {
            base_ms: o.base_ms.unwrap_or(self.base_ms),
            cap_ms: o.cap_ms.unwrap_or(self.cap_ms),
            max_attempts: o.max_attempts.unwrap_or(self.max_attempts),
            concurrency: o.concurrency.unwrap_or(self.concurrency),
        }
    }

    /// Ok when every value is within [`bounds`] and the cap is not below the base.
    pub fn check(&self) -> Result<(), String> {
        let within = |name: &str, v: u64, (lo, hi): (u64, u64)| {
            if (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err(format!("`{name}` must be within {lo}..={hi}, not {v}"))
            }
        };
        let widen = |(lo, hi): (u32, u32)| (u64::from(lo), u64::from(hi));
        within("base_ms", self.base_ms, bounds::BASE_MS)?;
        within("cap_ms", self.cap_ms, bounds::CAP_MS)?;
        within(
            "max_attempts",
            self.max_attempts.into(),
            widen(bounds::MAX_ATTEMPTS),
        )?;
        within(
            "concurrency",
            self.concurrency.into(),
            widen(bounds::CONCURRENCY),
        )?;
        if self.cap_ms < self.base_ms {
            return Err(format!(
                "`cap_ms` ({}) must not be below `base_ms` ({})",
                self.cap_ms, self.base_ms
            ));
        }
        Ok(())
    }

    /// How long to wait before the attempt after the `failed`-th failure (from 1), with
    /// "equal jitter": half the exponential delay for sure, the other half at random
    /// (`unit` in [0, 1)), so retries of many messages that failed together spread out
    /// instead of returning at once. A provider's `Retry-After` is a floor, up to a day.
    pub fn delay_ms(&self, failed: u32, retry_after_ms: Option<u64>, unit: f64) -> u64 {
        let doublings = failed.saturating_sub(1).min(63);
        let exp = self
            .base_ms
            .saturating_mul(1u64 << doublings)
            .min(self.cap_ms);
        let jittered = exp / 2 + ((exp - exp / 2) as f64 * unit.clamp(0.0, 1.0)) as u64;
        let floor = retry_after_ms.unwrap_or(0).min(MAX_RETRY_AFTER_MS);
        jittered.max(floor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_within_the_cap_and_jitter_keeps_half() {
        let s = RetrySettings {
            base_ms: 1_000,
            cap_ms: 10_000,
            max_attempts: 5,
            concurrency: 1,
        };
        assert_eq!(s.delay_ms(1, None, 0.0), 500);
        assert_eq!(s.delay_ms(1, None, 0.999_999), 999);
        assert_eq!(s.delay_ms(2, None, 0.0), 1_000);
        assert_eq!(s.delay_ms(3, None, 0.0), 2_000);
        assert_eq!(s.delay_ms(10, None, 0.0), 5_000, "capped at 10 s, halved");
        assert_eq!(s.delay_ms(u32::MAX, None, 1.0), 10_000, "no overflow");
    }

    #[test]
    fn retry_after_is_a_floor_up_to_a_day() {
        let s = RetrySettings::default();
        assert_eq!(s.delay_ms(1, Some(30_000), 0.0), 30_000);
        assert_eq!(s.delay_ms(1, Some(10), 0.0), 1_000);
        assert_eq!(s.delay_ms(1, Some(u64::MAX), 0.0), MAX_RETRY_AFTER_MS);
    }

    #[test]
    fn settings_out_of_bounds_are_refused_with_the_field() {
        let d = RetrySettings::default();
        d.check().unwrap();
        let bad = [
            (
                RetryOverride {
                    base_ms: Some(0),
                    ..Default::default()
                },
                "base_ms",
            ),
            (
                RetryOverride {
                    max_attempts: Some(0),
                    ..Default::default()
                },
                "max_attempts",
            ),
            (
                RetryOverride {
                    concurrency: Some(100_000),
                    ..Default::default()
                },
                "concurrency",
            ),
            (
                RetryOverride {
                    base_ms: Some(5_000),
                    cap_ms: Some(1_000),
                    ..Default::default()
                },
                "must not be below",
            ),
        ];
        for (o, why) in bad {
            let e = d.with(&o).check().unwrap_err();
            assert!(e.contains(why), "{why} in {e}");
        }
        let o = RetryOverride {
            max_attempts: Some(3),
            ..Default::default()
        };
        assert_eq!(d.with(&o).max_attempts, 3);
        assert_eq!(d.with(&o).base_ms, d.base_ms);
    }
}
