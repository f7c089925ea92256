//! The durable-write limit the event log is measured against: the same `fdatasync` and the
//! same group commit, without the host. `writers` threads each append framed records and wait
//! for their acknowledgement; one syncer thread drains every pending append, writes the group
//! with one `write_all`, calls `File::sync_data` once and only then acknowledges the group.
//! Frames are the event log's: `[u32 len LE][u32 crc32 LE][u64 seq LE][payload]` (the crc is
//! left at zero here; computing it is the host's work, not the disk's).

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::sync::mpsc;
use std::time::Instant;

/// One writer's append: its records, and where to send the acknowledgement.
struct Append {
    records: usize,
    done: mpsc::SyncSender<()>,
}

/// What one run measured.
#[derive(Debug, Clone, Copy)]
pub struct Limit {
    /// Records acknowledged per second.
    pub records_per_s: f64,
    /// Records per `fdatasync` on average (how much the group commit shared each sync).
    pub records_per_sync: f64,
}

/// Appends `total` records of `payload` from `writers` threads, `per_append` records per
/// acknowledged append, into a fresh file under `dir`; returns the acknowledged rate.
pub fn measure(
    dir: &Path,
    payload: &[u8],
    writers: usize,
    per_append: usize,
    total: usize,
) -> Limit {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("durable-limit.log"))
        .expect("open the limit's file");
    let appends_per_writer = (total / writers / per_append).max(1);
    let records = appends_per_writer * writers * per_append;
    let (tx, rx) = mpsc::channel::<Append>();
    let start = Instant::now();
    let syncer = {
        let payload = payload.to_vec();
        std::thread::spawn(move || {
            let (mut seq, mut syncs, mut buf) = (1u64, 0u64, Vec::new());
            while let Ok(first) = rx.recv() {
                let mut group = vec![first];
                group.extend(rx.try_iter());
                buf.clear();
                for append in &group {
                    for _ in 0..append.records {
                        buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
                        buf.extend_from_slice(&0u32.to_le_bytes());
                        buf.extend_from_slice(&seq.to_le_bytes());
                        buf.extend_from_slice(&payload);
                        seq += 1;
                    }
                }
                file.write_all(&buf).expect("write");
                file.sync_data().expect("fdatasync");
                syncs += 1;
                for append in group {
                    let _ = append.done.send(());
                }
            }
            syncs
        })
    };
    let threads: Vec<_> = (0..writers)
        .map(|_| {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for _ in 0..appends_per_writer {
                    let (done, acked) = mpsc::sync_channel(1);
                    tx.send(Append {
                        records: per_append,
                        done,
                    })
                    .expect("syncer alive");
                    acked.recv().expect("acknowledged");
                }
            })
        })
        .collect();
    drop(tx);
    for t in threads {
        t.join().expect("writer");
    }
    let elapsed = start.elapsed();
    let syncs = syncer.join().expect("syncer");
    Limit {
        records_per_s: records as f64 / elapsed.as_secs_f64(),
        records_per_sync: records as f64 / syncs.max(1) as f64,
    }
}
