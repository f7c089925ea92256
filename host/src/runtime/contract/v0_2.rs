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
        world: "tessera:cx/connector@0.2.0",
        imports: { default: trappable },
        exports: { default: async },
    });
}

/// The `segment-rule` world.
pub mod segment_rule {
    wasmtime::component::bindgen!({
        path: "../wit/v0.2.0",
        world: "tessera:cx/segment-rule@0.2.0",
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
        world: "tessera:cx/channel@0.2.0",
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

use channel::exports::tessera::cx::sender;
use connector::exports::tessera::cx::source;
use segment_rule::exports::tessera::cx::rule;

/// Links this version's host imports: `config` and `kv` through the generated bindings,
/// `log` through [`log_import`], which reads the guest's strings in place.
pub(in crate::runtime) fn add_to_linker(linker: &mut Linker<PluginState>) -> wasmtime::Result<()> {
    types::add_to_linker::<_, HasSelf<PluginState>>(linker, |s| s)?;
    config::add_to_linker::<_, HasSelf<PluginState>>(linker, |s| s)?;
    kv::add_to_linker::<_, HasSelf<PluginState>>(linker, |s| s)?;
    log_import::add_to_linker(linker, "tessera:cx/log@0.2.0")
}

/// Checks the component exports `kind`'s interface with this version's types; the error says
/// which kind it does implement, if any.
pub(in crate::runtime) fn check_world<T>(
    pre: &InstancePre<T>,
    kind: PluginKind,
) -> Result<(), LoadError> {
    let connector = source::GuestIndices::new(pre).map(drop);
    let rule = rule::GuestIndices::new(pre).map(drop);
    let channel = sender::GuestIndices::new(pre).map(drop);
    let found = [
        (PluginKind::Connector, connector.is_ok()),
        (PluginKind::SegmentRule, rule.is_ok()),
        (PluginKind::Channel, channel.is_ok()),
    ]
    .into_iter()
    .find_map(|(k, ok)| ok.then_some(k));
    let checked = match kind {
        PluginKind::Connector => connector,
        PluginKind::SegmentRule => rule,
        PluginKind::Channel => channel,
    };
    checked.map_err(|e| LoadError::WorldMismatch {
        expected: kind,
        found,
        detail: format!("{e:#}"),
    })
}

/// True when the component exports `self-test` with this version's types.
pub(in crate::runtime) fn exports_self_test<T>(pre: &InstancePre<T>) -> bool {
    connector::exports::tessera::cx::self_test::GuestIndices::new(pre).is_ok()
}

impl types::Host for PluginState {}

impl config::Host for PluginState {
    fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self.config_get(&key))
    }

    fn get_all(&mut self) -> wasmtime::Result<String> {
        Ok(self.config_all())
    }
}

impl kv::Host for PluginState {
    fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<Vec<u8>>, kv::KvError>> {
        Ok(self.kv_get(&key).map_err(Into::into))
    }

    fn set(&mut self, key: String, value: Vec<u8>) -> wasmtime::Result<Result<(), kv::KvError>> {
        Ok(self.kv_set(&key, &value).map_err(Into::into))
    }

    fn delete(&mut self, key: String) -> wasmtime::Result<Result<(), kv::KvError>> {
        Ok(self.kv_delete(&key).map_err(Into::into))
    }
}

impl From<KvRefusal> for kv::KvError {
    fn from(e: KvRefusal) -> Self {
        match e {
            KvRefusal::TooLarge(why) => Self::TooLarge(why),
            KvRefusal::QuotaExceeded(why) => Self::QuotaExceeded(why),
            KvRefusal::ReadOnly => Self::ReadOnly,
            KvRefusal::Unavailable(why) => Self::Unavailable(why),
        }
    }
}

// Host types into this version's types, for the inputs of calls.

impl From<&host::Identity> for types::Identity {
    fn from(i: &host::Identity) -> Self {
        Self {
            kind: i.kind.clone(),
            value: i.value.clone(),
        }
    }
}

impl From<&host::ContactRef> for types::ContactRef {
    fn from(c: &host::ContactRef) -> Self {
        Self {
            user_id: c.user_id.clone(),
            anonymous_id: c.anonymous_id.clone(),
            identities: c.identities.iter().map(Into::into).collect(),
        }
    }
}

impl From<&host::Contact> for types::Contact {
    fn from(c: &host::Contact) -> Self {
        Self {
            id: c.id.clone(),
            identities: c.identities.iter().map(Into::into).collect(),
            traits: c.traits.clone(),
        }
    }
}

impl From<host::EventKind> for types::EventKind {
    fn from(k: host::EventKind) -> Self {
        match k {
            host::EventKind::Track => Self::Track,
            host::EventKind::Identify => Self::Identify,
            host::EventKind::Page => Self::Page,
            host::EventKind::Screen => Self::Screen,
            host::EventKind::Group => Self::Group,
            host::EventKind::Alias => Self::Alias,
        }
    }
}

impl From<&host::Event> for types::Event {
    fn from(e: &host::Event) -> Self {
        Self {
            id: e.id.clone(),
            kind: e.kind.into(),
            name: e.name.clone(),
            contact: (&e.contact).into(),
            timestamp: e.timestamp.clone(),
            properties: e.properties.clone(),
            traits: e.traits.clone(),
        }
    }
}

impl From<&host::EventCount> for types::EventCount {
    fn from(c: &host::EventCount) -> Self {
        Self {
            name: c.name.clone(),
            count: c.count,
        }
    }
}

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

impl From<&host::HttpRequest> for types::HttpRequest {
    fn from(r: &host::HttpRequest) -> Self {
        Self {
            method: r.method.clone(),
            path: r.path.clone(),
            query: r.query.clone(),
            headers: r.headers.clone(),
            body: r.body.clone(),
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
        }
    }
}

// This version's types into host types: what benchmarks and tests that drive the generated
// bindings directly compare against. (Call results are lifted by `runtime::output` under a
// byte budget, not through these types.)

impl From<types::EventKind> for host::EventKind {
    fn from(k: types::EventKind) -> Self {
        match k {
            types::EventKind::Track => Self::Track,
            types::EventKind::Identify => Self::Identify,
            types::EventKind::Page => Self::Page,
            types::EventKind::Screen => Self::Screen,
            types::EventKind::Group => Self::Group,
            types::EventKind::Alias => Self::Alias,
        }
    }
}

impl From<types::Decision> for host::Decision {
    fn from(d: types::Decision) -> Self {
        Self {
            member: d.member,
            recheck_at_ms: d.recheck_at_ms,
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

impl From<types::ConnectorError> for host::ConnectorError {
    fn from(e: types::ConnectorError) -> Self {
        match e {
            types::ConnectorError::Unauthorized(m) => Self::Unauthorized(m),
            types::ConnectorError::BadRequest(m) => Self::BadRequest(m),
            types::ConnectorError::Unsupported(m) => Self::Unsupported(m),
            types::ConnectorError::Upstream(m) => Self::Upstream(m),
        }
    }
}

impl From<types::Delivery> for host::Delivery {
    fn from(d: types::Delivery) -> Self {
        Self {
            provider_id: d.provider_id,
            detail: d.detail,
        }
    }
}

impl From<types::SendError> for host::SendError {
    fn from(e: types::SendError) -> Self {
        match e {
            types::SendError::Retryable(r) => Self::Retryable(host::Retry {
                message: r.message,
                after_ms: r.after_ms,
            }),
            types::SendError::Permanent(m) => Self::Permanent(m),
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
        });
        assert_eq!(
            decision,
            host::Decision {
                member: true,
                recheck_at_ms: Some(42)
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
