//! A segment rule: the contact is subscribed to a channel, by its consent traits
//! (contract 0.2). The convention, documented in the plugin's README and plugin.toml: the
//! first of `subscriptions.<channel>` and `<channel>_subscribed` that is present and
//! readable decides; none falls back to `default`; `unsubscribed: true` overrides all.

use tessera_sdk::Rule;
use tessera_sdk::condition::lookup;
use tessera_sdk::json::{self, Map, Value};
use tessera_sdk::types::{Decision, RuleInput, RuleNeeds};

/// The subscribed rule.
pub struct Subscribed;

/// Parsed parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    /// The channel (`email`, `sms`, ...).
    pub channel: String,
    /// Whether a contact with no consent trait counts as subscribed.
    pub default: bool,
}

impl Params {
    /// Checks and parses the parameters.
    pub fn parse(params: &Value) -> Result<Self, String> {
        let Value::Object(fields) = params else {
            return Err(format!(
                "params: must be an object, not {}",
                json::type_name(params)
            ));
        };
        if let Some(extra) = fields.keys().find(|k| *k != "channel" && *k != "default") {
            return Err(format!(
                "params: unknown key `{extra}` (expected channel, default)"
            ));
        }
        let channel = match fields.get("channel") {
            Some(Value::String(c))
                if !c.is_empty()
                    && c.len() <= 64
                    && c.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'
                    }) =>
            {
                c.clone()
            }
            _ => {
                return Err(
                    "params.channel: must name a channel: 1 to 64 of a-z, 0-9, `_` and `-` (`email`, `sms`)"
                        .into(),
                );
            }
        };
        let default = match fields.get("default") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err("params.default: must be true or false".into()),
        };
        Ok(Self { channel, default })
    }

    /// The consent traits read, in the order they decide.
    fn traits(&self) -> [String; 2] {
        [
            format!("subscriptions.{}", self.channel),
            format!("{}_subscribed", self.channel),
        ]
    }

    /// Whether a contact with `traits` is subscribed.
    pub fn subscribed(&self, traits: &Map<String, Value>) -> bool {
        if traits.get("unsubscribed").and_then(consent) == Some(true) {
            return false;
        }
        self.traits()
            .iter()
            .find_map(|name| lookup(traits, name).and_then(consent))
            .unwrap_or(self.default)
    }
}

/// What a consent value says: `Some(true)` subscribed, `Some(false)` not, `None` unreadable.
fn consent(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "subscribed" | "opted_in" => Some(true),
            "false" | "no" | "unsubscribed" | "opted_out" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

impl Rule for Subscribed {
    fn describe(params: &Value) -> Result<RuleNeeds, String> {
        let params = Params::parse(params)?;
        // Traits arrive by their top-level names: an object trait `subscriptions`, or a
        // dotted key set as it is.
        let [dotted, flag] = params.traits();
        Ok(RuleNeeds::new()
            .with_trait("subscriptions")
            .with_trait(dotted)
            .with_trait(flag)
            .with_trait("unsubscribed"))
    }

    fn evaluate(params: &Value, batch: Vec<RuleInput>) -> Result<Vec<Decision>, String> {
        let params = Params::parse(params)?;
        Ok(batch
            .iter()
            .map(|input| {
                let traits =
                    json::parse_object(input.contact.traits.as_bytes()).unwrap_or_default();
                Decision::member(params.subscribed(&traits))
            })
            .collect())
    }
}

tessera_sdk::export_rule!(Subscribed);

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_sdk::json::json;
    use tessera_sdk::testing::{describe, evaluate};
    use tessera_sdk::types::Contact;

    fn members(params: Value, traits: Vec<Value>) -> Vec<bool> {
        let batch = traits
            .into_iter()
            .enumerate()
            .map(|(i, t)| RuleInput::new(Contact::new(format!("c{i}")).with_traits(t)))
            .collect();
        evaluate::<Subscribed>(params, batch)
            .unwrap()
            .iter()
            .map(|d| d.member)
            .collect()
    }

    #[test]
    fn each_spelling_of_consent_is_read() {
        let email = json!({"channel": "email"});
        let traits = vec![
            json!({"subscriptions": {"email": true}}),
            json!({"subscriptions.email": "Subscribed"}),
            json!({"email_subscribed": true}),
            json!({"email_subscribed": "opted_out"}),
            json!({"subscriptions": {"sms": true}}),
            json!({}),
        ];
        assert_eq!(
            members(email, traits),
            vec![true, true, true, false, false, false]
        );
    }

    #[test]
    fn the_first_readable_trait_decides_and_global_opt_out_wins() {
        let email = json!({"channel": "email"});
        let traits = vec![
            json!({"subscriptions": {"email": false}, "email_subscribed": true}),
            json!({"subscriptions": {"email": "maybe"}, "email_subscribed": true}),
            json!({"email_subscribed": true, "unsubscribed": true}),
        ];
        assert_eq!(members(email, traits), vec![false, true, false]);
    }

    #[test]
    fn default_decides_when_no_trait_says() {
        let sms = json!({"channel": "sms", "default": true});
        let traits = vec![json!({}), json!({"sms_subscribed": false}), Value::Null];
        assert_eq!(members(sms, traits), vec![true, false, true]);
    }

    #[test]
    fn describe_names_the_consent_traits_and_no_events() {
        let needs = describe::<Subscribed>(json!({"channel": "whatsapp"})).unwrap();
        assert_eq!(
            needs.traits,
            vec![
                "subscriptions".to_string(),
                "subscriptions.whatsapp".to_string(),
                "whatsapp_subscribed".to_string(),
                "unsubscribed".to_string()
            ]
        );
        assert!(needs.events.is_empty());
        assert_eq!(needs.window_ms, None);
    }

    #[test]
    fn bad_params_are_refused() {
        let refused = |p: Value| describe::<Subscribed>(p).unwrap_err();
        assert!(refused(json!({})).starts_with("params.channel: must name a channel"));
        assert!(refused(json!({"channel": "E mail"})).starts_with("params.channel"));
        assert_eq!(
            refused(json!({"channel": "email", "default": "yes"})),
            "params.default: must be true or false"
        );
        assert_eq!(
            refused(json!({"channel": "email", "topic": "news"})),
            "params: unknown key `topic` (expected channel, default)"
        );
    }
}
