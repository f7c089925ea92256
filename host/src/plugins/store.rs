//! What the plugin registry keeps: versions (component bytes and manifests), slots (live
//! pointer, history, config, enabled flag, rollout), the admin key hash, the audit log, kept
//! failures and each plugin's kv namespace. The records are defined here, by their owner;
//! [`EngineRecords`] keeps them in any storage [`Engine`].

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::Manifest;
use super::kv::{measure_all, namespace};
use crate::runtime::{FailureCause, KvNamespace, PluginKind};
use crate::store::bounded::{BoundedTree, Budget, owner_prefix};
use crate::store::{Engine, KvLedger, KvQuota, StoreError, Tree, decode_json, encode_json};

/// One uploaded version of a plugin.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionRecord {
    /// sha256 of the component, hex: the version's identity.
    pub sha256: String,
    /// Its manifest.
    pub manifest: Manifest,
    /// Component size in bytes.
    pub size: u64,
    /// Upload time, Unix milliseconds.
    pub uploaded_at_ms: u64,
    /// The interfaces the component imports, read from the component at upload.
    #[serde(default)]
    pub imports: Vec<String>,
    /// Loaded from the operator's `--plugins-dir` at first start: trusted as shipped, so its
    /// first activation needs no approval.
    #[serde(default)]
    pub bundled: bool,
}

/// An operator's (or the host's) action on a plugin, as the audit log and a slot's history
/// name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// A version was uploaded.
    Upload,
    /// A version was made live directly.
    Activate,
    /// A canary run started.
    Canary,
    /// A shadow run started.
    Shadow,
    /// A rollout's candidate was made live.
    Promote,
    /// A rollout was ended, the live version kept.
    Abort,
    /// The host ended a canary that crossed its thresholds.
    AutoRollback,
    /// The version live before the current one was made live again.
    Rollback,
    /// The operator disabled the plugin.
    Disable,
    /// The operator enabled it again.
    Enable,
    /// Its config was set.
    Config,
    /// The host switched its polling off (a poll round panicked or the host died in one).
    PollDisabled,
}

impl Action {
    /// The action's name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Action::Upload => "upload",
            Action::Activate => "activate",
            Action::Canary => "canary",
            Action::Shadow => "shadow",
            Action::Promote => "promote",
            Action::Abort => "abort",
            Action::AutoRollback => "auto-rollback",
            Action::Rollback => "rollback",
            Action::Disable => "disable",
            Action::Enable => "enable",
            Action::Config => "config",
            Action::PollDisabled => "poll-disabled",
        }
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One change of a slot's live version.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Activation {
    /// The version made live.
    pub sha256: String,
    /// `activate`, `promote` or `rollback`.
    pub action: Action,
    /// When, Unix milliseconds.
    pub at_ms: u64,
}

/// The persisted state of a plugin slot.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SlotRecord {
    /// Plugin id.
    pub id: String,
    /// Its kind, fixed by the first upload.
    pub kind: PluginKind,
    /// The live version's sha256, if one is live.
    pub live: Option<String>,
    /// True when the operator disabled the slot.
    pub disabled: bool,
    /// Operator-set config (a JSON object).
    pub config: serde_json::Map<String, serde_json::Value>,
    /// Every activation and rollback, oldest first.
    pub history: Vec<Activation>,
    /// A canary or shadow run in progress, restored at start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutRecord>,
}

/// A candidate version running beside the live one.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RolloutRecord {
    /// The candidate.
    pub sha256: String,
    /// `canary` (with its plan) or `shadow`.
    pub mode: super::RolloutMode,
    /// When it started, Unix milliseconds.
    pub started_ms: u64,
}

/// One operator action, as `GET /v1/audit` lists it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Position in the audit log (assigned by the store).
    #[serde(default)]
    pub seq: u64,
    /// When, Unix milliseconds.
    pub at_ms: u64,
    /// Who: a short id of the admin key (its sha256 prefix), or `host` for the host's own acts.
    pub key_id: String,
    /// What was done.
    pub action: Action,
    /// The plugin.
    pub plugin: String,
    /// The version concerned, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Why, as the operator or the host said it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A failed call kept with its exact input, for `replay`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailureRecord {
    /// Id within the plugin (assigned by the store).
    #[serde(default)]
    pub id: u64,
    /// When, Unix milliseconds.
    pub at_ms: u64,
    /// The version that failed.
    pub sha256: String,
    /// Its manifest version.
    pub version: String,
    /// `handle-webhook`, `poll`, `evaluate`, `send`.
    pub call: String,
    /// `error` (returned by the plugin) or the failure cause (`deadline`, `trap`, ...).
    pub code: FailureCause,
    /// What happened.
    pub message: String,
    /// Call duration, microseconds.
    pub micros: u64,
    /// The input, secrets redacted.
    pub input: super::CallInput,
    /// True when the input was over [`FailureLimits::max_input_bytes`] and was cut to fit:
    /// such a failure can be read but not replayed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub input_truncated: bool,
}

/// How much failure history is kept. The oldest failures go first: a plugin's own when it is
/// over its share, the plugin holding the most bytes' when all plugins are over the total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureLimits {
    /// Failures kept per plugin.
    pub per_plugin: usize,
    /// Bytes of failures kept per plugin (as stored: input, message, key).
    pub per_plugin_bytes: u64,
    /// Bytes of failures kept across every plugin.
    pub total_bytes: u64,
    /// The largest input a failure keeps whole; a larger one is cut to this size.
    pub max_input_bytes: usize,
    /// Calls refused as unauthorized (a bad webhook signature) are kept apart, in a class
    /// of their own that can never evict the real failures: this many per plugin,
    pub refused_per_plugin: usize,
    /// this many bytes per plugin,
    pub refused_per_plugin_bytes: u64,
    /// this many bytes across every plugin,
    pub refused_total_bytes: u64,
    /// with inputs cut to this size.
    pub refused_max_input_bytes: usize,
}

impl FailureLimits {
    /// The storage budget of kept failures, or of refusals when `refused`.
    fn budget(&self, refused: bool) -> Budget {
        if refused {
            Budget {
                per_owner_count: self.refused_per_plugin,
                per_owner_bytes: self.refused_per_plugin_bytes,
                total_bytes: self.refused_total_bytes,
            }
        } else {
            Budget {
                per_owner_count: self.per_plugin,
                per_owner_bytes: self.per_plugin_bytes,
                total_bytes: self.total_bytes,
            }
        }
    }
}

impl Default for FailureLimits {
    fn default() -> Self {
        Self {
            per_plugin: 100,
            per_plugin_bytes: 4 << 20,
            total_bytes: 64 << 20,
            max_input_bytes: 256 << 10,
            refused_per_plugin: 10,
            refused_per_plugin_bytes: 1 << 20,
            refused_total_bytes: 8 << 20,
            refused_max_input_bytes: 64 << 10,
        }
    }
}

/// What the plugin registry needs from storage.
pub trait PluginStore: Send + Sync {
    /// Stores a version and its component bytes (idempotent on the sha).
    fn put_version(
        &self,
        plugin: &str,
        record: &VersionRecord,
        component: &[u8],
    ) -> Result<(), StoreError>;
    /// The versions of a plugin, oldest upload first.
    fn versions(&self, plugin: &str) -> Result<Vec<VersionRecord>, StoreError>;
    /// The component bytes of a version.
    fn component(&self, sha256: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Writes a slot record durably.
    fn put_slot(&self, slot: &SlotRecord) -> Result<(), StoreError>;
    /// Every slot record.
    fn slots(&self) -> Result<Vec<SlotRecord>, StoreError>;
    /// The plugin's private kv namespace.
    fn kv(&self, plugin: &str) -> Result<Arc<dyn KvNamespace>, StoreError>;
    /// The sha256 hex of the admin key, if one was set.
    fn admin_key_hash(&self) -> Result<Option<String>, StoreError>;
    /// Sets the sha256 hex of the admin key.
    fn set_admin_key_hash(&self, hash: &str) -> Result<(), StoreError>;
    /// Appends an audit entry durably; returns its sequence number.
    fn append_audit(&self, entry: &AuditEntry) -> Result<u64, StoreError>;
    /// The newest `limit` audit entries (of one plugin, if given), oldest first.
    fn audit(&self, plugin: Option<&str>, limit: usize) -> Result<Vec<AuditEntry>, StoreError>;
    /// Keeps a failed call, dropping the oldest beyond `limits`; returns its id.
    fn put_failure(
        &self,
        plugin: &str,
        record: &FailureRecord,
        limits: &FailureLimits,
    ) -> Result<u64, StoreError>;
    /// Keeps a call refused as unauthorized in its own class (see
    /// [`FailureLimits::refused_per_plugin`]), which never evicts real failures; returns its id.
    fn put_refusal(
        &self,
        plugin: &str,
        record: &FailureRecord,
        limits: &FailureLimits,
    ) -> Result<u64, StoreError>;
    /// A plugin's kept failures and refusals, newest first.
    fn failures(&self, plugin: &str) -> Result<Vec<FailureRecord>, StoreError>;
}

/// Plugin records in a storage engine.
#[derive(Clone)]
pub struct EngineRecords {
    engine: Arc<dyn Engine>,
    versions: Tree,
    components: Tree,
    slots: Tree,
    keys: Tree,
    audit: Tree,
    kv: KvLedger,
    failures: Arc<BoundedTree>,
    refusals: Arc<BoundedTree>,
}

impl EngineRecords {
    /// The records in `engine` (created empty where missing).
    pub fn open(engine: Arc<dyn Engine>) -> Result<Self, StoreError> {
        // What every namespace holds now, read once: the ledger keeps it from then on.
        let namespaces = measure_all(&*engine)?;
        Ok(Self {
            kv: KvLedger::new(KvQuota::default(), namespaces),
            versions: engine.open("plugin_versions")?,
            components: engine.open("plugin_components")?,
            slots: engine.open("plugins")?,
            keys: engine.open("keys")?,
            audit: engine.open("audit")?,
            failures: Arc::new(BoundedTree::open(engine.open("plugin_failures")?)?),
            refusals: Arc::new(BoundedTree::open(engine.open("plugin_refusals")?)?),
            engine,
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

    /// Makes every write durable (used at shutdown and after admin writes).
    pub fn flush(&self) -> Result<(), StoreError> {
        self.engine.flush()
    }

    fn put_json<T: Serialize>(&self, tree: &Tree, key: &[u8], value: &T) -> Result<(), StoreError> {
        tree.insert(key, &encode_json(value)?)?;
        self.flush()
    }
}

fn version_key(plugin: &str, sha256: &str) -> Vec<u8> {
    [plugin.as_bytes(), b"\0", sha256.as_bytes()].concat()
}

impl PluginStore for EngineRecords {
    fn put_version(
        &self,
        plugin: &str,
        record: &VersionRecord,
        component: &[u8],
    ) -> Result<(), StoreError> {
        self.components
            .insert(record.sha256.as_bytes(), component)?;
        let key = version_key(plugin, &record.sha256);
        if self.versions.contains_key(&key)? {
            return Ok(());
        }
        self.put_json(&self.versions, &key, record)
    }

    fn versions(&self, plugin: &str) -> Result<Vec<VersionRecord>, StoreError> {
        let prefix = [plugin.as_bytes(), b"\0"].concat();
        let mut out = Vec::new();
        for item in self.versions.scan_prefix(&prefix) {
            let (k, v) = item?;
            out.push(decode_json::<VersionRecord>(&k, &v)?);
        }
        out.sort_by_key(|v| v.uploaded_at_ms);
        Ok(out)
    }

    fn component(&self, sha256: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.components.get(sha256.as_bytes())
    }

    fn put_slot(&self, slot: &SlotRecord) -> Result<(), StoreError> {
        self.put_json(&self.slots, slot.id.as_bytes(), slot)
    }

    fn slots(&self) -> Result<Vec<SlotRecord>, StoreError> {
        self.slots
            .iter()
            .map(|item| {
                let (k, v) = item?;
                decode_json(&k, &v)
            })
            .collect()
    }

    fn kv(&self, plugin: &str) -> Result<Arc<dyn KvNamespace>, StoreError> {
        namespace(&*self.engine, plugin, &self.kv)
    }

    fn admin_key_hash(&self) -> Result<Option<String>, StoreError> {
        Ok(self
            .keys
            .get(b"admin")?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    fn set_admin_key_hash(&self, hash: &str) -> Result<(), StoreError> {
        self.keys.insert(b"admin", hash.as_bytes())?;
        self.flush()
    }

    fn append_audit(&self, entry: &AuditEntry) -> Result<u64, StoreError> {
        let seq = self.engine.generate_id()? + 1;
        let entry = AuditEntry {
            seq,
            ..entry.clone()
        };
        self.put_json(&self.audit, &seq.to_be_bytes(), &entry)?;
        Ok(seq)
    }

    fn audit(&self, plugin: Option<&str>, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let mut out = Vec::new();
        for item in self
            .audit
            .range(std::ops::Bound::Unbounded, std::ops::Bound::Unbounded, true)
        {
            let (k, v) = item?;
            let entry: AuditEntry = decode_json(&k, &v)?;
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
        self.put_kept(&self.failures, plugin, record, &limits.budget(false))
    }

    fn put_refusal(
        &self,
        plugin: &str,
        record: &FailureRecord,
        limits: &FailureLimits,
    ) -> Result<u64, StoreError> {
        self.put_kept(&self.refusals, plugin, record, &limits.budget(true))
    }

    fn failures(&self, plugin: &str) -> Result<Vec<FailureRecord>, StoreError> {
        let mut all = Vec::new();
        for tree in [&self.failures, &self.refusals] {
            for item in tree.tree().scan_prefix(&owner_prefix(plugin)) {
                let (k, v) = item?;
                all.push(decode_json::<FailureRecord>(&k, &v)?);
            }
        }
        // Ids come from one counter: newest first across both classes.
        all.sort_by_key(|f| std::cmp::Reverse(f.id));
        Ok(all)
    }
}

impl EngineRecords {
    /// Stores a failure record under a fresh id in `tree`, within `budget`.
    fn put_kept(
        &self,
        tree: &BoundedTree,
        plugin: &str,
        record: &FailureRecord,
        budget: &Budget,
    ) -> Result<u64, StoreError> {
        let id = self.engine.generate_id()? + 1;
        let key = [owner_prefix(plugin).as_slice(), &id.to_be_bytes()].concat();
        let record = FailureRecord {
            id,
            ..record.clone()
        };
        let bytes = encode_json(&record)?;
        // Failures are diagnostics: no flush per failure (a crash may lose the newest few).
        tree.insert(plugin, &key, &bytes, budget)?;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{MemoryEngine, SledEngine};

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
            let store =
                EngineRecords::open(Arc::new(SledEngine::open(dir.path()).unwrap())).unwrap();
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
                kind: PluginKind::Connector,
                live: Some("ab".into()),
                disabled: false,
                config: serde_json::Map::new(),
                history: vec![Activation {
                    sha256: "ab".into(),
                    action: Action::Activate,
                    at_ms: 2,
                }],
                rollout: None,
            };
            store.put_slot(&slot).unwrap();
            store.kv("p").unwrap().set(b"cursor", b"42").unwrap();
            store.flush().unwrap();
        }
        let store = EngineRecords::open(Arc::new(SledEngine::open(dir.path()).unwrap())).unwrap();
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
        let store = EngineRecords::open(Arc::new(MemoryEngine::new())).unwrap();
        for (i, plugin) in ["a", "b", "a"].iter().enumerate() {
            let entry = AuditEntry {
                seq: 0,
                at_ms: i as u64,
                key_id: "k".into(),
                action: Action::Activate,
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
            code: FailureCause::Trap,
            message: "boom".into(),
            micros: 1,
            input: super::super::CallInput::Poll { cursor: None },
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
