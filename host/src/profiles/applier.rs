//! The profile stage's loop: reads the event log from the last applied sequence and applies
//! each event, so profiles catch up after a restart or a crash.

use std::sync::Arc;
use std::time::Duration;

use crate::ingest::{Ingest, StoredEvent};

use super::Profiles;

/// Applies logged events to profiles until `shutdown` fires.
pub async fn run_applier(
    ingest: Arc<Ingest>,
    profiles: Profiles,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let notified = ingest.appended();
        // sled calls block: run a page off the async workers, which serve HTTP.
        let (i, p) = (ingest.clone(), profiles.clone());
        let page = tokio::task::spawn_blocking(move || catch_up(&i, &p)).await;
        let applied = match page.map_err(|e| e.to_string()).and_then(|r| r) {
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

/// Applies one page of pending events (one transaction); returns how many were read.
pub fn catch_up(ingest: &Ingest, profiles: &Profiles) -> Result<usize, String> {
    let from = profiles.applied_seq().map_err(|e| e.to_string())? + 1;
    let records = ingest.log().read(from, 1_000).map_err(|e| e.to_string())?;
    let Some(&(last, _)) = records.last() else {
        return Ok(0);
    };
    let mut events = Vec::with_capacity(records.len());
    for (seq, bytes) in &records {
        match serde_json::from_slice::<StoredEvent>(bytes) {
            Ok(event) => events.push((*seq, Some(event))),
            Err(e) => {
                tracing::error!(seq, "undecodable event in the log, skipped: {e}");
                events.push((*seq, None));
            }
        }
    }
    let ids: Vec<(&str, u64)> = events
        .iter()
        .filter_map(|(_, e)| e.as_ref())
        .map(|e| (e.message_id.as_str(), event_ms(e)))
        .collect();
    ingest.index_logged(&ids, last).map_err(|e| e.to_string())?;
    profiles.apply_batch(&events).map_err(|e| e.to_string())?;
    Ok(records.len())
}

fn event_ms(event: &StoredEvent) -> u64 {
    crate::ingest::event::parse_time(&event.received_at)
        .map_or(0, |t| (t.unix_timestamp_nanos() / 1_000_000) as u64)
}
