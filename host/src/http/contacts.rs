//! `/v1/contacts`: read contact profiles, look them up by identity, page their events, undo
//! merges, erase.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, AppState};
use crate::ingest::Identity;
use crate::profiles::{Contact, UnmergeError};

/// The contact routes (the caller adds the key check).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/contacts", get(find))
        .route("/v1/contacts/{id}", get(contact).delete(erase))
        .route("/v1/contacts/{id}/events", get(events))
        .route("/v1/contacts/{id}/merges", get(merges))
        .route("/v1/contacts/{id}/unmerge", post(unmerge))
}

fn view(c: Contact) -> Value {
    json!({ "id": c.id, "identities": c.identities, "traits": c.traits, "counters": c.counters, "last_seq": c.last_seq })
}

async fn contact(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let c = state
        .profiles
        .get(&id)?
        .ok_or_else(|| ApiError::NotFound(format!("no contact `{id}`")))?;
    let segments = state.segments.segments_of(&c.id)?;
    let mut v = view(c);
    v["segments"] = json!(segments);
    Ok(Json(v))
}

#[derive(Deserialize)]
struct FindQuery {
    identity: Option<String>,
}

/// `?identity=email:ada@example.com` (kind, a colon, the value; `userId:` and
/// `anonymousId:` are read as `user_id:` and `anonymous_id:`).
async fn find(
    State(state): State<AppState>,
    Query(q): Query<FindQuery>,
) -> Result<Json<Value>, ApiError> {
    let raw = q
        .identity
        .ok_or_else(|| ApiError::BadRequest("give `identity=kind:value`".into()))?;
    let (kind, value) = raw
        .rsplit_once(':')
        .filter(|(k, v)| !k.is_empty() && !v.is_empty())
        .ok_or_else(|| ApiError::BadRequest(format!("`{raw}` is not kind:value")))?;
    // Segment's spellings of the two id kinds name the same identities.
    let kind = match kind {
        k if k.eq_ignore_ascii_case("userId") => "user_id",
        k if k.eq_ignore_ascii_case("anonymousId") => "anonymous_id",
        k => k,
    };
    let contacts: Vec<Value> = state
        .profiles
        .find(&Identity::new(kind, value))?
        .into_iter()
        .map(view)
        .collect();
    Ok(Json(json!({ "contacts": contacts })))
}

#[derive(Deserialize)]
struct Page {
    after: Option<u64>,
    limit: Option<usize>,
}

async fn events(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(page): Query<Page>,
) -> Result<Json<Value>, ApiError> {
    let c = state
        .profiles
        .get(&id)?
        .ok_or_else(|| ApiError::NotFound(format!("no contact `{id}`")))?;
    let limit = page.limit.unwrap_or(100).clamp(1, 1_000);
    let seqs = state
        .profiles
        .event_seqs(&c.id, page.after.unwrap_or(0), limit)?;
    let mut out = Vec::with_capacity(seqs.len());
    for seq in &seqs {
        // None: erased (or being erased) since the index was read.
        if let Some(event) = state.ingest.logged_event(*seq)? {
            out.push(json!({ "seq": seq, "event": event }));
        }
    }
    let next = if seqs.len() == limit {
        seqs.last().copied()
    } else {
        None
    };
    Ok(Json(json!({ "events": out, "next_after": next })))
}

/// Segment's "delete and suppress": its identities are suppressed (later events about them
/// are acknowledged but not stored), the profile and its event index go, its events are
/// redacted in the log and retained raw webhook requests that mention it are dropped, all
/// before the answer.
async fn erase(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let erased = state
        .profiles
        .erase(&id)?
        .ok_or_else(|| ApiError::NotFound(format!("no contact `{id}`")))?;
    let (profiles, ingest, raw) = (
        state.profiles.clone(),
        state.ingest.clone(),
        state.raw_webhooks.clone(),
    );
    let identities = erased.identities.clone();
    let dropped_webhooks = tokio::task::spawn_blocking(move || -> Result<usize, ApiError> {
        profiles.finish_erasures(&**ingest.log())?;
        Ok(raw.forget(&identities)?)
    })
    .await
    .map_err(|e| ApiError::Internal(format!("erasure: {e}")))??;
    state.segments.forget_contact(&id).await?;
    state.journeys.forget_contact(&id).await?;
    Ok(Json(json!({
        "erased": id,
        "suppressed_identities": erased.identities,
        "redacted_events": erased.event_seqs.len(),
        "dropped_raw_webhooks": dropped_webhooks,
    })))
}

#[derive(Deserialize, Default)]
struct UnmergeBody {
    /// The merged-away contact to restore (default: the latest merge into this contact).
    merge: Option<String>,
}

/// Undoes a merge into a contact: both contacts are rebuilt from their events, and the pair
/// is kept apart from then on.
async fn unmerge(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let body: UnmergeBody = if body.iter().all(u8::is_ascii_whitespace) {
        UnmergeBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("body: {e}")))?
    };
    let (profiles, log) = (state.profiles.clone(), state.ingest.log().clone());
    let done =
        tokio::task::spawn_blocking(move || profiles.unmerge(&id, body.merge.as_deref(), &*log))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?
            .map_err(|e| match e {
                UnmergeError::UnknownContact(_) => ApiError::NotFound(e.to_string()),
                UnmergeError::NothingToUndo(m) => ApiError::Conflict(m),
                UnmergeError::Store(e) => ApiError::Store(e),
                UnmergeError::Log(e) => ApiError::Internal(e.to_string()),
                UnmergeError::Lost(_) => ApiError::Internal(e.to_string()),
            })?;
    Ok(Json(json!({
        "survivor": view(done.survivor),
        "restored": view(done.restored),
    })))
}

/// The merge log entries (merges and unmerges) naming a contact, oldest first.
async fn merges(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let profiles = state.profiles.clone();
    let log = tokio::task::spawn_blocking(move || profiles.merges())
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    let entries: Vec<_> = log
        .into_iter()
        .filter(|m| m.survivor == id || m.merged == id)
        .collect();
    Ok(Json(json!({ "merges": entries })))
}
