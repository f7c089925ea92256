//! `/v1/plugins`: upload, list, inspect, activate, roll back, disable, enable, configure, a
//! connector's poll state, and a console that runs the live version on an input the operator
//! gives.

use axum::extract::{DefaultBodyLimit, Multipart, Path, State};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::body::JsonBody;
use super::{ApiError, AppState, MAX_UPLOAD_BYTES};
use crate::ingest::PollStatus;
use crate::plugins::{PluginError, PluginView, VersionView};
use crate::runtime::PluginKind;
use crate::runtime::bindings::types::{HttpRequest, Message, RuleInput};

/// The plugin admin routes (the caller adds the admin-key check).
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/plugins",
            get(list)
                .post(upload)
                .layer(DefaultBodyLimit::max(MAX_UPLOAD_BYTES)),
        )
        .route("/v1/plugins/{id}", get(inspect))
        .route("/v1/plugins/{id}/versions/{sha}", get(inspect_version))
        .route("/v1/plugins/{id}/activate", post(activate))
        .route("/v1/plugins/{id}/rollback", post(rollback))
        .route("/v1/plugins/{id}/disable", post(disable))
        .route("/v1/plugins/{id}/enable", post(enable))
        .route("/v1/plugins/{id}/config", put(set_config))
        .route("/v1/plugins/{id}/call", post(call))
        .route("/v1/plugins/{id}/poll", get(poll_status))
}

async fn list(State(state): State<AppState>) -> Json<Value> {
    Json(json!({ "plugins": state.registry.list() }))
}

async fn inspect(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<PluginView>, ApiError> {
    Ok(Json(state.registry.inspect(&id)?))
}

async fn inspect_version(
    State(state): State<AppState>,
    Path((id, sha)): Path<(String, String)>,
) -> Result<Json<VersionView>, ApiError> {
    Ok(Json(state.registry.inspect_version(&id, &sha)?))
}

fn multipart_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::TooLarge(format!("uploads are limited to {MAX_UPLOAD_BYTES} bytes"))
    } else {
        ApiError::BadRequest(format!("malformed multipart upload: {}", e.body_text()))
    }
}

/// `multipart/form-data` with a `manifest` part (plugin.toml) and a `component` part (.wasm).
async fn upload(
    State(state): State<AppState>,
    mut form: Multipart,
) -> Result<(axum::http::StatusCode, Json<VersionView>), ApiError> {
    let (mut manifest, mut component) = (None, None);
    while let Some(field) = form.next_field().await.map_err(multipart_error)? {
        match field.name() {
            Some("manifest") => manifest = Some(field.text().await.map_err(multipart_error)?),
            Some("component") => component = Some(field.bytes().await.map_err(multipart_error)?),
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unexpected form part {other:?}; send `manifest` and `component`"
                )));
            }
        }
    }
    let manifest = manifest.ok_or_else(|| {
        ApiError::BadRequest("the `manifest` part (plugin.toml) is missing".into())
    })?;
    let component = component
        .ok_or_else(|| ApiError::BadRequest("the `component` part (.wasm) is missing".into()))?;
    let registry = state.registry.clone();
    // Compiling takes milliseconds to seconds of CPU: keep it off the async workers.
    let view = tokio::task::spawn_blocking(move || registry.upload(&manifest, &component))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok((axum::http::StatusCode::CREATED, Json(view)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ActivateBody {
    sha256: String,
}

async fn activate(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ActivateBody>,
) -> Result<Json<PluginView>, ApiError> {
    Ok(Json(state.registry.activate(&id, &body.sha256).await?))
}

async fn rollback(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<PluginView>, ApiError> {
    Ok(Json(state.registry.rollback(&id).await?))
}

async fn disable(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<PluginView>, ApiError> {
    Ok(Json(state.registry.set_enabled(&id, false).await?))
}

async fn enable(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<PluginView>, ApiError> {
    Ok(Json(state.registry.set_enabled(&id, true).await?))
}

async fn set_config(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(config): JsonBody<serde_json::Map<String, Value>>,
) -> Result<Json<PluginView>, ApiError> {
    Ok(Json(state.registry.set_config(&id, config).await?))
}

/// A connector's polling: cursor, last round, last error, failures and back-off.
async fn poll_status(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<PollStatus>, ApiError> {
    let kind = state.registry.slot(&id)?.kind();
    if kind != PluginKind::Connector {
        return Err(PluginError::WrongKind {
            plugin: id,
            actual: kind,
            wanted: PluginKind::Connector,
        }
        .into());
    }
    Ok(Json(state.poller.status(&id)?))
}

/// A webhook request as the console takes it: text body, headers as an object or pairs.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsoleRequest {
    #[serde(default = "post_method")]
    method: String,
    #[serde(default = "root_path")]
    path: String,
    #[serde(default)]
    query: String,
    #[serde(default)]
    headers: serde_json::Map<String, Value>,
    #[serde(default)]
    body: String,
}

fn post_method() -> String {
    "POST".into()
}

fn root_path() -> String {
    "/".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CallBody {
    request: Option<ConsoleRequest>,
    params: Option<Value>,
    batch: Option<Vec<RuleInput>>,
    message: Option<Message>,
}

/// Runs the live version once on the given input and returns its output. Connector and rule
/// outputs are not stored; a channel really sends.
async fn call(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<CallBody>,
) -> Result<Json<Value>, ApiError> {
    let registry = &state.registry;
    let missing = |what: &str| {
        ApiError::BadRequest(format!(
            "a {} call needs `{what}`",
            registry
                .slot(&id)
                .map(|s| s.kind().to_string())
                .unwrap_or_default()
        ))
    };
    let out = match registry.slot(&id)?.kind() {
        PluginKind::Connector => {
            let r = body.request.ok_or_else(|| missing("request"))?;
            let headers = r
                .headers
                .into_iter()
                .map(|(k, v)| {
                    (
                        k.to_ascii_lowercase(),
                        v.as_str().map_or_else(|| v.to_string(), str::to_string),
                    )
                })
                .collect();
            let request = HttpRequest {
                method: r.method,
                path: r.path,
                query: r.query,
                headers,
                body: r.body.into_bytes(),
            };
            match registry.handle_webhook(&id, &request).await? {
                Ok(events) => json!({ "ok": { "events": events } }),
                Err(e) => json!({ "err": e }),
            }
        }
        PluginKind::SegmentRule => {
            let params = body.params.unwrap_or_else(|| json!({})).to_string();
            let batch = body.batch.ok_or_else(|| missing("batch"))?;
            match registry.evaluate(&id, &params, &batch).await? {
                Ok(decisions) => json!({ "ok": { "decisions": decisions } }),
                Err(e) => json!({ "err": e }),
            }
        }
        PluginKind::Channel => {
            let message = body.message.ok_or_else(|| missing("message"))?;
            match registry.send(&id, &message).await? {
                Ok(delivery) => json!({ "ok": { "delivery": delivery } }),
                Err(e) => json!({ "err": e }),
            }
        }
    };
    Ok(Json(out))
}
