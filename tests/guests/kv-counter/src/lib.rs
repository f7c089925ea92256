//! Test guest: a connector that counts its calls in its kv namespace.
//!
//! Every webhook call reads the key `count`, adds one and writes it back; its one `track`
//! event (id: the request body, name `counted`) carries `count` (the value it read plus one),
//! `write` (`ok` or the kv error) and `self_test_wrote` (whether the key the self-test tries
//! to write exists). The self-test tries to write that key and fails unless the host refuses
//! the write as read-only, which it must during a self-test.

use tessera_sdk::json::json;
use tessera_sdk::types::{ConnectorError, ContactRef, Event, HttpRequest, KvError};
use tessera_sdk::{Connector, kv};

/// The key the self-test tries to write.
const SELF_TEST_KEY: &str = "self-test";

/// The counting connector.
pub struct KvCounter;

fn unavailable(e: KvError) -> ConnectorError {
    ConnectorError::Upstream(format!("kv: {e:?}"))
}

impl Connector for KvCounter {
    fn handle_webhook(request: HttpRequest) -> Result<Vec<Event>, ConnectorError> {
        let id = String::from_utf8_lossy(&request.body).trim().to_string();
        let before: u64 = kv::get_string("count")
            .map_err(unavailable)?
            .and_then(|text| text.parse().ok())
            .unwrap_or(0);
        let count = before + 1;
        let write = match kv::set("count", count.to_string()) {
            Ok(()) => "ok".to_string(),
            Err(e) => format!("{e:?}"),
        };
        let self_test_wrote = kv::get(SELF_TEST_KEY).map_err(unavailable)?.is_some();
        Ok(vec![
            Event::track(id, "counted", ContactRef::user("kv-counter")).with_properties(json!({
                "count": count,
                "write": write,
                "self_test_wrote": self_test_wrote,
            })),
        ])
    }

    fn self_test() -> Result<(), String> {
        match kv::set(SELF_TEST_KEY, "written during a self-test") {
            Err(KvError::ReadOnly) => Ok(()),
            Ok(()) => Err("a kv write was allowed during a self-test".to_string()),
            Err(other) => Err(format!("kv write failed with {other:?}, not read-only")),
        }
    }
}

tessera_sdk::export_connector!(KvCounter);
