//! The event log's tests: group commit, reads, torn tails, redaction and recovery.

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
