//! Segment's tracking API as every published client sends it: Segment's own paths
//! (`/v1/identify|track|page|screen|group|alias`, `/v1/batch`, `/v1/import`), analytics.js
//! 2.0's short ones (`/v1/i|t|p|s|g|a`, `/v1/b`), RudderStack's `/v1/merge` and
//! `/beacon/v1/batch`, each with or without a trailing slash; gzip/deflate bodies; CORS for
//! browser pages. Auth as the clients send it: HTTP Basic with the source's write key as the
//! user name, `writeKey` in the body, or `?writeKey=` (beacons). Answers `{"success": true}`
//! only once the events are durable; failures carry `code` and `message` at the top level.

use axum::extract::{DefaultBodyLimit, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use time::OffsetDateTime;
use tower_http::decompression::RequestDecompressionLayer;

use super::auth::basic_user;
use super::body::RawBody;
use super::{ApiError, AppState, TrackingError};
use crate::ingest::segment::{self, MAX_BATCH_BYTES};
use crate::ingest::{EventType, Source};

/// The single-event calls: full path, analytics.js 2.0's short path, and the type.
const SINGLE: [(&str, Option<&str>, EventType); 7] = [
    ("/v1/identify", Some("/v1/i"), EventType::Identify),
    ("/v1/track", Some("/v1/t"), EventType::Track),
    ("/v1/page", Some("/v1/p"), EventType::Page),
    ("/v1/screen", Some("/v1/s"), EventType::Screen),
    ("/v1/group", Some("/v1/g"), EventType::Group),
    ("/v1/alias", Some("/v1/a"), EventType::Alias),
    ("/v1/merge", None, EventType::Merge),
];

/// Paths that take a `{"batch": [...]}` body.
const BATCH: [&str; 4] = ["/v1/batch", "/v1/b", "/v1/import", "/beacon/v1/batch"];

/// The tracking routes.
pub fn router() -> Router<AppState> {
    let mut routes: Vec<(&str, MethodRouter<AppState>)> = Vec::new();
    for (path, short, kind) in SINGLE {
        let route = post(
            move |s: State<AppState>, q: RawQuery, h: HeaderMap, b: Body| {
                track(s, q, h, b, Some(kind))
            },
        )
        .options(preflight);
        routes.extend(short.map(|short| (short, route.clone())));
        routes.push((path, route));
    }
    for path in BATCH {
        let route =
            post(|s: State<AppState>, q: RawQuery, h: HeaderMap, b: Body| track(s, q, h, b, None))
                .options(preflight);
        routes.push((path, route));
    }
    let mut router = Router::new();
    for (path, route) in routes {
        router = router
            .route(&format!("{path}/"), route.clone())
            .route(path, route);
    }
    router
        // Limits apply to the decoded bytes: the decoder is read through the limit, so a
        // small body that inflates past it stops there. Room above Segment's 500 KB so an
        // oversized batch gets our 413 with a JSON body.
        .layer(DefaultBodyLimit::max(MAX_BATCH_BYTES + (64 << 10)))
        .layer(RequestDecompressionLayer::new().pass_through_unaccepted(true))
        .layer(axum::middleware::from_fn(check_encoding))
        .layer(axum::middleware::from_fn(cors))
}

/// The request body, its extraction failures answered in the tracking error shape.
type Body = Result<RawBody, ApiError>;

async fn track(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
    kind: Option<EventType>,
) -> Result<Json<Value>, TrackingError> {
    let received_at = OffsetDateTime::now_utc();
    let RawBody(body) = body?;
    let header_key = basic_user(&headers);
    // Authenticate before parsing: an unknown key learns nothing about the payload.
    let key = header_key
        .or_else(|| peek_write_key(&body))
        .or_else(|| query.as_deref().and_then(query_write_key));
    let source = source_for(&state, key.as_deref())?;
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok())
        && !source.allows_origin(origin)
    {
        return Err(ApiError::OriginNotAllowed(origin.to_string()).into());
    }
    let events = segment::parse(&body, kind, received_at, &format!("source:{}", source.id))?;
    let report = state.ingest.ingest(events).await?;
    tracing::debug!(source = %source.id, accepted = report.accepted, duplicates = report.duplicates, "tracked");
    Ok(Json(json!({ "success": true })))
}

fn peek_write_key(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Key {
        #[serde(rename = "writeKey")]
        write_key: Option<String>,
    }
    serde_json::from_slice::<Key>(body).ok()?.write_key
}

/// The source a write key belongs to; no key or an unknown one is `401 unauthorized`.
pub(super) fn source_for(state: &AppState, write_key: Option<&str>) -> Result<Source, ApiError> {
    let key = write_key.ok_or(ApiError::UnknownWriteKey)?;
    state
        .sources
        .authenticate(key)?
        .ok_or(ApiError::UnknownWriteKey)
}

/// `?writeKey=`, as RudderStack's beacon sends it.
pub(super) fn query_write_key(query: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "writeKey")
        .map(|(_, v)| v.into_owned())
        .filter(|v| !v.is_empty())
}

/// Refuses a `Content-Encoding` the decoder does not know (with a JSON 415) before it is
/// mistaken for a plain body.
async fn check_encoding(request: Request, next: Next) -> Response {
    let encoding = request
        .headers()
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase());
    match encoding.as_deref() {
        None | Some("" | "identity" | "gzip" | "x-gzip" | "deflate") => next.run(request).await,
        Some(other) => {
            TrackingError(ApiError::UnsupportedEncoding(other.to_string())).into_response()
        }
    }
}

/// CORS for browser pages: every answer names the page's origin, so the library can read it
/// (errors included: a browser hides the status of an answer without it, and libraries then
/// retry a 401 as a network failure); [`track`] refuses an origin the source does not list.
pub(super) async fn cors(request: Request, next: Next) -> Response {
    let origin = request.headers().get(header::ORIGIN).cloned();
    let mut response = next.run(request).await;
    allow_origin(response.headers_mut(), origin);
    response
}

/// Answers a CORS preflight for any origin: the write key, which decides which origins a
/// source accepts, is not part of a preflight.
pub(super) async fn preflight(request_headers: HeaderMap) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, OPTIONS"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        request_headers
            .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
            .cloned()
            .unwrap_or(HeaderValue::from_static(
                "authorization, content-type, content-encoding, anonymousid",
            )),
    );
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
    response
}

fn allow_origin(headers: &mut HeaderMap, origin: Option<HeaderValue>) {
    headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    match origin {
        // Libraries that send with credentials need the origin itself, never `*`.
        Some(origin) => {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        None => {
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
        }
    }
}
