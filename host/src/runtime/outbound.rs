//! Outbound HTTP policy for guests: the `WasiHttpHooks` every plugin call runs with.
//!
//! Order of checks: scheme, host allowlist (manifest), name resolution by the host, address
//! check (internal addresses need an operator grant), then the request goes out with clamped
//! timeouts and a capped response body. Plain-HTTP requests connect to the very address that
//! was checked, so a name cannot re-resolve inward between check and connect.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::uri::{Authority, Scheme};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use super::net_policy::{AddressGrants, HostPattern, check_address};
use super::state::Effects;
use super::tape::Tap;

/// What one plugin version may do over HTTP; shared by all its calls.
#[derive(Debug)]
pub struct OutboundPolicy {
    /// Plugin id, for logs.
    pub plugin: String,
    /// The manifest's `capabilities.http`.
    pub allow: Vec<HostPattern>,
    /// Internal addresses the operator allowed.
    pub grants: Arc<AddressGrants>,
    /// Upper bound for connect, first-byte and between-bytes timeouts.
    pub timeout: Duration,
    /// Response bodies larger than this fail with `HttpResponseBodySize`.
    pub max_response_bytes: u64,
    /// Requests attempted, allowed or not.
    pub requests: AtomicU64,
    /// Requests refused by this policy.
    pub denied: AtomicU64,
}

/// The per-call hooks: a handle on the version's policy and the call's effects.
pub struct OutboundHooks {
    policy: Arc<OutboundPolicy>,
    effects: Effects,
}

impl OutboundHooks {
    /// Hooks enforcing `policy`; with stubbed effects nothing leaves the host.
    pub fn new(policy: Arc<OutboundPolicy>, effects: Effects) -> Self {
        Self { policy, effects }
    }
}

impl OutboundPolicy {
    fn deny(&self, why: &str) -> HttpError {
        self.denied.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(plugin = %self.plugin, "outbound HTTP refused: {why}");
        HttpError::HttpRequestDenied
    }

    /// Resolves and checks the request's destination; returns the address to connect to.
    async fn admit(&self, scheme: &Scheme, authority: &Authority) -> Result<SocketAddr, HttpError> {
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let default_port = if *scheme == Scheme::HTTPS { 443 } else { 80 };
        let port = authority.port_u16().unwrap_or(default_port);
        if !self.allow.iter().any(|p| p.matches(&host, port)) {
            return Err(self.deny(&format!(
                "{host}:{port} is not in the plugin's http allowlist"
            )));
        }
        let addrs: Vec<SocketAddr> = match tokio::time::timeout(
            self.timeout,
            tokio::net::lookup_host((host.as_str(), port)),
        )
        .await
        {
            Ok(Ok(addrs)) => addrs.collect(),
            Ok(Err(_)) => {
                return Err(HttpError::DnsError {
                    rcode: None,
                    info_code: None,
                });
            }
            Err(_) => return Err(HttpError::DnsTimeout),
        };
        if addrs.is_empty() {
            return Err(HttpError::DestinationNotFound);
        }
        // Every address must pass: otherwise a name with one public and one internal record
        // would let the connect pick the internal one.
        for addr in &addrs {
            if let Err(why) = check_address(*addr, &self.grants) {
                self.denied.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(plugin = %self.plugin, "outbound HTTP to {host} refused: {why}");
                return Err(HttpError::DestinationIpProhibited);
            }
        }
        Ok(addrs[0])
    }

    fn clamp(&self, options: Option<RequestOptions>) -> RequestOptions {
        let clamp = |d: Option<Duration>| Some(d.map_or(self.timeout, |d| d.min(self.timeout)));
        let o = options.unwrap_or_default();
        RequestOptions {
            connect_timeout: clamp(o.connect_timeout),
            first_byte_timeout: clamp(o.first_byte_timeout),
            between_bytes_timeout: clamp(o.between_bytes_timeout),
        }
    }
}

type SendFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), HttpError>> + Send>,
                ),
                HttpError,
            >,
        > + Send,
>;

impl WasiHttpHooks for OutboundHooks {
    fn send_request(
        &mut self,
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> SendFuture {
        drop(fut);
        if let Effects::Stubbed(stub) = &self.effects {
            let response = stub.answer(&request);
            return Box::new(async move {
                Ok((
                    response,
                    Box::new(async { Ok(()) }) as Box<dyn Future<Output = _> + Send>,
                ))
            });
        }
        let policy = self.policy.clone();
        let tape = match &self.effects {
            Effects::Taped(tape) => Some((
                tape.clone(),
                format!("{} {}", request.method(), request.uri()),
            )),
            _ => None,
        };
        Box::new(async move {
            policy.requests.fetch_add(1, Ordering::Relaxed);
            let scheme = request.uri().scheme().cloned().unwrap_or(Scheme::HTTPS);
            let authority = request
                .uri()
                .authority()
                .cloned()
                .ok_or(HttpError::HttpRequestUriInvalid)?;
            let addr = policy.admit(&scheme, &authority).await?;
            if scheme == Scheme::HTTP {
                // Pin the connection to the checked address; the Host header keeps the name.
                let path = request
                    .uri()
                    .path_and_query()
                    .map_or("/", |p| p.as_str())
                    .to_string();
                *request.uri_mut() = http::Uri::builder()
                    .scheme(Scheme::HTTP)
                    .authority(addr.to_string())
                    .path_and_query(path)
                    .build()
                    .map_err(|_| HttpError::HttpRequestUriInvalid)?;
            }
            let options = policy.clamp(options);
            let (response, io) =
                wasmtime_wasi_http::default_send_request(request, Some(options)).await?;
            let limit = policy.max_response_bytes;
            if response.body().size_hint().lower() > limit {
                return Err(HttpError::HttpResponseBodySize(Some(
                    response.body().size_hint().lower(),
                )));
            }
            let (parts, body) = response.into_parts();
            let tap = tape.map(|(tape, line)| tape.tap(line, &parts));
            let body = CappedBody {
                inner: body.boxed_unsync(),
                left: limit,
                tap,
            };
            let response = http::Response::from_parts(parts, body.boxed_unsync());
            Ok((response, Box::new(io) as Box<dyn Future<Output = _> + Send>))
        })
    }

    /// An outgoing body buffers at most two chunks: this keeps every handle's payload
    /// within what [`super::resources::HostResources`] charges it.
    fn p2_outgoing_body_chunk_size(&mut self) -> usize {
        super::resources::OUTGOING_BODY_CHUNK
    }
}

/// A response body that fails once more than `left` bytes arrived, and feeds a shadow run's
/// tape when there is one.
struct CappedBody {
    inner: WasiBody,
    left: u64,
    tap: Option<Tap>,
}

impl Body for CappedBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let poll = Pin::new(&mut self.inner).poll_frame(cx);
        match &poll {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let n = data.len() as u64;
                    if n > self.left {
                        if let Some(tap) = &mut self.tap {
                            tap.failed();
                        }
                        return Poll::Ready(Some(Err(HttpError::HttpResponseBodySize(None))));
                    }
                    self.left -= n;
                    if let Some(tap) = &mut self.tap {
                        tap.data(data);
                    }
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(tap) = &mut self.tap {
                    tap.failed();
                }
            }
            Poll::Ready(None) => {
                if let Some(tap) = &mut self.tap {
                    tap.ended();
                }
            }
            Poll::Pending => {}
        }
        poll
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
