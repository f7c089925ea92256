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

/// A redacted payload of `len` bytes: valid JSON whatever the length (at least 2).
fn tombstone(len: usize) -> Vec<u8> {
    let head: &[u8] = if len >= REDACTED.len() {
        REDACTED
    } else {
        b"{}"
    };
    let mut out = head[..head.len().min(len)].to_vec();
    out.resize(len, b' ');
    out
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

/// The thread that owns the file: writes groups and syncs them.
struct GroupWriter {
    file: File,
    shared: Arc<Shared>,
    receiver: mpsc::Receiver<Pending>,
    next_seq: u64,
    end: u64,
    buf: Vec<u8>,
    index: Vec<u64>,
    failed: Option<String>,
}

impl GroupWriter {
    fn run(mut self) {
        let mut carried = None;
        loop {
            let first = match carried.take() {
                Some(pending) => pending,
                None => match self.receiver.recv() {
                    Ok(pending) => pending,
                    Err(_) => return,
                },
            };
            let mut bytes = first.bytes;
            let mut group = vec![first];
            while let Ok(pending) = self.receiver.try_recv() {
                if bytes + pending.bytes > MAX_GROUP_BYTES {
                    carried = Some(pending);
                    break;
                }
                bytes += pending.bytes;
                group.push(pending);
            }
            self.commit(group);
        }
    }

    fn commit(&mut self, group: Vec<Pending>) {
        if let Some(reason) = &self.failed {
            for pending in group {
                let _ = pending.reply.send(Err(self.shared.failed(reason)));
            }
            return;
        }
        self.buf.clear();
        self.index.clear();
        let mut seq = self.next_seq;
        let mut ranges = Vec::with_capacity(group.len());
        for pending in &group {
            let first = seq;
            for payload in &pending.payloads {
                if (seq - 1).is_multiple_of(INDEX_STRIDE) {
                    self.index.push(self.end + self.buf.len() as u64);
                }
                self.buf
                    .extend_from_slice(&(payload.len() as u32).to_le_bytes());
                self.buf
                    .extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
                self.buf.extend_from_slice(&seq.to_le_bytes());
                self.buf.extend_from_slice(payload);
                seq += 1;
            }
            ranges.push(first..seq);
        }

        let written = self
            .file
            .write_all_at(&self.buf, self.end)
            .map_err(|e| format!("write: {e}"))
            .and_then(|()| self.sync().map_err(|e| format!("fdatasync: {e}")));
        match written {
            Ok(()) => {
                self.next_seq = seq;
                self.end += self.buf.len() as u64;
                let mut durable = self
                    .shared
                    .durable
                    .write()
                    .unwrap_or_else(|e| e.into_inner());
                durable.next_seq = self.next_seq;
                durable.end = self.end;
                durable.index.extend_from_slice(&self.index);
                drop(durable);
                for (pending, range) in group.into_iter().zip(ranges) {
                    let _ = pending.reply.send(Ok(range));
                }
            }
            Err(reason) => {
                // After a failed fdatasync the kernel may have dropped the dirty pages and
                // marked them clean; a retry could "succeed" without the data. Stop here.
                tracing::error!(path = %self.shared.path.display(), %reason, "event log failed");
                let mut durable = self
                    .shared
                    .durable
                    .write()
                    .unwrap_or_else(|e| e.into_inner());
                durable.failed = Some(reason.clone());
                drop(durable);
                for pending in group {
                    let _ = pending.reply.send(Err(LogError::Io {
                        path: self.shared.path.clone(),
                        source: io::Error::other(reason.clone()),
                    }));
                }
                self.failed = Some(reason);
            }
        }
    }

    fn sync(&self) -> io::Result<()> {
        #[cfg(test)]
        if self
            .shared
            .fail_next_sync
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            return Err(io::Error::other("injected EIO"));
        }
        self.file.sync_data()
    }
}

/// What the scan on open found.
struct Scan {
    next_seq: u64,
    /// End of the last good record.
    end: u64,
    index: Vec<u64>,
    cut_reason: String,
}

/// Verifies every record; a bad one within the last group's reach is a torn tail.
fn scan(reader: &File, path: &Path, len: u64, redacting: &BTreeSet<u64>) -> Result<Scan, LogError> {
    let mut frames = FrameReader::new(reader, 0, len, SCAN_CHUNK);
    frames.unchecked = redacting;
    let mut seq = 1;
    let mut index = Vec::new();
    let mut cut_reason = String::new();
    while frames.offset() < len {
        let offset = frames.offset();
        let frame = frames.next(seq).map_err(|source| LogError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        match frame {
            Frame::Good(_) => {
                if (seq - 1).is_multiple_of(INDEX_STRIDE) {
                    index.push(offset);
                }
                seq += 1;
            }
            Frame::Bad(detail) => {
                if len - offset > MAX_GROUP_BYTES as u64 {
                    return Err(LogError::Corrupt {
                        path: path.to_path_buf(),
                        offset,
                        detail: format!(
                            "{detail}, with {} bytes after it: more than a crash can tear",
                            len - offset
                        ),
                    });
                }
                cut_reason = detail;
                return Ok(Scan {
                    next_seq: seq,
                    end: offset,
                    index,
                    cut_reason,
                });
            }
        }
    }
    Ok(Scan {
        next_seq: seq,
        end: len,
        index,
        cut_reason,
    })
}

/// One record as read back.
enum Frame<'a> {
    Good(&'a [u8]),
    Bad(String),
}

/// The sequences listed in a redaction journal (a torn last entry is ignored).
fn read_journal(path: &Path) -> io::Result<BTreeSet<u64>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(bytes
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(BTreeSet::new()),
        Err(e) => Err(e),
    }
}

/// Replaces the redaction journal with `seqs` (empty: nothing pending) and syncs it.
fn write_journal(path: &Path, seqs: &[u64]) -> io::Result<()> {
    let bytes: Vec<u8> = seqs.iter().flat_map(|s| s.to_le_bytes()).collect();
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    file.write_all_at(&bytes, 0)?;
    file.sync_data()
}

/// Reads frames forward from an offset with positioned reads, a chunk at a time.
struct FrameReader<'a> {
    /// Records whose checksum is not checked (an interrupted redaction rewrites them).
    unchecked: &'a BTreeSet<u64>,
    file: &'a File,
    buf: Vec<u8>,
    pos: usize,
    /// The file offset just past `buf`.
    next: u64,
    end: u64,
    chunk: usize,
}

impl<'a> FrameReader<'a> {
    fn new(file: &'a File, start: u64, end: u64, chunk: usize) -> Self {
        static NONE: BTreeSet<u64> = BTreeSet::new();
        Self {
            unchecked: &NONE,
            file,
            buf: Vec::new(),
            pos: 0,
            next: start,
            end,
            chunk,
        }
    }

    /// The file offset of the next unread byte.
    fn offset(&self) -> u64 {
        self.next - (self.buf.len() - self.pos) as u64
    }

    /// The next frame, checked against the sequence number it must carry.
    fn next(&mut self, expected_seq: u64) -> io::Result<Frame<'_>> {
        let Some(header) = self.take(HEADER)? else {
            return Ok(Frame::Bad("partial record header".into()));
        };
        let len = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
        let seq = u64::from_le_bytes(header[8..16].try_into().expect("8 bytes"));
        if seq != expected_seq {
            return Ok(Frame::Bad(format!(
                "sequence {seq} where {expected_seq} was due"
            )));
        }
        if HEADER + len > MAX_GROUP_BYTES {
            return Ok(Frame::Bad(format!("record length {len} is impossible")));
        }
        let unchecked = self.unchecked.contains(&seq);
        let Some(payload) = self.take(len)? else {
            return Ok(Frame::Bad(format!("record {seq} is cut short")));
        };
        if !unchecked && crc32fast::hash(payload) != crc {
            return Ok(Frame::Bad(format!("record {seq} fails its checksum")));
        }
        Ok(Frame::Good(payload))
    }

    /// The next `n` bytes, or `None` when fewer than `n` remain before `end`.
    fn take(&mut self, n: usize) -> io::Result<Option<&[u8]>> {
        if self.buf.len() - self.pos < n {
            self.buf.drain(..self.pos);
            self.pos = 0;
            let missing = (n - self.buf.len()) as u64;
            let available = self.end - self.next;
            if missing > available {
                return Ok(None);
            }
            let read = missing.max(self.chunk as u64).min(available) as usize;
            let old = self.buf.len();
            self.buf.resize(old + read, 0);
            self.file.read_exact_at(&mut self.buf[old..], self.next)?;
            self.next += read as u64;
        }
        let bytes = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(Some(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(i: u64) -> Vec<u8> {
        format!("{{\"event\":\"e{i}\",\"n\":{i}}}").into_bytes()
    }

    fn log_file(dir: &Path) -> PathBuf {
        dir.join("events.log")
    }

    #[tokio::test]
    async fn appends_get_dense_increasing_seqs() {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::open(dir.path()).unwrap();
        assert_eq!(log.next_seq(), 1);
        assert_eq!(log.append(vec![payload(1)]).await.unwrap(), 1..2);
        assert_eq!(
            log.append(vec![payload(2), payload(3), payload(4)])
                .await
                .unwrap(),
            2..5
        );
        assert_eq!(log.append(vec![]).await.unwrap(), 5..5);
        assert_eq!(log.append(vec![payload(5)]).await.unwrap(), 5..6);
        assert_eq!(log.next_seq(), 6);
        let all = log.read(0, 100).unwrap();
        let expected: Vec<_> = (1..6).map(|i| (i, payload(i))).collect();
        assert_eq!(all, expected);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_appenders_get_distinct_seqs_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(EventLog::open(dir.path()).unwrap());
        let tasks: Vec<_> = (0..64u64)
            .map(|writer| {
                let log = log.clone();
                tokio::spawn(async move {
                    let mut got = Vec::new();
                    for i in 0..50u64 {
                        let body = payload(writer * 1_000 + i);
                        let range = log.append(vec![body.clone()]).await.unwrap();
                        assert_eq!(range.end - range.start, 1);
                        got.push((range.start, body));
                    }
                    got
                })
            })
            .collect();
        let mut appended = Vec::new();
        for task in tasks {
            appended.extend(task.await.unwrap());
        }
        appended.sort();
        let seqs: Vec<u64> = appended.iter().map(|(s, _)| *s).collect();
        assert_eq!(seqs, (1..=64 * 50).collect::<Vec<_>>());
        assert_eq!(log.read(1, usize::MAX).unwrap(), appended);
    }

    #[tokio::test]
    async fn reads_by_seq_start_anywhere_and_stop_at_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::open(dir.path()).unwrap();
        log.append((1..=200).map(payload).collect()).await.unwrap();
        for from in [1, 2, 31, 32, 33, 64, 65, 199, 200] {
            let got = log.read(from, 3).unwrap();
            let expected: Vec<_> = (from..(from + 3).min(201))
                .map(|i| (i, payload(i)))
                .collect();
            assert_eq!(got, expected, "from {from}");
        }
        assert!(log.read(201, 10).unwrap().is_empty());
        assert!(log.read(1, 0).unwrap().is_empty());
    }

    #[tokio::test]
    async fn redacted_records_keep_their_place_and_their_bytes_are_gone() {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::open(dir.path()).unwrap();
        log.append((1..=100).map(payload).collect()).await.unwrap();
        assert_eq!(log.redact(&[33, 5, 33, 100, 7_000]).unwrap(), 3);
        let all = log.read(1, usize::MAX).unwrap();
        assert_eq!(all.len(), 100);
        for (seq, bytes) in &all {
            if [5, 33, 100].contains(seq) {
                assert!(is_redacted(bytes), "{seq}");
                assert_eq!(bytes.len(), payload(*seq).len());
                serde_json::from_slice::<serde_json::Value>(bytes).expect("still JSON");
            } else {
                assert_eq!(bytes, &payload(*seq));
            }
        }
        drop(log);
        let file = std::fs::read(log_file(dir.path())).unwrap();
        let needle = b"\"e33\"";
        assert!(!file.windows(needle.len()).any(|w| w == needle));
        let log = EventLog::open(dir.path()).unwrap();
        assert_eq!(log.read(1, usize::MAX).unwrap(), all, "reopens as it was");
        assert_eq!(log.append(vec![payload(101)]).await.unwrap(), 101..102);
    }

    #[tokio::test]
    async fn a_redaction_torn_by_a_crash_is_finished_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::open(dir.path()).unwrap();
        log.append((1..=100).map(payload).collect()).await.unwrap();
        let (offset, len) = log.locate(40).unwrap();
        drop(log);
        // The journal was synced, then the crash came halfway through rewriting record 40.
        write_journal(&dir.path().join("redactions"), &[40, 41]).unwrap();
        let file = OpenOptions::new()
            .write(true)
            .open(log_file(dir.path()))
            .unwrap();
        file.write_all_at(&tombstone(len)[..len / 2], offset + HEADER as u64)
            .unwrap();
        drop(file);
        let log = EventLog::open(dir.path()).unwrap();
        let all = log.read(1, usize::MAX).unwrap();
        assert_eq!(all.len(), 100);
        assert!(is_redacted(&all[39].1) && is_redacted(&all[40].1));
        assert_eq!(all[41].1, payload(42));
        assert!(
            read_journal(&dir.path().join("redactions"))
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn a_bad_record_that_no_redaction_explains_is_still_refused() {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::open(dir.path()).unwrap();
        // Enough records after it that a crash cannot explain the damage.
        let big = vec![b'x'; 1 << 20];
        log.append(vec![payload(1)]).await.unwrap();
        for _ in 0..17 {
            log.append(vec![big.clone()]).await.unwrap();
        }
        let (offset, _) = log.locate(1).unwrap();
        drop(log);
        write_journal(&dir.path().join("redactions"), &[2]).unwrap();
        let file = OpenOptions::new()
            .write(true)
            .open(log_file(dir.path()))
            .unwrap();
        file.write_all_at(b"#", offset + HEADER as u64).unwrap();
        drop(file);
        assert!(matches!(
            EventLog::open(dir.path()),
            Err(LogError::Corrupt { .. })
        ));
    }

    #[tokio::test]
    async fn reopen_after_drop_sees_everything() {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::open(dir.path()).unwrap();
        log.append((1..=100).map(payload).collect()).await.unwrap();
        drop(log);
        let log = EventLog::open(dir.path()).unwrap();
        assert_eq!(log.next_seq(), 101);
        assert_eq!(log.read(40, 1).unwrap(), vec![(40, payload(40))]);
        assert_eq!(log.append(vec![payload(101)]).await.unwrap(), 101..102);
        assert_eq!(log.read(1, 1_000).unwrap().len(), 101);
    }

    #[tokio::test]
    async fn second_open_of_a_live_log_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _log = EventLog::open(dir.path()).unwrap();
        assert!(matches!(
            EventLog::open(dir.path()),
            Err(LogError::Io { .. })
        ));
    }

    #[tokio::test]
    async fn torn_tail_is_cut_on_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::open(dir.path()).unwrap();
        log.append((1..=3).map(payload).collect()).await.unwrap();
        drop(log);
        let file = OpenOptions::new()
            .write(true)
            .open(log_file(dir.path()))
            .unwrap();
        let len = file.metadata().unwrap().len();
        file.set_len(len - 5).unwrap();
        drop(file);

        let log = EventLog::open(dir.path()).unwrap();
        assert_eq!(log.next_seq(), 3);
        assert_eq!(log.read(1, 10).unwrap().len(), 2);
        assert_eq!(log.append(vec![payload(9)]).await.unwrap(), 3..4);
        drop(log);
        let log = EventLog::open(dir.path()).unwrap();
        assert_eq!(log.read(3, 10).unwrap(), vec![(3, payload(9))]);
    }

    #[tokio::test]
    async fn garbage_after_the_last_record_is_cut_on_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::open(dir.path()).unwrap();
        log.append((1..=3).map(payload).collect()).await.unwrap();
        drop(log);
        let file = OpenOptions::new()
            .append(true)
            .open(log_file(dir.path()))
            .unwrap();
        std::io::Write::write_all(&mut &file, &[0xAB; 37]).unwrap();
        drop(file);

        let log = EventLog::open(dir.path()).unwrap();
        assert_eq!(log.next_seq(), 4);
        assert_eq!(log.append(vec![payload(4)]).await.unwrap(), 4..5);
        drop(log);
        let log = EventLog::open(dir.path()).unwrap();
        let expected: Vec<_> = (1..=4).map(|i| (i, payload(i))).collect();
        assert_eq!(log.read(1, 10).unwrap(), expected);
    }

    #[tokio::test]
    async fn zeroed_tail_is_cut_on_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::open(dir.path()).unwrap();
        log.append((1..=3).map(payload).collect()).await.unwrap();
        drop(log);
        let file = OpenOptions::new()
            .write(true)
            .open(log_file(dir.path()))
            .unwrap();
        let len = file.metadata().unwrap().len();
        file.set_len(len + 4096).unwrap();
        drop(file);

        let log = EventLog::open(dir.path()).unwrap();
        assert_eq!(log.next_seq(), 4);
        assert_eq!(log.append(vec![payload(4)]).await.unwrap(), 4..5);
    }

    #[tokio::test]
    async fn flipped_byte_in_last_record_is_detected_and_cut() {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::open(dir.path()).unwrap();
        log.append((1..=3).map(payload).collect()).await.unwrap();
        drop(log);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(log_file(dir.path()))
            .unwrap();
        let len = file.metadata().unwrap().len();
        let mut byte = [0u8];
        file.read_exact_at(&mut byte, len - 2).unwrap();
        file.write_all_at(&[byte[0] ^ 0x01], len - 2).unwrap();
        drop(file);

        let log = EventLog::open(dir.path()).unwrap();
        assert_eq!(log.next_seq(), 3);
        let expected: Vec<_> = (1..=2).map(|i| (i, payload(i))).collect();
        assert_eq!(log.read(1, 10).unwrap(), expected);
        assert_eq!(log.append(vec![payload(3)]).await.unwrap(), 3..4);
    }

    #[tokio::test]
    async fn corruption_before_the_last_group_refuses_to_open() {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::open(dir.path()).unwrap();
        let big = vec![7u8; 1 << 20];
        for _ in 0..18 {
            log.append(vec![big.clone()]).await.unwrap();
        }
        drop(log);
        let file = OpenOptions::new()
            .write(true)
            .open(log_file(dir.path()))
            .unwrap();
        file.write_all_at(&[0], HEADER as u64 + 10).unwrap();
        drop(file);

        match EventLog::open(dir.path()) {
            Err(LogError::Corrupt { offset, .. }) => assert_eq!(offset, 0),
            Err(e) => panic!("wrong error: {e}"),
            Ok(_) => panic!("a corrupt log opened"),
        }
    }

    #[tokio::test]
    async fn failed_fdatasync_fails_the_group_and_every_later_append() {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::open(dir.path()).unwrap();
        log.append(vec![payload(1)]).await.unwrap();
        log.shared
            .fail_next_sync
            .store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(matches!(
            log.append(vec![payload(2)]).await,
            Err(LogError::Io { .. })
        ));
        assert!(matches!(
            log.append(vec![payload(3)]).await,
            Err(LogError::Failed { .. })
        ));
        assert_eq!(log.next_seq(), 2, "nothing unsynced is counted as durable");
        assert_eq!(log.read(1, 10).unwrap(), vec![(1, payload(1))]);
    }

    #[tokio::test]
    async fn oversized_append_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::open(dir.path()).unwrap();
        let err = log.append(vec![vec![0; MAX_GROUP_BYTES]]).await;
        assert!(matches!(err, Err(LogError::TooLarge { .. })));
        assert_eq!(log.next_seq(), 1);
    }
}
