//! kv usage per plugin and in total, checked and updated together with each write, so that
//! concurrent writers can never pass a quota together.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::StoreError;
use super::engine::Keyspace;

/// Why a kv write did not happen.
#[derive(Debug, thiserror::Error)]
pub enum KvWriteError {
    /// The write would put the namespace, or every namespace together, over a quota.
    #[error("quota exceeded: {0}")]
    Quota(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

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

    /// Sets `plugin`'s `key` through `write` (given the old value's length, if any, read by
    /// `old` under the lock) when the quotas allow it.
    pub fn set(
        &self,
        plugin: &str,
        key: &[u8],
        value: &[u8],
        old: impl FnOnce() -> Result<Option<u64>, StoreError>,
        write: impl FnOnce() -> Result<(), StoreError>,
    ) -> Result<(), KvWriteError> {
        let mut ledger = self.lock();
        let quota = ledger.quota;
        let old = old()?.map(|len| key.len() as u64 + len);
        let new = cost(key, value);
        let usage = ledger.plugins.get(plugin).copied().unwrap_or_default();
        let grows = new > old.unwrap_or(0);
        if old.is_none() && usage.keys >= quota.plugin_keys {
            return Err(KvWriteError::Quota(format!(
                "a namespace holds at most {} keys",
                quota.plugin_keys
            )));
        }
        let plugin_after = usage
            .bytes
            .saturating_sub(old.unwrap_or(0))
            .saturating_add(new);
        if grows && plugin_after > quota.plugin_bytes {
            return Err(KvWriteError::Quota(format!(
                "a namespace holds at most {} bytes",
                quota.plugin_bytes
            )));
        }
        let total_after = ledger
            .total
            .saturating_sub(old.unwrap_or(0))
            .saturating_add(new);
        if grows && total_after > quota.total_bytes {
            return Err(KvWriteError::Quota(format!(
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

    /// Deletes `plugin`'s `key` through `remove` (which returns the removed value's length).
    pub fn delete(
        &self,
        plugin: &str,
        key: &[u8],
        remove: impl FnOnce() -> Result<Option<u64>, StoreError>,
    ) -> Result<(), StoreError> {
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

/// What a keyspace holds, as the ledger counts it.
pub fn measure(tree: &dyn Keyspace) -> Result<KvUsage, StoreError> {
    tree.iter().try_fold(KvUsage::default(), |u, entry| {
        let (k, v) = entry?;
        Ok(KvUsage {
            keys: u.keys + 1,
            bytes: u.bytes + cost(&k, &v),
        })
    })
}
