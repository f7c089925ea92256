//! Host-side bindings for contract `tessera:cx@0.1.0` (the frozen `wit/v0.1.0` package).
//!
//! One `bindgen!` per world; the connector world generates the shared types and host
//! imports, the other two reuse them through `with`, so every kind speaks the same types.
//! A later contract version gets a sibling module and `From` conversions into the newest.

#![allow(missing_docs)]

/// The `connector` world: also the home of the shared types and host imports.
pub mod connector {
    wasmtime::component::bindgen!({
        path: "../wit/v0.1.0",
        world: "tessera:cx/connector@0.1.0",
        imports: { default: trappable },
        exports: { default: async },
        additional_derives: [serde::Serialize, serde::Deserialize],
    });
}

/// The `segment-rule` world.
pub mod segment_rule {
    wasmtime::component::bindgen!({
        path: "../wit/v0.1.0",
        world: "tessera:cx/segment-rule@0.1.0",
        imports: { default: trappable },
        exports: { default: async },
        with: {
            "tessera:cx/types": super::connector::tessera::cx::types,
            "tessera:cx/log": super::connector::tessera::cx::log,
            "tessera:cx/config": super::connector::tessera::cx::config,
            "tessera:cx/kv": super::connector::tessera::cx::kv,
        },
    });
}

/// The `channel` world.
pub mod channel {
    wasmtime::component::bindgen!({
        path: "../wit/v0.1.0",
        world: "tessera:cx/channel@0.1.0",
        imports: { default: trappable },
        exports: { default: async },
        with: {
            "tessera:cx/types": super::connector::tessera::cx::types,
            "tessera:cx/log": super::connector::tessera::cx::log,
            "tessera:cx/config": super::connector::tessera::cx::config,
            "tessera:cx/kv": super::connector::tessera::cx::kv,
        },
    });
}

pub use connector::tessera::cx::{config, kv, log, types};
