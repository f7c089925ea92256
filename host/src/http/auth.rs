//! Admin authentication: `Authorization: Bearer <key>` (or HTTP Basic with the key as user
//! name), compared by sha256 in constant time against the stored hash.

use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine;
use subtle::ConstantTimeEq;

use super::{ApiError, AppState};
use crate::plugins::sha256_hex;

/// The user name of an HTTP Basic `Authorization` header (Segment's write-key scheme).
pub fn basic_user(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?.trim();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let user = text.split_once(':').map_or(text.as_str(), |(user, _)| user);
    (!user.is_empty()).then(|| user.to_string())
}

/// The key a request presents, if any.
fn presented_key(request: &Request) -> Option<String> {
    let value = request.headers().get(AUTHORIZATION)?.to_str().ok()?;
    if let Some(token) = value.strip_prefix("Bearer ") {
        return Some(token.trim().to_string());
    }
    basic_user(request.headers())
}

/// Which admin key made a request: the first 12 hex digits of its sha256, for the audit log.
#[derive(Debug, Clone)]
pub struct KeyId(pub String);

/// Middleware: refuses requests without the admin key; tags the rest with its [`KeyId`].
pub async fn require_admin(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let key = presented_key(&request).ok_or(ApiError::Unauthorized)?;
    let hash = sha256_hex(key.as_bytes());
    if bool::from(hash.as_bytes().ct_eq(state.admin_key_hash.as_bytes())) {
        request
            .extensions_mut()
            .insert(KeyId(hash[..12].to_string()));
        Ok(next.run(request).await)
    } else {
        Err(ApiError::Unauthorized)
    }
}
