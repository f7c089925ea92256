//! Contract `tessera:cx@0.2.0` (`wit/v0.2.0`, the newest): generated bindings, host imports,
//! world checks, and `From` conversions between its generated types and the host's types.
//!
//! 0.2 is 0.1 plus what segment rules need over time: a rule's `describe` (its params checked,
//! the event names, trait names and window it reads) and an `evaluate` whose input carries the
//! contact's past events in that window and the host's clock, and whose decisions carry a
//! recheck time. A channel's message gains an HTML part and headers, and a channel may export
//! `status`, which reads a provider's status callback into status updates. The connector world
//! is that of 0.1.
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
                export tessera:cx/status@0.2.0;
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

impl From<&host::Message> for types::Message {
    fn from(m: &host::Message) -> Self {
        Self {
            id: m.id.clone(),
            channel: m.channel.clone(),
            to: m.to.clone(),
            sender: m.sender.clone(),
            subject: m.subject.clone(),
            body: m.body.clone(),
            content_type: m.content_type.clone(),
            metadata: m.metadata.clone(),
            html: m.html.clone(),
            headers: m
                .headers
                .iter()
                .map(|h| types::Header {
                    name: h.name.clone(),
                    value: h.value.clone(),
                })
                .collect(),
        }
    }
}

impl From<types::DeliveryStatus> for host::DeliveryStatus {
    fn from(s: types::DeliveryStatus) -> Self {
        match s {
            types::DeliveryStatus::Sent => Self::Sent,
            types::DeliveryStatus::Delivered => Self::Delivered,
            types::DeliveryStatus::Failed => Self::Failed,
            types::DeliveryStatus::Bounced => Self::Bounced,
            types::DeliveryStatus::Complained => Self::Complained,
            types::DeliveryStatus::Unsubscribed => Self::Unsubscribed,
        }
    }
}

impl From<types::StatusUpdate> for host::StatusUpdate {
    fn from(u: types::StatusUpdate) -> Self {
        Self {
            message_id: u.message_id,
            provider_id: u.provider_id,
            status: u.status.into(),
            detail: u.detail,
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

    #[test]
    fn a_message_carries_its_html_part_and_headers() {
        let message = host::Message {
            id: "run-1.2".into(),
            channel: "email".into(),
            to: "ada@example.com".into(),
            sender: Some("news@example.com".into()),
            subject: Some("Hi".into()),
            body: "Hello".into(),
            content_type: "text/plain".into(),
            metadata: "{}".into(),
            html: Some("<p>Hello</p>".into()),
            headers: vec![host::Header {
                name: "List-Unsubscribe-Post".into(),
                value: "List-Unsubscribe=One-Click".into(),
            }],
        };
        let wit = types::Message::from(&message);
        assert_eq!(wit.id, "run-1.2");
        assert_eq!(wit.body, "Hello");
        assert_eq!(wit.html.as_deref(), Some("<p>Hello</p>"));
        assert_eq!(wit.headers.len(), 1);
        assert_eq!(wit.headers[0].name, "List-Unsubscribe-Post");
        assert_eq!(wit.headers[0].value, "List-Unsubscribe=One-Click");
    }

    #[test]
    fn status_updates_convert_to_host_types() {
        let update = host::StatusUpdate::from(types::StatusUpdate {
            message_id: Some("run-1.2".into()),
            provider_id: Some("SM123".into()),
            status: types::DeliveryStatus::Bounced,
            detail: Some("550 no such user".into()),
        });
        assert_eq!(update.status, host::DeliveryStatus::Bounced);
        assert_eq!(update.message_id.as_deref(), Some("run-1.2"));
        assert_eq!(update.provider_id.as_deref(), Some("SM123"));
        assert_eq!(update.status.as_str(), "bounced");
    }
}
