//! Record framing as read back: the reader of frames from a file offset and the tombstone a
//! redacted payload becomes.

use super::*;

/// A redacted payload of `len` bytes: valid JSON whatever the length (at least 2).
pub(in crate::store) fn tombstone(len: usize) -> Vec<u8> {
    let head: &[u8] = if len >= REDACTED.len() {
        REDACTED
    } else {
        b"{}"
    };
    let mut out = head[..head.len().min(len)].to_vec();
    out.resize(len, b' ');
    out
}

/// One record as read back.
pub(super) enum Frame<'a> {
    Good(&'a [u8]),
    Bad(String),
}

/// Reads frames forward from an offset with positioned reads, a chunk at a time.
pub(super) struct FrameReader<'a> {
    /// Records whose checksum is not checked (an interrupted redaction rewrites them).
    pub(super) unchecked: &'a BTreeSet<u64>,
    pub(super) file: &'a File,
    pub(super) buf: Vec<u8>,
    pub(super) pos: usize,
    /// The file offset just past `buf`.
    pub(super) next: u64,
    pub(super) end: u64,
    pub(super) chunk: usize,
}

impl<'a> FrameReader<'a> {
    pub(super) fn new(file: &'a File, start: u64, end: u64, chunk: usize) -> Self {
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
    pub(super) fn offset(&self) -> u64 {
        self.next - (self.buf.len() - self.pos) as u64
    }

    /// The next frame, checked against the sequence number it must carry.
    pub(super) fn next(&mut self, expected_seq: u64) -> io::Result<Frame<'_>> {
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
    pub(super) fn take(&mut self, n: usize) -> io::Result<Option<&[u8]>> {
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
