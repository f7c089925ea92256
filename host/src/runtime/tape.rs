//! Outbound HTTP of shadow runs: the live call's exchanges are taped as they stream past, and
//! the candidate's identical requests are answered from the tape (others by a `200 {}` stub).

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::BodyExt;
use wasmtime_wasi_http::WasiBody;

/// Most exchanges one tape keeps, and most requests one stub records.
pub const MAX_EXCHANGES: usize = 50;
/// Largest response body a tape keeps; a longer one is not taped.
pub const MAX_TAPED_BODY: usize = 1 << 20;

/// One request of the live call and the answer it got.
#[derive(Debug, Clone)]
struct Exchange {
    /// `METHOD uri`.
    request: String,
    status: http::StatusCode,
    headers: http::HeaderMap,
    body: Bytes,
}

/// The exchanges of one live call, in the order their bodies finished.
#[derive(Debug, Default)]
pub struct Tape {
    exchanges: Mutex<Vec<Exchange>>,
}

impl Tape {
    fn push(&self, exchange: Exchange) {
        if let Ok(mut list) = self.exchanges.lock()
            && list.len() < MAX_EXCHANGES
        {
            list.push(exchange);
        }
    }

    /// Takes the first unused exchange for `request`, so two identical requests get the two
    /// answers the live call got, in order.
    fn take(&self, request: &str) -> Option<Exchange> {
        let mut list = self.exchanges.lock().ok()?;
        let at = list.iter().position(|e| e.request == request)?;
        Some(list.remove(at))
    }

    /// A tap for one live answer: fed the body as it streams, it tapes the exchange when the
    /// body ends.
    pub fn tap(self: &Arc<Self>, request: String, parts: &http::response::Parts) -> Tap {
        Tap {
            seen: Vec::new(),
            exchange: Some(Exchange {
                request,
                status: parts.status,
                headers: parts.headers.clone(),
                body: Bytes::new(),
            }),
            tape: self.clone(),
        }
    }
}

/// What a call without effects did over HTTP: the requests it made, and the live call's tape
/// to answer them from.
#[derive(Debug, Default)]
pub struct Stub {
    requests: Mutex<Vec<String>>,
    tape: Option<Arc<Tape>>,
}

impl Stub {
    /// A stub answering from `tape` where it can.
    pub fn replaying(tape: Arc<Tape>) -> Self {
        Self {
            requests: Mutex::default(),
            tape: Some(tape),
        }
    }

    /// The requests made so far (`METHOD uri`).
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Records the request and answers it: the live call's answer to the same request if it
    /// was taped, else `200 {}`.
    pub fn answer(&self, request: &http::Request<WasiBody>) -> http::Response<WasiBody> {
        let line = format!("{} {}", request.method(), request.uri());
        let taped = self.tape.as_ref().and_then(|t| t.take(&line));
        if let Ok(mut r) = self.requests.lock()
            && r.len() < MAX_EXCHANGES
        {
            r.push(line);
        }
        let full = |bytes: Bytes| {
            http_body_util::Full::new(bytes)
                .map_err(|never| match never {})
                .boxed_unsync()
        };
        match taped {
            Some(exchange) => {
                let mut response = http::Response::new(full(exchange.body));
                *response.status_mut() = exchange.status;
                *response.headers_mut() = exchange.headers;
                response
            }
            None => {
                let mut response = http::Response::new(full(Bytes::from_static(b"{}")));
                response.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                );
                response
            }
        }
    }
}

/// One live answer on its way to the tape.
pub struct Tap {
    seen: Vec<u8>,
    /// `None` once taped, or once the body grew past [`MAX_TAPED_BODY`] or failed.
    exchange: Option<Exchange>,
    tape: Arc<Tape>,
}

impl Tap {
    /// A chunk of the body went to the guest.
    pub fn data(&mut self, data: &[u8]) {
        if self.seen.len() + data.len() > MAX_TAPED_BODY {
            self.failed();
        } else if self.exchange.is_some() {
            self.seen.extend_from_slice(data);
        }
    }

    /// The body failed: nothing is taped.
    pub fn failed(&mut self) {
        self.exchange = None;
        self.seen = Vec::new();
    }

    /// The body ended: the exchange goes on the tape.
    pub fn ended(&mut self) {
        if let Some(mut exchange) = self.exchange.take() {
            exchange.body = Bytes::from(std::mem::take(&mut self.seen));
            self.tape.push(exchange);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(text: &'static str) -> WasiBody {
        http_body_util::Full::new(Bytes::from_static(text.as_bytes()))
            .map_err(|never| match never {})
            .boxed_unsync()
    }

    fn parts(status: u16) -> http::response::Parts {
        let mut response = http::Response::new(());
        *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
        response.into_parts().0
    }

    fn get(uri: &str) -> http::Request<WasiBody> {
        http::Request::get(uri).body(body("")).unwrap()
    }

    async fn text(response: http::Response<WasiBody>) -> (u16, String) {
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn a_read_live_answer_is_replayed_once_then_the_stub_answers() {
        let tape = Arc::new(Tape::default());
        let mut live = tape.tap("GET https://api.example.com/p/1".into(), &parts(201));
        live.data(b"{\"price\"");
        live.data(b":7}");
        live.ended();

        let mut unread = tape.tap("GET https://api.example.com/p/2".into(), &parts(200));
        unread.data(b"never read to the end");
        drop(unread);
        let mut huge = tape.tap("GET https://api.example.com/p/3".into(), &parts(200));
        huge.data(&vec![b'x'; MAX_TAPED_BODY + 1]);
        huge.ended();

        let stub = Stub::replaying(tape);
        let first = stub.answer(&get("https://api.example.com/p/1"));
        assert_eq!(text(first).await, (201, "{\"price\":7}".into()));
        let again = stub.answer(&get("https://api.example.com/p/1"));
        assert_eq!(text(again).await, (200, "{}".into()));
        let unread = stub.answer(&get("https://api.example.com/p/2"));
        assert_eq!(
            text(unread).await,
            (200, "{}".into()),
            "an unread body is not taped"
        );
        assert_eq!(stub.requests().len(), 3);
    }
}
