//! The published tracking libraries, unchanged, against a real host: Segment's and
//! RudderStack's Node and Python libraries, and their browser libraries in headless Chromium on
//! a page from another loopback origin (so CORS and preflights are the browser's own). The
//! drivers live in `tests/clients/`; `scripts/test.sh` installs the pinned libraries and
//! Chromium. Each library sends identify, track, page, screen (where it has one), group and
//! alias; the test reads back one merged profile and every event, stored exactly once.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;
use tessera_tests::{TestHost, workspace};

/// What one library sends beyond the common calls.
struct Library {
    name: &'static str,
    command: &'static [&'static str],
    screen: bool,
    /// Track events it sends besides `Order Completed` (RudderStack's beacon on unload).
    extra_tracks: &'static [&'static str],
    /// How many times the driver makes the common calls (RudderStack's browser driver makes
    /// them on a second page too, sent by `sendBeacon`).
    rounds: usize,
}

async fn sends_unchanged(lib: Library) {
    let clients = workspace().join("tests/clients");
    assert!(
        clients.join("node_modules").is_dir(),
        "tests/clients/node_modules is missing: scripts/test.sh installs the pinned libraries"
    );
    let host = TestHost::start().await;
    let key = host.create_source(lib.name).await;
    let user = format!("{}-user", lib.name);
    let started = Instant::now();
    let output = tokio::process::Command::new(lib.command[0])
        .args(&lib.command[1..])
        .args([&host.base, &key, &user])
        .current_dir(&clients)
        .output()
        .await
        .unwrap_or_else(|e| panic!("{}: cannot run {:?}: {e}", lib.name, lib.command));
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "{} reported a failure:\n{printed}",
        lib.name
    );
    println!("{}: {:?}\n{printed}", lib.name, started.elapsed());

    // Every call the library reported as sent is acknowledged: wait until profiles have it all.
    host.wait_profiles_applied(Duration::from_secs(20)).await;
    let n = lib.rounds;
    let mut want: BTreeMap<&str, usize> = [
        ("identify", n),
        ("track", n + lib.extra_tracks.len()),
        ("page", n),
        ("group", n),
        ("alias", n),
    ]
    .into();
    if lib.screen {
        want.insert("screen", n);
    }
    let total: usize = want.values().sum();
    let contact = host
        .wait_contact(&format!("user_id:{user}"), |c| {
            c["counters"]["Order Completed"] == n
                && lib.extra_tracks.iter().all(|t| c["counters"][*t] == 1)
        })
        .await;
    let id = contact["id"].as_str().unwrap().to_string();
    assert_eq!(
        contact["traits"]["email"],
        format!("{user}@example.com"),
        "{contact}"
    );
    assert_eq!(contact["traits"]["plan"], "pro", "{contact}");
    assert_eq!(contact["traits"]["name"], "Ada", "{contact}");
    for identity in [
        format!("email:{user}@example.com"),
        format!("user_id:{user}-previous"),
    ] {
        let other = host.wait_contact(&identity, |_| true).await;
        assert_eq!(other["id"], contact["id"], "{identity} is the same person");
    }

    // Every call stored exactly once, with its fields.
    let deadline = Instant::now() + Duration::from_secs(20);
    let events = loop {
        let (_, page) = host.get(&format!("/v1/contacts/{id}/events")).await;
        let events: Vec<Value> = page["events"]
            .as_array()
            .expect("events")
            .iter()
            .map(|e| e["event"].clone())
            .collect();
        if events.len() >= total || Instant::now() > deadline {
            break events;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mut got: BTreeMap<&str, usize> = BTreeMap::new();
    for e in &events {
        *got.entry(e["type"].as_str().unwrap()).or_default() += 1;
    }
    assert_eq!(got, want, "{}: {events:#?}", lib.name);
    let of = |kind: &str| events.iter().find(|e| e["type"] == kind).unwrap();
    let track = events
        .iter()
        .find(|e| e["event"] == "Order Completed")
        .unwrap();
    assert_eq!(track["properties"]["total"], 42.5, "{track}");
    assert_eq!(track["properties"]["currency"], "USD", "{track}");
    let page = of("page");
    assert_eq!(page["event"], "Getting Started", "{page}");
    assert_eq!(page["properties"]["category"], "Docs", "{page}");
    assert_eq!(page["properties"]["title"], "Getting Started", "{page}");
    if lib.screen {
        assert_eq!(of("screen")["event"], "Home");
        assert_eq!(of("screen")["properties"]["variation"], "blue");
    }
    let group = of("group");
    assert_eq!(group["group_id"], "team-1", "{group}");
    assert_eq!(group["traits"]["name"], "Acme", "{group}");
    assert_eq!(of("alias")["previous_id"], format!("{user}-previous"));
}

#[tokio::test]
async fn segment_analytics_node_sends_unchanged() {
    sends_unchanged(Library {
        name: "segment-node",
        command: &["node", "drive_server_libs.js", "segment-node"],
        screen: true,
        extra_tracks: &[],
        rounds: 1,
    })
    .await;
}

#[tokio::test]
async fn rudderstack_node_sdk_with_gzip_sends_unchanged() {
    sends_unchanged(Library {
        name: "rudder-node",
        command: &["node", "drive_server_libs.js", "rudder-node"],
        screen: true,
        extra_tracks: &[],
        rounds: 1,
    })
    .await;
}

#[tokio::test]
async fn segment_analytics_python_with_gzip_sends_unchanged() {
    sends_unchanged(Library {
        name: "segment-python",
        command: &["python3", "drive_python_libs.py", "segment-python"],
        screen: true,
        extra_tracks: &[],
        rounds: 1,
    })
    .await;
}

#[tokio::test]
async fn rudderstack_python_sdk_sends_unchanged() {
    sends_unchanged(Library {
        name: "rudder-python",
        command: &["python3", "drive_python_libs.py", "rudder-python"],
        screen: true,
        extra_tracks: &[],
        rounds: 1,
    })
    .await;
}

#[tokio::test]
async fn segment_analytics_next_in_chromium_sends_unchanged() {
    sends_unchanged(Library {
        name: "segment-browser",
        command: &["node", "drive_browser_libs.js", "segment-browser"],
        screen: true,
        extra_tracks: &[],
        rounds: 1,
    })
    .await;
}

#[tokio::test]
async fn rudderstack_analytics_js_in_chromium_sends_unchanged() {
    sends_unchanged(Library {
        name: "rudder-browser",
        command: &["node", "drive_browser_libs.js", "rudder-browser"],
        // RudderStack's browser library has no screen call; its beacon sends on unload.
        screen: false,
        extra_tracks: &["Checkout Left"],
        rounds: 2,
    })
    .await;
}
