//! Liveness and readiness: `/healthz` answers while the process runs, `/readyz` once start-up
//! (restoring slots, loading bundled plugins) is done; `/v1/status` (admin) tells how far the
//! profile and segment stages have followed the event log.

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;

/// `/healthz` and `/readyz`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

/// `/v1/status` (the caller adds the admin-key check).
pub fn admin_router() -> Router<AppState> {
    Router::new().route("/v1/status", get(status))
}

async fn status(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let logged = state.ingest.log().last_seq();
    let applied = state.profiles.applied_seq()?;
    let evaluated = state.segments.evaluated_seq()?;
    let journeys = state.journeys.followed_seq()?;
    Ok(Json(json!({
        "event_log": { "last_seq": logged },
        "profiles": { "applied_seq": applied, "behind": logged.saturating_sub(applied) },
        // Memberships reflect every event up to `evaluated_seq`; `behind` counts from the
        // log's end, so 0 means both stages have caught up with everything logged.
        "segments": { "evaluated_seq": evaluated, "behind": logged.saturating_sub(evaluated) },
        "dedupe": { "awaiting_index": state.ingest.unindexed_len() },
        "journeys": { "followed_seq": journeys, "behind": applied.saturating_sub(journeys) },
        "outbox": { "open": state.outbox.open_count() },
    })))
}

async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    if state.ready.load(Ordering::Acquire) {
        (StatusCode::OK, Json(json!({ "status": "ready" })))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "starting" })),
        )
    }
}
