//! kv usage per plugin and in total, checked and updated together with each write, so that
//! concurrent writers can never pass a quota together.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::runtime::{KvError, KvNamespace};

/// What the kv store may hold, set by the operator. A key costs its length plus its value's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvQuota {
    /// Most keys one plugin's namespace may hold.
    pub plugin_keys: u64,
    /// Most bytes one plugin's namespace may hold.
    pub plugin_bytes: u64,
    /// Most bytes all namespaces together may hold.
    pub total_bytes: u64,
}

impl Default for KvQuota {
    fn default() -> Self {
        Self {
            plugin_keys: 10_000,
            plugin_bytes: 16 << 20,
            total_bytes: 256 << 20,
        }
    }
}

/// Keys and bytes of one namespace.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KvUsage {
    /// Keys held.
    pub keys: u64,
    /// Bytes held (keys and values).
    pub bytes: u64,
}

#[derive(Default)]
struct Ledger {
    quota: KvQuota,
    plugins: HashMap<String, KvUsage>,
    total: u64,
}

/// The usage of every namespace, behind one lock that every write takes for its check and
/// its write.
#[derive(Clone, Default)]
pub struct KvLedger(Arc<Mutex<Ledger>>);

fn cost(key: &[u8], value: &[u8]) -> u64 {
    (key.len() + value.len()) as u64
}

impl KvLedger {
    /// A ledger of what `namespaces` (plugin id, every (key, value)) hold now.
    pub fn new(quota: KvQuota, namespaces: impl IntoIterator<Item = (String, KvUsage)>) -> Self {
        let plugins: HashMap<String, KvUsage> = namespaces.into_iter().collect();
        let total = plugins.values().map(|u| u.bytes).sum();
        Self(Arc::new(Mutex::new(Ledger {
            quota,
            plugins,
            total,
        })))
    }

    fn lock(&self) -> MutexGuard<'_, Ledger> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces the quota.
    pub fn set_quota(&self, quota: KvQuota) {
        self.lock().quota = quota;
    }

    /// The quota.
    pub fn quota(&self) -> KvQuota {
        self.lock().quota
    }

    /// Bytes all namespaces hold.
    pub fn total_bytes(&self) -> u64 {
        self.lock().total
    }

    /// What `plugin`'s namespace holds.
    pub fn usage(&self, plugin: &str) -> KvUsage {
        self.lock().plugins.get(plugin).copied().unwrap_or_default()
    }

    /// Sets `key` through `write` (given the old value, if any, read under the lock) when
    /// the quotas allow it.
    fn set(
        &self,
        plugin: &str,
        key: &[u8],
        value: &[u8],
        old: impl FnOnce() -> Result<Option<u64>, KvError>,
        write: impl FnOnce() -> Result<(), KvError>,
    ) -> Result<(), KvError> {
        let mut ledger = self.lock();
        let quota = ledger.quota;
        let old = old()?.map(|len| key.len() as u64 + len);
        let new = cost(key, value);
        let usage = ledger.plugins.get(plugin).copied().unwrap_or_default();
        let grows = new > old.unwrap_or(0);
        if old.is_none() && usage.keys >= quota.plugin_keys {
            return Err(KvError::Quota(format!(
                "a namespace holds at most {} keys",
                quota.plugin_keys
            )));
        }
        let plugin_after = usage
            .bytes
            .saturating_sub(old.unwrap_or(0))
            .saturating_add(new);
        if grows && plugin_after > quota.plugin_bytes {
            return Err(KvError::Quota(format!(
                "a namespace holds at most {} bytes",
                quota.plugin_bytes
            )));
        }
        let total_after = ledger
            .total
            .saturating_sub(old.unwrap_or(0))
            .saturating_add(new);
        if grows && total_after > quota.total_bytes {
            return Err(KvError::Quota(format!(
                "the kv store (all plugins) holds at most {} bytes",
                quota.total_bytes
            )));
        }
        write()?;
        ledger.total = total_after;
        ledger.plugins.insert(
            plugin.to_string(),
            KvUsage {
                keys: usage.keys.saturating_add(u64::from(old.is_none())),
                bytes: plugin_after,
            },
        );
        Ok(())
    }

    /// Deletes `key` through `remove` (which returns the removed value's length).
    fn delete(
        &self,
        plugin: &str,
        key: &[u8],
        remove: impl FnOnce() -> Result<Option<u64>, KvError>,
    ) -> Result<(), KvError> {
        let mut ledger = self.lock();
        if let Some(len) = remove()? {
            let freed = key.len() as u64 + len;
            ledger.total = ledger.total.saturating_sub(freed);
            let usage = ledger.plugins.entry(plugin.to_string()).or_default();
            usage.keys = usage.keys.saturating_sub(1);
            usage.bytes = usage.bytes.saturating_sub(freed);
        }
        Ok(())
    }
}

/// One plugin's kv namespace: a sled tree, charged to the ledger.
pub struct SledKv {
    plugin: String,
    tree: sled::Tree,
    ledger: KvLedger,
}

impl SledKv {
    /// The namespace of `plugin` in `tree`.
    pub fn new(plugin: &str, tree: sled::Tree, ledger: KvLedger) -> Self {
        Self {
            plugin: plugin.to_string(),
            tree,
            ledger,
        }
    }

    /// What `tree` holds.
    pub fn measure(tree: &sled::Tree) -> KvUsage {
        tree.iter()
            .filter_map(Result::ok)
            .fold(KvUsage::default(), |u, (k, v)| KvUsage {
                keys: u.keys + 1,
                bytes: u.bytes + cost(&k, &v),
            })
    }
}

fn backend(e: sled::Error) -> KvError {
    KvError::Backend(e.to_string())
}

impl KvNamespace for SledKv {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
        self.tree
            .get(key)
            .map(|v| v.map(|v| v.to_vec()))
            .map_err(|e| e.to_string())
    }

    fn set(&self, key: &[u8], value: &[u8]) -> Result<(), KvError> {
        self.ledger.set(
            &self.plugin,
            key,
            value,
            || Ok(self.tree.get(key).map_err(backend)?.map(|v| v.len() as u64)),
            || self.tree.insert(key, value).map(drop).map_err(backend),
        )
    }

    fn delete(&self, key: &[u8]) -> Result<(), String> {
        self.ledger
            .delete(&self.plugin, key, || {
                Ok(self
                    .tree
                    .remove(key)
                    .map_err(backend)?
                    .map(|v| v.len() as u64))
            })
            .map_err(|e| e.to_string())
    }

    fn len(&self) -> usize {
        self.ledger.usage(&self.plugin).keys as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn namespace(db: &sled::Db, plugin: &str, ledger: &KvLedger) -> Arc<SledKv> {
        let tree = db.open_tree(format!("plugin_kv/{plugin}")).unwrap();
        Arc::new(SledKv::new(plugin, tree, ledger.clone()))
    }

    #[test]
    fn concurrent_writers_never_pass_the_key_quota() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let quota = KvQuota {
            plugin_keys: 10,
            ..KvQuota::default()
        };
        let ledger = KvLedger::new(quota, []);
        let kv = namespace(&db, "p", &ledger);
        let threads: Vec<_> = (0..16)
            .map(|t| {
                let kv = kv.clone();
                std::thread::spawn(move || {
                    (0..4)
                        .filter(|i| kv.set(format!("{t}-{i}").as_bytes(), b"v").is_ok())
                        .count()
                })
            })
            .collect();
        let stored: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(stored, 10);
        assert_eq!(kv.tree.len(), 10);
        // Overwriting a key needs no new slot; deleting one frees it.
        kv.set(b"0-0", b"w").or_else(|_| kv.set(b"1-0", b"w")).ok();
        let some_key = kv.tree.iter().next().unwrap().unwrap().0;
        kv.set(&some_key, b"again").unwrap();
        kv.delete(&some_key).unwrap();
        kv.set(b"new", b"v").unwrap();
    }

    #[test]
    fn byte_quotas_hold_per_plugin_and_in_total() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let quota = KvQuota {
            plugin_keys: 1_000,
            plugin_bytes: 100,
            total_bytes: 150,
        };
        let ledger = KvLedger::new(quota, []);
        let (a, b) = (namespace(&db, "a", &ledger), namespace(&db, "b", &ledger));
        a.set(b"k1", &[0; 48]).unwrap();
        a.set(b"k2", &[0; 48]).unwrap();
        assert!(
            matches!(a.set(b"k3", &[0; 8]), Err(KvError::Quota(_))),
            "per plugin"
        );
        // Shrinking is always allowed.
        a.set(b"k2", &[0; 8]).unwrap();
        b.set(b"k1", &[0; 60]).unwrap();
        assert!(
            matches!(b.set(b"k2", &[0; 30]), Err(KvError::Quota(_))),
            "in total"
        );
        assert_eq!(ledger.total_bytes(), 50 + 10 + 62);
        // A reopened ledger measures what the trees hold.
        let measured = SledKv::measure(&db.open_tree("plugin_kv/a").unwrap());
        assert_eq!(measured, ledger.usage("a"));
    }
}
