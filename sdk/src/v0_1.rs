//! Contract 0.1's segment-rule input converted into this crate's (0.2) types, so a rule
//! written against [`crate::SegmentRule`] sees the same types whichever contract it exports.

use crate::bindings::rule_v0_1::tessera::cx::types as old;
use crate::types;

impl From<old::Identity> for types::Identity {
    fn from(i: old::Identity) -> Self {
        Self {
            kind: i.kind,
            value: i.value,
        }
    }
}

impl From<old::ContactRef> for types::ContactRef {
    fn from(c: old::ContactRef) -> Self {
        Self {
            user_id: c.user_id,
            anonymous_id: c.anonymous_id,
            identities: c.identities.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<old::Contact> for types::Contact {
    fn from(c: old::Contact) -> Self {
        Self {
            id: c.id,
            identities: c.identities.into_iter().map(Into::into).collect(),
            traits: c.traits,
        }
    }
}

impl From<old::EventKind> for types::EventKind {
    fn from(k: old::EventKind) -> Self {
        match k {
            old::EventKind::Track => Self::Track,
            old::EventKind::Identify => Self::Identify,
            old::EventKind::Page => Self::Page,
            old::EventKind::Screen => Self::Screen,
            old::EventKind::Group => Self::Group,
            old::EventKind::Alias => Self::Alias,
        }
    }
}

impl From<old::Event> for types::Event {
    fn from(e: old::Event) -> Self {
        Self {
            id: e.id,
            kind: e.kind.into(),
            name: e.name,
            contact: e.contact.into(),
            timestamp: e.timestamp,
            properties: e.properties,
            traits: e.traits,
        }
    }
}

impl From<old::RuleInput> for types::RuleInput {
    /// A 0.1 input has no past events and no clock: they stay empty and 0.
    fn from(r: old::RuleInput) -> Self {
        Self {
            contact: r.contact.into(),
            event: r.event.map(Into::into),
            counts: r
                .counts
                .into_iter()
                .map(|c| types::EventCount {
                    name: c.name,
                    count: c.count,
                })
                .collect(),
            member: r.member,
            events: Vec::new(),
            now_ms: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_0_1_input_converts_field_for_field() {
        let input = old::RuleInput {
            contact: old::Contact {
                id: "c1".into(),
                identities: vec![old::Identity {
                    kind: "email".into(),
                    value: "a@b.c".into(),
                }],
                traits: "{\"plan\":\"pro\"}".into(),
            },
            event: Some(old::Event {
                id: "e1".into(),
                kind: old::EventKind::Page,
                name: Some("Home".into()),
                contact: old::ContactRef {
                    user_id: Some("u1".into()),
                    anonymous_id: None,
                    identities: vec![],
                },
                timestamp: None,
                properties: "{}".into(),
                traits: "{}".into(),
            }),
            counts: vec![old::EventCount {
                name: "Home".into(),
                count: 2,
            }],
            member: true,
        };
        let new = types::RuleInput::from(input);
        assert_eq!(new.contact.identities[0].value, "a@b.c");
        assert_eq!(new.contact.traits_value()["plan"], "pro");
        assert_eq!(
            new.event.as_ref().map(|e| e.kind),
            Some(types::EventKind::Page)
        );
        assert_eq!(new.count("Home"), 2);
        assert!(new.member);
        assert!(new.events.is_empty());
        assert_eq!(new.now_ms, 0);
    }
}
