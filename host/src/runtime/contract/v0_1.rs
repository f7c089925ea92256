//! Contract `tessera:cx@0.1.0` (the frozen `wit/v0.1.0`): generated bindings, host imports,
//! world checks, and `From` conversions between its generated types and the host's types.
//!
//! One `bindgen!` per world; the connector world generates the shared types and host imports,
//! the other two reuse them through `with`, so every kind speaks the same generated types.

#![allow(missing_docs)]

use wasmtime::component::{HasSelf, InstancePre, Linker};

use super::super::error::LoadError;
use super::super::host_imports::KvRefusal;
use super::super::state::PluginState;
use super::super::types as host;
use super::super::{PluginKind, log_import};

/// The WIT package's version.
pub const PACKAGE_VERSION: &str = "0.1.0";

/// The `connector` world: also the home of the shared types and host imports.
pub mod connector {
    wasmtime::component::bindgen!({
        path: "../wit/v0.1.0",
        world: "tessera:cx/connector@0.1.0",
        imports: { default: trappable },
        exports: { default: async },
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

shared_glue!("0.1.0");

impl From<&host::RuleInput> for types::RuleInput {
    fn from(r: &host::RuleInput) -> Self {
        Self {
            contact: (&r.contact).into(),
            event: r.event.as_ref().map(Into::into),
            counts: r.counts.iter().map(Into::into).collect(),
            member: r.member,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rule_input_converts_field_for_field() {
        let input = host::RuleInput {
            contact: host::Contact {
                id: "c1".into(),
                identities: vec![host::Identity {
                    kind: "email".into(),
                    value: "a@b.c".into(),
                }],
                traits: "{}".into(),
            },
            event: Some(host::Event {
                id: "e1".into(),
                kind: host::EventKind::Screen,
                name: Some("Home".into()),
                contact: host::ContactRef {
                    user_id: None,
                    anonymous_id: Some("a1".into()),
                    identities: vec![],
                },
                timestamp: None,
                properties: "{\"p\":1}".into(),
                traits: "{}".into(),
            }),
            counts: vec![host::EventCount {
                name: "Home".into(),
                count: 7,
            }],
            member: true,
            events: vec![],
            now_ms: 0,
        };
        let wit = types::RuleInput::from(&input);
        assert_eq!(wit.contact.identities[0].value, "a@b.c");
        let event = wit.event.as_ref().unwrap();
        assert!(matches!(event.kind, types::EventKind::Screen));
        assert_eq!(host::EventKind::from(event.kind), host::EventKind::Screen);
        assert_eq!(event.contact.anonymous_id.as_deref(), Some("a1"));
        assert_eq!(wit.counts[0].count, 7);
        assert!(wit.member);
    }
}
