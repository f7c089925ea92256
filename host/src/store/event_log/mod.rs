//! The durable event log: an append-only file of checksummed records whose appends are
//! acknowledged only after one shared `fdatasync` (group commit).
//!
//! Layout of `DIR/events.log`: records back to back, each framed as
//! `[u32 len LE][u32 crc32 LE of payload][u64 seq LE][payload]`. Sequence numbers start at 1
//! and are dense, so the file is its own index: memory holds only the offset of every
//! [`INDEX_STRIDE`]th record, and a read by sequence jumps to the nearest one and scans at
//! most a stride forward.
//!
//! One writer thread owns the file. It drains every pending append, writes them with one
//! `pwrite`, calls `sync_data` once and only then answers every waiter: 64 concurrent
//! appenders share one sync instead of paying one each. Because the writer syncs a group
//! before writing the next, only the last group (at most [`MAX_GROUP_BYTES`]) can be torn by
//! a crash; opening cuts such a tail, and refuses a bad record found earlier than that,
//! since cutting there would drop acknowledged events.
//!
//! Erasure rewrites records in place ([`EventLog::redact`]): the payload becomes
//! [`REDACTED`] padded with spaces to the same length, with a new checksum, so offsets and
//! sequence numbers stay. The sequences are first written and synced to `DIR/redactions`;
//! a crash in the middle of a rewrite leaves records whose checksum fails, and opening
//! accepts exactly those listed there and rewrites them again before anything is read.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;

use tokio::sync::oneshot;

mod frame;
mod recover;
#[cfg(test)]
mod tests;
mod writer;

pub(super) use frame::tombstone;
use frame::{Frame, FrameReader};
use recover::{read_journal, scan, write_journal};
use writer::GroupWriter;

/// `len`, `crc`, `seq`.
const HEADER: usize = 16;
/// Every this many records the index remembers one file offset (0.25 byte per record).
const INDEX_STRIDE: u64 = 32;
/// The most bytes one group writes; one append may not exceed it either.
const MAX_GROUP_BYTES: usize = 16 << 20;
/// How much a read fetches from the file at once.
const READ_CHUNK: usize = 32 << 10;
/// How much the scan on open fetches at once.
const SCAN_CHUNK: usize = 1 << 20;

/// The start of a redacted record's payload (spaces pad it to its old length).
pub const REDACTED: &[u8] = br#"{"redacted":true}"#;

/// Whether a payload read from the log was redacted.
pub fn is_redacted(payload: &[u8]) -> bool {
    payload.starts_with(REDACTED) || (payload.len() < REDACTED.len() && payload.starts_with(b"{}"))
}

/// Why the event log failed.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A file operation failed.
    #[error("event log {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A record failed its checksum or framing where a crash cannot explain it.
    #[error("event log {} is corrupt at byte {offset}: {detail}", path.display())]
    Corrupt {
        /// The log file.
        path: PathBuf,
        /// Where the bad record starts.
        offset: u64,
        /// What is wrong with it.
        detail: String,
    },
    /// A write or `fdatasync` failed earlier: what reached the disk is unknown, so the log
    /// takes no more appends until it is reopened (which cuts any torn tail).
    #[error("event log {} refuses appends after an earlier failure ({reason}); reopen to recover", path.display())]
    Failed {
        /// The log file.
        path: PathBuf,
        /// The failure that stopped it.
        reason: String,
    },
    /// The writer thread is gone.
    #[error("event log is closed")]
    Closed,
    /// One append carried more bytes than a group may write.
    #[error("append of {bytes} bytes exceeds the {limit}-byte limit of one append")]
    TooLarge {
        /// Framed size of the append.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
}

/// The append-only, group-committed event log. See the module docs.
pub struct EventLog {
    shared: Arc<Shared>,
    sender: Option<mpsc::Sender<Pending>>,
    writer: Option<JoinHandle<()>>,
}

/// What readers and the writer share.
struct Shared {
    path: PathBuf,
    /// A read-only handle for positioned reads.
    reader: File,
    /// Held shared by reads and exclusively while records are rewritten in place, so a
    /// read never sees a half-rewritten record.
    rewrite: RwLock<()>,
    /// The write handle redaction rewrites through.
    rewriter: std::sync::Mutex<File>,
    /// `DIR/redactions`: sequences being redacted, synced before any rewrite starts.
    journal: PathBuf,
    /// Whether the journal may list records not yet rewritten.
    journal_pending: AtomicBool,
    durable: RwLock<Durable>,
    /// The next sequence number, published after each group is durable.
    advanced: tokio::sync::watch::Sender<u64>,
    /// Makes the next `fdatasync` fail, to test what the log does then.
    #[cfg(test)]
    fail_next_sync: std::sync::atomic::AtomicBool,
}

/// Everything that has been `fdatasync`ed, and nothing else.
struct Durable {
    next_seq: u64,
    end: u64,
    /// `index[i]` is the offset of record `i * INDEX_STRIDE + 1`.
    index: Vec<u64>,
    failed: Option<String>,
}

/// One append waiting for the writer.
struct Pending {
    payloads: Vec<Vec<u8>>,
    bytes: usize,
    reply: oneshot::Sender<Result<Range<u64>, LogError>>,
}

impl EventLog {
    /// Opens or creates `dir/events.log`, cutting a torn tail left by a crash.
    pub fn open(dir: &Path) -> Result<EventLog, LogError> {
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| LogError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let path = dir.join("events.log");
        let created = !path.exists();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err(&path))?;
        file.try_lock().map_err(|e| LogError::Io {
            path: path.clone(),
            source: match e {
                std::fs::TryLockError::WouldBlock => io::Error::new(
                    io::ErrorKind::WouldBlock,
                    "already open in another process or handle",
                ),
                std::fs::TryLockError::Error(e) => e,
            },
        })?;
        if created {
            // The new name must survive a crash too, or synced records vanish with it.
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io_err(dir))?;
        }
        let reader = File::open(&path).map_err(io_err(&path))?;
        let len = file.metadata().map_err(io_err(&path))?.len();
        let journal = dir.join("redactions");
        if !journal.exists() {
            // Created once, with its name synced, so a rewrite never outlives its journal.
            write_journal(&journal, &[])
                .and_then(|()| File::open(dir).and_then(|d| d.sync_all()))
                .map_err(io_err(&journal))?;
        }
        let unfinished = read_journal(&journal).map_err(io_err(&journal))?;
        let scan = scan(&reader, &path, len, &unfinished)?;
        if scan.end < len {
            tracing::warn!(
                path = %path.display(),
                offset = scan.end,
                bytes = len - scan.end,
                reason = %scan.cut_reason,
                "cutting the torn tail of the event log"
            );
            file.set_len(scan.end)
                .and_then(|()| file.sync_data())
                .map_err(io_err(&path))?;
        }

        let shared = Arc::new(Shared {
            path: path.clone(),
            reader,
            rewrite: RwLock::new(()),
            rewriter: std::sync::Mutex::new(file.try_clone().map_err(io_err(&path))?),
            journal,
            journal_pending: AtomicBool::new(!unfinished.is_empty()),
            durable: RwLock::new(Durable {
                next_seq: scan.next_seq,
                end: scan.end,
                index: scan.index,
                failed: None,
            }),
            advanced: tokio::sync::watch::channel(scan.next_seq).0,
            #[cfg(test)]
            fail_next_sync: Default::default(),
        });
        let (sender, receiver) = mpsc::channel();
        let writer = GroupWriter {
            file,
            shared: shared.clone(),
            receiver,
            next_seq: scan.next_seq,
            end: scan.end,
            buf: Vec::new(),
            index: Vec::new(),
            failed: None,
        };
        let writer = std::thread::Builder::new()
            .name("event-log-writer".into())
            .spawn(move || writer.run())
            .map_err(io_err(&path))?;
        let log = EventLog {
            shared,
            sender: Some(sender),
            writer: Some(writer),
        };
        if !unfinished.is_empty() {
            tracing::warn!(
                records = unfinished.len(),
                "finishing an interrupted redaction"
            );
            log.redact(&[])?;
        }
        Ok(log)
    }

    /// Rewrites the records `seqs` as [`REDACTED`] (same length, new checksum) and syncs;
    /// returns how many records were rewritten. Crash-safe: the sequences are journalled
    /// first and an interrupted redaction is finished on open; a failed one stays in the
    /// journal and is done again by the next call (`redact(&[])` just retries). Blocking.
    pub fn redact(&self, seqs: &[u64]) -> Result<usize, LogError> {
        let shared = &self.shared;
        if seqs.is_empty() && !shared.journal_pending.load(Ordering::Acquire) {
            return Ok(0);
        }
        let journal_err = |e| LogError::Io {
            path: shared.journal.clone(),
            source: e,
        };
        let file = shared.rewriter.lock().unwrap_or_else(|e| e.into_inner());
        let next_seq = self.next_seq();
        let mut all = read_journal(&shared.journal).map_err(journal_err)?;
        all.extend(seqs.iter().copied().filter(|s| (1..next_seq).contains(s)));
        let seqs: Vec<u64> = all.into_iter().collect();
        if seqs.is_empty() {
            return Ok(0);
        }
        write_journal(&shared.journal, &seqs).map_err(journal_err)?;
        shared.journal_pending.store(true, Ordering::Release);
        let places = seqs
            .iter()
            .map(|&seq| self.locate(seq))
            .collect::<Result<Vec<_>, _>>()?;
        {
            let _exclusive = shared.rewrite.write().unwrap_or_else(|e| e.into_inner());
            for (offset, len) in places {
                let payload = tombstone(len);
                file.write_all_at(&crc32fast::hash(&payload).to_le_bytes(), offset + 4)
                    .and_then(|()| file.write_all_at(&payload, offset + HEADER as u64))
                    .map_err(|e| shared.io(e))?;
            }
            file.sync_data().map_err(|e| shared.io(e))?;
        }
        write_journal(&shared.journal, &[]).map_err(journal_err)?;
        shared.journal_pending.store(false, Ordering::Release);
        tracing::info!(records = seqs.len(), "event log records redacted");
        Ok(seqs.len())
    }

    /// The file offset and payload length of durable record `seq`.
    fn locate(&self, seq: u64) -> Result<(u64, usize), LogError> {
        let (mut offset, mut at, end) = {
            let durable = self.shared.durable();
            let block = (seq - 1) / INDEX_STRIDE;
            (
                durable.index[block as usize],
                block * INDEX_STRIDE + 1,
                durable.end,
            )
        };
        let mut header = [0u8; HEADER];
        loop {
            if offset + HEADER as u64 > end {
                return Err(LogError::Corrupt {
                    path: self.shared.path.clone(),
                    offset,
                    detail: format!("record {seq} not found"),
                });
            }
            self.shared
                .reader
                .read_exact_at(&mut header, offset)
                .map_err(|e| self.shared.io(e))?;
            let len = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes")) as usize;
            let found = u64::from_le_bytes(header[8..16].try_into().expect("8 bytes"));
            if found != at {
                return Err(LogError::Corrupt {
                    path: self.shared.path.clone(),
                    offset,
                    detail: format!("sequence {found} where {at} was due"),
                });
            }
            if at == seq {
                return Ok((offset, len));
            }
            offset += (HEADER + len) as u64;
            at += 1;
        }
    }

    /// Appends `payloads` in order and returns their sequence numbers once they are on disk
    /// (`fdatasync`ed). A failed append is not acknowledged, yet its bytes may have reached
    /// the disk and reappear after a reopen: callers retry and deduplicate, as ingest does.
    pub async fn append(&self, payloads: Vec<Vec<u8>>) -> Result<Range<u64>, LogError> {
        let bytes = payloads.iter().map(|p| HEADER + p.len()).sum();
        if bytes > MAX_GROUP_BYTES {
            return Err(LogError::TooLarge {
                bytes,
                limit: MAX_GROUP_BYTES,
            });
        }
        {
            let durable = self.shared.durable();
            if let Some(reason) = &durable.failed {
                return Err(self.shared.failed(reason));
            }
            if payloads.is_empty() {
                return Ok(durable.next_seq..durable.next_seq);
            }
        }
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            payloads,
            bytes,
            reply,
        };
        let sender = self.sender.as_ref().ok_or(LogError::Closed)?;
        sender.send(pending).map_err(|_| LogError::Closed)?;
        answer.await.map_err(|_| LogError::Closed)?
    }

    /// Up to `limit` durable records with `seq >= from_seq`, in order.
    pub fn read(&self, from_seq: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, LogError> {
        let from_seq = from_seq.max(1);
        let (start, mut seq, end, next_seq) = {
            let durable = self.shared.durable();
            if limit == 0 || from_seq >= durable.next_seq {
                return Ok(Vec::new());
            }
            let block = (from_seq - 1) / INDEX_STRIDE;
            (
                durable.index[block as usize],
                block * INDEX_STRIDE + 1,
                durable.end,
                durable.next_seq,
            )
        };
        let wanted = (limit as u64).min(next_seq - from_seq) as usize;
        let mut out = Vec::with_capacity(wanted);
        let _shared = self
            .shared
            .rewrite
            .read()
            .unwrap_or_else(|e| e.into_inner());
        let mut frames = FrameReader::new(&self.shared.reader, start, end, READ_CHUNK);
        while out.len() < wanted {
            let offset = frames.offset();
            match frames.next(seq).map_err(|e| self.shared.io(e))? {
                Frame::Good(payload) if seq >= from_seq => out.push((seq, payload.to_vec())),
                Frame::Good(_) => {}
                Frame::Bad(detail) => {
                    return Err(LogError::Corrupt {
                        path: self.shared.path.clone(),
                        offset,
                        detail,
                    });
                }
            }
            seq += 1;
        }
        Ok(out)
    }

    /// The next sequence number, changing each time a group of records becomes durable.
    pub fn watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.shared.advanced.subscribe()
    }

    /// The sequence number of the last durable record (0 while the log is empty).
    pub fn last_seq(&self) -> u64 {
        self.next_seq() - 1
    }

    /// The sequence number the next durable record will get.
    pub fn next_seq(&self) -> u64 {
        self.shared.durable().next_seq
    }
}

impl Drop for EventLog {
    fn drop(&mut self) {
        // Closing the channel lets the writer finish what is queued and exit.
        self.sender.take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

impl Shared {
    fn durable(&self) -> std::sync::RwLockReadGuard<'_, Durable> {
        self.durable.read().unwrap_or_else(|e| e.into_inner())
    }

    fn io(&self, source: io::Error) -> LogError {
        LogError::Io {
            path: self.path.clone(),
            source,
        }
    }

    fn failed(&self, reason: &str) -> LogError {
        LogError::Failed {
            path: self.path.clone(),
            reason: reason.to_string(),
        }
    }
}
