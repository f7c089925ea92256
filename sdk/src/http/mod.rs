//! Outbound HTTP: a small blocking client over `wasi:http`, answered by the test harness natively.
//!
//! ```no_run
//! use std::time::Duration;
//! use tessera_sdk::http::Request;
//!
//! let response = Request::post("https://hooks.example.com/in")
//!     .header("content-type", "application/json")
//!     .body(r#"{"hello":"world"}"#)
//!     .timeout(Duration::from_secs(2))
//!     .send()?;
//! assert!(response.is_success());
//! # Ok::<(), tessera_sdk::http::HttpError>(())
//! ```
//!
//! The host only lets a plugin reach the hosts its manifest lists (and the operator
//! approved); anything else fails with [`HttpError::Denied`], which no retry will heal.

mod url;
#[cfg(target_arch = "wasm32")]
mod wasi_client;

use std::fmt;
use std::time::Duration;

use serde_json::Value;

pub use url::{Scheme, Url};

/// Response bodies larger than this fail with [`HttpError::TooLarge`] unless the request
/// sets its own cap with [`Request::max_response_bytes`].
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 4 * 1024 * 1024;

/// Why an outbound request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// The host refused the request: the destination is not in the plugin's `http`
    /// capability, or it resolves to an address the operator did not allow. Retrying
    /// does not help.
    Denied(String),
    /// No answer in time: connecting, waiting for the first byte, between bytes, or the
    /// request's overall [`Request::timeout`].
    Timeout(String),
    /// The server could not be reached or dropped the connection: name lookup, refused or
    /// reset connections, TLS failures.
    Connect(String),
    /// The response (its body or its headers) is over the size cap.
    TooLarge(String),
    /// The request itself is malformed: a bad URL, method or header.
    InvalidRequest(String),
    /// Anything else, including a protocol error or a failure inside the host.
    Other(String),
}

impl HttpError {
    /// A short, stable name for the kind of failure: `denied`, `timeout`, `connect`,
    /// `too-large`, `invalid-request` or `other`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Denied(_) => "denied",
            Self::Timeout(_) => "timeout",
            Self::Connect(_) => "connect",
            Self::TooLarge(_) => "too-large",
            Self::InvalidRequest(_) => "invalid-request",
            Self::Other(_) => "other",
        }
    }

    /// The detail message.
    pub fn message(&self) -> &str {
        match self {
            Self::Denied(m)
            | Self::Timeout(m)
            | Self::Connect(m)
            | Self::TooLarge(m)
            | Self::InvalidRequest(m)
            | Self::Other(m) => m,
        }
    }

    /// True when the host refused the request by policy.
    pub fn is_denied(&self) -> bool {
        matches!(self, Self::Denied(_))
    }

    /// True when the request timed out.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout(_))
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind(), self.message())
    }
}

impl std::error::Error for HttpError {}

/// An outbound request, built step by step and sent with [`Request::send`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    timeout: Option<Duration>,
    pub(crate) max_response_bytes: u64,
}

impl Request {
    /// A request with `method` (`GET`, `POST`, ...) to `url`.
    pub fn new(method: impl Into<String>, url: impl Into<String>) -> Self {
        Self {
            method: method.into().to_ascii_uppercase(),
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
            timeout: None,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        }
    }

    /// A `GET` request.
    pub fn get(url: impl Into<String>) -> Self {
        Self::new("GET", url)
    }

    /// A `POST` request.
    pub fn post(url: impl Into<String>) -> Self {
        Self::new("POST", url)
    }

    /// A `PUT` request.
    pub fn put(url: impl Into<String>) -> Self {
        Self::new("PUT", url)
    }

    /// A `DELETE` request.
    pub fn delete(url: impl Into<String>) -> Self {
        Self::new("DELETE", url)
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Sets a JSON body and `content-type: application/json`.
    pub fn json(self, value: &Value) -> Self {
        self.header("content-type", "application/json")
            .body(value.to_string())
    }

    /// Bounds the whole exchange (connect, first byte, between bytes, and reading the body).
    /// The host may clamp it further.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Caps the response body; a larger one fails with [`HttpError::TooLarge`].
    pub fn max_response_bytes(mut self, max: u64) -> Self {
        self.max_response_bytes = max;
        self
    }

    /// The method, upper case.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The URL as given.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The headers, in the order added.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The body.
    pub fn body_bytes(&self) -> &[u8] {
        &self.body
    }

    /// The timeout, when one is set.
    pub fn timeout_value(&self) -> Option<Duration> {
        self.timeout
    }

    /// Sends the request and reads the whole response.
    pub fn send(self) -> Result<Response, HttpError> {
        let url = Url::parse(&self.url)?;
        if self.method.is_empty() || !self.method.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(HttpError::InvalidRequest(format!(
                "invalid method `{}`",
                self.method
            )));
        }
        #[cfg(target_arch = "wasm32")]
        {
            wasi_client::send(&self, &url)
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            crate::testing::answer_http(&self, &url)
        }
    }
}

/// A response, read in full.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Header names (lower case) and values, in the order received.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// A response with `status`, no headers and no body; for scripting tests.
    pub fn new(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Adds a header (the name is lower-cased).
    pub fn with_header(mut self, name: impl AsRef<str>, value: impl Into<String>) -> Self {
        self.headers
            .push((name.as_ref().to_ascii_lowercase(), value.into()));
        self
    }

    /// Sets the body.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// True for a 2xx status.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The first value of header `name`, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    pub fn json(&self) -> Result<Value, crate::json::JsonError> {
        crate::json::parse(&self.body)
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::testing::Harness;

    #[test]
    fn scripted_response_answers_the_request() {
        let harness = Harness::new();
        harness.respond(Response::new(202).with_header("X-Request-Id", "r-1"));
        let response = Request::post("https://hooks.example.com/in")
            .header("idempotency-key", "m-1")
            .body("hi")
            .send()
            .unwrap();
        assert_eq!(response.status, 202);
        assert_eq!(response.header("x-request-id"), Some("r-1"));
        let sent = harness.sent_requests();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].method(), "POST");
        assert_eq!(sent[0].body_bytes(), b"hi");
    }

    #[test]
    fn unscripted_request_fails_clearly() {
        let _harness = Harness::new();
        let error = Request::get("https://api.example.com/").send().unwrap_err();
        assert!(
            error.message().contains("no HTTP response scripted"),
            "{error}"
        );
    }

    #[test]
    fn scripted_failure_is_returned() {
        let harness = Harness::new();
        harness.fail_http(HttpError::Denied("not in the allowlist".into()));
        let error = Request::get("https://api.example.com/").send().unwrap_err();
        assert!(error.is_denied());
    }

    #[test]
    fn response_over_the_cap_is_too_large() {
        let harness = Harness::new();
        harness.respond(Response::new(200).with_body(vec![b'x'; 100]));
        let error = Request::get("https://api.example.com/")
            .max_response_bytes(10)
            .send()
            .unwrap_err();
        assert_eq!(error.kind(), "too-large");
    }

    #[test]
    fn bad_url_is_an_invalid_request() {
        let _harness = Harness::new();
        let error = Request::get("ftp://example.com/").send().unwrap_err();
        assert_eq!(error.kind(), "invalid-request");
    }
}
