//! `/v1/segments`: define, inspect, change and delete segments, and page through members
//! (admin).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::body::JsonBody;
use super::{ApiError, AppState};
use crate::segments::{SegmentDef, SegmentInput};

/// The segment routes (the caller adds the admin-key check).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/segments", get(list).post(create))
        .route("/v1/segments/{id}", get(inspect).put(update).delete(delete))
        .route("/v1/segments/{id}/members", get(members))
}

fn view(def: &SegmentDef) -> Value {
    let mut v = json!(def);
    if let (Some(r), Some(Value::Object(out))) = (&def.recompute, v.get_mut("recompute")) {
        let progress = if r.total == 0 {
            1.0
        } else {
            (r.evaluated as f64 / r.total as f64).min(1.0)
        };
        let state = if r.finished_ms.is_some() {
            "done"
        } else {
            "running"
        };
        out.insert("state".into(), state.into());
        out.insert("progress".into(), progress.into());
    }
    v
}

async fn list(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let segments: Vec<Value> = state.segments.list()?.iter().map(view).collect();
    Ok(Json(json!({ "segments": segments })))
}

async fn create(
    State(state): State<AppState>,
    JsonBody(input): JsonBody<SegmentInput>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let def = state.segments.create(input).await?;
    Ok((StatusCode::CREATED, Json(view(&def))))
}

async fn inspect(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(view(&state.segments.get(&id)?)))
}

async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<SegmentInput>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(view(&state.segments.update(&id, input).await?)))
}

async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    state.segments.delete(&id).await?;
    Ok(Json(json!({ "deleted": id })))
}

#[derive(Deserialize)]
struct Page {
    after: Option<String>,
    limit: Option<usize>,
}

async fn members(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(page): Query<Page>,
) -> Result<Json<Value>, ApiError> {
    let limit = page.limit.unwrap_or(100).clamp(1, 1_000);
    let members = state.segments.members(&id, page.after.as_deref(), limit)?;
    let next = (members.len() == limit)
        .then(|| members.last().map(|(c, _)| c.clone()))
        .flatten();
    let members: Vec<Value> = members
        .into_iter()
        .map(|(contact, m)| json!({ "contact_id": contact, "since_ms": m.since_ms, "version": m.version }))
        .collect();
    Ok(Json(json!({ "members": members, "next_after": next })))
}
