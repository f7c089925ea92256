//! Swapping versions under load loses no call and mixes no versions.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use reqwest::StatusCode;
use tessera_tests::TestHost;

const CALLS: usize = 10_000;
const CLIENTS: usize = 16;
const ACTIVATIONS: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn swap_under_load_loses_no_call() {
    let host = Arc::new(TestHost::start().await);
    let a = host.install("version-a", "versioned").await;
    let b = host.upload("version-b").await;
    let done = Arc::new(AtomicUsize::new(0));

    let swapper = {
        let (host, done) = (host.clone(), done.clone());
        tokio::spawn(async move {
            for i in 0..ACTIVATIONS {
                // Spread the activations over the run.
                while done.load(Ordering::Relaxed) < i * CALLS / (ACTIVATIONS + 1) {
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                }
                let sha = if i % 2 == 0 { &b } else { &a };
                host.activate("versioned", sha).await;
            }
        })
    };

    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (host, done) = (host.clone(), done.clone());
            tokio::spawn(async move {
                let (mut seen_a, mut seen_b) = (0usize, 0usize);
                for n in 0..CALLS / CLIENTS {
                    let id = format!("{c}-{n}");
                    let (status, out) = host.webhook("versioned", "/", &id).await;
                    assert_eq!(status, StatusCode::OK, "call {id} failed: {out}");
                    let events = out["ok"]["events"].as_array().expect("events");
                    assert_eq!(events.len(), 1, "exactly one answer: {out}");
                    assert_eq!(events[0]["id"], id.as_str(), "answered with its own input");
                    match events[0]["name"].as_str() {
                        Some("a") => seen_a += 1,
                        Some("b") => seen_b += 1,
                        other => panic!("unknown version answered: {other:?}"),
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
                (seen_a, seen_b)
            })
        })
        .collect();

    let (mut total_a, mut total_b) = (0, 0);
    for client in clients {
        let (a, b) = client.await.expect("client");
        total_a += a;
        total_b += b;
    }
    swapper.await.expect("swapper");
    assert_eq!(total_a + total_b, CALLS);
    assert!(
        total_a > 0 && total_b > 0,
        "both versions served: a={total_a} b={total_b}"
    );
    let (_, view) = host.get("/v1/plugins/versioned").await;
    assert_eq!(view["history"].as_array().unwrap().len(), ACTIVATIONS + 1);
}
