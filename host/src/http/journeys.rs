//! `/v1/journeys`: define journeys (each change a new version), pause and resume them, read
//! their per-step counts and runs; `/v1/contacts/{id}/journeys`: a contact's runs (admin).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::body::JsonBody;
use super::{ApiError, AppState};
use crate::journeys::{JourneyRecord, Run, VersionCounts, parse_run_state};

/// The journey routes (the caller adds the admin-key check).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/journeys", get(list).post(create))
        .route("/v1/journeys/{id}", get(inspect).put(update).delete(delete))
        .route("/v1/journeys/{id}/pause", post(pause))
        .route("/v1/journeys/{id}/resume", post(resume))
        .route("/v1/journeys/{id}/runs", get(runs))
        .route("/v1/journeys/{id}/versions/{version}", get(version))
        .route("/v1/contacts/{id}/journeys", get(contact_runs))
}

fn summary(r: &JourneyRecord) -> Value {
    json!({
        "id": r.id, "name": r.name, "version": r.version,
        "state": if r.paused { "paused" } else { "live" },
        "created_ms": r.created_ms, "updated_ms": r.updated_ms,
    })
}

fn counts_view(c: &VersionCounts) -> Value {
    let steps: Vec<Value> = c
        .steps
        .iter()
        .map(|(index, id, kind, n)| {
            json!({ "index": index, "id": id, "type": kind, "entered": n.entered,
                    "waiting": n.waiting, "completed": n.completed, "exited": n.exited })
        })
        .collect();
    json!({ "version": c.version, "steps": steps })
}

fn run_view(r: &Run) -> Value {
    let mut v = json!(r);
    v["state"] = r.state.as_str().into();
    v
}

async fn detail(state: &AppState, id: &str) -> Result<Value, ApiError> {
    let (record, version) = state.journeys.get(id)?;
    let counts = state.journeys.counts(id)?;
    let mut v = summary(&record);
    v["definition"] = version.source;
    v["steps"] = counts
        .first()
        .map(|c| counts_view(c)["steps"].clone())
        .unwrap_or_else(|| json!([]));
    v["versions"] = counts.iter().map(counts_view).collect();
    Ok(v)
}

async fn list(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let journeys: Vec<Value> = state.journeys.list()?.iter().map(summary).collect();
    Ok(Json(json!({ "journeys": journeys })))
}

async fn create(
    State(state): State<AppState>,
    JsonBody(input): JsonBody<Value>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let record = state.journeys.create(input).await?;
    Ok((StatusCode::CREATED, Json(detail(&state, &record.id).await?)))
}

async fn inspect(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(detail(&state, &id).await?))
}

async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<Value>,
) -> Result<Json<Value>, ApiError> {
    state.journeys.update(&id, input).await?;
    Ok(Json(detail(&state, &id).await?))
}

async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    state.journeys.delete(&id).await?;
    Ok(Json(json!({ "deleted": id })))
}

async fn pause(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(summary(&state.journeys.set_paused(&id, true).await?)))
}

async fn resume(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(summary(&state.journeys.set_paused(&id, false).await?)))
}

async fn version(
    State(state): State<AppState>,
    Path((id, version)): Path<(String, u32)>,
) -> Result<Json<Value>, ApiError> {
    let v = state.journeys.version(&id, version)?;
    Ok(Json(json!({
        "id": id, "version": version, "created_ms": v.created_ms,
        "definition": v.source,
    })))
}

#[derive(Deserialize)]
struct RunsQuery {
    state: Option<String>,
    after: Option<String>,
    limit: Option<usize>,
}

async fn runs(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<RunsQuery>,
) -> Result<Json<Value>, ApiError> {
    let filter = match q.state.as_deref() {
        None => None,
        Some(s) => Some(parse_run_state(s).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "`state` is one of active, waiting, completed, exited, not `{s}`"
            ))
        })?),
    };
    let limit = q.limit.unwrap_or(100).clamp(1, 1_000);
    let runs = state
        .journeys
        .runs(&id, filter, q.after.as_deref(), limit)?;
    let next = (runs.len() == limit)
        .then(|| runs.last().map(|r| r.id.clone()))
        .flatten();
    let runs: Vec<Value> = runs.iter().map(run_view).collect();
    Ok(Json(json!({ "runs": runs, "next_after": next })))
}

async fn contact_runs(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let runs: Vec<Value> = state
        .journeys
        .runs_of_contact(&id)?
        .iter()
        .map(run_view)
        .collect();
    Ok(Json(json!({ "contact_id": id, "runs": runs })))
}
