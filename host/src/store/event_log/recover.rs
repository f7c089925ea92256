//! Opening after a crash: the scan that verifies every record and finds a torn tail, and the
//! redaction journal that lets an interrupted rewrite finish.

use super::*;

/// What the scan on open found.
pub(super) struct Scan {
    pub(super) next_seq: u64,
    /// End of the last good record.
    pub(super) end: u64,
    pub(super) index: Vec<u64>,
    pub(super) cut_reason: String,
}

/// Verifies every record; a bad one within the last group's reach is a torn tail.
pub(super) fn scan(
    reader: &File,
    path: &Path,
    len: u64,
    redacting: &BTreeSet<u64>,
) -> Result<Scan, LogError> {
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

/// The sequences listed in a redaction journal (a torn last entry is ignored).
pub(super) fn read_journal(path: &Path) -> io::Result<BTreeSet<u64>> {
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
pub(super) fn write_journal(path: &Path, seqs: &[u64]) -> io::Result<()> {
    let bytes: Vec<u8> = seqs.iter().flat_map(|s| s.to_le_bytes()).collect();
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    file.write_all_at(&bytes, 0)?;
    file.sync_data()
}
