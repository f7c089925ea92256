//! Capability review: what a version asks for beyond the live one (hosts, addresses, env,
//! limits, and the interfaces its component really imports), or, for a first version, beyond
//! the defaults.

use std::collections::BTreeSet;

use serde::Serialize;

use super::store::VersionRecord;
use super::{Capabilities, Limits, Manifest, OperatorLimits};

/// The difference between a version's asks and the live version's (or, for a first version,
/// the defaults').
#[derive(Debug, Clone, Default, Serialize)]
pub struct CapabilityReview {
    /// The live version compared against (none: nothing is live, so the version was compared
    /// with what a plugin gets when it asks for nothing).
    pub against: Option<String>,
    /// True when it asks for more: activation then needs `"approve": true`.
    pub needs_approval: bool,
    /// Each thing it asks for beyond the live version (or the defaults), in words.
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

/// What `new` asks for beyond `old`: hosts, addresses, environment variables and limits
/// (resolved as the sandbox would).
fn asks(limits: &OperatorLimits, old: &Manifest, new: &Manifest) -> Vec<String> {
    let (a_caps, b_caps) = (&old.capabilities, &new.capabilities);
    let mut changes = Vec::new();
    let lists = [
        ("HTTP host", &a_caps.http, &b_caps.http),
        ("TCP address", &a_caps.tcp, &b_caps.tcp),
        ("environment variable", &a_caps.env, &b_caps.env),
    ];
    for (what, old, new) in lists {
        for item in added(
            old.iter().map(String::as_str),
            new.iter().map(String::as_str),
        ) {
            changes.push(format!("new {what} `{item}`"));
        }
    }
    let a = limits.sandbox(old, "");
    let b = limits.sandbox(new, "");
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
    changes
}

/// Reviews `candidate` against the `live` version, with limits resolved as the sandbox would.
/// With nothing live, a version is reviewed against the defaults (no hosts, addresses or
/// environment, default limits): anything more needs approval on the first upload too,
/// unless the operator shipped it as a bundled plugin.
pub fn review(
    limits: &OperatorLimits,
    live: Option<&VersionRecord>,
    candidate: &VersionRecord,
) -> CapabilityReview {
    let Some(live) = live else {
        if candidate.bundled {
            return CapabilityReview::default();
        }
        let defaults = Manifest {
            capabilities: Capabilities::default(),
            limits: Limits::default(),
            ..candidate.manifest.clone()
        };
        let changes = asks(limits, &defaults, &candidate.manifest);
        return CapabilityReview {
            against: None,
            needs_approval: !changes.is_empty(),
            changes,
        };
    };
    if live.sha256 == candidate.sha256 {
        return CapabilityReview {
            against: Some(live.sha256.clone()),
            ..CapabilityReview::default()
        };
    }
    let mut changes = asks(limits, &live.manifest, &candidate.manifest);
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
            bundled: false,
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
        assert!(!review(&limits, Some(&more), &live).needs_approval);
    }

    #[test]
    fn a_first_version_asking_beyond_the_defaults_needs_approval_unless_bundled() {
        let limits = OperatorLimits::default();
        let plain = record("a", "[limits]\nmemory_mb = 32\ntimeout_ms = 5000\n", &[]);
        let first = review(&limits, None, &plain);
        assert!(!first.needs_approval, "{:?}", first.changes);
        assert_eq!(first.against, None);
        let asks = record(
            "b",
            "[capabilities]\nenv = [\"HOME\"]\ntcp = [\"10.0.0.1:5432\"]\n\
             http = [\"api.a.com\"]\n[limits]\ntimeout_ms = 9000\n",
            &["wasi:sockets/tcp@0.2.3"],
        );
        let r = review(&limits, None, &asks);
        assert!(r.needs_approval);
        for want in [
            "`HOME`",
            "`10.0.0.1:5432`",
            "`api.a.com`",
            "5000 ms -> 9000 ms",
        ] {
            assert!(
                r.changes.iter().any(|c| c.contains(want)),
                "{want}: {:?}",
                r.changes
            );
        }
        assert_eq!(
            r.changes.len(),
            4,
            "imports are not asks of a first version"
        );
        let bundled = VersionRecord {
            bundled: true,
            ..asks
        };
        assert!(!review(&limits, None, &bundled).needs_approval);
    }
}
