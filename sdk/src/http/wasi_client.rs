//! Sends a [`Request`] through `wasi:http/outgoing-handler` and reads the response in full.
//!
//! Order matters: the request is handed to the host before its body is written, because the
//! host only drains the body stream once the request is under way. Every pollable is dropped
//! before the resource it watches, as the component model requires of child resources.

use std::time::{Duration, Instant};

use wasi::http::outgoing_handler;
use wasi::http::types::{
    ErrorCode, Fields, IncomingBody, IncomingResponse, Method, OutgoingBody, OutgoingRequest,
    RequestOptions, Scheme as WasiScheme,
};
use wasi::io::streams::StreamError;

use super::{HttpError, Request, Response, Scheme, Url};

/// `blocking-write-and-flush` accepts at most this many bytes per call.
const WRITE_CHUNK: usize = 4096;
/// How much to ask for per body read.
const READ_CHUNK: u64 = 64 * 1024;

pub(super) fn send(request: &Request, url: &Url) -> Result<Response, HttpError> {
    let deadline = request.timeout_value().map(|t| Instant::now() + t);
    let outgoing = build(request, url)?;
    let body = outgoing
        .body()
        .map_err(|()| HttpError::Other("the request body was already taken".into()))?;
    let options = options(request.timeout_value());

    let future =
        outgoing_handler::handle(outgoing, options).map_err(|code| from_code(code, url))?;
    let written = write_body(body, request.body_bytes(), url);

    let response = {
        let ready = future.subscribe();
        let waited = wait(&ready, deadline);
        drop(ready);
        waited.map_err(|()| timeout(request, url, "waiting for the response"))?;
        match future.get() {
            Some(Ok(Ok(response))) => response,
            Some(Ok(Err(code))) => return Err(from_code(code, url)),
            Some(Err(())) => return Err(HttpError::Other("the response was already taken".into())),
            None => {
                return Err(HttpError::Other(
                    "the response was not ready after waiting".into(),
                ));
            }
        }
    };
    drop(future);
    // A body that could not be written matters only if the server answered anyway.
    written?;
    read_response(response, request, url, deadline)
}

fn build(request: &Request, url: &Url) -> Result<OutgoingRequest, HttpError> {
    let headers = Fields::new();
    for (name, value) in request.headers() {
        headers
            .append(name, value.as_bytes())
            .map_err(|e| HttpError::InvalidRequest(format!("header `{name}`: {e:?}")))?;
    }
    // A known length spares the receiver a chunked body, which some webhook endpoints refuse.
    let has_length = request
        .headers()
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("content-length"));
    let sends_body =
        !request.body_bytes().is_empty() || matches!(request.method(), "POST" | "PUT" | "PATCH");
    if sends_body && !has_length {
        let length = request.body_bytes().len().to_string();
        headers
            .append("content-length", length.as_bytes())
            .map_err(|e| HttpError::InvalidRequest(format!("header `content-length`: {e:?}")))?;
    }
    let outgoing = OutgoingRequest::new(headers);
    let method = match request.method() {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "OPTIONS" => Method::Options,
        "PATCH" => Method::Patch,
        other => Method::Other(other.to_string()),
    };
    let scheme = match url.scheme {
        Scheme::Http => WasiScheme::Http,
        Scheme::Https => WasiScheme::Https,
    };
    let invalid =
        |what: &str| HttpError::InvalidRequest(format!("the host rejected the {what} of {url}"));
    outgoing
        .set_method(&method)
        .map_err(|()| invalid("method"))?;
    outgoing
        .set_scheme(Some(&scheme))
        .map_err(|()| invalid("scheme"))?;
    outgoing
        .set_authority(Some(&url.authority))
        .map_err(|()| invalid("authority"))?;
    outgoing
        .set_path_with_query(Some(&url.path_and_query))
        .map_err(|()| invalid("path"))?;
    Ok(outgoing)
}

fn options(timeout: Option<Duration>) -> Option<RequestOptions> {
    let timeout = timeout?;
    let nanos = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
    let options = RequestOptions::new();
    // A host that does not support one of these leaves it at its own default; the overall
    // deadline below still holds.
    let _ = options.set_connect_timeout(Some(nanos));
    let _ = options.set_first_byte_timeout(Some(nanos));
    let _ = options.set_between_bytes_timeout(Some(nanos));
    Some(options)
}

fn write_body(body: OutgoingBody, bytes: &[u8], url: &Url) -> Result<(), HttpError> {
    {
        let stream = body
            .write()
            .map_err(|()| HttpError::Other("the request body stream was already taken".into()))?;
        for chunk in bytes.chunks(WRITE_CHUNK) {
            stream
                .blocking_write_and_flush(chunk)
                .map_err(|e| match e {
                    StreamError::LastOperationFailed(e) => {
                        match wasi::http::types::http_error_code(&e) {
                            Some(code) => from_code(code, url),
                            None => HttpError::Connect(format!(
                                "writing the request body: {}",
                                e.to_debug_string()
                            )),
                        }
                    }
                    StreamError::Closed => {
                        HttpError::Connect("the connection closed while sending the body".into())
                    }
                })?;
        }
    }
    OutgoingBody::finish(body, None).map_err(|code| from_code(code, url))
}

/// Blocks until `pollable` is ready; `Err` when the deadline passes first.
fn wait(pollable: &wasi::io::poll::Pollable, deadline: Option<Instant>) -> Result<(), ()> {
    let Some(deadline) = deadline else {
        pollable.block();
        return Ok(());
    };
    let left = deadline.saturating_duration_since(Instant::now());
    let nanos = u64::try_from(left.as_nanos()).unwrap_or(u64::MAX);
    let timer = wasi::clocks::monotonic_clock::subscribe_duration(nanos);
    let ready = wasi::io::poll::poll(&[pollable, &timer]);
    if ready.contains(&0) { Ok(()) } else { Err(()) }
}

fn read_response(
    response: IncomingResponse,
    request: &Request,
    url: &Url,
    deadline: Option<Instant>,
) -> Result<Response, HttpError> {
    let status = response.status();
    let headers = {
        let fields = response.headers();
        fields
            .entries()
            .into_iter()
            .map(|(name, value)| {
                (
                    name.to_ascii_lowercase(),
                    String::from_utf8_lossy(&value).into_owned(),
                )
            })
            .collect::<Vec<_>>()
    };
    let cap = request.max_response_bytes;
    if let Some(length) = headers
        .iter()
        .find(|(name, _)| name == "content-length")
        .and_then(|(_, v)| v.trim().parse::<u64>().ok())
        && length > cap
    {
        return Err(too_large(cap, url));
    }
    let incoming = response
        .consume()
        .map_err(|()| HttpError::Other("the response body was already taken".into()))?;
    let body = read_body(&incoming, cap, request, url, deadline);
    drop(IncomingBody::finish(incoming));
    drop(response);
    Ok(Response {
        status,
        headers,
        body: body?,
    })
}

fn read_body(
    incoming: &IncomingBody,
    cap: u64,
    request: &Request,
    url: &Url,
    deadline: Option<Instant>,
) -> Result<Vec<u8>, HttpError> {
    let stream = incoming
        .stream()
        .map_err(|()| HttpError::Other("the response body stream was already taken".into()))?;
    let mut body = Vec::new();
    loop {
        let ready = stream.subscribe();
        let waited = wait(&ready, deadline);
        drop(ready);
        waited.map_err(|()| timeout(request, url, "reading the response body"))?;
        match stream.read(READ_CHUNK) {
            Ok(chunk) => {
                body.extend_from_slice(&chunk);
                if body.len() as u64 > cap {
                    return Err(too_large(cap, url));
                }
            }
            Err(StreamError::Closed) => return Ok(body),
            Err(StreamError::LastOperationFailed(e)) => {
                return Err(match wasi::http::types::http_error_code(&e) {
                    Some(code) => from_code(code, url),
                    None => HttpError::Connect(format!(
                        "reading the response body: {}",
                        e.to_debug_string()
                    )),
                });
            }
        }
    }
}

fn timeout(request: &Request, url: &Url, what: &str) -> HttpError {
    let after = request.timeout_value().unwrap_or_default();
    HttpError::Timeout(format!(
        "{url}: no answer within {} ms {what}",
        after.as_millis()
    ))
}

fn too_large(cap: u64, url: &Url) -> HttpError {
    HttpError::TooLarge(format!("the response from {url} is over {cap} bytes"))
}

/// Maps a `wasi:http` error code onto the SDK's kinds of failure.
fn from_code(code: ErrorCode, url: &Url) -> HttpError {
    let detail = format!("{}: {code:?}", url.authority);
    match code {
        ErrorCode::HttpRequestDenied | ErrorCode::DestinationIpProhibited => {
            HttpError::Denied(format!(
                "the host refused the request ({detail}); the destination is not allowed by the plugin's http capability"
            ))
        }
        ErrorCode::DnsTimeout
        | ErrorCode::ConnectionTimeout
        | ErrorCode::ConnectionReadTimeout
        | ErrorCode::ConnectionWriteTimeout
        | ErrorCode::HttpResponseTimeout => HttpError::Timeout(detail),
        ErrorCode::DnsError(_)
        | ErrorCode::DestinationNotFound
        | ErrorCode::DestinationUnavailable
        | ErrorCode::DestinationIpUnroutable
        | ErrorCode::ConnectionRefused
        | ErrorCode::ConnectionTerminated
        | ErrorCode::ConnectionLimitReached
        | ErrorCode::TlsProtocolError
        | ErrorCode::TlsCertificateError
        | ErrorCode::TlsAlertReceived(_)
        | ErrorCode::HttpResponseIncomplete => HttpError::Connect(detail),
        ErrorCode::HttpResponseBodySize(_)
        | ErrorCode::HttpResponseHeaderSectionSize(_)
        | ErrorCode::HttpResponseHeaderSize(_)
        | ErrorCode::HttpResponseTrailerSectionSize(_)
        | ErrorCode::HttpResponseTrailerSize(_) => HttpError::TooLarge(detail),
        ErrorCode::HttpRequestLengthRequired
        | ErrorCode::HttpRequestBodySize(_)
        | ErrorCode::HttpRequestMethodInvalid
        | ErrorCode::HttpRequestUriInvalid
        | ErrorCode::HttpRequestUriTooLong
        | ErrorCode::HttpRequestHeaderSectionSize(_)
        | ErrorCode::HttpRequestHeaderSize(_)
        | ErrorCode::HttpRequestTrailerSectionSize(_)
        | ErrorCode::HttpRequestTrailerSize(_) => HttpError::InvalidRequest(detail),
        _ => HttpError::Other(detail),
    }
}
