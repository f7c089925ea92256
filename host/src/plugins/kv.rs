//! Each plugin's private kv namespace: one keyspace per plugin, every write charged to the
//! host's kv ledger, so quotas hold across concurrent writers.

use std::sync::Arc;

use crate::runtime::{KvError, KvNamespace};
use crate::store::{Engine, KvLedger, KvWriteError, StoreError, Tree, measure};

/// The prefix of every plugin's kv keyspace.
pub const KV_PREFIX: &str = "plugin_kv/";

/// One plugin's kv namespace.
pub struct PluginKv {
    plugin: String,
    tree: Tree,
    ledger: KvLedger,
}

impl PluginKv {
    /// The namespace of `plugin` in `tree`.
    pub fn new(plugin: &str, tree: Tree, ledger: KvLedger) -> Self {
        Self {
            plugin: plugin.to_string(),
            tree,
            ledger,
        }
    }
}

/// What every existing namespace in `engine` holds, by plugin id, for a new ledger.
pub fn measure_all(
    engine: &dyn Engine,
) -> Result<Vec<(String, crate::store::KvUsage)>, StoreError> {
    let mut out = Vec::new();
    for name in engine.keyspace_names()? {
        if let Some(plugin) = name.strip_prefix(KV_PREFIX) {
            out.push((plugin.to_string(), measure(&*engine.open(&name)?)?));
        }
    }
    Ok(out)
}

/// The namespace of `plugin` in `engine`.
pub fn namespace(
    engine: &dyn Engine,
    plugin: &str,
    ledger: &KvLedger,
) -> Result<Arc<dyn KvNamespace>, StoreError> {
    let tree = engine.open(&format!("{KV_PREFIX}{plugin}"))?;
    Ok(Arc::new(PluginKv::new(plugin, tree, ledger.clone())))
}

fn unavailable(e: StoreError) -> KvError {
    KvError::Backend(e.to_string())
}

impl KvNamespace for PluginKv {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        self.tree.get(key).map_err(unavailable)
    }

    fn set(&self, key: &[u8], value: &[u8]) -> Result<(), KvError> {
        self.ledger
            .set(
                &self.plugin,
                key,
                value,
                || Ok(self.tree.get(key)?.map(|v| v.len() as u64)),
                || self.tree.insert(key, value).map(drop),
            )
            .map_err(|e| match e {
                KvWriteError::Quota(why) => KvError::Quota(why),
                KvWriteError::Store(e) => unavailable(e),
            })
    }

    fn delete(&self, key: &[u8]) -> Result<(), KvError> {
        self.ledger
            .delete(&self.plugin, key, || {
                Ok(self.tree.remove(key)?.map(|v| v.len() as u64))
            })
            .map_err(unavailable)
    }

    fn len(&self) -> usize {
        self.ledger.usage(&self.plugin).keys as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Engine, KvQuota, MemoryEngine, measure};

    fn namespace(engine: &MemoryEngine, plugin: &str, ledger: &KvLedger) -> Arc<PluginKv> {
        let tree = engine.open(&format!("{KV_PREFIX}{plugin}")).unwrap();
        Arc::new(PluginKv::new(plugin, tree, ledger.clone()))
    }

    #[test]
    fn concurrent_writers_never_pass_the_key_quota() {
        let engine = MemoryEngine::new();
        let quota = KvQuota {
            plugin_keys: 10,
            ..KvQuota::default()
        };
        let ledger = KvLedger::new(quota, []);
        let kv = namespace(&engine, "p", &ledger);
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
        let engine = MemoryEngine::new();
        let quota = KvQuota {
            plugin_keys: 1_000,
            plugin_bytes: 100,
            total_bytes: 150,
        };
        let ledger = KvLedger::new(quota, []);
        let (a, b) = (
            namespace(&engine, "a", &ledger),
            namespace(&engine, "b", &ledger),
        );
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
        let measured = measure(&*engine.open("plugin_kv/a").unwrap()).unwrap();
        assert_eq!(measured, ledger.usage("a"));
    }
}
