//! `/v1/sources`: create and list tracking sources (admin). A write key is shown once.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::body::JsonBody;
use super::{ApiError, AppState};

/// The source routes (the caller adds the admin-key check).
pub fn router() -> Router<AppState> {
    Router::new().route("/v1/sources", get(list).post(create))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewSource {
    name: String,
}

async fn create(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<NewSource>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    if body.name.trim().is_empty() {
        return Err(ApiError::BadRequest(
            "a source needs a non-empty `name`".into(),
        ));
    }
    let (source, write_key) = state.sources.create(body.name.trim())?;
    Ok((
        StatusCode::CREATED,
        Json(
            json!({ "id": source.id, "name": source.name, "created_at": source.created_at, "write_key": write_key }),
        ),
    ))
}

async fn list(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({ "sources": state.sources.list()? })))
}
