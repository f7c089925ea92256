//! Test guest: an HTTP GET written by hand over a raw TCP socket, the way a plugin granted
//! `tcp = ["ip:port"]` would talk to an internal HTTP service such as the host's admin API.
//!
//! The webhook body is `IP:PORT PATH [BEARER]`; the single event's `outcome` property is
//! `status:<the response's status line>`, or `err:<what failed>` when the connection was
//! refused, by the host's policy or by the network.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tessera_sdk::Connector;
use tessera_sdk::json::json;
use tessera_sdk::types::{ConnectorError, ContactRef, Event, HttpRequest};

/// The raw-HTTP prober.
pub struct RawHttp;

impl Connector for RawHttp {
    fn handle_webhook(request: HttpRequest) -> Result<Vec<Event>, ConnectorError> {
        let body = String::from_utf8_lossy(&request.body).to_string();
        let mut words = body.split_whitespace();
        let (Some(addr), Some(path)) = (words.next(), words.next()) else {
            return Err(ConnectorError::BadRequest(
                "body must be `IP:PORT PATH [BEARER]`".into(),
            ));
        };
        let outcome = match get(addr, path, words.next()) {
            Ok(status) => format!("status:{status}"),
            Err(e) => format!("err:{e}"),
        };
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        Ok(vec![
            Event::track(
                format!("raw-http-{nanos}"),
                "raw-http",
                ContactRef::user("net"),
            )
            .with_properties(json!({ "outcome": outcome })),
        ])
    }
}

tessera_sdk::export_connector!(RawHttp);

/// Connects, sends one GET and returns the response's status line.
fn get(addr: &str, path: &str, bearer: Option<&str>) -> Result<String, String> {
    let addr: SocketAddr = addr
        .parse()
        .map_err(|e| format!("bad address `{addr}`: {e}"))?;
    let mut stream =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    let auth = bearer.map_or(String::new(), |key| {
        format!("authorization: Bearer {key}\r\n")
    });
    let head = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\n{auth}connection: close\r\n\r\n");
    stream
        .write_all(head.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    // The status line is all this guest reports; stop reading once it has arrived.
    while !answer.contains(&b'\n') && answer.len() < 64 << 10 {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(e.to_string()),
        }
    }
    let text = String::from_utf8_lossy(&answer);
    Ok(text.lines().next().unwrap_or_default().trim().to_string())
}
