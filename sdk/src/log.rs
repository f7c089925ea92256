//! Structured logging into the host's log, tagged there with the plugin and the call.
//!
//! ```
//! tessera_sdk::log::info("mapped webhook", &[("events", &3), ("topic", &"orders/create")]);
//! ```

use std::fmt::Display;

pub use crate::types::Level;

/// Writes one record at `level`. The host may drop records beyond a per-call budget.
pub fn log(level: Level, message: impl AsRef<str>, fields: &[(&str, &dyn Display)]) {
    let fields: Vec<(String, String)> = fields
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect();
    #[cfg(target_arch = "wasm32")]
    crate::bindings::connector::tessera::cx::log::log(level, message.as_ref(), &fields);
    #[cfg(not(target_arch = "wasm32"))]
    crate::testing::log(level, message.as_ref(), fields);
}

/// Very detailed tracing.
pub fn trace(message: impl AsRef<str>, fields: &[(&str, &dyn Display)]) {
    log(Level::Trace, message, fields);
}

/// Detail for debugging.
pub fn debug(message: impl AsRef<str>, fields: &[(&str, &dyn Display)]) {
    log(Level::Debug, message, fields);
}

/// Normal operation.
pub fn info(message: impl AsRef<str>, fields: &[(&str, &dyn Display)]) {
    log(Level::Info, message, fields);
}

/// Something unexpected that the plugin handled.
pub fn warn(message: impl AsRef<str>, fields: &[(&str, &dyn Display)]) {
    log(Level::Warn, message, fields);
}

/// Something failed.
pub fn error(message: impl AsRef<str>, fields: &[(&str, &dyn Display)]) {
    log(Level::Error, message, fields);
}
