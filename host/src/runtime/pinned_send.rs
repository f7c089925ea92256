//! Sends one outbound request over a connection to the address the policy checked: the name
//! is never resolved again, and HTTPS verifies the server's certificate against the name.

use std::future::poll_fn;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::Uri;
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody};

/// What drives the connection after the response head arrived; the guest's body reads and
/// the host's cap ride on it.
pub(super) type ConnectionFuture = Box<dyn Future<Output = Result<(), HttpError>> + Send>;

/// TLS for one request: the trusted roots and the name the certificate must carry.
pub(super) struct TlsTarget {
    /// Client configuration with the roots the operator trusts.
    pub config: Arc<rustls::ClientConfig>,
    /// The request's host, sent as SNI and verified against the certificate.
    pub name: ServerName<'static>,
}

trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for T {}

/// Connects to `addr` (over TLS when `tls` is set) and sends `request` as HTTP/1.1, with the
/// (already clamped) timeouts of `options`. The `Host` header the guest's request carries
/// keeps the name; the request line carries only the path.
pub(super) async fn send_pinned(
    mut request: http::Request<WasiBody>,
    addr: SocketAddr,
    tls: Option<TlsTarget>,
    options: &RequestOptions,
) -> Result<(http::Response<WasiBody>, ConnectionFuture), HttpError> {
    // Defaults match wasmtime-wasi-http's; the policy always sets all three.
    let default = Duration::from_secs(600);
    let connect_timeout = options.connect_timeout.unwrap_or(default);
    let first_byte_timeout = options.first_byte_timeout.unwrap_or(default);
    // Tokio panics on a zero interval.
    let between_bytes_timeout = options
        .between_bytes_timeout
        .unwrap_or(default)
        .max(Duration::from_nanos(1));

    let tcp = match tokio::time::timeout(connect_timeout, TcpStream::connect(addr)).await {
        Ok(stream) => stream.map_err(HttpError::Connect)?,
        Err(_) => return Err(HttpError::ConnectionTimeout),
    };
    let stream: Box<dyn Stream> = match tls {
        Some(TlsTarget { config, name }) => {
            let connector = tokio_rustls::TlsConnector::from(config);
            match tokio::time::timeout(connect_timeout, connector.connect(name, tcp)).await {
                Ok(stream) => Box::new(stream.map_err(HttpError::Tls)?),
                Err(_) => return Err(HttpError::ConnectionTimeout),
            }
        }
        None => Box::new(tcp),
    };
    let (mut sender, conn) = tokio::time::timeout(
        connect_timeout,
        hyper::client::conn::http1::Builder::new().handshake(TokioIo::new(stream)),
    )
    .await
    .map_err(|_| HttpError::ConnectionTimeout)??;

    // Not talking to a proxy: the request line carries the path only.
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    *request.uri_mut() = Uri::builder()
        .path_and_query(path)
        .build()
        .map_err(|_| HttpError::HttpRequestUriInvalid)?;

    let send = async move {
        let response = tokio::time::timeout(first_byte_timeout, sender.send_request(request))
            .await
            .map_err(|_| HttpError::ConnectionReadTimeout)??;
        let mut timeout = tokio::time::interval(between_bytes_timeout);
        timeout.reset();
        Ok::<_, HttpError>(response.map(|incoming| TimedBody { incoming, timeout }.boxed_unsync()))
    };
    // The connection must be driven while the response head is awaited.
    let mut send = pin!(send);
    let mut conn = Some(conn);
    let response = poll_fn(|cx| match send.as_mut().poll(cx) {
        Poll::Ready(result) => Poll::Ready(result),
        Poll::Pending => {
            let Some(fut) = conn.as_mut() else {
                return Poll::Pending;
            };
            let done = ready!(Pin::new(fut).poll(cx));
            conn = None;
            match done {
                Ok(()) => send.as_mut().poll(cx),
                Err(e) => Poll::Ready(Err(HttpError::from(e))),
            }
        }
    })
    .await?;
    let io: ConnectionFuture = Box::new(async move {
        let Some(conn) = conn else {
            return Ok(());
        };
        conn.await.map_err(|e| {
            if e.is_timeout() {
                HttpError::HttpResponseTimeout
            } else {
                HttpError::from(e)
            }
        })
    });
    Ok((response, io))
}

/// A response body that fails when no bytes arrive for `timeout`.
struct TimedBody {
    incoming: hyper::body::Incoming,
    timeout: tokio::time::Interval,
}

impl Body for TimedBody {
    type Data = bytes::Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<bytes::Bytes>, HttpError>>> {
        match Pin::new(&mut self.incoming).poll_frame(cx) {
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(if e.is_timeout() {
                HttpError::HttpResponseTimeout
            } else {
                HttpError::from(e)
            }))),
            Poll::Ready(Some(Ok(frame))) => {
                self.timeout.reset();
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => {
                ready!(self.timeout.poll_tick(cx));
                Poll::Ready(Some(Err(HttpError::ConnectionReadTimeout)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.incoming.size_hint()
    }
}
