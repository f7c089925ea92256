//! What browser tracking libraries fetch before they send: RudderStack's control-plane
//! `GET /sourceConfig` and Segment's project settings `GET /v1/projects/{writeKey}/settings`,
//! answered for a known write key with a source that has no destinations and sends here.

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::auth::basic_user;
use super::tracking::{cors, preflight, query_write_key, source_for};
use super::{AppState, TrackingError};

/// The client-configuration routes (authenticated by the write key, not the admin key).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/sourceConfig", get(source_config).options(preflight))
        .route("/sourceConfig/", get(source_config).options(preflight))
        .route(
            "/v1/projects/{write_key}/settings",
            get(segment_settings).options(preflight),
        )
        .layer(axum::middleware::from_fn(cors))
}

/// RudderStack's control plane answer: the source, enabled, with no device-mode
/// destinations, so the SDK sends every call to the data plane it was given (this host).
async fn source_config(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, TrackingError> {
    let key = basic_user(&headers).or_else(|| query.as_deref().and_then(query_write_key));
    let source = source_for(&state, key.as_deref())?;
    let body = json!({
        "isHosted": false,
        "source": {
            "id": source.id,
            "name": source.name,
            "writeKey": key,
            "enabled": true,
            "workspaceId": "tessera",
            "config": {},
            "destinations": [],
        },
    });
    Ok(Json(body).into_response())
}

/// Segment's CDN settings for analytics.js 2.0 (`cdnURL` pointed at this host): only the
/// `Segment.io` integration, whose API host is this host, so events come back here.
async fn segment_settings(
    State(state): State<AppState>,
    Path(write_key): Path<String>,
    headers: HeaderMap,
) -> Result<Response, TrackingError> {
    source_for(&state, Some(&write_key))?;
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let protocol = headers
        .get("x-forwarded-proto")
        .and_then(|h| h.to_str().ok())
        .filter(|p| *p == "https")
        .unwrap_or("http");
    let body = json!({
        "integrations": {
            "Segment.io": {
                "apiKey": write_key,
                "apiHost": format!("{host}/v1"),
                "protocol": protocol,
            },
        },
        "plan": {},
        "edgeFunction": {},
        "analyticsNextEnabled": true,
        "middlewareSettings": {},
        "enabledMiddleware": {},
        "metrics": { "sampleRate": 0 },
        "legacyVideoPluginsEnabled": false,
        "remotePlugins": [],
    });
    Ok(Json(body).into_response())
}
