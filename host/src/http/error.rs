//! The API's one error type: every failure becomes `{"error": {"code", "message"}}` here, and
//! this is the only place where errors are mapped to HTTP status codes.

use axum::Json;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::ingest::IngestError;
use crate::ingest::segment::SegmentError;
use crate::plugins::PluginError;
use crate::runtime::LoadError;
use crate::runtime::types::ConnectorError;
use crate::store::StoreError;

fn connector_message(e: &ConnectorError) -> &str {
    e.message()
}

/// An API failure.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// Missing or wrong credentials.
    #[error("a valid admin key is required (Authorization: Bearer <key>)")]
    Unauthorized,
    /// No such route or resource.
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with the resource's current state.
    #[error("{0}")]
    Conflict(String),
    /// The body is over the route's limit.
    #[error("{0}")]
    TooLarge(String),
    /// The route exists but not for this method (the `Allow` header lists those it takes).
    #[error("method not allowed on this route")]
    MethodNotAllowed,
    /// The body's `Content-Encoding` is not one the host decodes.
    #[error("Content-Encoding `{0}` is not supported; send gzip, deflate or an uncompressed body")]
    UnsupportedEncoding(String),
    /// A browser page from an origin the source does not list.
    #[error("origin `{0}` is not allowed to send to this source")]
    OriginNotAllowed(String),
    /// A tracking call without a known write key.
    #[error(
        "a valid write key is required (HTTP Basic with the write key as user name, or `writeKey`)"
    )]
    UnknownWriteKey,
    /// A plugin operation or call failed.
    #[error(transparent)]
    Plugin(#[from] PluginError),
    /// A tracking payload was refused.
    #[error(transparent)]
    Segment(#[from] SegmentError),
    /// A connector refused a webhook.
    #[error("the connector refused the request: {}", connector_message(.0))]
    Connector(ConnectorError),
    /// Events could not be made durable; nothing was acknowledged.
    #[error(transparent)]
    Ingest(#[from] IngestError),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A well-formed request the host cannot act on (a definition its rule refuses, ...),
    /// with its own code.
    #[error("{1}")]
    Unprocessable(&'static str, String),
    /// A definition that does not check, with the place in it that is wrong
    /// (`steps[2].wait.duration`), under its own code.
    #[error("{path}: {message}")]
    InvalidAt {
        /// The error code.
        code: &'static str,
        /// Where in the definition.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The request conflicts with the resource's state, under its own code.
    #[error("{1}")]
    ConflictWith(&'static str, String),
    /// The host cannot take the request now (a queue at its limit), under its own code.
    #[error("{1}")]
    Unavailable(&'static str, String),
    /// A bug or an I/O failure; details go to the log, not to the client.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str) {
        use PluginError as P;
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::UnsupportedEncoding(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_encoding")
            }
            ApiError::OriginNotAllowed(_) => (StatusCode::FORBIDDEN, "origin_not_allowed"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::Unprocessable(code, _) => (StatusCode::UNPROCESSABLE_ENTITY, code),
            ApiError::ConflictWith(code, _) => (StatusCode::CONFLICT, code),
            ApiError::Unavailable(code, _) => (StatusCode::SERVICE_UNAVAILABLE, code),
            ApiError::InvalidAt { code, .. } => (StatusCode::UNPROCESSABLE_ENTITY, code),
            ApiError::Internal(_) | ApiError::Store(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
            ApiError::UnknownWriteKey => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Segment(SegmentError::BatchTooLarge(_)) => {
                (StatusCode::PAYLOAD_TOO_LARGE, "too_large")
            }
            ApiError::Segment(SegmentError::Malformed(_)) => {
                (StatusCode::BAD_REQUEST, "malformed_json")
            }
            ApiError::Segment(SegmentError::Invalid { .. }) => {
                (StatusCode::BAD_REQUEST, "invalid_event")
            }
            ApiError::Connector(ConnectorError::Unauthorized(_)) => {
                (StatusCode::UNAUTHORIZED, "bad_signature")
            }
            ApiError::Connector(ConnectorError::BadRequest(_)) => {
                (StatusCode::BAD_REQUEST, "bad_request")
            }
            ApiError::Connector(ConnectorError::Unsupported(_)) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "unsupported")
            }
            ApiError::Connector(ConnectorError::Upstream(_)) => {
                (StatusCode::BAD_GATEWAY, "upstream")
            }
            ApiError::Ingest(IngestError::Log(_)) => {
                (StatusCode::SERVICE_UNAVAILABLE, "log_unavailable")
            }
            ApiError::Ingest(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            ApiError::Plugin(e) => match e {
                P::UnknownPlugin(_) => (StatusCode::NOT_FOUND, "unknown_plugin"),
                P::UnknownVersion { .. } => (StatusCode::NOT_FOUND, "unknown_version"),
                P::Manifest(_) => (StatusCode::BAD_REQUEST, "invalid_manifest"),
                P::Load {
                    source: LoadError::NotAComponent(_),
                    ..
                } => (StatusCode::BAD_REQUEST, "invalid_component"),
                P::Load {
                    source: LoadError::ContractMismatch { .. },
                    ..
                } => (StatusCode::BAD_REQUEST, "contract_mismatch"),
                P::Load {
                    source: LoadError::UnsatisfiedImport(_),
                    ..
                } => (StatusCode::BAD_REQUEST, "unsupported_import"),
                P::Load {
                    source: LoadError::WorldMismatch { .. },
                    ..
                } => (StatusCode::CONFLICT, "world_mismatch"),
                P::Load {
                    source: LoadError::AddressNotAllowed(_),
                    ..
                } => (StatusCode::BAD_REQUEST, "address_not_allowed"),
                P::Load {
                    source: LoadError::Cache(_) | LoadError::Threads(_),
                    ..
                } => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
                P::KindConflict { .. } => (StatusCode::CONFLICT, "kind_conflict"),
                P::ManifestConflict { .. } => (StatusCode::CONFLICT, "manifest_conflict"),
                P::HostSecret { .. } => (StatusCode::BAD_REQUEST, "host_secret"),
                P::WrongKind { .. } => (StatusCode::CONFLICT, "wrong_kind"),
                P::NothingToRollBack(_) => (StatusCode::CONFLICT, "nothing_to_roll_back"),
                P::SelfTestFailed { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "self_test_failed"),
                P::InvalidConfig { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_config"),
                P::NotLive(_) => (StatusCode::SERVICE_UNAVAILABLE, "not_live"),
                P::Disabled(_) => (StatusCode::SERVICE_UNAVAILABLE, "disabled"),
                P::BreakerOpen { .. } => (StatusCode::SERVICE_UNAVAILABLE, "breaker_open"),
                P::Call(call) if call.cause.is_load() => {
                    (StatusCode::SERVICE_UNAVAILABLE, "concurrency_limit")
                }
                P::Call(_) => (StatusCode::BAD_GATEWAY, "plugin_failed"),
                P::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
                P::ApprovalRequired { .. } => (StatusCode::CONFLICT, "approval_required"),
                P::InvalidRollout(_) => (StatusCode::CONFLICT, "invalid_rollout"),
                P::BadCanaryPlan(_) => (StatusCode::BAD_REQUEST, "bad_request"),
                P::NoRollout(_) => (StatusCode::CONFLICT, "no_rollout"),
                P::UnknownFailure { .. } => (StatusCode::NOT_FOUND, "unknown_failure"),
                P::TruncatedFailure { .. } => (StatusCode::CONFLICT, "truncated_failure"),
            },
        }
    }
}

impl From<crate::ingest::IntakeError> for ApiError {
    fn from(e: crate::ingest::IntakeError) -> Self {
        use crate::ingest::IntakeError as I;
        match e {
            I::Plugin(e) => ApiError::Plugin(e),
            I::Connector(e) => ApiError::Connector(e),
            I::Ingest(e) => ApiError::Ingest(e),
            I::Store(e) => ApiError::Store(e),
        }
    }
}

impl From<crate::segments::SegmentError> for ApiError {
    fn from(e: crate::segments::SegmentError) -> Self {
        use crate::segments::SegmentError as S;
        match e {
            S::NotFound(_) => ApiError::NotFound(e.to_string()),
            S::Exists(_) => ApiError::Conflict(e.to_string()),
            S::Invalid(m) => ApiError::Unprocessable("invalid_segment", m),
            S::RuleRefused(_) => ApiError::Unprocessable("invalid_params", e.to_string()),
            S::Plugin(e) => ApiError::Plugin(e),
            S::Store(e) => ApiError::Store(e),
            S::Ingest(e) => ApiError::Ingest(e),
            S::Log(e) => ApiError::Ingest(IngestError::Log(e)),
        }
    }
}

impl From<crate::journeys::JourneyError> for ApiError {
    fn from(e: crate::journeys::JourneyError) -> Self {
        use crate::journeys::JourneyError as J;
        match e {
            J::NotFound(_) => ApiError::NotFound(e.to_string()),
            J::Exists(_) => ApiError::Conflict(e.to_string()),
            J::Invalid(invalid) => ApiError::InvalidAt {
                code: "invalid_journey",
                path: invalid.path,
                message: invalid.message,
            },
            J::Store(e) => ApiError::Store(e),
            J::Ingest(e) => ApiError::Ingest(e),
            J::Log(e) => ApiError::Ingest(IngestError::Log(e)),
            J::Outbox(e) => e.into(),
        }
    }
}

impl From<crate::outbox::OutboxError> for ApiError {
    fn from(e: crate::outbox::OutboxError) -> Self {
        use crate::outbox::OutboxError as O;
        match e {
            O::Store(e) => ApiError::Store(e),
            O::Full { .. } => ApiError::Unavailable("outbox_full", e.to_string()),
            O::NotFound(_) => ApiError::NotFound(e.to_string()),
            O::NotDead { .. } => ApiError::ConflictWith("not_dead", e.to_string()),
            O::InvalidSettings(m) => ApiError::Unprocessable("invalid_settings", m),
        }
    }
}

impl From<crate::plugins::InputError> for ApiError {
    fn from(e: crate::plugins::InputError) -> Self {
        ApiError::BadRequest(e.to_string())
    }
}

impl From<crate::segments::RuleError> for ApiError {
    fn from(e: crate::segments::RuleError) -> Self {
        use crate::segments::RuleError as R;
        match e {
            R::Plugin(e) => ApiError::Plugin(e),
            R::Refused(m) => ApiError::Unprocessable(
                "invalid_params",
                format!("the rule refused the params: {m}"),
            ),
            R::NotARule(plugin, actual) => ApiError::Plugin(PluginError::WrongKind {
                plugin,
                actual,
                wanted: crate::runtime::PluginKind::SegmentRule,
            }),
        }
    }
}

impl From<crate::profiles::EraseError> for ApiError {
    fn from(e: crate::profiles::EraseError) -> Self {
        match e {
            crate::profiles::EraseError::Store(e) => ApiError::Store(e),
            crate::profiles::EraseError::Log(e) => ApiError::Ingest(IngestError::Log(e)),
        }
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge(rejection.body_text())
        } else {
            ApiError::BadRequest(rejection.body_text())
        }
    }
}

/// An [`ApiError`] on the tracking routes: the same `error` object, plus `code` and `message`
/// at the top level, where Segment's and RudderStack's client libraries read them.
#[derive(Debug)]
pub struct TrackingError(pub ApiError);

impl<E: Into<ApiError>> From<E> for TrackingError {
    fn from(e: E) -> Self {
        TrackingError(e.into())
    }
}

impl IntoResponse for TrackingError {
    fn into_response(self) -> Response {
        let (status, error) = self.0.render();
        let body = json!({ "code": error["code"], "message": error["message"], "error": error });
        self.0.finish((status, Json(body)).into_response())
    }
}

impl ApiError {
    /// The status and the JSON `error` object; server errors are logged here and their
    /// details kept from the client.
    fn render(&self) -> (StatusCode, serde_json::Value) {
        let (status, code) = self.parts();
        // Server errors the host explains itself (a plugin not live, disabled, failing or
        // busy) keep their message; the others are bugs or I/O failures.
        let explained = matches!(
            self,
            ApiError::Unavailable(..)
                | ApiError::Plugin(
                    PluginError::Call(_)
                        | PluginError::NotLive(_)
                        | PluginError::Disabled(_)
                        | PluginError::BreakerOpen { .. }
                )
        );
        let message = if status.is_server_error() && !explained {
            tracing::error!("{code}: {self:?}");
            "internal error; see the server log".to_string()
        } else {
            self.to_string()
        };
        let mut error = json!({ "code": code, "message": message });
        if let ApiError::Plugin(PluginError::Call(call)) = self {
            error["plugin"] = call.plugin.clone().into();
            error["version"] = call.version.clone().into();
            error["sha256"] = call.sha256.clone().into();
            error["cause"] = call.cause.code().into();
        }
        if let ApiError::InvalidAt { path, .. } = self {
            error["path"] = path.clone().into();
        }
        if let ApiError::Plugin(PluginError::ApprovalRequired { review, .. }) = self {
            error["review"] = json!(review);
        }
        (status, error)
    }

    /// Headers that go with the error: `Retry-After` while a breaker is open, or while a
    /// plugin is at its share of the pool (a call usually ends well within a second).
    fn finish(&self, mut response: Response) -> Response {
        let retry_in_ms = match self {
            ApiError::Plugin(PluginError::BreakerOpen { retry_in_ms, .. }) => Some(*retry_in_ms),
            ApiError::Plugin(PluginError::Call(call)) if call.cause.is_load() => Some(1_000),
            _ => None,
        };
        if let Some(retry_in_ms) = retry_in_ms {
            let secs = retry_in_ms.div_ceil(1000).max(1);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// An [`ApiError`] on a route anyone may call (vendor webhooks): the same status and code,
/// but nothing a plugin wrote (its error text, a panic message, its stderr) reaches the
/// caller. The operator finds the details in the plugin's kept failures and logs.
#[derive(Debug)]
pub struct PublicError(pub ApiError);

impl<E: Into<ApiError>> From<E> for PublicError {
    fn from(e: E) -> Self {
        PublicError(e.into())
    }
}

impl PublicError {
    /// A stable message for a failure that carries a plugin's words; `None` for the others,
    /// whose messages the host wrote.
    fn stable_message(&self) -> Option<String> {
        Some(match &self.0 {
            ApiError::Plugin(PluginError::Call(call)) => format!(
                "the connector failed on this request ({}); the operator can read the details                  in the plugin's failures",
                call.cause.code()
            ),
            ApiError::Connector(ConnectorError::Unauthorized(_)) => {
                "the request's signature did not verify".to_string()
            }
            ApiError::Connector(ConnectorError::BadRequest(_)) => {
                "the connector could not read the request".to_string()
            }
            ApiError::Connector(ConnectorError::Unsupported(_)) => {
                "the connector does not handle this request".to_string()
            }
            ApiError::Connector(ConnectorError::Upstream(_)) => {
                "the connector could not reach its upstream service".to_string()
            }
            _ => return None,
        })
    }
}

impl IntoResponse for PublicError {
    fn into_response(self) -> Response {
        let (status, mut error) = self.0.render();
        if let Some(message) = self.stable_message() {
            tracing::info!(code = %error["code"], "public route answered {status}: {}", self.0);
            let mut public = json!({ "code": error["code"], "message": message });
            if let Some(cause) = error.get("cause") {
                public["cause"] = cause.clone();
            }
            error = public;
        }
        self.0
            .finish((status, Json(json!({ "error": error }))).into_response())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, error) = self.render();
        self.finish((status, Json(json!({ "error": error }))).into_response())
    }
}
