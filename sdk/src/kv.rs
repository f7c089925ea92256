//! A small key-value namespace private to this plugin, shared by all its versions.
//!
//! Meant for cursors, tokens and caches, not bulk data: the host limits key and value
//! sizes and the number of keys.

pub use crate::types::KvError;

/// The value stored under `key`, or `None`.
pub fn get(key: &str) -> Result<Option<Vec<u8>>, KvError> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::connector::tessera::cx::kv::get(key)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::testing::kv_get(key)
    }
}

/// The value stored under `key` as text (invalid UTF-8 replaced), or `None`.
pub fn get_string(key: &str) -> Result<Option<String>, KvError> {
    Ok(get(key)?.map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
}

/// Stores `value` under `key`.
pub fn set(key: &str, value: impl AsRef<[u8]>) -> Result<(), KvError> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::connector::tessera::cx::kv::set(key, value.as_ref())
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::testing::kv_set(key, value.as_ref())
    }
}

/// Deletes `key`; deleting a missing key is not an error.
pub fn delete(key: &str) -> Result<(), KvError> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::connector::tessera::cx::kv::delete(key)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::testing::kv_delete(key)
    }
}
