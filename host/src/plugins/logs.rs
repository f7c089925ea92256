//! The newest log lines of a plugin's calls, kept per slot for `GET /v1/plugins/{id}/logs`.

use std::collections::VecDeque;
use std::sync::Mutex;

use serde::Serialize;

use crate::runtime::LogSink;

/// Lines a slot keeps at most.
pub const KEPT_LINES: usize = 1_000;
/// Bytes of lines a slot keeps at most (the oldest go first): what `GET /v1/plugins/{id}/logs`
/// may have to copy out. A line is at most [`crate::runtime::MAX_LINE_BYTES`].
pub const KEPT_BYTES: usize = 1 << 20;

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

/// What one kept line costs: its text and its bookkeeping.
fn line_bytes(line: &LogLine) -> usize {
    line.message.len() + line.version.len() + size_of::<LogLine>()
}

/// The kept lines and what they cost.
#[derive(Default)]
struct Kept {
    lines: VecDeque<LogLine>,
    bytes: usize,
}

/// A ring of log lines bounded in lines and in bytes.
#[derive(Default)]
pub struct LogRing {
    kept: Mutex<Kept>,
}

impl LogRing {
    /// The newest `limit` lines, oldest first.
    pub fn tail(&self, limit: usize) -> Vec<LogLine> {
        let kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        let skip = kept.lines.len().saturating_sub(limit);
        kept.lines.iter().skip(skip).cloned().collect()
    }
}

impl LogSink for LogRing {
    fn line(&self, level: &'static str, source: &str, message: &str) {
        let line = LogLine {
            at_ms: crate::clock::now_ms(),
            level,
            version: source.to_string(),
            message: message.to_string(),
        };
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        kept.bytes += line_bytes(&line);
        kept.lines.push_back(line);
        while kept.lines.len() > KEPT_LINES || (kept.bytes > KEPT_BYTES && kept.lines.len() > 1) {
            if let Some(old) = kept.lines.pop_front() {
                kept.bytes -= line_bytes(&old);
            }
        }
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

    #[test]
    fn keeps_at_most_its_bytes() {
        let ring = LogRing::default();
        let long = "x".repeat(10_000);
        for _ in 0..1_000 {
            ring.line("info", "p@1", &long);
        }
        let kept = ring.tail(usize::MAX);
        let bytes: usize = kept.iter().map(line_bytes).sum();
        assert!(bytes <= KEPT_BYTES, "{bytes}");
        assert!(kept.len() > 90, "{}", kept.len());
    }
}
