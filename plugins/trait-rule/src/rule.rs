//! Rule parameters: parsed once per batch into a [`Rule`] tree, then evaluated per contact.
//!
//! ```json
//! {"all": [
//!   {"trait": "plan", "in": ["pro", "enterprise"]},
//!   {"not": {"trait": "churned", "exists": true}},
//!   {"trait": "signed_up", "after": "2024-01-01"},
//!   {"event": "Order Completed", "at_least": 3}
//! ]}
//! ```
//!
//! Trait tests are the SDK's conditions ([`tessera_sdk::condition`]): `equals`,
//! `not_equals`, `exists`, `gt` / `lt`, `contains`, `in`, `before` / `after` a date. A trait
//! name with dots (`address.city`) also reaches into nested objects. Event tests: `at_least`
//! and/or `at_most`, against the contact's lifetime count for that name.

use tessera_sdk::condition::FieldTest;
use tessera_sdk::json::{self, Map, Value};
use tessera_sdk::types::{RuleInput, RuleNeeds};

/// A compiled rule.
#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    /// Every sub-rule holds (true when empty).
    All(Vec<Rule>),
    /// Some sub-rule holds (false when empty).
    Any(Vec<Rule>),
    /// The sub-rule does not hold.
    Not(Box<Rule>),
    /// A test on one trait.
    Trait(FieldTest),
    /// A bound on how many times the contact did something.
    Event {
        /// The event name.
        name: String,
        /// The count must be at least this.
        at_least: Option<u64>,
        /// The count must be at most this.
        at_most: Option<u64>,
    },
}

impl Rule {
    /// Compiles rule parameters; the error names the offending spot (`params.all[1]`).
    pub fn parse(params: &Value) -> Result<Self, String> {
        compile(params, "params")
    }

    /// True when evaluating needs the contact's traits.
    pub fn reads_traits(&self) -> bool {
        match self {
            Self::All(rules) | Self::Any(rules) => rules.iter().any(Rule::reads_traits),
            Self::Not(rule) => rule.reads_traits(),
            Self::Trait(_) => true,
            Self::Event { .. } => false,
        }
    }

    /// What the rule reads: the traits it tests and the events it counts. It looks at no
    /// past events (counts are lifetime counts), so it asks for no window.
    pub fn needs(&self) -> RuleNeeds {
        let mut needs = RuleNeeds::new();
        self.collect(&mut needs);
        needs
    }

    fn collect(&self, needs: &mut RuleNeeds) {
        match self {
            Self::All(rules) | Self::Any(rules) => rules.iter().for_each(|r| r.collect(needs)),
            Self::Not(rule) => rule.collect(needs),
            Self::Trait(test) => *needs = std::mem::take(needs).with_trait(test.name.clone()),
            Self::Event { name, .. } => *needs = std::mem::take(needs).with_event(name.clone()),
        }
    }

    /// Decides `input`; `traits` are the contact's parsed traits (empty when not needed).
    pub fn holds(&self, input: &RuleInput, traits: &Map<String, Value>) -> bool {
        match self {
            Self::All(rules) => rules.iter().all(|r| r.holds(input, traits)),
            Self::Any(rules) => rules.iter().any(|r| r.holds(input, traits)),
            Self::Not(rule) => !rule.holds(input, traits),
            Self::Trait(test) => test.holds(traits),
            Self::Event {
                name,
                at_least,
                at_most,
            } => {
                let count = input.count(name);
                at_least.is_none_or(|min| count >= min) && at_most.is_none_or(|max| count <= max)
            }
        }
    }
}

fn compile(value: &Value, at: &str) -> Result<Rule, String> {
    let Value::Object(fields) = value else {
        return Err(format!(
            "{at}: must be an object, not {}",
            json::type_name(value)
        ));
    };
    let is = |key: &str| fields.contains_key(key);
    let only = |key: &str| -> Result<(), String> {
        match fields.keys().find(|k| k.as_str() != key) {
            Some(extra) => Err(format!("{at}: `{key}` cannot be combined with `{extra}`")),
            None => Ok(()),
        }
    };
    if is("all") || is("any") {
        let key = if is("all") { "all" } else { "any" };
        only(key)?;
        let Value::Array(items) = &fields[key] else {
            return Err(format!("{at}.{key}: must be an array of conditions"));
        };
        let rules = items
            .iter()
            .enumerate()
            .map(|(i, item)| compile(item, &format!("{at}.{key}[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(if key == "all" {
            Rule::All(rules)
        } else {
            Rule::Any(rules)
        });
    }
    if is("not") {
        only("not")?;
        return Ok(Rule::Not(Box::new(compile(
            &fields["not"],
            &format!("{at}.not"),
        )?)));
    }
    if is("trait") {
        return FieldTest::parse(fields, "trait", at).map(Rule::Trait);
    }
    if is("event") {
        return compile_event(fields, at);
    }
    Err(format!(
        "{at}: expected one of `all`, `any`, `not`, `trait` or `event`, found {}",
        describe_keys(fields)
    ))
}

fn compile_event(fields: &Map<String, Value>, at: &str) -> Result<Rule, String> {
    let name = match &fields["event"] {
        Value::String(name) if !name.is_empty() => name.clone(),
        _ => return Err(format!("{at}.event: must be a non-empty string")),
    };
    if let Some(extra) = fields
        .keys()
        .find(|k| !["event", "at_least", "at_most"].contains(&k.as_str()))
    {
        return Err(format!(
            "{at}: unknown key `{extra}` in an event condition (expected at_least, at_most)"
        ));
    }
    let count = |key: &str| -> Result<Option<u64>, String> {
        match fields.get(key) {
            None => Ok(None),
            Some(value) => value
                .as_u64()
                .map(Some)
                .ok_or_else(|| format!("{at}.{key}: must be a whole number of at least 0")),
        }
    };
    let (at_least, at_most) = (count("at_least")?, count("at_most")?);
    if at_least.is_none() && at_most.is_none() {
        return Err(format!(
            "{at}: event `{name}` needs `at_least` or `at_most`"
        ));
    }
    Ok(Rule::Event {
        name,
        at_least,
        at_most,
    })
}

fn describe_keys(fields: &Map<String, Value>) -> String {
    if fields.is_empty() {
        return "an empty object".to_string();
    }
    let keys: Vec<String> = fields.keys().map(|k| format!("`{k}`")).collect();
    keys.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_sdk::json::json;

    fn error(params: Value) -> String {
        Rule::parse(&params).unwrap_err()
    }

    #[test]
    fn parses_nested_combinators() {
        let rule = Rule::parse(&json!({"any": [
            {"not": {"trait": "plan", "exists": true}},
            {"event": "Order Completed", "at_least": 3, "at_most": 10}
        ]}))
        .unwrap();
        let Rule::Any(rules) = &rule else {
            panic!("expected any, got {rule:?}")
        };
        assert_eq!(rules.len(), 2);
        assert!(rule.reads_traits());
    }

    #[test]
    fn needs_name_every_trait_and_event_once() {
        let rule = Rule::parse(&json!({"all": [
            {"trait": "plan", "equals": "pro"},
            {"any": [{"trait": "plan", "exists": true}, {"trait": "age", "gt": 18}]},
            {"event": "Order Completed", "at_least": 1}
        ]}))
        .unwrap();
        let needs = rule.needs();
        assert_eq!(needs.traits, vec!["plan".to_string(), "age".to_string()]);
        assert_eq!(needs.events, vec!["Order Completed".to_string()]);
        assert_eq!(needs.window_ms, None);
    }

    #[test]
    fn errors_point_at_the_bad_condition() {
        assert_eq!(
            error(
                json!({"all": [{"trait": "plan", "equals": "pro"}, {"trait": "plan", "matches": "p"}]})
            ),
            "params.all[1]: unknown key `matches` in a trait condition \
             (expected one of equals, not_equals, exists, gt, lt, contains, in, before, after)"
        );
        assert_eq!(
            error(json!({"not": {"event": "Signed Up"}})),
            "params.not: event `Signed Up` needs `at_least` or `at_most`"
        );
        assert_eq!(
            error(json!({"all": {"trait": "x"}})),
            "params.all: must be an array of conditions"
        );
        assert_eq!(
            error(json!({"trait": "plan", "equals": 1, "exists": true})),
            "params: trait `plan` takes exactly one test"
        );
        assert_eq!(
            error(json!({"event": "x", "at_least": -1})),
            "params.at_least: must be a whole number of at least 0"
        );
        assert_eq!(
            error(json!({})),
            "params: expected one of `all`, `any`, `not`, `trait` or `event`, found an empty object"
        );
        assert_eq!(error(json!([1])), "params: must be an object, not an array");
        assert_eq!(
            error(json!({"all": [], "any": []})),
            "params: `all` cannot be combined with `any`"
        );
        assert_eq!(
            error(json!({"trait": "age", "gt": true})),
            "params.gt: must be a number or a string, not a boolean"
        );
    }
}
