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

/// 0.1's message has no HTML part and no headers: a 0.1 channel gets the text body and
/// none of the headers. A message with only HTML (an empty text body) hands the HTML over as
/// the body, typed `text/html`, so an old channel still delivers its content.
impl From<&host::Message> for types::Message {
    fn from(m: &host::Message) -> Self {
        let (body, content_type) = match &m.html {
            Some(html) if m.body.is_empty() => (html.clone(), "text/html".to_string()),
            _ => (m.body.clone(), m.content_type.clone()),
        };
        Self {
            id: m.id.clone(),
            channel: m.channel.clone(),
            to: m.to.clone(),
            sender: m.sender.clone(),
            subject: m.subject.clone(),
            body,
            content_type,
            metadata: m.metadata.clone(),
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

    fn message(body: &str, html: Option<&str>) -> host::Message {
        host::Message {
            id: "m1".into(),
            channel: "email".into(),
            to: "ada@example.com".into(),
            sender: None,
            subject: Some("Hi".into()),
            body: body.into(),
            content_type: "text/plain".into(),
            metadata: "{}".into(),
            html: html.map(Into::into),
            headers: vec![host::Header {
                name: "List-Unsubscribe".into(),
                value: "<https://example.com/u>".into(),
            }],
        }
    }

    #[test]
    fn a_0_1_channel_gets_the_text_part_of_a_message_with_html() {
        let wit = types::Message::from(&message("Hello", Some("<p>Hello</p>")));
        assert_eq!(wit.body, "Hello");
        assert_eq!(wit.content_type, "text/plain");
        assert_eq!(wit.subject.as_deref(), Some("Hi"));
    }

    #[test]
    fn a_0_1_channel_gets_the_html_of_a_message_without_text() {
        let wit = types::Message::from(&message("", Some("<p>Hello</p>")));
        assert_eq!(wit.body, "<p>Hello</p>");
        assert_eq!(wit.content_type, "text/html");
    }
}
