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
    /// Browser origins allowed to send (`https://shop.example.com`); absent: any.
    #[serde(default)]
    allowed_origins: Vec<String>,
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
    let mut origins = Vec::with_capacity(body.allowed_origins.len());
    for origin in body.allowed_origins {
        let origin = origin.trim().trim_end_matches('/').to_string();
        let valid = (origin.starts_with("http://") || origin.starts_with("https://"))
            && !origin[origin.find("//").map_or(0, |i| i + 2)..].contains('/')
            && origin.len() <= 256;
        if !valid {
            return Err(ApiError::BadRequest(format!(
                "`{origin}` is not an origin like https://shop.example.com (scheme and host, no path)"
            )));
        }
        origins.push(origin);
    }
    let (source, write_key) = state.sources.create(body.name.trim(), origins)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "id": source.id,
            "name": source.name,
            "created_at": source.created_at,
            "allowed_origins": source.allowed_origins,
            "write_key": write_key,
        })),
    ))
}

async fn list(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({ "sources": state.sources.list()? })))
}
