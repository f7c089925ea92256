//! Host resources a guest can make the host hold (resource handles and their payloads:
//! `wasi:http` header maps, buffered outgoing bodies, streams), charged to its memory cap.
//!
//! A guest's linear memory is capped, but what it creates through WASI lives in host memory:
//! without a charge, a plugin with 16 MiB of memory and no capability created 10,000 header
//! maps of 100 KB each (1.1 GB of host memory). Each call now gets a handle table of
//! `memory cap / HANDLE_PAYLOAD` entries, and no handle may carry more than
//! [`HANDLE_PAYLOAD`] bytes: what a call makes the host hold is at most its memory cap again.

use wasmtime::component::ResourceTableError;
use wasmtime_wasi_http::FieldMapError;

/// The most one handle may carry: a header map's in-memory size limit, and an outgoing body's
/// buffer (two chunks of [`OUTGOING_BODY_CHUNK`]).
pub const HANDLE_PAYLOAD: usize = 32 << 10;
/// Largest write into an outgoing HTTP body; the body buffers up to two.
pub const OUTGOING_BODY_CHUNK: usize = HANDLE_PAYLOAD / 2;
/// Handles every call may have, whatever its memory cap: enough for a few requests at once.
pub const MIN_HANDLES: usize = 64;

/// The resource limits of one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostResources {
    /// Entries of the call's resource table.
    pub handles: usize,
    /// In-memory size limit of one `wasi:http` header map, bytes.
    pub field_bytes: usize,
}

impl HostResources {
    /// Limits such that handles x payload stay within `memory_bytes` (with at least
    /// [`MIN_HANDLES`] handles).
    pub fn for_memory_cap(memory_bytes: usize) -> Self {
        Self {
            handles: (memory_bytes / HANDLE_PAYLOAD).max(MIN_HANDLES),
            field_bytes: HANDLE_PAYLOAD,
        }
    }

    /// What ran out, when `err` is a full resource table or an oversized header map.
    pub fn exhausted(err: &wasmtime::Error) -> Option<String> {
        if let Some(ResourceTableError::Full) = err.downcast_ref::<ResourceTableError>() {
            return Some("the call's resource table is full".into());
        }
        match err.downcast_ref::<FieldMapError>() {
            Some(FieldMapError::TotalSizeTooBig) => {
                Some(format!("a header map over {} KiB", HANDLE_PAYLOAD >> 10))
            }
            Some(FieldMapError::TooManyFields) => Some("a header map with too many fields".into()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_times_payload_stay_within_the_memory_cap() {
        for mb in [1usize, 16, 64, 256] {
            let r = HostResources::for_memory_cap(mb << 20);
            assert!(r.handles >= MIN_HANDLES);
            if r.handles > MIN_HANDLES {
                assert!(r.handles * r.field_bytes <= mb << 20, "{mb} MiB: {r:?}");
            }
        }
    }
}
