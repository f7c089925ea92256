//! Memory returns to its level after guests hit their memory cap (its own process, so no
//! other test's allocations blur the reading).

use reqwest::StatusCode;
use tessera_tests::{TestHost, resident_bytes};

#[tokio::test]
async fn memory_returns_to_its_level_after_memory_bombs() {
    let host = TestHost::start_with(|c| c.registry.breaker.failure_threshold = 1_000).await;
    let manifest = "id = \"hostile\"\nkind = \"connector\"\nversion = \"0.1.0\"\ncontract = \"0.2\"\n[limits]\nmemory_mb = 64\n";
    let sha = host.upload_with("hostile", manifest).await;
    host.activate("hostile", &sha).await;
    for _ in 0..3 {
        host.webhook("hostile", "/ok", "warm-up").await;
    }
    let baseline = resident_bytes();
    for _ in 0..10 {
        let (status, _) = host.webhook("hostile", "/alloc", "").await;
        assert_eq!(status, StatusCode::BAD_GATEWAY);
        let (status, _) = host.webhook("hostile", "/huge", "").await;
        assert_eq!(status, StatusCode::BAD_GATEWAY);
    }
    let after = resident_bytes();
    println!(
        "resident: {} MiB before, {} MiB after",
        baseline >> 20,
        after >> 20
    );
    // 20 calls each touched up to 64 MiB; what stays resident must be far less than that.
    let grown = after.saturating_sub(baseline);
    assert!(
        grown < 48 << 20,
        "resident memory grew by {} MiB (from {} MiB)",
        grown >> 20,
        baseline >> 20
    );
}
