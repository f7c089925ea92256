//! Raw webhook retention: every webhook request a live connector was handed (bar those it
//! refused as unsigned) is kept, bounded by age, count and bytes, so a fixed connector version
//! can be replayed over past requests, a page at a time. Deduplication keeps replays idempotent.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::Identity;
use crate::runtime::types::HttpRequest;
use crate::store::bounded::{BoundedTree, Budget, Usage, owner_prefix};
use crate::store::{Engine, StoreError, decode_json, encode_json};

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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Requests older than this are dropped.
    pub max_age: Duration,
    /// At most this many requests per connector; the oldest go first.
    pub max_per_connector: usize,
    /// At most this many bytes per connector (as stored: the body as base64 with the
    /// headers); the oldest go first.
    pub max_bytes_per_connector: u64,
    /// At most this many bytes across every connector; over it, the connector holding the
    /// most loses its oldest.
    pub max_total_bytes: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            max_age: Duration::from_secs(7 * 24 * 3600),
            max_per_connector: 10_000,
            max_bytes_per_connector: 64 << 20,
            max_total_bytes: 256 << 20,
        }
    }
}

impl Retention {
    fn budget(&self) -> Budget {
        Budget {
            per_owner_count: self.max_per_connector,
            per_owner_bytes: self.max_bytes_per_connector,
            total_bytes: self.max_total_bytes,
        }
    }
}

/// One page of retained requests, oldest first.
pub struct Page {
    /// The requests.
    pub requests: Vec<RawWebhook>,
    /// Where the next page starts; `None` after the last.
    pub next: Option<PageStart>,
}

/// Where a page starts: a time, or just after a request already read.
#[derive(Debug, Clone)]
pub enum PageStart {
    /// The first request that arrived at or after this time, Unix milliseconds.
    Since(u64),
    /// The request after this key.
    After(Vec<u8>),
}

/// The retained requests, in a keyspace keyed by (plugin, arrival time, counter), bounded
/// by age, count and bytes.
#[derive(Clone)]
pub struct RawWebhooks {
    tree: Arc<BoundedTree>,
    engine: Arc<dyn Engine>,
    retention: Retention,
}

fn prefix(plugin: &str) -> Vec<u8> {
    owner_prefix(plugin)
}

impl RawWebhooks {
    /// Opens the retention keyspace of `engine` (reading it once to count what each
    /// connector holds).
    pub fn open(engine: &Arc<dyn Engine>, retention: Retention) -> Result<Self, StoreError> {
        Ok(Self {
            tree: Arc::new(BoundedTree::open(engine.open("raw_webhooks")?)?),
            engine: engine.clone(),
            retention,
        })
    }

    /// What a connector holds: requests and bytes.
    pub fn usage(&self, plugin: &str) -> Usage {
        self.tree.usage(plugin)
    }

    /// Bytes retained across every connector.
    pub fn total_bytes(&self) -> u64 {
        self.tree.total_bytes()
    }

    /// Keeps one request and drops what the limits exclude, oldest first. A request larger
    /// than a connector's whole byte budget is not kept.
    pub fn retain(
        &self,
        plugin: &str,
        request: &HttpRequest,
        received_at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let received_ms =
            u64::try_from(received_at.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
        let raw = RawWebhook {
            received_ms,
            method: request.method.clone(),
            query: request.query.clone(),
            headers: request.headers.clone(),
            body: base64::engine::general_purpose::STANDARD.encode(&request.body),
        };
        let id = self.engine.generate_id()?;
        let key = [
            prefix(plugin).as_slice(),
            &received_ms.to_be_bytes(),
            &id.to_be_bytes(),
        ]
        .concat();
        let value = encode_json(&raw)?;
        if !self
            .tree
            .insert(plugin, &key, &value, &self.retention.budget())?
        {
            tracing::warn!(
                plugin,
                bytes = value.len(),
                "raw webhook larger than the connector's retention budget: not retained"
            );
        }
        let now_ms = u64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000)
            .unwrap_or(0);
        self.prune(plugin, now_ms)
    }

    /// Drops the connector's requests older than the retention age. Keys sort by arrival
    /// time, so this touches only what it removes (plus one key).
    fn prune(&self, plugin: &str, now_ms: u64) -> Result<(), StoreError> {
        let max_age = u64::try_from(self.retention.max_age.as_millis()).unwrap_or(u64::MAX);
        let cutoff = now_ms.saturating_sub(max_age);
        let p = prefix(plugin);
        self.tree.evict_oldest_while(plugin, |k| {
            k.get(p.len()..p.len() + 8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes)
                .is_some_and(|at| at < cutoff)
        })?;
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
        for item in self.tree.tree().iter() {
            let (key, value) = item?;
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
            if needles.iter().any(|n| mentions(&text, n)) && self.tree.remove(&key)? {
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
        Ok(self
            .page(plugin, &PageStart::Since(since_ms), limit, u64::MAX)?
            .requests)
    }

    /// One page of a connector's retained requests, oldest first, from `start`: at most
    /// `limit` requests and, past the first, at most `max_bytes` of them as stored, so a
    /// caller walking through every retained request holds one page at a time.
    pub fn page(
        &self,
        plugin: &str,
        start: &PageStart,
        limit: usize,
        max_bytes: u64,
    ) -> Result<Page, StoreError> {
        use std::ops::Bound;
        let p = prefix(plugin);
        let since;
        let from = match start {
            PageStart::Since(ms) => {
                since = [p.as_slice(), &ms.to_be_bytes()].concat();
                Bound::Included(since.as_slice())
            }
            PageStart::After(key) => Bound::Excluded(key.as_slice()),
        };
        let mut requests = Vec::new();
        let mut bytes = 0u64;
        let mut last = None;
        let mut more = false;
        for item in self.tree.tree().range(from, Bound::Unbounded, false) {
            let (k, v) = item?;
            if !k.starts_with(&p) {
                break;
            }
            if requests.len() >= limit || (!requests.is_empty() && bytes >= max_bytes) {
                more = true;
                break;
            }
            bytes = bytes.saturating_add(v.len() as u64);
            requests.push(decode_json(&k, &v)?);
            last = Some(k);
        }
        Ok(Page {
            requests,
            next: last.filter(|_| more).map(PageStart::After),
        })
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

    fn store(retention: Retention) -> RawWebhooks {
        let engine: Arc<dyn Engine> = Arc::new(crate::store::MemoryEngine::new());
        RawWebhooks::open(&engine, retention).unwrap()
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
            ..Retention::default()
        };
        let raw = store(retention);
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
    fn retention_is_bounded_in_bytes_per_connector_and_in_total() {
        // One stored request (its time at most 20 digits, its key 18 bytes), with some slack.
        let one = serde_json::to_vec(&RawWebhook {
            received_ms: u64::MAX,
            method: "POST".into(),
            query: String::new(),
            headers: vec![],
            body: base64::engine::general_purpose::STANDARD.encode([b'x'; 3000]),
        })
        .unwrap()
        .len() as u64
            + 40;
        let retention = Retention {
            max_bytes_per_connector: 3 * one,
            max_total_bytes: 5 * one,
            ..Retention::default()
        };
        let raw = store(retention);
        let now = OffsetDateTime::now_utc();
        let body = "x".repeat(3000);
        for i in 0..6 {
            raw.retain("a", &request(&body), now + Duration::from_millis(i))
                .unwrap();
        }
        assert_eq!(raw.list("a", 0, 100).unwrap().len(), 3, "per connector");
        for i in 0..3 {
            raw.retain("b", &request(&body), now + Duration::from_millis(i))
                .unwrap();
        }
        assert!(raw.total_bytes() <= 5 * one, "in total");
        assert_eq!(
            raw.list("a", 0, 100).unwrap().len() + raw.list("b", 0, 100).unwrap().len(),
            5
        );
        assert!(raw.usage("b").count >= 2, "the largest connector paid");
    }

    #[test]
    fn pages_walk_every_request_once_in_order() {
        let raw = store(Retention::default());
        let now = OffsetDateTime::now_utc();
        for i in 0..10 {
            raw.retain(
                "c",
                &request(&format!("r{i}")),
                now + Duration::from_millis(i),
            )
            .unwrap();
        }
        let (mut start, mut seen) = (PageStart::Since(0), Vec::new());
        loop {
            let page = raw.page("c", &start, 3, u64::MAX).unwrap();
            assert!(page.requests.len() <= 3);
            seen.extend(page.requests.iter().map(|r| r.to_request().body));
            match page.next {
                Some(next) => start = next,
                None => break,
            }
        }
        let expected: Vec<Vec<u8>> = (0..10).map(|i| format!("r{i}").into_bytes()).collect();
        assert_eq!(seen, expected);
        let by_bytes = raw.page("c", &PageStart::Since(0), 100, 1).unwrap();
        assert_eq!(by_bytes.requests.len(), 1, "the byte bound ends a page");
    }

    #[test]
    fn an_erasure_drops_the_requests_that_mention_the_person_and_only_those() {
        let raw = store(Retention::default());
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
