//! `POST /v1/connectors/{id}/webhook` and `POST /v1/connectors/{id}/replay`: the routes
//! extract the request and hand it to the connector intake ([`crate::ingest::Intake`]),
//! which runs the live version, retains the request for replay and makes the events durable
//! before the 200.

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, Method, Uri};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};
use time::OffsetDateTime;

use serde::Deserialize;

use super::body::{JsonBody, RawBody};
use super::error::PublicError;
use super::{ApiError, AppState};
use crate::ingest::event::parse_time;
use crate::runtime::types::HttpRequest;

/// Largest webhook body, bytes.
pub const MAX_WEBHOOK_BYTES: usize = 2 << 20;

/// The webhook route (authenticated by the connector's signature check, not by a key).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/connectors/{id}/webhook", post(webhook))
        .layer(DefaultBodyLimit::max(MAX_WEBHOOK_BYTES))
}

/// The replay route (the caller adds the admin-key check).
pub fn admin_router() -> Router<AppState> {
    Router::new().route("/v1/connectors/{id}/replay", post(replay))
}

/// Extracts the request and hands it to the connector intake.
async fn webhook(
    State(state): State<AppState>,
    Path(id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Json<Value>, PublicError> {
    let received_at = OffsetDateTime::now_utc();
    let request = HttpRequest {
        method: method.to_string(),
        path: "/".into(),
        query: uri.query().unwrap_or("").to_string(),
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.to_vec(),
    };
    let report = state.intake.webhook(&id, &request, received_at).await?;
    Ok(Json(
        json!({ "success": true, "accepted": report.accepted, "duplicates": report.duplicates }),
    ))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ReplayBody {
    /// Only requests that arrived at or after this time (RFC 3339).
    since: Option<String>,
    /// At most this many requests (default 10,000).
    limit: Option<usize>,
}

/// Runs the connector's live version over retained requests (see [`crate::ingest::Intake::replay`]).
async fn replay(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ReplayBody>,
) -> Result<Json<Value>, ApiError> {
    let since_ms = match &body.since {
        Some(s) => {
            let t = parse_time(s).ok_or_else(|| {
                ApiError::BadRequest(format!("`since` is not an RFC 3339 time: `{s}`"))
            })?;
            (t.unix_timestamp_nanos() / 1_000_000).max(0) as u64
        }
        None => 0,
    };
    let report = state
        .intake
        .replay(&id, since_ms, body.limit.unwrap_or(10_000))
        .await?;
    Ok(Json(json!(report)))
}
