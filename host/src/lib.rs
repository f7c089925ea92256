//! Tessera's host: a self-hosted orchestration layer whose vendor-specific blocks are
//! sandboxed WebAssembly components that can be swapped at runtime.

pub mod plugins;
pub mod runtime;
pub mod store;
