//! Segment's tracking API at Segment's own paths: `/v1/identify|track|page|screen|group|alias`,
//! `/v1/batch` and `/v1/import`. Auth as Segment's clients send it: HTTP Basic with the
//! source's write key as the user name (or `writeKey` in the body). Answers `{"success": true}`
//! only once the events are durable.

use axum::extract::{DefaultBodyLimit, State};
use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::auth::basic_user;
use super::body::RawBody;
use super::{ApiError, AppState};
use crate::ingest::EventType;
use crate::ingest::segment::{self, MAX_BATCH_BYTES};

/// The tracking routes.
pub fn router() -> Router<AppState> {
    let single = |kind: EventType| {
        post(move |s: State<AppState>, h: HeaderMap, b: RawBody| track(s, h, b, Some(kind)))
    };
    Router::new()
        .route("/v1/identify", single(EventType::Identify))
        .route("/v1/track", single(EventType::Track))
        .route("/v1/page", single(EventType::Page))
        .route("/v1/screen", single(EventType::Screen))
        .route("/v1/group", single(EventType::Group))
        .route("/v1/alias", single(EventType::Alias))
        .route(
            "/v1/batch",
            post(|s: State<AppState>, h: HeaderMap, b: RawBody| track(s, h, b, None)),
        )
        .route(
            "/v1/import",
            post(|s: State<AppState>, h: HeaderMap, b: RawBody| track(s, h, b, None)),
        )
        // Room above Segment's 500 KB so an oversized batch gets our 413 with a JSON body.
        .layer(DefaultBodyLimit::max(MAX_BATCH_BYTES + (64 << 10)))
}

async fn track(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawBody(body): RawBody,
    kind: Option<EventType>,
) -> Result<Json<Value>, ApiError> {
    let received_at = OffsetDateTime::now_utc();
    let header_key = basic_user(&headers);
    // Authenticate before parsing: an unknown key learns nothing about the payload.
    let body_key = if header_key.is_none() {
        peek_write_key(&body)
    } else {
        None
    };
    let key = header_key.or(body_key).ok_or(ApiError::UnknownWriteKey)?;
    let source = state
        .sources
        .authenticate(&key)?
        .ok_or(ApiError::UnknownWriteKey)?;
    let events = segment::parse(&body, kind, received_at, &format!("source:{}", source.id))?;
    let report = state.ingest.ingest(events).await?;
    tracing::debug!(source = %source.id, accepted = report.accepted, duplicates = report.duplicates, "tracked");
    Ok(Json(json!({ "success": true })))
}

fn peek_write_key(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Key {
        #[serde(rename = "writeKey")]
        write_key: Option<String>,
    }
    serde_json::from_slice::<Key>(body).ok()?.write_key
}
