//! The embedded `sled` backend of [`PluginStore`].

use std::path::Path;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::bounded::{BoundedTree, Budget, owner_prefix};
use super::kv_quota::{KvLedger, KvQuota, SledKv};
use super::{
    AuditEntry, FailureLimits, FailureRecord, PluginStore, SlotRecord, StoreError, VersionRecord,
};
use crate::runtime::KvNamespace;

/// The prefix of every plugin's kv tree.
const KV_TREE_PREFIX: &str = "plugin_kv/";

fn backend(e: sled::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// Plugin state in a sled database.
#[derive(Clone)]
pub struct SledStore {
    db: sled::Db,
    versions: sled::Tree,
    components: sled::Tree,
    slots: sled::Tree,
    keys: sled::Tree,
    audit: sled::Tree,
    kv: KvLedger,
    failures: Arc<BoundedTree>,
    refusals: Arc<BoundedTree>,
}

impl SledStore {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = sled::open(path).map_err(backend)?;
        // What every namespace holds now, read once: the ledger keeps it from then on.
        let mut namespaces = Vec::new();
        for name in db.tree_names() {
            if let Some(plugin) = name.strip_prefix(KV_TREE_PREFIX.as_bytes()) {
                let tree = db.open_tree(&name).map_err(backend)?;
                let plugin = String::from_utf8_lossy(plugin).into_owned();
                namespaces.push((plugin, SledKv::measure(&tree)));
            }
        }
        Ok(Self {
            kv: KvLedger::new(KvQuota::default(), namespaces),
            versions: db.open_tree("plugin_versions").map_err(backend)?,
            components: db.open_tree("plugin_components").map_err(backend)?,
            slots: db.open_tree("plugins").map_err(backend)?,
            keys: db.open_tree("keys").map_err(backend)?,
            audit: db.open_tree("audit").map_err(backend)?,
            failures: Arc::new(BoundedTree::open(
                db.open_tree("plugin_failures").map_err(backend)?,
            )?),
            refusals: Arc::new(BoundedTree::open(
                db.open_tree("plugin_refusals").map_err(backend)?,
            )?),
            db,
        })
    }

    /// Sets the kv quotas (they apply to every write from now on).
    pub fn set_kv_quota(&self, quota: KvQuota) {
        self.kv.set_quota(quota);
    }

    /// The kv ledger: quotas and what each namespace holds.
    pub fn kv_ledger(&self) -> &KvLedger {
        &self.kv
    }

    /// The database, for the pipeline stages that keep derived state in it.
    pub fn db(&self) -> &sled::Db {
        &self.db
    }

    /// Flushes everything to disk (used at shutdown and after admin writes).
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map(drop).map_err(backend)
    }

    fn put_json<T: Serialize>(
        &self,
        tree: &sled::Tree,
        key: &[u8],
        value: &T,
    ) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(value).map_err(|e| StoreError::Backend(e.to_string()))?;
        tree.insert(key, bytes).map_err(backend)?;
        self.flush()
    }
}

fn decode<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        detail: e.to_string(),
    })
}

fn version_key(plugin: &str, sha256: &str) -> Vec<u8> {
    [plugin.as_bytes(), b"\0", sha256.as_bytes()].concat()
}

impl PluginStore for SledStore {
    fn put_version(
        &self,
        plugin: &str,
        record: &VersionRecord,
        component: &[u8],
    ) -> Result<(), StoreError> {
        self.components
            .insert(record.sha256.as_bytes(), component)
            .map_err(backend)?;
        let key = version_key(plugin, &record.sha256);
        if self.versions.contains_key(&key).map_err(backend)? {
            return Ok(());
        }
        self.put_json(&self.versions, &key, record)
    }

    fn versions(&self, plugin: &str) -> Result<Vec<VersionRecord>, StoreError> {
        let prefix = [plugin.as_bytes(), b"\0"].concat();
        let mut out = Vec::new();
        for item in self.versions.scan_prefix(prefix) {
            let (k, v) = item.map_err(backend)?;
            out.push(decode::<VersionRecord>(&k, &v)?);
        }
        out.sort_by_key(|v| v.uploaded_at_ms);
        Ok(out)
    }

    fn component(&self, sha256: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .components
            .get(sha256.as_bytes())
            .map_err(backend)?
            .map(|v| v.to_vec()))
    }

    fn put_slot(&self, slot: &SlotRecord) -> Result<(), StoreError> {
        self.put_json(&self.slots, slot.id.as_bytes(), slot)
    }

    fn slots(&self) -> Result<Vec<SlotRecord>, StoreError> {
        self.slots
            .iter()
            .map(|item| {
                let (k, v) = item.map_err(backend)?;
                decode(&k, &v)
            })
            .collect()
    }

    fn kv(&self, plugin: &str) -> Result<Arc<dyn KvNamespace>, StoreError> {
        let tree = self
            .db
            .open_tree(format!("{KV_TREE_PREFIX}{plugin}"))
            .map_err(backend)?;
        Ok(Arc::new(SledKv::new(plugin, tree, self.kv.clone())))
    }

    fn admin_key_hash(&self) -> Result<Option<String>, StoreError> {
        Ok(self
            .keys
            .get("admin")
            .map_err(backend)?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    fn set_admin_key_hash(&self, hash: &str) -> Result<(), StoreError> {
        self.keys
            .insert("admin", hash.as_bytes())
            .map_err(backend)?;
        self.flush()
    }

    fn append_audit(&self, entry: &AuditEntry) -> Result<u64, StoreError> {
        let seq = self.db.generate_id().map_err(backend)? + 1;
        let entry = AuditEntry {
            seq,
            ..entry.clone()
        };
        self.put_json(&self.audit, &seq.to_be_bytes(), &entry)?;
        Ok(seq)
    }

    fn audit(&self, plugin: Option<&str>, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let mut out = Vec::new();
        for item in self.audit.iter().rev() {
            let (k, v) = item.map_err(backend)?;
            let entry: AuditEntry = decode(&k, &v)?;
            if plugin.is_none_or(|p| p == entry.plugin) {
                out.push(entry);
                if out.len() >= limit {
                    break;
                }
            }
        }
        out.reverse();
        Ok(out)
    }

    fn put_failure(
        &self,
        plugin: &str,
        record: &FailureRecord,
        limits: &FailureLimits,
    ) -> Result<u64, StoreError> {
        let budget = Budget {
            per_owner_count: limits.per_plugin,
            per_owner_bytes: limits.per_plugin_bytes,
            total_bytes: limits.total_bytes,
        };
        self.put_kept(&self.failures, plugin, record, &budget)
    }

    fn put_refusal(
        &self,
        plugin: &str,
        record: &FailureRecord,
        limits: &FailureLimits,
    ) -> Result<u64, StoreError> {
        let budget = Budget {
            per_owner_count: limits.refused_per_plugin,
            per_owner_bytes: limits.refused_per_plugin_bytes,
            total_bytes: limits.refused_total_bytes,
        };
        self.put_kept(&self.refusals, plugin, record, &budget)
    }

    fn failures(&self, plugin: &str) -> Result<Vec<FailureRecord>, StoreError> {
        let mut all = Vec::new();
        for tree in [&self.failures, &self.refusals] {
            for item in tree.tree().scan_prefix(owner_prefix(plugin)) {
                let (k, v) = item.map_err(backend)?;
                all.push(decode::<FailureRecord>(&k, &v)?);
            }
        }
        // Ids come from one counter: newest first across both classes.
        all.sort_by_key(|f| std::cmp::Reverse(f.id));
        Ok(all)
    }
}

impl SledStore {
    /// Stores a failure record under a fresh id in `tree`, within `budget`.
    fn put_kept(
        &self,
        tree: &BoundedTree,
        plugin: &str,
        record: &FailureRecord,
        budget: &Budget,
    ) -> Result<u64, StoreError> {
        let id = self.db.generate_id().map_err(backend)? + 1;
        let key = [owner_prefix(plugin).as_slice(), &id.to_be_bytes()].concat();
        let record = FailureRecord {
            id,
            ..record.clone()
        };
        let bytes = serde_json::to_vec(&record).map_err(|e| StoreError::Backend(e.to_string()))?;
        // Failures are diagnostics: no flush per failure (a crash may lose the newest few).
        tree.insert(plugin, &key, &bytes, budget)?;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::Manifest;
    use crate::store::Activation;

    fn manifest() -> Manifest {
        Manifest::parse(
            "id = \"p\"\nkind = \"connector\"\nversion = \"1.0.0\"\ncontract = \"0.1\"\n",
        )
        .unwrap()
    }

    #[test]
    fn slots_versions_and_kv_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = SledStore::open(dir.path()).unwrap();
            let v = VersionRecord {
                sha256: "ab".into(),
                manifest: manifest(),
                size: 3,
                uploaded_at_ms: 1,
                imports: Vec::new(),
                bundled: false,
            };
            store.put_version("p", &v, b"wasm").unwrap();
            let slot = SlotRecord {
                id: "p".into(),
                kind: crate::runtime::PluginKind::Connector,
                live: Some("ab".into()),
                disabled: false,
                config: serde_json::Map::new(),
                history: vec![Activation {
                    sha256: "ab".into(),
                    action: "activate".into(),
                    at_ms: 2,
                }],
                rollout: None,
            };
            store.put_slot(&slot).unwrap();
            store.kv("p").unwrap().set(b"cursor", b"42").unwrap();
            store.flush().unwrap();
        }
        let store = SledStore::open(dir.path()).unwrap();
        assert_eq!(store.slots().unwrap()[0].live.as_deref(), Some("ab"));
        assert_eq!(store.versions("p").unwrap().len(), 1);
        assert_eq!(store.component("ab").unwrap().unwrap(), b"wasm");
        assert_eq!(
            store.kv("p").unwrap().get(b"cursor").unwrap().unwrap(),
            b"42"
        );
        assert!(
            store.kv("other").unwrap().is_empty(),
            "namespaces are private"
        );
    }

    #[test]
    fn audit_is_ordered_and_failures_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        for (i, plugin) in ["a", "b", "a"].iter().enumerate() {
            let entry = AuditEntry {
                seq: 0,
                at_ms: i as u64,
                key_id: "k".into(),
                action: "activate".into(),
                plugin: plugin.to_string(),
                sha256: None,
                reason: None,
            };
            store.append_audit(&entry).unwrap();
        }
        let all = store.audit(None, 10).unwrap();
        assert_eq!(all.iter().map(|e| e.at_ms).collect::<Vec<_>>(), [0, 1, 2]);
        assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
        assert_eq!(store.audit(Some("a"), 1).unwrap()[0].at_ms, 2);
        let failure = |n: u64| FailureRecord {
            id: 0,
            at_ms: n,
            sha256: "ab".into(),
            version: "1".into(),
            call: "poll".into(),
            code: "trap".into(),
            message: "boom".into(),
            micros: 1,
            input: crate::plugins::CallInput::Poll { cursor: None },
            input_truncated: false,
        };
        let limits = FailureLimits {
            per_plugin: 3,
            ..FailureLimits::default()
        };
        for n in 0..5 {
            store.put_failure("p", &failure(n), &limits).unwrap();
        }
        let kept = store.failures("p").unwrap();
        assert_eq!(kept.iter().map(|f| f.at_ms).collect::<Vec<_>>(), [4, 3, 2]);
        for n in 10..30 {
            store.put_refusal("p", &failure(n), &limits).unwrap();
        }
        let kept = store.failures("p").unwrap();
        assert_eq!(
            kept.iter().filter(|f| f.at_ms < 10).count(),
            3,
            "refusals never evict real failures"
        );
        assert_eq!(kept.len(), 3 + limits.refused_per_plugin);
        assert_eq!(kept[0].at_ms, 29, "newest first across both classes");
        assert!(store.failures("q").unwrap().is_empty());
    }
}
