//! `POST /v1/connectors/{id}/webhook`: hands the raw request to the live connector version,
//! which verifies its signature and maps it; the events are durable before the 200. The raw
//! request is retained so `POST /v1/connectors/{id}/replay` can run a fixed version over it.

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, Method, Uri};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};
use time::OffsetDateTime;

use serde::Deserialize;

use super::body::{JsonBody, RawBody};
use super::{ApiError, AppState};
use crate::ingest::event::parse_time;
use crate::ingest::{PageStart, from_connector};
use crate::plugins::PluginError;
use crate::runtime::types::{ConnectorError, HttpRequest};

/// Largest webhook body, bytes.
pub const MAX_WEBHOOK_BYTES: usize = 2 << 20;
/// Retained requests a replay holds at once.
const REPLAY_PAGE: usize = 16;
/// Bytes of retained requests (as stored) a replay holds at once, past the first request.
const REPLAY_PAGE_BYTES: u64 = 8 << 20;

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

/// Whether a request is worth keeping for replay: one the live connector saw and did not
/// refuse as unsigned, or one a live connector could not take because the operator disabled
/// it or its breaker is open (replay is how those are recovered). Nothing is kept for an
/// unknown plugin or a connector that is not live: anyone may post there, nobody checks.
fn worth_keeping(
    outcome: &Result<Result<Vec<crate::runtime::ConnectorEvent>, ConnectorError>, PluginError>,
) -> bool {
    match outcome {
        Ok(Ok(_)) => true,
        Ok(Err(e)) => !matches!(e, ConnectorError::Unauthorized(_)),
        Err(PluginError::Call(_) | PluginError::Disabled(_) | PluginError::BreakerOpen { .. }) => {
            true
        }
        Err(_) => false,
    }
}

async fn webhook(
    State(state): State<AppState>,
    Path(id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Json<Value>, ApiError> {
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
    let outcome = state.registry.handle_webhook(&id, &request).await;
    if worth_keeping(&outcome)
        && let Err(e) = state.raw_webhooks.retain(&id, &request, received_at)
    {
        tracing::error!(plugin = %id, "raw webhook not retained: {e}");
    }
    let events = outcome?.map_err(ApiError::Connector)?;
    let report = state
        .ingest
        .ingest(from_connector(&id, events, received_at))
        .await?;
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

/// Runs the connector's live version over retained requests, oldest first, a page at a time;
/// events already stored are deduplicated, so replaying twice stores nothing twice.
async fn replay(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ReplayBody>,
) -> Result<Json<Value>, ApiError> {
    state.registry.slot(&id)?;
    let since_ms = match &body.since {
        Some(s) => {
            let t = parse_time(s).ok_or_else(|| {
                ApiError::BadRequest(format!("`since` is not an RFC 3339 time: `{s}`"))
            })?;
            (t.unix_timestamp_nanos() / 1_000_000).max(0) as u64
        }
        None => 0,
    };
    let limit = body.limit.unwrap_or(10_000);
    let (mut replayed, mut accepted, mut duplicates, mut failures) = (0, 0, 0, Vec::new());
    let mut start = PageStart::Since(since_ms);
    // A page at a time: at most 16 requests or 8 MiB of them in memory.
    while replayed < limit {
        let page = state.raw_webhooks.page(
            &id,
            &start,
            (limit - replayed).min(REPLAY_PAGE),
            REPLAY_PAGE_BYTES,
        )?;
        for raw in &page.requests {
            replayed += 1;
            let outcome = state.registry.handle_webhook(&id, &raw.to_request()).await;
            match outcome {
                Ok(Ok(events)) => {
                    let report = state
                        .ingest
                        .ingest(from_connector(&id, events, raw.received_at()))
                        .await?;
                    accepted += report.accepted;
                    duplicates += report.duplicates;
                }
                Ok(Err(e)) => failures.push(json!({ "received_ms": raw.received_ms, "error": e })),
                Err(e) => {
                    failures.push(json!({ "received_ms": raw.received_ms, "error": e.to_string() }))
                }
            }
        }
        match page.next {
            Some(next) => start = next,
            None => break,
        }
    }
    Ok(Json(json!({
        "replayed": replayed, "accepted": accepted, "duplicates": duplicates, "failures": failures
    })))
}
