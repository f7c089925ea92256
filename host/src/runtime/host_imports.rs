//! The host imports every plugin gets besides `log` (see [`super::log_import`]): `config` and
//! `kv`, as plain methods on the call's state; each contract version links them under its own
//! interface names and converts [`KvRefusal`] into its own error type.
//!
//! Guest-visible failures (a kv value too large) are returned as errors; nothing here traps
//! except on a host bug, so a plugin cannot crash the host through its imports.

use super::state::{KvError, PluginState};

/// Largest kv key, in bytes.
pub const KV_MAX_KEY: usize = 512;
/// Largest kv value, in bytes.
pub const KV_MAX_VALUE: usize = 64 * 1024;

/// Why a kv operation was refused, as the guest learns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvRefusal {
    /// The key or value is over the size limit.
    TooLarge(String),
    /// The namespace is over its quota.
    QuotaExceeded(String),
    /// Writes are not allowed in this call.
    ReadOnly,
    /// The store failed.
    Unavailable(String),
}

impl PluginState {
    /// `config.get`: a JSON string without quotes, other values as JSON text.
    pub(super) fn config_get(&self, key: &str) -> Option<String> {
        self.env.config.get(key).map(|v| match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    }

    /// `config.get-all`: the whole config as a JSON object.
    pub(super) fn config_all(&self) -> String {
        self.env.config.to_string()
    }

    /// `kv.get`.
    pub(super) fn kv_get(&self, key: &str) -> Result<Option<Vec<u8>>, KvRefusal> {
        self.env
            .kv
            .get(key.as_bytes())
            .map_err(|e| KvRefusal::Unavailable(e.to_string()))
    }

    /// `kv.set`, within the size limits and the namespace's quotas.
    pub(super) fn kv_set(&self, key: &str, value: &[u8]) -> Result<(), KvRefusal> {
        if self.env.read_only {
            return Err(KvRefusal::ReadOnly);
        }
        if key.len() > KV_MAX_KEY {
            return Err(KvRefusal::TooLarge(format!(
                "keys are at most {KV_MAX_KEY} bytes"
            )));
        }
        if value.len() > KV_MAX_VALUE {
            return Err(KvRefusal::TooLarge(format!(
                "values are at most {KV_MAX_VALUE} bytes"
            )));
        }
        // The namespace checks its quotas and writes in one step, so concurrent writers cannot
        // pass the check together.
        self.env.kv.set(key.as_bytes(), value).map_err(|e| match e {
            KvError::Quota(why) => KvRefusal::QuotaExceeded(why),
            KvError::Backend(why) => KvRefusal::Unavailable(why),
        })
    }

    /// `kv.delete`; deleting a missing key is not an error.
    pub(super) fn kv_delete(&self, key: &str) -> Result<(), KvRefusal> {
        if self.env.read_only {
            return Err(KvRefusal::ReadOnly);
        }
        self.env
            .kv
            .delete(key.as_bytes())
            .map_err(|e| KvRefusal::Unavailable(e.to_string()))
    }
}
