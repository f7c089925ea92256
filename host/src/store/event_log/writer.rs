//! The one thread that owns the log file: drains pending appends, writes them as one group
//! and answers their waiters only after one `fdatasync`.

use super::*;

/// The thread that owns the file: writes groups and syncs them.
pub(super) struct GroupWriter {
    pub(super) file: File,
    pub(super) shared: Arc<Shared>,
    pub(super) receiver: mpsc::Receiver<Pending>,
    pub(super) next_seq: u64,
    pub(super) end: u64,
    pub(super) buf: Vec<u8>,
    pub(super) index: Vec<u64>,
    pub(super) failed: Option<String>,
}

impl GroupWriter {
    pub(super) fn run(mut self) {
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

    pub(super) fn commit(&mut self, group: Vec<Pending>) {
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
                self.shared.advanced.send_replace(self.next_seq);
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

    pub(super) fn sync(&self) -> io::Result<()> {
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
