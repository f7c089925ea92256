//! The profile stage's loop: reads the event log from the last applied sequence and applies
//! each event, so profiles catch up after a restart or a crash. Redacted records are skipped;
//! events about an erased contact that were logged before its erasure are redacted here.

use std::sync::Arc;
use std::time::Duration;

use crate::ingest::Ingest;
use crate::store::{LogError, StoreError, is_redacted};

use super::event::ProfileEvent;
use super::{EraseError, Profiles};

/// Why a page of the log could not be applied (the applier retries it).
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The event log could not be read or redacted.
    #[error(transparent)]
    Log(#[from] LogError),
    /// An erasure left undone could not be finished.
    #[error(transparent)]
    Erase(#[from] EraseError),
    /// The profile store or the dedupe index failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The page's task was lost (it panicked or the runtime stopped).
    #[error("the page's task ended: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Applies logged events to profiles until `shutdown` fires.
pub async fn run_applier(
    ingest: Arc<Ingest>,
    profiles: Profiles,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let notified = ingest.appended();
        // Storage calls block: run a page off the async workers, which serve HTTP.
        let (i, p) = (ingest.clone(), profiles.clone());
        let page = tokio::task::spawn_blocking(move || catch_up(&i, &p)).await;
        let applied = match page.map_err(ApplyError::from).and_then(|r| r) {
            Ok(n) => n,
            Err(e) => {
                tracing::error!("profile stage: {e}; retrying");
                0
            }
        };
        if applied > 0 {
            continue;
        }
        tokio::select! {
            _ = notified => {}
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Applies one page of pending events (one atomic batch); returns how many were read. Finishes
/// any erasure or redaction left undone first.
pub fn catch_up(ingest: &Ingest, profiles: &Profiles) -> Result<usize, ApplyError> {
    ingest.log().redact(&[])?;
    profiles.finish_erasures(&**ingest.log())?;
    let from = profiles.applied_seq()? + 1;
    let records = ingest.log().read(from, 1_000)?;
    let Some(&(last, _)) = records.last() else {
        return Ok(0);
    };
    let mut events = Vec::with_capacity(records.len());
    // Logged before its contact was erased: skipped, and its bytes go before the page
    // commits, so a crash cannot leave it unredacted.
    let mut erased = Vec::new();
    let suppressing = ingest.suppresses_any();
    for (seq, bytes) in &records {
        if is_redacted(bytes) {
            events.push((*seq, None));
            continue;
        }
        match ProfileEvent::decode(bytes) {
            Ok(event) => {
                if suppressing && ingest.any_suppressed(&event.all_identities())? {
                    erased.push(*seq);
                }
                events.push((*seq, Some(event)));
            }
            Err(e) => {
                tracing::error!(seq, "undecodable event in the log, skipped: {e}");
                events.push((*seq, None));
            }
        }
    }
    ingest.log().redact(&erased)?;
    let ids: Vec<&str> = events
        .iter()
        .filter_map(|(_, e)| e.as_ref())
        .map(|e| e.message_id.as_str())
        .collect();
    ingest.index_logged(&ids, last)?;
    profiles.apply_page(&events)?;
    Ok(records.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::StoredEvent;
    use crate::store::{Log, MemoryLog};

    fn track(id: &str, user: &str) -> StoredEvent {
        serde_json::from_value(serde_json::json!({
            "message_id": id, "type": "track", "event": "Seen", "user_id": user,
            "timestamp": "2030-01-01T00:00:00Z", "received_at": "2030-01-01T00:00:00Z",
            "source": "source:test",
        }))
        .expect("event")
    }

    #[tokio::test]
    async fn an_event_logged_before_its_contact_was_erased_is_skipped_and_redacted() {
        let dir = tempfile::tempdir().expect("dir");
        let db = crate::store::SledEngine::open(&dir.path().join("db")).expect("db");
        let log = Arc::new(MemoryLog::new());
        let ingest = Ingest::new(log.clone(), &db, Duration::from_secs(3600)).expect("ingest");
        let profiles = Profiles::open(&db).expect("profiles");
        ingest.ingest(vec![track("m1", "u1")]).await.expect("m1");
        assert_eq!(catch_up(&ingest, &profiles).expect("page"), 1);
        // Logged, not applied yet, when the contact is erased.
        ingest
            .ingest(vec![track("m2", "u1"), track("m3", "u2")])
            .await
            .expect("m2");
        let contact = profiles
            .find(&crate::ingest::Identity::new("user_id", "u1"))
            .expect("find")
            .expect("u1");
        let erased = profiles.erase(&contact.id).expect("erase").expect("there");
        assert_eq!(erased.event_seqs, vec![1]);
        assert_eq!(catch_up(&ingest, &profiles).expect("page"), 2);
        let records = log.read(1, 10).expect("read");
        let redacted: Vec<bool> = records.iter().map(|(_, b)| is_redacted(b)).collect();
        assert_eq!(redacted, vec![true, true, false]);
        assert!(
            profiles
                .find(&crate::ingest::Identity::new("user_id", "u1"))
                .expect("find")
                .is_none()
        );
    }
}
