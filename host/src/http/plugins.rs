//! `/v1/plugins`: upload, list, inspect, activate (with review, canary or shadow), promote,
//! abort, roll back, disable, enable, configure, logs, kept failures and their replay, a
//! connector's poll state, and a console that runs the live version on an operator's input.

use axum::extract::{DefaultBodyLimit, Extension, Multipart, Path, Query, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::KeyId;
use super::body::{JsonBody, OptionalJson};
use super::{ApiError, AppState, MAX_UPLOAD_BYTES};
use crate::ingest::PollStatus;
use crate::plugins::FailureRecord;
use crate::plugins::{
    ActivateOptions, Actor, CallReport, CanaryPlan, PluginError, PluginView, VersionView,
    WebhookInput, readable, readable_error,
};
use crate::runtime::PluginKind;
use crate::runtime::types::{Message, RuleInput};
use crate::segments::RuleError;

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
        .route("/v1/plugins/{id}/versions/{sha}/component", get(component))
        .route("/v1/plugins/{id}/versions/{sha}/manifest", get(manifest))
        .route("/v1/plugins/{id}/activate", post(activate))
        .route("/v1/plugins/{id}/promote", post(promote))
        .route("/v1/plugins/{id}/abort", post(abort))
        .route("/v1/plugins/{id}/rollback", post(rollback))
        .route("/v1/plugins/{id}/disable", post(disable))
        .route("/v1/plugins/{id}/enable", post(enable))
        .route("/v1/plugins/{id}/shadow", get(shadow))
        .route("/v1/plugins/{id}/logs", get(logs))
        .route("/v1/plugins/{id}/failures", get(failures))
        .route("/v1/plugins/{id}/failures/{failure}", get(failure))
        .route("/v1/plugins/{id}/failures/{failure}/replay", post(replay))
        .route("/v1/audit", get(audit))
        .route("/v1/plugins/{id}/config", put(set_config))
        .route("/v1/plugins/{id}/call", post(call))
        .route("/v1/plugins/{id}/describe", post(describe))
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

/// The bytes of a version's component.
async fn component(
    State(state): State<AppState>,
    Path((id, sha)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    let bytes = state.registry.component(&id, &sha)?;
    Ok(([(header::CONTENT_TYPE, "application/wasm")], bytes))
}

/// A version's manifest (plugin.toml).
async fn manifest(
    State(state): State<AppState>,
    Path((id, sha)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    let text = state.registry.manifest_text(&id, &sha)?;
    Ok(([(header::CONTENT_TYPE, "application/toml")], text))
}

/// `{"reason": "..."}`, optional on every operator action.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ReasonBody {
    reason: Option<String>,
}

fn actor(key: KeyId, reason: Option<String>) -> Actor {
    Actor {
        key_id: key.0,
        reason,
    }
}

/// `multipart/form-data` with a `manifest` part (plugin.toml) and a `component` part (.wasm).
async fn upload(
    State(state): State<AppState>,
    Extension(key): Extension<KeyId>,
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
    let actor = actor(key, None);
    let view = tokio::task::spawn_blocking(move || registry.upload(&manifest, &component, &actor))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok((axum::http::StatusCode::CREATED, Json(view)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ActivateBody {
    sha256: String,
    #[serde(default)]
    approve: bool,
    #[serde(default)]
    canary: Option<CanaryPlan>,
    #[serde(default)]
    shadow: bool,
    #[serde(default)]
    reason: Option<String>,
}

async fn activate(
    State(state): State<AppState>,
    Extension(key): Extension<KeyId>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ActivateBody>,
) -> Result<Json<PluginView>, ApiError> {
    let options = ActivateOptions {
        approve: body.approve,
        canary: body.canary,
        shadow: body.shadow,
    };
    let actor = actor(key, body.reason);
    Ok(Json(
        state
            .registry
            .activate_with(&id, &body.sha256, options, &actor)
            .await?,
    ))
}

/// The operator actions that take only a reason.
enum Action {
    Promote,
    Abort,
    Rollback,
    Disable,
    Enable,
}

async fn act(
    state: AppState,
    key: KeyId,
    id: String,
    body: Option<ReasonBody>,
    action: Action,
) -> Result<Json<PluginView>, ApiError> {
    let actor = actor(key, body.unwrap_or_default().reason);
    let r = &state.registry;
    let view = match action {
        Action::Promote => r.promote(&id, &actor).await?,
        Action::Abort => r.abort(&id, &actor).await?,
        Action::Rollback => r.rollback(&id, &actor).await?,
        Action::Disable => r.set_enabled(&id, false, &actor).await?,
        Action::Enable => {
            let view = r.set_enabled(&id, true, &actor).await?;
            // Enabling also turns polling back on after the host switched it off.
            state.poller.resume(&id).await?;
            view
        }
    };
    Ok(Json(view))
}

macro_rules! action_handler {
    ($name:ident, $action:expr) => {
        async fn $name(
            State(state): State<AppState>,
            Extension(key): Extension<KeyId>,
            Path(id): Path<String>,
            OptionalJson(body): OptionalJson<ReasonBody>,
        ) -> Result<Json<PluginView>, ApiError> {
            act(state, key, id, body, $action).await
        }
    };
}

action_handler!(promote, Action::Promote);
action_handler!(abort, Action::Abort);
action_handler!(rollback, Action::Rollback);
action_handler!(disable, Action::Disable);
action_handler!(enable, Action::Enable);

/// The shadow run's comparison: counts and samples of differing outputs.
async fn shadow(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let view = state.registry.inspect(&id)?;
    let Some(rollout) = view.rollout.filter(|r| r.mode == "shadow") else {
        return Err(PluginError::NoRollout(id).into());
    };
    Ok(Json(json!({
        "candidate": rollout.candidate,
        "candidate_version": rollout.candidate_version,
        "started_ms": rollout.started_ms,
        "live": rollout.live,
        "candidate_calls": rollout.candidate_calls,
        "report": rollout.shadow,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitQuery {
    limit: Option<usize>,
    plugin: Option<String>,
}

async fn logs(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<LimitQuery>,
) -> Result<Json<Value>, ApiError> {
    let lines = state.registry.logs(&id, q.limit.unwrap_or(100))?;
    Ok(Json(json!({ "lines": lines })))
}

/// Kept failures, newest first, without their inputs.
async fn failures(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let list: Vec<Value> = state
        .registry
        .failures(&id)?
        .into_iter()
        .map(|f| {
            let mut v = json!(f);
            if let Some(o) = v.as_object_mut() {
                o.remove("input");
            }
            v
        })
        .collect();
    Ok(Json(json!({ "failures": list })))
}

async fn failure(
    State(state): State<AppState>,
    Path((id, failure)): Path<(String, u64)>,
) -> Result<Json<FailureRecord>, ApiError> {
    Ok(Json(state.registry.failure(&id, failure)?))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ReplayBody {
    sha256: Option<String>,
}

/// Runs a kept failure's input again (on another version if asked), without effects.
async fn replay(
    State(state): State<AppState>,
    Path((id, failure)): Path<(String, u64)>,
    OptionalJson(body): OptionalJson<ReplayBody>,
) -> Result<Json<CallReport>, ApiError> {
    let sha = body.unwrap_or_default().sha256;
    Ok(Json(
        state
            .registry
            .replay_failure(&id, failure, sha.as_deref())
            .await?,
    ))
}

/// Operator actions, oldest first: `?plugin=ID&limit=N`.
async fn audit(
    State(state): State<AppState>,
    Query(q): Query<LimitQuery>,
) -> Result<Json<Value>, ApiError> {
    let entries = state
        .registry
        .audit_log(q.plugin.as_deref(), q.limit.unwrap_or(100))?;
    Ok(Json(json!({ "entries": entries })))
}

async fn set_config(
    State(state): State<AppState>,
    Extension(key): Extension<KeyId>,
    Path(id): Path<String>,
    JsonBody(config): JsonBody<serde_json::Map<String, Value>>,
) -> Result<Json<PluginView>, ApiError> {
    let actor = actor(key, None);
    Ok(Json(state.registry.set_config(&id, config, &actor).await?))
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CallBody {
    request: Option<WebhookInput>,
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
            let request = body
                .request
                .ok_or_else(|| missing("request"))?
                .to_request()?;
            match registry.handle_webhook(&id, &request).await? {
                Ok(events) => json!({ "ok": { "events": readable(json!(events)) } }),
                Err(e) => json!({ "err": readable_error(json!(e)) }),
            }
        }
        PluginKind::SegmentRule => {
            let params = body.params.unwrap_or_else(|| json!({})).to_string();
            let batch = body.batch.ok_or_else(|| missing("batch"))?;
            match registry.evaluate(&id, &params, &batch).await? {
                // `decisions` keeps the shape 0.1 answers had (one bool per contact); the
                // recheck times, contract 0.2 and later, come beside it.
                Ok(decisions) => json!({ "ok": {
                    "decisions": decisions.iter().map(|d| d.member).collect::<Vec<_>>(),
                    "recheck_at_ms": decisions.iter().map(|d| d.recheck_at_ms).collect::<Vec<_>>(),
                    "keep": decisions.iter().map(|d| d.keep.clone()).collect::<Vec<_>>(),
                } }),
                Err(e) => json!({ "err": readable_error(json!(e)) }),
            }
        }
        // A channel takes a `request` as a provider's status callback, else a `message`.
        PluginKind::Channel if body.request.is_some() => {
            let request = body
                .request
                .ok_or_else(|| missing("request"))?
                .to_request()?;
            match registry.channel_status(&id, &request).await? {
                Ok(updates) => json!({ "ok": { "updates": readable(json!(updates)) } }),
                Err(e) => json!({ "err": readable_error(json!(e)) }),
            }
        }
        PluginKind::Channel => {
            let message = body.message.ok_or_else(|| missing("message"))?;
            match registry.send(&id, &message).await? {
                Ok(delivery) => json!({ "ok": { "delivery": readable(json!(delivery)) } }),
                Err(e) => json!({ "err": readable_error(json!(e)) }),
            }
        }
    };
    Ok(Json(out))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DescribeBody {
    params: Value,
}

/// Asks a segment rule's live version what a segment with these params would depend on:
/// `{"events", "traits", "window_ms"}`, or `422 invalid_params` with the rule's reason.
async fn describe(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<DescribeBody>,
) -> Result<Json<Value>, ApiError> {
    if !body.params.is_object() {
        return Err(ApiError::BadRequest(
            "`params` must be a JSON object".into(),
        ));
    }
    match state
        .registry
        .describe_rule(&id, &body.params.to_string())
        .await?
    {
        Ok(needs) => Ok(Json(json!(needs))),
        Err(reason) => Err(RuleError::Refused(reason).into()),
    }
}
