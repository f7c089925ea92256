//! Outbound HTTP policy for guests: the `WasiHttpHooks` every plugin call runs with.
//!
//! Order of checks: scheme, host allowlist (manifest), name resolution by the host, address
//! check (internal addresses need an operator grant), then the request goes out with clamped
//! timeouts and a capped response body. Every request, plain or HTTPS, connects to the very
//! address that was checked, so a name cannot re-resolve inward between check and connect
//! (DNS rebinding); HTTPS sends the name as SNI and verifies the certificate against it,
//! with the web's public roots plus only those the operator added.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::uri::{Authority, Scheme};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use super::effects::Effects;
use super::net_policy::{AddressGrants, HostPattern, check_address};
use super::pinned_send::{ConnectionFuture, TlsTarget, send_pinned};
use super::tape::{Tap, Tape};

/// A name resolution in flight.
pub type ResolveFuture = Pin<Box<dyn Future<Output = std::io::Result<Vec<SocketAddr>>> + Send>>;

/// How names are resolved: the system resolver, or a scripted one in tests.
type Resolver = Arc<dyn Fn(&str, u16) -> ResolveFuture + Send + Sync>;

/// Why the roots for outbound HTTPS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum OutboundTlsError {
    /// A root certificate file could not be read or parsed.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: rustls::pki_types::pem::Error,
    },
    /// A root certificate file holds no certificate.
    #[error("{}: no PEM certificate in the file", .0.display())]
    Empty(PathBuf),
    /// A certificate is not usable as a trust anchor.
    #[error("not a usable root certificate: {0}")]
    BadRoot(rustls::Error),
}

/// Reads every certificate of a PEM file, for [`OutboundNet::with_extra_roots`].
pub fn read_root_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, OutboundTlsError> {
    let read = |source| OutboundTlsError::Read {
        path: path.to_path_buf(),
        source,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(read)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read)?;
    if certs.is_empty() {
        return Err(OutboundTlsError::Empty(path.to_path_buf()));
    }
    Ok(certs)
}

/// What every plugin's outbound traffic shares: the operator's address grants, the roots
/// HTTPS trusts and the resolver. Only the operator sets it; no manifest can change it.
pub struct OutboundNet {
    /// Internal addresses the operator allowed.
    pub grants: AddressGrants,
    tls: Arc<rustls::ClientConfig>,
    resolver: Resolver,
}

impl std::fmt::Debug for OutboundNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundNet")
            .field("grants", &self.grants)
            .finish_non_exhaustive()
    }
}

impl OutboundNet {
    /// The operator's grants, the web's public roots (as wasmtime-wasi-http trusts) and the
    /// system resolver.
    pub fn new(grants: AddressGrants) -> Self {
        Self::with_roots(grants, Vec::new()).unwrap_or_else(|e| {
            // Only an extra root can be refused, and there is none.
            unreachable!("the public roots are usable: {e}")
        })
    }

    /// Like [`OutboundNet::new`], also trusting `extra_roots` (an internal CA, a test root).
    pub fn with_extra_roots(
        self,
        extra_roots: Vec<CertificateDer<'static>>,
    ) -> Result<Self, OutboundTlsError> {
        Ok(Self {
            resolver: self.resolver.clone(),
            ..Self::with_roots(self.grants, extra_roots)?
        })
    }

    fn with_roots(
        grants: AddressGrants,
        extra_roots: Vec<CertificateDer<'static>>,
    ) -> Result<Self, OutboundTlsError> {
        let mut roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.into(),
        };
        for root in extra_roots {
            roots.add(root).map_err(OutboundTlsError::BadRoot)?;
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(OutboundTlsError::BadRoot)?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Ok(Self {
            grants,
            tls: Arc::new(config),
            resolver: Arc::new(|host: &str, port: u16| {
                let host = host.to_string();
                Box::pin(async move {
                    Ok(tokio::net::lookup_host((host.as_str(), port))
                        .await?
                        .collect())
                })
            }),
        })
    }

    /// Resolves `host` with the host's resolver (the system's, or a test's script).
    pub(super) async fn resolve(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        (self.resolver)(host, port).await
    }

    /// Replaces the resolver, so tests can script what a name resolves to and when.
    #[cfg(test)]
    pub(super) fn with_resolver(
        mut self,
        resolve: impl Fn(&str, u16) -> ResolveFuture + Send + Sync + 'static,
    ) -> Self {
        self.resolver = Arc::new(resolve);
        self
    }
}

/// What one plugin version may do over HTTP; shared by all its calls.
#[derive(Debug)]
pub struct OutboundPolicy {
    /// Plugin id, for logs.
    pub plugin: String,
    /// The manifest's `capabilities.http`.
    pub allow: Vec<HostPattern>,
    /// The operator's grants, trusted roots and resolver.
    pub net: Arc<OutboundNet>,
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

    /// Resolves and checks the request's destination; returns the host name and the address
    /// to connect to.
    async fn admit(
        &self,
        scheme: &Scheme,
        authority: &Authority,
    ) -> Result<(String, SocketAddr), HttpError> {
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
        let addrs = match tokio::time::timeout(self.timeout, (self.net.resolver)(&host, port)).await
        {
            Ok(Ok(addrs)) => addrs,
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
            if let Err(why) = check_address(*addr, &self.net.grants) {
                self.denied.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(plugin = %self.plugin, "outbound HTTP to {host} refused: {why}");
                return Err(HttpError::DestinationIpProhibited);
            }
        }
        Ok((host, addrs[0]))
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
        request: http::Request<WasiBody>,
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
        let tape = match &self.effects {
            Effects::Taped(tape) => Some(tape.clone()),
            _ => None,
        };
        Box::new(self.policy.clone().send(request, options, tape))
    }

    /// An outgoing body buffers at most two chunks: this keeps every handle's payload
    /// within what [`super::resources::HostResources`] charges it.
    fn p2_outgoing_body_chunk_size(&mut self) -> usize {
        super::resources::OUTGOING_BODY_CHUNK
    }
}

impl OutboundPolicy {
    /// Admits, sends and caps one live (or taped) request.
    pub(super) async fn send(
        self: Arc<Self>,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        tape: Option<Arc<Tape>>,
    ) -> Result<(http::Response<WasiBody>, ConnectionFuture), HttpError> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let tape = tape.map(|tape| (tape, format!("{} {}", request.method(), request.uri())));
        let scheme = request.uri().scheme().cloned().unwrap_or(Scheme::HTTPS);
        let authority = request
            .uri()
            .authority()
            .cloned()
            .ok_or(HttpError::HttpRequestUriInvalid)?;
        let (host, addr) = self.admit(&scheme, &authority).await?;
        let tls = if scheme == Scheme::HTTPS {
            Some(TlsTarget {
                config: self.net.tls.clone(),
                name: ServerName::try_from(host)?,
            })
        } else {
            None
        };
        let options = self.clamp(options);
        let (response, io) = send_pinned(request, addr, tls, &options).await?;
        let limit = self.max_response_bytes;
        if response.body().size_hint().lower() > limit {
            return Err(HttpError::HttpResponseBodySize(Some(
                response.body().size_hint().lower(),
            )));
        }
        let (parts, body) = response.into_parts();
        let tap = tape.map(|(tape, line)| tape.tap(line, &parts));
        let body = CappedBody {
            inner: body,
            left: limit,
            tap,
        };
        Ok((http::Response::from_parts(parts, body.boxed_unsync()), io))
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use http_body_util::Empty;
    use rustls::pki_types::PrivateKeyDer;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/tls");

    /// A loopback server answering `200 <body>`, over TLS with the `localhost` test
    /// certificate when `tls`; counts the connections it accepted.
    async fn server(tls: bool, body: &'static str) -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let acceptor = tls.then(|| {
            let cert = CertificateDer::from_pem_file(format!("{FIXTURES}/localhost.pem")).unwrap();
            let key = PrivateKeyDer::from_pem_file(format!("{FIXTURES}/localhost.key")).unwrap();
            let config = rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .unwrap();
            tokio_rustls::TlsAcceptor::from(Arc::new(config))
        });
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let mut head = [0u8; 4096];
                    match acceptor {
                        Some(acceptor) => {
                            let Ok(mut s) = acceptor.accept(socket).await else {
                                return;
                            };
                            let _ = s.read(&mut head).await;
                            let _ = s.write_all(answer.as_bytes()).await;
                            let _ = s.shutdown().await;
                        }
                        None => {
                            let mut s = socket;
                            let _ = s.read(&mut head).await;
                            let _ = s.write_all(answer.as_bytes()).await;
                        }
                    }
                });
            }
        });
        (addr, accepted)
    }

    /// A policy allowing `localhost` and the name `other.test`, trusting the test root,
    /// granting `granted`, with a resolver that answers `first` once and `then` afterwards;
    /// returns how many times it was asked.
    fn policy(
        granted: SocketAddr,
        first: SocketAddr,
        then: SocketAddr,
    ) -> (Arc<OutboundPolicy>, Arc<AtomicUsize>) {
        let asked = Arc::new(AtomicUsize::new(0));
        let count = asked.clone();
        let root = CertificateDer::from_pem_file(format!("{FIXTURES}/ca.pem")).unwrap();
        let net = OutboundNet::new(AddressGrants::parse(&[granted.to_string()]).unwrap())
            .with_extra_roots(vec![root])
            .unwrap()
            .with_resolver(move |_host, _port| {
                let n = count.fetch_add(1, Ordering::SeqCst);
                let addr = if n == 0 { first } else { then };
                Box::pin(async move { Ok(vec![addr]) })
            });
        let policy = OutboundPolicy {
            plugin: "test".into(),
            allow: vec![
                HostPattern::parse("localhost").unwrap(),
                HostPattern::parse("other.test").unwrap(),
            ],
            net: Arc::new(net),
            timeout: Duration::from_secs(5),
            max_response_bytes: 1 << 20,
            requests: AtomicU64::new(0),
            denied: AtomicU64::new(0),
        };
        (Arc::new(policy), asked)
    }

    fn get(url: &str) -> http::Request<WasiBody> {
        let uri: http::Uri = url.parse().unwrap();
        http::Request::get(uri.clone())
            .header(http::header::HOST, uri.authority().unwrap().as_str())
            .body(Empty::<Bytes>::new().map_err(|n| match n {}).boxed_unsync())
            .unwrap()
    }

    async fn body_of(response: http::Response<WasiBody>, io: ConnectionFuture) -> String {
        tokio::spawn(Box::into_pin(io));
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    #[tokio::test]
    async fn https_connects_to_the_checked_address_even_when_the_name_rebinds() {
        let (good, good_accepted) = server(true, "checked").await;
        let (inward, inward_accepted) = server(true, "rebound").await;
        // The name first resolves to the granted address, then to another one: a client
        // that resolved again at connect time would land on `inward`.
        let (policy, asked) = policy(good, good, inward);
        let url = format!("https://localhost:{}/", good.port());
        let (response, io) = policy.clone().send(get(&url), None, None).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(body_of(response, io).await, "checked");
        assert_eq!(
            asked.load(Ordering::SeqCst),
            1,
            "the name was resolved once"
        );
        assert_eq!(good_accepted.load(Ordering::SeqCst), 1);
        assert_eq!(inward_accepted.load(Ordering::SeqCst), 0);

        // The next request resolves again, to the address that was never granted: refused
        // before any connection.
        let err = policy.send(get(&url), None, None).await.err().unwrap();
        assert!(matches!(err, HttpError::DestinationIpProhibited), "{err:?}");
        assert_eq!(inward_accepted.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn plain_http_connects_to_the_checked_address_too() {
        let (good, _) = server(false, "checked").await;
        let (inward, inward_accepted) = server(false, "rebound").await;
        let (policy, asked) = policy(good, good, inward);
        let url = format!("http://localhost:{}/", good.port());
        let (response, io) = policy.send(get(&url), None, None).await.unwrap();
        assert_eq!(body_of(response, io).await, "checked");
        assert_eq!(asked.load(Ordering::SeqCst), 1);
        assert_eq!(inward_accepted.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn the_certificate_is_verified_against_the_name_not_the_address() {
        let (good, good_accepted) = server(true, "checked").await;
        // `other.test` resolves to the server, whose certificate is for `localhost` only.
        let (policy, _) = policy(good, good, good);
        let url = format!("https://other.test:{}/", good.port());
        let err = policy.send(get(&url), None, None).await.err().unwrap();
        assert!(matches!(err, HttpError::Tls(_)), "{err:?}");
        assert_eq!(
            good_accepted.load(Ordering::SeqCst),
            1,
            "connected, then refused"
        );
    }

    #[tokio::test]
    async fn without_the_operators_root_the_test_certificate_is_refused() {
        let (good, _) = server(true, "checked").await;
        let (mut policy, _) = policy(good, good, good);
        let net = OutboundNet::new(AddressGrants::parse(&[good.to_string()]).unwrap())
            .with_resolver(move |_, _| Box::pin(async move { Ok(vec![good]) }));
        Arc::get_mut(&mut policy).unwrap().net = Arc::new(net);
        let url = format!("https://localhost:{}/", good.port());
        let err = policy.send(get(&url), None, None).await.err().unwrap();
        assert!(matches!(err, HttpError::Tls(_)), "{err:?}");
    }

    #[tokio::test]
    async fn response_cap_still_holds_on_the_pinned_connection() {
        static BIG: &str = concat!(
            "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
        );
        let (good, _) = server(true, BIG).await;
        let (mut policy, _) = policy(good, good, good);
        Arc::get_mut(&mut policy).unwrap().max_response_bytes = 100;
        let url = format!("https://localhost:{}/", good.port());
        let err = policy.send(get(&url), None, None).await.err().unwrap();
        assert!(
            matches!(err, HttpError::HttpResponseBodySize(Some(128))),
            "{err:?}"
        );
    }
}
