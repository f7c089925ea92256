//! `POST /v1/connectors/{id}/webhook`: hands the raw request to the live connector version,
//! which verifies its signature and maps it; the events are durable before the 200.

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, Method, Uri};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::body::RawBody;
use super::{ApiError, AppState};
use crate::ingest::from_connector;
use crate::runtime::bindings::types::HttpRequest;

/// Largest webhook body, bytes.
pub const MAX_WEBHOOK_BYTES: usize = 2 << 20;

/// The webhook route (authenticated by the connector's signature check, not by a key).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/connectors/{id}/webhook", post(webhook))
        .layer(DefaultBodyLimit::max(MAX_WEBHOOK_BYTES))
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
    let events = state
        .registry
        .handle_webhook(&id, &request)
        .await?
        .map_err(ApiError::Connector)?;
    let report = state
        .ingest
        .ingest(from_connector(&id, events, received_at))
        .await?;
    Ok(Json(
        json!({ "success": true, "accepted": report.accepted, "duplicates": report.duplicates }),
    ))
}
