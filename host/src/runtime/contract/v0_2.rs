//! Contract `tessera:cx@0.2.0` (`wit/v0.2.0`, the newest): generated bindings, host imports,
//! world checks, and `From` conversions between its generated types and the host's types.
//!
//! 0.2 is 0.1 plus what segment rules need over time: a rule's `describe` (its params checked,
//! the event names, trait names and window it reads) and an `evaluate` whose input carries the
//! contact's past events in that window and the host's clock, and whose decisions carry a
//! recheck time. Connector and channel worlds are those of 0.1.
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
pub const PACKAGE_VERSION: &str = "0.2.0";

/// The `connector` world: also the home of the shared types and host imports.
pub mod connector {
    wasmtime::component::bindgen!({
        path: "../wit/v0.2.0",
        // The contract's world without its `sandbox` part: the WASI interfaces are
        // wasmtime-wasi's own bindings, linked in `Runtime::new`.
        inline: "
            package tessera:host;
            world connector {
                include tessera:cx/host-imports@0.2.0;
                export tessera:cx/source@0.2.0;
                export tessera:cx/self-test@0.2.0;
            }
        ",
        world: "tessera:host/connector",
        imports: { default: trappable },
        exports: { default: async },
    });
}

/// The `segment-rule` world.
pub mod segment_rule {
    wasmtime::component::bindgen!({
        path: "../wit/v0.2.0",
        // The contract's world without its `sandbox` part: the WASI interfaces are
        // wasmtime-wasi's own bindings, linked in `Runtime::new`.
        inline: "
            package tessera:host;
            world segment-rule {
                include tessera:cx/host-imports@0.2.0;
                export tessera:cx/rule@0.2.0;
                export tessera:cx/self-test@0.2.0;
            }
        ",
        world: "tessera:host/segment-rule",
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
        path: "../wit/v0.2.0",
        // The contract's world without its `sandbox` part: the WASI interfaces are
        // wasmtime-wasi's own bindings, linked in `Runtime::new`.
        inline: "
            package tessera:host;
            world channel {
                include tessera:cx/host-imports@0.2.0;
                export tessera:cx/sender@0.2.0;
                export tessera:cx/self-test@0.2.0;
            }
        ",
        world: "tessera:host/channel",
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

shared_glue!("0.2.0");

impl From<&host::PastEvent> for types::PastEvent {
    fn from(e: &host::PastEvent) -> Self {
        Self {
            kind: e.kind.into(),
            name: e.name.clone(),
            timestamp_ms: e.timestamp_ms,
            properties: e.properties.clone(),
        }
    }
}

impl From<&host::RuleInput> for types::RuleInput {
    fn from(r: &host::RuleInput) -> Self {
        Self {
            contact: (&r.contact).into(),
            event: r.event.as_ref().map(Into::into),
            counts: r.counts.iter().map(Into::into).collect(),
            member: r.member,
            events: r.events.iter().map(Into::into).collect(),
            now_ms: r.now_ms,
        }
    }
}

impl From<types::Decision> for host::Decision {
    fn from(d: types::Decision) -> Self {
        Self {
            member: d.member,
            recheck_at_ms: d.recheck_at_ms,
            keep: d.keep,
        }
    }
}

impl From<types::RuleNeeds> for host::RuleNeeds {
    fn from(n: types::RuleNeeds) -> Self {
        Self {
            events: n.events,
            traits: n.traits,
            window_ms: n.window_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rule_input_carries_past_events_and_the_clock() {
        let input = host::RuleInput {
            contact: host::Contact {
                id: "c1".into(),
                identities: vec![],
                traits: "{}".into(),
            },
            event: None,
            counts: vec![],
            member: false,
            events: vec![host::PastEvent {
                kind: host::EventKind::Track,
                name: Some("Order Completed".into()),
                timestamp_ms: 1_700_000_000_000,
                properties: "{\"total\":120}".into(),
            }],
            now_ms: 1_700_000_100_000,
        };
        let wit = types::RuleInput::from(&input);
        assert_eq!(wit.now_ms, 1_700_000_100_000);
        assert_eq!(wit.events.len(), 1);
        assert_eq!(wit.events[0].timestamp_ms, 1_700_000_000_000);
        assert_eq!(wit.events[0].name.as_deref(), Some("Order Completed"));
        assert_eq!(wit.events[0].properties, "{\"total\":120}");
        assert!(matches!(wit.events[0].kind, types::EventKind::Track));
    }

    #[test]
    fn decisions_and_needs_convert_to_host_types() {
        let decision = host::Decision::from(types::Decision {
            member: true,
            recheck_at_ms: Some(42),
            keep: Some(vec![0, 2]),
        });
        assert_eq!(
            decision,
            host::Decision {
                member: true,
                recheck_at_ms: Some(42),
                keep: Some(vec![0, 2]),
            }
        );
        let needs = host::RuleNeeds::from(types::RuleNeeds {
            events: vec!["Login".into()],
            traits: vec![],
            window_ms: Some(60_000),
        });
        assert_eq!(needs.events, vec!["Login".to_string()]);
        assert_eq!(needs.window_ms, Some(60_000));
    }
}
