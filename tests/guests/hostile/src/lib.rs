//! Test guest: a connector that misbehaves on request, so tests can prove the sandbox holds.
//!
//! `handle_webhook` dispatches on the request path:
//!
//! | path         | does                                                                   |
//! |--------------|------------------------------------------------------------------------|
//! | `/ok`        | one `track` event named `ok` (id: the body, or `ok`)                   |
//! | `/loop`      | spins forever                                                          |
//! | `/alloc`     | allocates and touches 1 MiB chunks forever                             |
//! | `/recurse`   | recurses without bound with big frames (overflows the shadow stack)    |
//! | `/recurse-deep` | recurses without bound with tiny frames (overflows the wasm stack)  |
//! | `/huge`      | returns an event with a 100 MB property                                |
//! | `/panic`     | panics                                                                 |
//! | `/read-file` | reads `/etc/passwd`; `outcome` is `ok:<len>` or `err:<msg>`            |
//! | `/env`       | counts env vars; `outcome` is `vars:<n> home:<bool> path:<bool>`       |
//! | `/env-var`   | reads the env var named in the body; `outcome` is `set:<value>` or `unset` |
//! | `/tcp`       | connects to the `ip:port` in the body; `outcome` is `ok` or `err:<msg>` |
//! | `/http`      | GETs the URL in the body; `outcome` is `ok:<status>` or `err:<kind>:<msg>` |
//! | `/sleep`     | sleeps for the milliseconds the body starts with (a blocking host poll); the rest of the body is ignored, so callers can vary a canary's routing key |
//!
//! Probe events carry the route and a timestamp in their id, so repeated probes are not
//! deduplicated away. `self_test` fails when config `self_test` is `"fail"`.

use std::hint::black_box;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tessera_sdk::http::Request;
use tessera_sdk::json::json;
use tessera_sdk::types::{ConnectorError, ContactRef, Event, HttpRequest};
use tessera_sdk::{Connector, config};

/// The hostile connector.
pub struct Hostile;

impl Connector for Hostile {
    fn handle_webhook(request: HttpRequest) -> Result<Vec<Event>, ConnectorError> {
        let body = String::from_utf8_lossy(&request.body).trim().to_string();
        let outcome = match request.path.as_str() {
            "/ok" => {
                let id = if body.is_empty() {
                    "ok".to_string()
                } else {
                    body
                };
                return Ok(vec![event(id, "ok")]);
            }
            "/loop" => spin(),
            "/alloc" => allocate_forever(),
            "/recurse" => format!("depth:{}", recurse(black_box(0))),
            "/recurse-deep" => format!("depth:{}", recurse_deep(black_box(0))),
            "/huge" => "x".repeat(100 * 1024 * 1024),
            "/panic" => panic!("hostile guest panicked on purpose"),
            "/read-file" => match std::fs::read_to_string("/etc/passwd") {
                Ok(text) => format!("ok:{}", text.len()),
                Err(e) => format!("err:{e}"),
            },
            "/env" => {
                let vars: Vec<(String, String)> = std::env::vars().collect();
                let has = |name: &str| vars.iter().any(|(k, _)| k == name);
                format!(
                    "vars:{} home:{} path:{}",
                    vars.len(),
                    has("HOME"),
                    has("PATH")
                )
            }
            "/env-var" => {
                std::env::var(&body).map_or_else(|_| "unset".into(), |v| format!("set:{v}"))
            }
            "/tcp" => tcp_connect(&body),
            "/http" => match Request::get(body.as_str())
                .timeout(Duration::from_secs(5))
                .send()
            {
                Ok(response) => format!("ok:{}", response.status),
                Err(e) => format!("err:{}:{}", e.kind(), e.message()),
            },
            "/sleep" => {
                let millis: u64 = body
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .parse()
                    .map_err(|_| {
                        ConnectorError::BadRequest(format!(
                            "/sleep needs milliseconds, got `{body}`"
                        ))
                    })?;
                std::thread::sleep(Duration::from_millis(millis));
                format!("slept:{millis}")
            }
            other => {
                return Err(ConnectorError::Unsupported(format!(
                    "no such route `{other}`"
                )));
            }
        };
        let route = request.path.trim_start_matches('/');
        let event = event(probe_id(route), route).with_properties(json!({ "outcome": outcome }));
        Ok(vec![event])
    }

    fn self_test() -> Result<(), String> {
        match config::get("self_test").as_deref() {
            Some("fail") => Err("self-test asked to fail".to_string()),
            _ => Ok(()),
        }
    }
}

tessera_sdk::export_connector!(Hostile);

fn event(id: String, name: &str) -> Event {
    Event::track(id, name, ContactRef::user("hostile"))
}

fn probe_id(route: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{route}-{nanos}")
}

fn spin() -> ! {
    let mut counter = 0u64;
    loop {
        counter = black_box(counter.wrapping_add(1));
    }
}

fn allocate_forever() -> ! {
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut chunk = vec![0u8; 1024 * 1024];
        // Touch every page so the memory is really used.
        for i in (0..chunk.len()).step_by(4096) {
            chunk[i] = 1;
        }
        chunks.push(black_box(chunk));
    }
}

/// Tiny frames: the engine's stack runs out before the shadow stack in linear memory does.
fn recurse_deep(depth: u64) -> u64 {
    if depth == u64::MAX {
        return 0;
    }
    1 + recurse_deep(black_box(depth + 1))
}

/// Never returns: each frame keeps a buffer alive across the call, so it cannot become a loop.
#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    let frame = black_box([depth; 32]);
    let below = recurse(black_box(frame[0] + 1));
    black_box(below + frame[31])
}

fn tcp_connect(addr: &str) -> String {
    let addr: std::net::SocketAddr = match addr.parse() {
        Ok(addr) => addr,
        Err(e) => return format!("err:bad address `{addr}`: {e}"),
    };
    match std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
        Ok(_) => "ok".to_string(),
        Err(e) => format!("err:{e}"),
    }
}
