//! The newest log lines of a plugin's calls, kept per slot for `GET /v1/plugins/{id}/logs`.

use std::collections::VecDeque;
use std::sync::Mutex;

use serde::Serialize;

use crate::runtime::LogSink;

/// Lines a slot keeps.
pub const KEPT_LINES: usize = 1_000;

/// One log line.
#[derive(Debug, Clone, Serialize)]
pub struct LogLine {
    /// When, Unix milliseconds.
    pub at_ms: u64,
    /// `error`, `warn`, `info`, `debug` or `trace`.
    pub level: &'static str,
    /// `id@version` of the version that logged it.
    pub version: String,
    /// The message and its fields.
    pub message: String,
}

/// A bounded ring of log lines.
#[derive(Default)]
pub struct LogRing {
    lines: Mutex<VecDeque<LogLine>>,
}

impl LogRing {
    /// The newest `limit` lines, oldest first.
    pub fn tail(&self, limit: usize) -> Vec<LogLine> {
        let lines = self.lines.lock().expect("log ring lock");
        let skip = lines.len().saturating_sub(limit);
        lines.iter().skip(skip).cloned().collect()
    }
}

impl LogSink for LogRing {
    fn line(&self, level: &'static str, source: &str, message: &str) {
        let mut lines = self.lines.lock().expect("log ring lock");
        if lines.len() == KEPT_LINES {
            lines.pop_front();
        }
        lines.push_back(LogLine {
            at_ms: super::registry::now_ms(),
            level,
            version: source.to_string(),
            message: message.to_string(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_lines() {
        let ring = LogRing::default();
        for i in 0..KEPT_LINES + 5 {
            ring.line("info", "p@1", &format!("line {i}"));
        }
        let tail = ring.tail(2);
        assert_eq!(tail.len(), 2);
        assert_eq!(tail[1].message, format!("line {}", KEPT_LINES + 4));
        assert_eq!(ring.tail(usize::MAX).len(), KEPT_LINES);
    }
}
