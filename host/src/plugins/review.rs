//! Capability review: what a version asks for beyond the live one (hosts, addresses, env,
//! limits, and the interfaces its component really imports).

use std::collections::BTreeSet;

use serde::Serialize;

use super::OperatorLimits;
use crate::store::VersionRecord;

/// The difference between a version's asks and the live version's.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CapabilityReview {
    /// The live version compared against (none: nothing is live, nothing to compare).
    pub against: Option<String>,
    /// True when it asks for more: activation then needs `"approve": true`.
    pub needs_approval: bool,
    /// Each thing it asks for beyond the live version, in words.
    pub changes: Vec<String>,
}

/// An interface name without its `@version` (a newer WASI patch release is not a new ask).
fn unversioned(import: &str) -> &str {
    import.split('@').next().unwrap_or(import)
}

fn added<'a>(
    live: impl IntoIterator<Item = &'a str>,
    candidate: impl IntoIterator<Item = &'a str>,
) -> Vec<&'a str> {
    let live: BTreeSet<&str> = live.into_iter().collect();
    let candidate: BTreeSet<&str> = candidate.into_iter().collect();
    candidate.difference(&live).copied().collect()
}

/// Reviews `candidate` against the `live` version, with limits resolved as the sandbox would.
pub fn review(
    limits: &OperatorLimits,
    live: Option<&VersionRecord>,
    candidate: &VersionRecord,
) -> CapabilityReview {
    let Some(live) = live else {
        return CapabilityReview::default();
    };
    if live.sha256 == candidate.sha256 {
        return CapabilityReview {
            against: Some(live.sha256.clone()),
            ..CapabilityReview::default()
        };
    }
    let (old, new) = (
        &live.manifest.capabilities,
        &candidate.manifest.capabilities,
    );
    let mut changes = Vec::new();
    let lists = [
        ("HTTP host", &old.http, &new.http),
        ("TCP address", &old.tcp, &new.tcp),
        ("environment variable", &old.env, &new.env),
    ];
    for (what, old, new) in lists {
        for item in added(
            old.iter().map(String::as_str),
            new.iter().map(String::as_str),
        ) {
            changes.push(format!("new {what} `{item}`"));
        }
    }
    let a = limits.sandbox(&live.manifest, &live.sha256);
    let b = limits.sandbox(&candidate.manifest, &candidate.sha256);
    if b.memory_bytes > a.memory_bytes {
        changes.push(format!(
            "memory limit {} MiB -> {} MiB",
            a.memory_bytes >> 20,
            b.memory_bytes >> 20
        ));
    }
    if b.timeout > a.timeout {
        changes.push(format!(
            "call deadline {} ms -> {} ms",
            a.timeout.as_millis(),
            b.timeout.as_millis()
        ));
    }
    if b.max_concurrency > a.max_concurrency {
        changes.push(format!(
            "calls in flight {} -> {}",
            a.max_concurrency, b.max_concurrency
        ));
    }
    if b.http_response_bytes > a.http_response_bytes {
        changes.push(format!(
            "HTTP response limit {} -> {} bytes",
            a.http_response_bytes, b.http_response_bytes
        ));
    }
    for import in added(
        live.imports.iter().map(|i| unversioned(i)),
        candidate.imports.iter().map(|i| unversioned(i)),
    ) {
        changes.push(format!("the component imports `{import}`"));
    }
    CapabilityReview {
        against: Some(live.sha256.clone()),
        needs_approval: !changes.is_empty(),
        changes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::Manifest;

    fn record(sha: &str, extra: &str, imports: &[&str]) -> VersionRecord {
        let text = format!(
            "id = \"p\"\nversion = \"1.0.0\"\nkind = \"connector\"\ncontract = \"0.1\"\n{extra}"
        );
        VersionRecord {
            sha256: sha.into(),
            manifest: Manifest::parse(&text).expect("manifest"),
            size: 1,
            uploaded_at_ms: 0,
            imports: imports.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn more_hosts_memory_and_imports_need_approval() {
        let limits = OperatorLimits::default();
        let live = record(
            "a",
            "[capabilities]\nhttp = [\"api.a.com\"]\n",
            &["wasi:io/streams@0.2.3"],
        );
        let same = record(
            "b",
            "[capabilities]\nhttp = [\"api.a.com\"]\n",
            &["wasi:io/streams@0.2.6"],
        );
        assert!(!review(&limits, Some(&live), &same).needs_approval);
        let more = record(
            "c",
            "[capabilities]\nhttp = [\"api.a.com\", \"evil.example\"]\n[limits]\nmemory_mb = 128\n",
            &["wasi:io/streams@0.2.3", "wasi:sockets/tcp@0.2.3"],
        );
        let r = review(&limits, Some(&live), &more);
        assert!(r.needs_approval);
        assert_eq!(r.changes.len(), 3, "{:?}", r.changes);
        assert!(r.changes.iter().any(|c| c.contains("evil.example")));
        assert!(r.changes.iter().any(|c| c.contains("wasi:sockets/tcp")));
        assert!(!review(&limits, None, &more).needs_approval);
        assert!(!review(&limits, Some(&more), &live).needs_approval);
    }
}
