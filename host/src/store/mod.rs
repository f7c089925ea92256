//! Persistence, as bytes: the event [`Log`] (every acknowledged event is appended to it; the
//! group-committed file [`EventLog`] is its embedded backend) and the storage [`Engine`] of
//! named, ordered keyspaces that every stage builds its own records on (sled embedded).
//! In-memory backends of both serve tests, and one conformance suite per trait holds every
//! backend to the same contract. Nothing here knows the records stored: their owners
//! (ingest, profiles, plugins) define them.

pub mod bounded;
#[cfg(test)]
pub(crate) mod conformance;
mod engine;
mod event_log;
mod kv_quota;
mod log;
mod memory;
mod sled_engine;

pub use engine::{Batch, Engine, Entries, Entry, Keyspace, Tree, prefix_end};
pub use event_log::{EventLog, LogError, is_redacted};
pub use kv_quota::{KvLedger, KvQuota, KvUsage, KvWriteError, measure};
pub use log::{Appending, Log, MemoryLog};
pub use memory::MemoryEngine;
pub use sled_engine::SledEngine;

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend failed.
    #[error("store backend: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A record could not be encoded.
    #[error("encoding a record: {0}")]
    Encode(#[source] serde_json::Error),
    /// A stored record could not be decoded.
    #[error("corrupt record `{key}`: {source}")]
    Corrupt {
        /// The record's key.
        key: String,
        /// The decoding error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl StoreError {
    /// A record under `key` that does not decode.
    pub fn corrupt(key: &[u8], source: impl std::error::Error + Send + Sync + 'static) -> Self {
        StoreError::Corrupt {
            key: String::from_utf8_lossy(key).into_owned(),
            source: Box::new(source),
        }
    }
}

/// Encodes a record as JSON.
pub fn encode_json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(StoreError::Encode)
}

/// Decodes the JSON record stored under `key`.
pub fn decode_json<T: serde::de::DeserializeOwned>(
    key: &[u8],
    bytes: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::corrupt(key, e))
}
