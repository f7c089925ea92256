//! Slowloris: connections that trickle a request head are closed after the header-read
//! timeout, `/healthz` answers while hundreds are open, and the connection cap bounds the
//! host's open files.

// Each test holds its turn (`crate::serial`) across awaits on purpose: attacks never overlap.
#![allow(clippy::await_holding_lock)]

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tessera_tests::process::{HostOptions, HostProcess};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Connects to `address`, trying again briefly when the connect itself fails (hundreds of
/// connects at once can overflow a busy machine's accept queue): a connection that was never
/// made is not one the host left open.
async fn connect(address: &str) -> Option<TcpStream> {
    for _ in 0..5 {
        if let Ok(stream) = TcpStream::connect(address).await {
            return Some(stream);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

/// How one slow connection ended.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Ended {
    /// The host closed (or answered) it after this long.
    Closed(Duration),
    /// It was still open when the test gave up.
    StillOpen,
    /// It could never be made.
    NotConnected,
}

impl Ended {
    fn after(self) -> Option<Duration> {
        match self {
            Ended::Closed(after) => Some(after),
            _ => None,
        }
    }
}

/// Opens `n` connections that send a request head one header line every `every`, until the
/// server closes them or `give_up` passes after the connection was made; returns how each
/// ended.
async fn trickle(
    base: &str,
    n: usize,
    every: Duration,
    give_up: Duration,
) -> tokio::task::JoinSet<Ended> {
    let address = base.trim_start_matches("http://").to_string();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..n {
        let address = address.clone();
        set.spawn(async move {
            let Some(mut stream) = connect(&address).await else {
                return Ended::NotConnected;
            };
            // Timed from the connection, not the connect: a SYN dropped by a full accept
            // queue is retried seconds later, and that wait is not the host's to answer for.
            let started = Instant::now();
            let mut line = format!("GET /healthz HTTP/1.1\r\nhost: {address}\r\n").into_bytes();
            let mut buf = [0u8; 512];
            loop {
                if stream.write_all(&line).await.is_err() {
                    return Ended::Closed(started.elapsed());
                }
                match tokio::time::timeout(every, stream.read(&mut buf)).await {
                    // The server closed it (or answered it, which also ends the trickle).
                    Ok(_) => return Ended::Closed(started.elapsed()),
                    Err(_) if started.elapsed() > give_up => return Ended::StillOpen,
                    Err(_) => {}
                }
                line = format!("x-slow-{i}: {}\r\n", started.elapsed().as_millis()).into_bytes();
            }
        });
    }
    set
}

/// Opens a connection that sends `first` (possibly nothing, possibly a whole request) and then
/// nothing more; returns how it ended, reading whatever the server answered.
async fn idle(base: &str, first: &'static [u8], give_up: Duration) -> Ended {
    let Some(mut stream) = connect(base.trim_start_matches("http://")).await else {
        return Ended::NotConnected;
    };
    let started = Instant::now();
    if stream.write_all(first).await.is_err() {
        return Ended::Closed(started.elapsed());
    }
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(
            give_up.saturating_sub(started.elapsed()),
            stream.read(&mut buf),
        )
        .await
        {
            Ok(Ok(0) | Err(_)) => return Ended::Closed(started.elapsed()),
            Ok(Ok(_)) => {}
            Err(_) => return Ended::StillOpen,
        }
    }
}

async fn idle_owned(base: String, first: &'static [u8]) -> Ended {
    idle(&base, first, Duration::from_secs(40)).await
}

async fn healthz_latency(host: &HostProcess) -> Duration {
    let started = Instant::now();
    let response = reqwest::Client::new()
        .get(format!("{}/healthz", host.base))
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .expect("/healthz answers");
    assert_eq!(response.status(), StatusCode::OK);
    started.elapsed()
}

/// 300 connections trickling a header every 2 s, 20 that send nothing and 20 kept alive
/// idle after one request: the host closes each within its default header-read timeout
/// (10 s) plus 10 s, and `/healthz` answers within 2 s while they are open. Before: none was closed within 40 s (trickling connections stayed open 110 s and more).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickled_request_heads_are_cut_off() {
    let _turn = crate::serial();
    let host = HostProcess::start(HostOptions::default());
    let files_before = host.open_files();
    let mut slow = trickle(
        &host.base,
        300,
        Duration::from_secs(2),
        Duration::from_secs(40),
    )
    .await;
    let silent: Vec<_> = (0..20)
        .map(|_| tokio::spawn(idle_owned(host.base.clone(), b"")))
        .collect();
    let kept_alive: Vec<_> = (0..20)
        .map(|_| {
            tokio::spawn(idle_owned(
                host.base.clone(),
                b"GET /healthz HTTP/1.1\r\nhost: tessera\r\n\r\n",
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let files_during = host.open_files();
    let healthz = healthz_latency(&host).await;
    let mut closed = Vec::new();
    while let Some(joined) = slow.join_next().await {
        closed.push(joined.expect("trickle task"));
    }
    for task in silent.into_iter().chain(kept_alive) {
        closed.push(task.await.expect("idle task"));
    }
    let open_after = closed.iter().filter(|c| **c == Ended::StillOpen).count();
    // Which kind stayed open: trickling, silent, kept alive.
    let still_open = |range: std::ops::Range<usize>| {
        closed[range]
            .iter()
            .filter(|c| **c == Ended::StillOpen)
            .count()
    };
    let open_by_kind = (
        still_open(0..300),
        still_open(300..320),
        still_open(320..340),
    );
    let not_made = closed.iter().filter(|c| **c == Ended::NotConnected).count();
    let slowest = closed
        .iter()
        .filter_map(|c| c.after())
        .max()
        .unwrap_or_default();
    eprintln!(
        "slowloris: open files {files_before} -> {files_during} with 340 slow connections \
         ({not_made} could not connect); /healthz in {} ms; {open_after} still open after 40 s \
         (trickling, silent, kept alive: {open_by_kind:?}); the last closed after {:.1} s",
        healthz.as_millis(),
        slowest.as_secs_f64()
    );
    assert!(
        not_made <= 34,
        "nearly every slow connection was made ({not_made} of 340 were not)"
    );
    assert_eq!(
        open_after, 0,
        "every slow or idle connection is closed by the host"
    );
    assert!(
        slowest < Duration::from_secs(20),
        "closed within the header-read timeout plus 10 s: {slowest:?}"
    );
    assert!(
        healthz < Duration::from_secs(2),
        "/healthz answers while they are open: {healthz:?}"
    );
}

/// With `--max-connections 64`, 300 trickling connections raise the host's open files by at
/// most 64 (plus 16 for anything else), the rest wait in the listen backlog, and a `/healthz`
/// queued behind them is still answered once header-read timeouts (4 s here) free slots.
/// Before: no cap (every connection was an open file until the process limit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_cap_bounds_open_files() {
    let _turn = crate::serial();
    let host = HostProcess::start(HostOptions {
        args: ["--max-connections", "64", "--header-read-timeout-secs", "4"]
            .map(String::from)
            .to_vec(),
        ..Default::default()
    });
    // Let the test client's own keep-alive connections from start-up go.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let files_before = host.open_files();
    let mut slow = trickle(
        &host.base,
        300,
        Duration::from_secs(1),
        Duration::from_secs(60),
    )
    .await;
    let mut most = 0;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        most = most.max(host.open_files());
    }
    let healthz = healthz_latency(&host).await;
    while let Some(joined) = slow.join_next().await {
        assert_ne!(
            joined.expect("trickle task"),
            Ended::StillOpen,
            "every trickling connection is closed"
        );
    }
    eprintln!(
        "connection cap 64: open files {files_before} -> at most {most} with 300 trickling \
         connections; a queued /healthz answered in {:.1} s",
        healthz.as_secs_f64()
    );
    assert!(
        most <= files_before + 64 + 16,
        "the cap bounds open files: {files_before} -> {most}"
    );
    assert!(
        healthz < Duration::from_secs(45),
        "a connection beyond the cap waits, then is served: {healthz:?}"
    );
}
