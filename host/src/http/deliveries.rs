//! `/v1/deliveries`: the messages in the outbox and their state (admin). Messages are only
//! queued so far: nothing is sent yet.

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, AppState};
use crate::outbox::{DeliveryState, Filter};

/// The delivery routes (the caller adds the admin-key check).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/deliveries", get(list))
        .route("/v1/deliveries/{id}", get(one))
}

#[derive(Deserialize)]
struct ListQuery {
    contact: Option<String>,
    journey: Option<String>,
    state: Option<String>,
    after: Option<u64>,
    limit: Option<usize>,
}

async fn list(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let wanted = match q.state.as_deref() {
        None => None,
        Some(s) => Some(DeliveryState::parse(s).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "`state` `{s}` is not a delivery state (only `queued` exists: nothing is sent yet)"
            ))
        })?),
    };
    let filter = Filter {
        contact: q.contact,
        journey: q.journey,
        state: wanted,
    };
    let limit = q.limit.unwrap_or(100).clamp(1, 1_000);
    let deliveries = state.outbox.list(&filter, q.after.unwrap_or(0), limit)?;
    let next = (deliveries.len() == limit)
        .then(|| deliveries.last().map(|d| d.seq))
        .flatten();
    Ok(Json(
        json!({ "deliveries": deliveries, "next_after": next }),
    ))
}

async fn one(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let delivery = state
        .outbox
        .get(&id)?
        .ok_or_else(|| ApiError::NotFound(format!("no delivery `{id}`")))?;
    Ok(Json(json!(delivery)))
}
