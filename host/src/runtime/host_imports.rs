//! The host interfaces every plugin imports besides `log` (see [`super::log_import`]):
//! `config` and `kv`.
//!
//! Guest-visible failures (a kv value too large) are returned as WIT errors; nothing here traps
//! except on a host bug, so a plugin cannot crash the host through its imports.

use super::bindings::{config, kv, types};
use super::state::{KvError, PluginState};

/// Largest kv key, in bytes.
pub const KV_MAX_KEY: usize = 512;
/// Largest kv value, in bytes.
pub const KV_MAX_VALUE: usize = 64 * 1024;

impl types::Host for PluginState {}

impl config::Host for PluginState {
    fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self.env.config.get(&key).map(|v| match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        }))
    }

    fn get_all(&mut self) -> wasmtime::Result<String> {
        Ok(self.env.config.to_string())
    }
}

impl kv::Host for PluginState {
    fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<Vec<u8>>, kv::KvError>> {
        Ok(self
            .env
            .kv
            .get(key.as_bytes())
            .map_err(|e| kv::KvError::Unavailable(e.to_string())))
    }

    fn set(&mut self, key: String, value: Vec<u8>) -> wasmtime::Result<Result<(), kv::KvError>> {
        if self.env.read_only {
            return Ok(Err(kv::KvError::ReadOnly));
        }
        if key.len() > KV_MAX_KEY {
            return Ok(Err(kv::KvError::TooLarge(format!(
                "keys are at most {KV_MAX_KEY} bytes"
            ))));
        }
        if value.len() > KV_MAX_VALUE {
            return Ok(Err(kv::KvError::TooLarge(format!(
                "values are at most {KV_MAX_VALUE} bytes"
            ))));
        }
        // The namespace checks its quotas and writes in one step, so concurrent writers cannot
        // pass the check together.
        Ok(self
            .env
            .kv
            .set(key.as_bytes(), &value)
            .map_err(|e| match e {
                KvError::Quota(why) => kv::KvError::QuotaExceeded(why),
                KvError::Backend(why) => kv::KvError::Unavailable(why),
            }))
    }

    fn delete(&mut self, key: String) -> wasmtime::Result<Result<(), kv::KvError>> {
        if self.env.read_only {
            return Ok(Err(kv::KvError::ReadOnly));
        }
        Ok(self
            .env
            .kv
            .delete(key.as_bytes())
            .map_err(|e| kv::KvError::Unavailable(e.to_string())))
    }
}
