//! `/v1/deliveries`: the messages in the outbox, their state and attempts, and the dead
//! letters' way back (retry one, replay many); `/v1/channels/{id}/settings`: a channel's
//! retry settings (admin).

use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::body::{JsonBody, OptionalJson};
use super::{ApiError, AppState};
use crate::outbox::{DeliveryState, Filter, RetryOverride};
use crate::plugins::PluginError;
use crate::runtime::PluginKind;

/// Most dead letters one replay moves back.
pub const MAX_REPLAY: usize = 10_000;

/// The delivery routes (the caller adds the admin-key check).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/deliveries", get(list))
        .route("/v1/deliveries/replay", post(replay))
        .route("/v1/deliveries/{id}", get(one))
        .route("/v1/deliveries/{id}/retry", post(retry))
        .route(
            "/v1/channels/{id}/settings",
            get(settings).put(set_settings),
        )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    contact: Option<String>,
    channel: Option<String>,
    journey: Option<String>,
    state: Option<String>,
    after: Option<u64>,
    limit: Option<usize>,
}

fn state_filter(text: Option<&str>) -> Result<Option<DeliveryState>, ApiError> {
    let Some(s) = text else { return Ok(None) };
    DeliveryState::parse(s).map(Some).ok_or_else(|| {
        let names: Vec<&str> = DeliveryState::ALL.iter().map(|s| s.as_str()).collect();
        ApiError::BadRequest(format!(
            "`state` `{s}` is not a delivery state (one of {})",
            names.join(", ")
        ))
    })
}

/// Deliveries in the order they were queued; `next_after` pages on.
async fn list(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let filter = Filter {
        state: state_filter(q.state.as_deref())?,
        contact: q.contact,
        channel: q.channel,
        journey: q.journey,
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

/// One delivery with its attempts.
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

/// A dead letter back to `queued`, with a fresh allowance of attempts.
async fn retry(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let delivery = state.outbox.retry(&id, now())?;
    Ok(Json(json!(delivery)))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ReplayBody {
    /// Only this channel's dead letters.
    channel: Option<String>,
    /// Only those whose error contains this text.
    error: Option<String>,
    /// At most this many (default and most: [`MAX_REPLAY`]).
    limit: Option<usize>,
}

/// Dead letters matching the body (every one when it is empty) back to `queued`.
async fn replay(
    State(state): State<AppState>,
    OptionalJson(body): OptionalJson<ReplayBody>,
) -> Result<Json<Value>, ApiError> {
    let body = body.unwrap_or_default();
    let limit = body.limit.unwrap_or(MAX_REPLAY);
    if !(1..=MAX_REPLAY).contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "`limit` must be within 1..={MAX_REPLAY}"
        )));
    }
    if body.error.as_deref() == Some("") {
        return Err(ApiError::BadRequest(
            "`error` must not be empty (leave it out to replay every error)".into(),
        ));
    }
    let dead = state
        .outbox
        .dead_letters(body.channel.as_deref(), body.error.as_deref(), limit)?;
    let at = now();
    let mut ids = Vec::with_capacity(dead.len());
    for d in dead {
        ids.push(state.outbox.retry(&d.id, at)?.id);
    }
    Ok(Json(json!({ "replayed": ids.len(), "ids": ids })))
}

/// The channel plugin `id`, which must exist and be a channel.
fn channel(state: &AppState, id: &str) -> Result<(), ApiError> {
    let kind = state.registry.slot(id)?.kind();
    if kind != PluginKind::Channel {
        return Err(PluginError::WrongKind {
            plugin: id.to_string(),
            actual: kind,
            wanted: PluginKind::Channel,
        }
        .into());
    }
    Ok(())
}

/// A channel's retry settings: the effective ones and its override.
async fn settings(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    channel(&state, &id)?;
    Ok(Json(json!({
        "settings": state.outbox.settings(&id)?,
        "override": state.outbox.settings_override(&id)?,
        "defaults": state.outbox.config().defaults,
    })))
}

/// Sets a channel's override (fields left out keep the host's defaults).
async fn set_settings(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<RetryOverride>,
) -> Result<Json<Value>, ApiError> {
    channel(&state, &id)?;
    let settings = state.outbox.set_settings(&id, body)?;
    Ok(Json(json!({ "settings": settings, "override": body })))
}

fn now() -> i64 {
    i64::try_from(crate::clock::now_ms()).unwrap_or(i64::MAX)
}
