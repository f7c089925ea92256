//! The host interfaces every plugin imports: `log`, `config` and `kv`.
//!
//! Guest-visible failures (a kv value too large) are returned as WIT errors; nothing here traps
//! except on a host bug, so a plugin cannot crash the host through its imports.

use super::bindings::{config, kv, log, types};
use super::state::PluginState;

/// Log records a single call may write; more are dropped.
pub const LOG_BUDGET: u32 = 100;
/// Largest kv key, in bytes.
pub const KV_MAX_KEY: usize = 512;
/// Largest kv value, in bytes.
pub const KV_MAX_VALUE: usize = 64 * 1024;
/// Most keys one plugin's namespace may hold.
pub const KV_MAX_KEYS: usize = 10_000;

impl types::Host for PluginState {}

impl log::Host for PluginState {
    fn log(
        &mut self,
        level: log::Level,
        message: String,
        fields: Vec<(String, String)>,
    ) -> wasmtime::Result<()> {
        if self.logs_left == 0 {
            return Ok(());
        }
        self.logs_left -= 1;
        let message: String = message.chars().take(2_000).collect();
        let fields = fields
            .iter()
            .take(16)
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ");
        let plugin = &*self.plugin;
        if let Some(sink) = &self.env.logs {
            let name = match level {
                log::Level::Trace => "trace",
                log::Level::Debug => "debug",
                log::Level::Info => "info",
                log::Level::Warn => "warn",
                log::Level::Error => "error",
            };
            let line = if fields.is_empty() {
                message.clone()
            } else {
                format!("{message} {fields}")
            };
            sink.line(name, plugin, &line);
        }
        match level {
            log::Level::Trace => {
                tracing::trace!(target: "tessera::plugin", plugin, fields, "{message}")
            }
            log::Level::Debug => {
                tracing::debug!(target: "tessera::plugin", plugin, fields, "{message}")
            }
            log::Level::Info => {
                tracing::info!(target: "tessera::plugin", plugin, fields, "{message}")
            }
            log::Level::Warn => {
                tracing::warn!(target: "tessera::plugin", plugin, fields, "{message}")
            }
            log::Level::Error => {
                tracing::error!(target: "tessera::plugin", plugin, fields, "{message}")
            }
        }
        Ok(())
    }
}

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
            .map_err(kv::KvError::Unavailable))
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
        let kv = &self.env.kv;
        if kv.len() >= KV_MAX_KEYS && matches!(kv.get(key.as_bytes()), Ok(None)) {
            return Ok(Err(kv::KvError::QuotaExceeded(format!(
                "at most {KV_MAX_KEYS} keys"
            ))));
        }
        Ok(kv
            .set(key.as_bytes(), &value)
            .map_err(kv::KvError::Unavailable))
    }

    fn delete(&mut self, key: String) -> wasmtime::Result<Result<(), kv::KvError>> {
        if self.env.read_only {
            return Ok(Err(kv::KvError::ReadOnly));
        }
        Ok(self
            .env
            .kv
            .delete(key.as_bytes())
            .map_err(kv::KvError::Unavailable))
    }
}
