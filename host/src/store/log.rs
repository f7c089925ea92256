//! The event log as the pipeline sees it: the [`Log`] trait (append, read a range, redact),
//! its in-memory backend for tests, and the conformance checks every backend passes.

use std::future::Future;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Mutex;

use super::event_log::{EventLog, LogError};

/// An append that resolves once its records are durable.
pub type Appending<'a> = Pin<Box<dyn Future<Output = Result<Range<u64>, LogError>> + Send + 'a>>;

/// An append-only sequence of records numbered densely from 1. Ingest appends to it; every
/// later stage reads it by sequence number.
pub trait Log: Send + Sync {
    /// Appends `payloads` in order and resolves to their sequence numbers once they are
    /// durable. A failed append is not acknowledged; callers retry and deduplicate.
    fn append(&self, payloads: Vec<Vec<u8>>) -> Appending<'_>;
    /// Up to `limit` durable records with `seq >= from_seq`, in order.
    fn read(&self, from_seq: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, LogError>;
    /// Replaces the records `seqs` with a redacted payload of the same length, keeping their
    /// sequence numbers; returns how many were rewritten. `redact(&[])` finishes one that an
    /// earlier failure interrupted. Blocking.
    fn redact(&self, seqs: &[u64]) -> Result<usize, LogError>;
    /// The sequence number the next durable record will get.
    fn next_seq(&self) -> u64;
    /// [`Log::next_seq`] as it advances: a reader waits on it for new records.
    fn watch(&self) -> tokio::sync::watch::Receiver<u64>;
    /// The sequence number of the last durable record (0 while the log is empty).
    fn last_seq(&self) -> u64 {
        self.next_seq() - 1
    }
}

impl Log for EventLog {
    fn append(&self, payloads: Vec<Vec<u8>>) -> Appending<'_> {
        Box::pin(EventLog::append(self, payloads))
    }

    fn read(&self, from_seq: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, LogError> {
        EventLog::read(self, from_seq, limit)
    }

    fn redact(&self, seqs: &[u64]) -> Result<usize, LogError> {
        EventLog::redact(self, seqs)
    }

    fn next_seq(&self) -> u64 {
        EventLog::next_seq(self)
    }

    fn watch(&self) -> tokio::sync::watch::Receiver<u64> {
        EventLog::watch(self)
    }
}

/// A log held in memory (lost with the process): for tests of the stages that read it.
pub struct MemoryLog {
    records: Mutex<Vec<Vec<u8>>>,
    advanced: tokio::sync::watch::Sender<u64>,
}

impl Default for MemoryLog {
    fn default() -> Self {
        Self {
            records: Mutex::default(),
            advanced: tokio::sync::watch::channel(1).0,
        }
    }
}

impl MemoryLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    fn records(&self) -> std::sync::MutexGuard<'_, Vec<Vec<u8>>> {
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Log for MemoryLog {
    fn append(&self, payloads: Vec<Vec<u8>>) -> Appending<'_> {
        let mut records = self.records();
        let first = records.len() as u64 + 1;
        records.extend(payloads);
        let range = first..records.len() as u64 + 1;
        self.advanced.send_replace(range.end);
        Box::pin(std::future::ready(Ok(range)))
    }

    fn read(&self, from_seq: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, LogError> {
        let records = self.records();
        let start = from_seq.max(1);
        Ok((start..records.len() as u64 + 1)
            .take(limit)
            .map(|seq| (seq, records[(seq - 1) as usize].clone()))
            .collect())
    }

    fn redact(&self, seqs: &[u64]) -> Result<usize, LogError> {
        let mut records = self.records();
        let mut done = 0;
        for &seq in seqs {
            let Some(record) = seq.checked_sub(1).and_then(|i| records.get_mut(i as usize)) else {
                continue;
            };
            *record = super::event_log::tombstone(record.len());
            done += 1;
        }
        Ok(done)
    }

    fn next_seq(&self) -> u64 {
        self.records().len() as u64 + 1
    }

    fn watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.advanced.subscribe()
    }
}

/// What every [`Log`] backend must do, as test functions over a fresh log.
#[cfg(test)]
pub(crate) mod conformance {
    use super::*;
    use crate::store::event_log::REDACTED;

    fn payload(i: u64) -> Vec<u8> {
        format!(
            r#"{{"event":"e{i}","padding":"{}"}}"#,
            "x".repeat(i as usize % 40)
        )
        .into_bytes()
    }

    /// Runs every check against logs made by `fresh`.
    pub(crate) async fn check(fresh: impl Fn() -> Box<dyn Log>) {
        appends_are_dense_and_read_back_in_order(&*fresh()).await;
        reads_are_bounded_and_past_the_end_empty(&*fresh()).await;
        redaction_keeps_sequence_and_length(&*fresh()).await;
    }

    async fn appends_are_dense_and_read_back_in_order(log: &dyn Log) {
        assert_eq!(log.next_seq(), 1);
        assert_eq!(log.last_seq(), 0);
        let mut watch = log.watch();
        assert_eq!(*watch.borrow_and_update(), 1);
        let first = log.append((1..=3).map(payload).collect()).await.unwrap();
        assert_eq!(first, 1..4);
        assert!(
            watch.has_changed().unwrap(),
            "a reader waiting on the log wakes"
        );
        assert_eq!(*watch.borrow_and_update(), 4);
        let empty = log.append(Vec::new()).await.unwrap();
        assert!(empty.is_empty(), "{empty:?}");
        let second = log.append((4..=10).map(payload).collect()).await.unwrap();
        assert_eq!(second, 4..11);
        assert_eq!(log.next_seq(), 11);
        let all = log.read(1, 100).unwrap();
        assert_eq!(all.len(), 10);
        for (i, (seq, bytes)) in all.iter().enumerate() {
            assert_eq!(*seq, i as u64 + 1);
            assert_eq!(bytes, &payload(*seq));
        }
    }

    async fn reads_are_bounded_and_past_the_end_empty(log: &dyn Log) {
        log.append((1..=50).map(payload).collect()).await.unwrap();
        let some = log.read(7, 5).unwrap();
        assert_eq!(
            some.iter().map(|r| r.0).collect::<Vec<_>>(),
            vec![7, 8, 9, 10, 11]
        );
        assert_eq!(
            log.read(0, 1).unwrap()[0].0,
            1,
            "seq 0 reads from the start"
        );
        assert!(log.read(51, 10).unwrap().is_empty());
        assert!(log.read(3, 0).unwrap().is_empty());
        assert_eq!(log.read(48, 10).unwrap().len(), 3);
    }

    async fn redaction_keeps_sequence_and_length(log: &dyn Log) {
        log.append((1..=5).map(payload).collect()).await.unwrap();
        assert_eq!(log.redact(&[2, 4, 99]).unwrap(), 2);
        let all = log.read(1, 10).unwrap();
        assert_eq!(all.len(), 5);
        for (seq, bytes) in &all {
            assert_eq!(bytes.len(), payload(*seq).len(), "length kept for {seq}");
            let redacted = super::super::is_redacted(bytes);
            assert_eq!(redacted, *seq == 2 || *seq == 4, "seq {seq}");
            if redacted {
                assert!(bytes.starts_with(REDACTED));
                serde_json::from_slice::<serde_json::Value>(bytes).expect("still JSON");
            }
        }
        assert_eq!(log.redact(&[]).unwrap(), 0);
        let next = log.append(vec![payload(6)]).await.unwrap();
        assert_eq!(next, 6..7, "redaction leaves numbering alone");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_log_meets_the_log_contract() {
        conformance::check(|| Box::new(MemoryLog::new())).await;
    }

    #[tokio::test]
    async fn file_log_meets_the_log_contract() {
        let dirs = Mutex::new(Vec::new());
        conformance::check(|| {
            let dir = tempfile::tempdir().unwrap();
            let log = EventLog::open(dir.path()).unwrap();
            dirs.lock().unwrap().push(dir);
            Box::new(log)
        })
        .await;
    }
}
