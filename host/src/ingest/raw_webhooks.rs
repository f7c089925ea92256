//! Raw webhook retention: every webhook request a connector was handed (bar those it refused
//! as unsigned) is kept, bounded by age and count, so a fixed connector version can be replayed
//! over past requests. Deduplication keeps replays idempotent.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::Identity;
use crate::runtime::bindings::types::HttpRequest;
use crate::store::StoreError;

/// A retained request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RawWebhook {
    /// When it arrived, Unix milliseconds.
    pub received_ms: u64,
    /// Method.
    pub method: String,
    /// Query string.
    pub query: String,
    /// Headers, lower-case names.
    pub headers: Vec<(String, String)>,
    /// Body, base64.
    pub body: String,
}

impl RawWebhook {
    /// The request as a connector receives it.
    pub fn to_request(&self) -> HttpRequest {
        HttpRequest {
            method: self.method.clone(),
            path: "/".into(),
            query: self.query.clone(),
            headers: self.headers.clone(),
            body: base64::engine::general_purpose::STANDARD
                .decode(&self.body)
                .unwrap_or_default(),
        }
    }

    /// When it arrived.
    pub fn received_at(&self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp_nanos(self.received_ms as i128 * 1_000_000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }
}

/// Retention limits.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Requests older than this are dropped.
    pub max_age: Duration,
    /// At most this many requests per connector; the oldest go first.
    pub max_per_connector: usize,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            max_age: Duration::from_secs(7 * 24 * 3600),
            max_per_connector: 10_000,
        }
    }
}

/// The retained requests, in a sled tree keyed by (plugin, arrival time, counter).
#[derive(Clone)]
pub struct RawWebhooks {
    tree: sled::Tree,
    db: sled::Db,
    retention: Retention,
    /// Retained requests per connector, counted once per process and then kept current, so
    /// pruning does not scan the tree on every webhook.
    counts: Arc<Mutex<HashMap<String, usize>>>,
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn prefix(plugin: &str) -> Vec<u8> {
    [plugin.as_bytes(), b"\0"].concat()
}

impl RawWebhooks {
    /// Opens the retention tree of `db`.
    pub fn open(db: &sled::Db, retention: Retention) -> Result<Self, StoreError> {
        Ok(Self {
            tree: db.open_tree("raw_webhooks").map_err(backend)?,
            db: db.clone(),
            retention,
            counts: Arc::default(),
        })
    }

    /// Keeps one request and drops what the limits exclude.
    pub fn retain(
        &self,
        plugin: &str,
        request: &HttpRequest,
        received_at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let received_ms = (received_at.unix_timestamp_nanos() / 1_000_000) as u64;
        let raw = RawWebhook {
            received_ms,
            method: request.method.clone(),
            query: request.query.clone(),
            headers: request.headers.clone(),
            body: base64::engine::general_purpose::STANDARD.encode(&request.body),
        };
        let id = self.db.generate_id().map_err(backend)?;
        let key = [
            prefix(plugin).as_slice(),
            &received_ms.to_be_bytes(),
            &id.to_be_bytes(),
        ]
        .concat();
        self.tree
            .insert(key, serde_json::to_vec(&raw).map_err(backend)?)
            .map_err(backend)?;
        let now_ms = (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as u64;
        self.prune(plugin, now_ms)
    }

    /// Drops the oldest requests while they are too old or too many. Keys sort by arrival
    /// time, so this touches only what it removes (plus one key).
    fn prune(&self, plugin: &str, now_ms: u64) -> Result<(), StoreError> {
        let cutoff = now_ms.saturating_sub(self.retention.max_age.as_millis() as u64);
        let p = prefix(plugin);
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        // Called right after an insert: count it, or count the tree once (which includes it).
        match counts.get_mut(plugin) {
            Some(count) => *count += 1,
            None => {
                counts.insert(plugin.to_string(), self.tree.scan_prefix(&p).count());
            }
        }
        let count = counts.get_mut(plugin).expect("counted above");
        for item in self.tree.scan_prefix(&p) {
            let (k, _) = item.map_err(backend)?;
            let at = u64::from_be_bytes(k[p.len()..p.len() + 8].try_into().map_err(backend)?);
            if *count <= self.retention.max_per_connector && at >= cutoff {
                break;
            }
            self.tree.remove(&k).map_err(backend)?;
            *count -= 1;
        }
        Ok(())
    }

    /// Drops every retained request that mentions one of `identities`' values (in its body,
    /// query or headers, case-insensitive, as a whole token: `7001` does not match `17001`),
    /// for an erasure. Returns how many went. Scans every retained request.
    pub fn forget(&self, identities: &[Identity]) -> Result<usize, StoreError> {
        let needles: Vec<String> = identities
            .iter()
            .map(|i| i.value.to_lowercase())
            .filter(|v| !v.is_empty())
            .collect();
        if needles.is_empty() {
            return Ok(0);
        }
        let mut removed = 0;
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        for item in self.tree.iter() {
            let (key, value) = item.map_err(backend)?;
            let Ok(raw) = serde_json::from_slice::<RawWebhook>(&value) else {
                continue;
            };
            let request = raw.to_request();
            let mut text = String::from_utf8_lossy(&request.body).to_lowercase();
            text.push('\n');
            text.push_str(&request.query.to_lowercase());
            for (_, v) in &request.headers {
                text.push('\n');
                text.push_str(&v.to_lowercase());
            }
            if needles.iter().any(|n| mentions(&text, n)) {
                self.tree.remove(&key).map_err(backend)?;
                let plugin = key.split(|b| *b == 0).next().unwrap_or_default();
                if let Some(count) = counts.get_mut(&*String::from_utf8_lossy(plugin)) {
                    *count = count.saturating_sub(1);
                }
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Retained requests of a connector that arrived at or after `since_ms`, oldest first.
    pub fn list(
        &self,
        plugin: &str,
        since_ms: u64,
        limit: usize,
    ) -> Result<Vec<RawWebhook>, StoreError> {
        let p = prefix(plugin);
        let start = [p.as_slice(), &since_ms.to_be_bytes()].concat();
        let mut out = Vec::new();
        for item in self.tree.range(start..) {
            let (k, v) = item.map_err(backend)?;
            if !k.starts_with(&p) || out.len() >= limit {
                break;
            }
            out.push(serde_json::from_slice(&v).map_err(backend)?);
        }
        Ok(out)
    }
}

/// Whether `needle` occurs in `text` with no letter, digit, `_` or `-` right before or after.
fn mentions(text: &str, needle: &str) -> bool {
    let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '-');
    text.match_indices(needle).any(|(at, _)| {
        !word(text[..at].chars().next_back()) && !word(text[at + needle.len()..].chars().next())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: &str) -> HttpRequest {
        HttpRequest {
            method: "POST".into(),
            path: "/".into(),
            query: String::new(),
            headers: vec![],
            body: body.into(),
        }
    }

    fn store(retention: Retention) -> (tempfile::TempDir, RawWebhooks) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        (dir, RawWebhooks::open(&db, retention).unwrap())
    }

    /// The bodies a connector has retained, oldest first.
    fn bodies(raw: &RawWebhooks, plugin: &str) -> Vec<Vec<u8>> {
        raw.list(plugin, 0, 10)
            .unwrap()
            .iter()
            .map(|r| r.to_request().body)
            .collect()
    }

    #[test]
    fn retention_keeps_the_newest_within_count_and_age() {
        let retention = Retention {
            max_age: Duration::from_secs(3600),
            max_per_connector: 3,
        };
        let (_dir, raw) = store(retention);
        let now = OffsetDateTime::now_utc();
        raw.retain("c", &request("ancient"), now - Duration::from_secs(7200))
            .unwrap();
        assert!(
            raw.list("c", 0, 10).unwrap().is_empty(),
            "older than max_age: dropped at once"
        );
        for i in 0..5 {
            raw.retain(
                "c",
                &request(&format!("r{i}")),
                now + Duration::from_millis(i),
            )
            .unwrap();
        }
        raw.retain("other", &request("x"), now).unwrap();
        assert_eq!(
            bodies(&raw, "c"),
            vec![b"r2".to_vec(), b"r3".to_vec(), b"r4".to_vec()]
        );
        assert_eq!(
            raw.list("other", 0, 10).unwrap().len(),
            1,
            "limits are per connector"
        );
    }

    #[test]
    fn an_erasure_drops_the_requests_that_mention_the_person_and_only_those() {
        let (_dir, raw) = store(Retention::default());
        let now = OffsetDateTime::now_utc();
        for body in [
            r#"{"email":"Gone@Example.com","id":1}"#,
            r#"{"customer":{"id":7001}}"#,
            r#"{"customer":{"id":17001},"email":"other@example.com"}"#,
        ] {
            raw.retain("shop", &request(body), now).unwrap();
        }
        let gone = [
            Identity::new("email", "gone@example.com"),
            Identity::new("shopify:customer", "7001"),
        ];
        assert_eq!(raw.forget(&gone).unwrap(), 2);
        assert_eq!(
            bodies(&raw, "shop"),
            vec![br#"{"customer":{"id":17001},"email":"other@example.com"}"#.to_vec()]
        );
    }
}
