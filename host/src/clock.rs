//! The host's wall clock in Unix milliseconds, for records and audit entries.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, Unix milliseconds (0 before 1970, which a working clock never reports).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
