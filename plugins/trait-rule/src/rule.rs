//! Rule parameters: parsed once per batch into a [`Rule`] tree, then evaluated per contact.
//!
//! ```json
//! {"all": [
//!   {"trait": "plan", "equals": "pro"},
//!   {"not": {"trait": "churned", "exists": true}},
//!   {"event": "Order Completed", "at_least": 3}
//! ]}
//! ```
//!
//! Trait tests: `equals`, `not_equals` (JSON values; numbers compare by value), `exists`
//! (true or false), `gt` / `lt` (a number, or a string compared as text, which orders
//! RFC 3339 timestamps), `contains` (a substring of a string trait, or an element of an
//! array trait). A trait name with dots (`address.city`) also reaches into nested objects.
//! Event tests: `at_least` and/or `at_most`, against the contact's count for that name.

use std::cmp::Ordering;

use tessera_sdk::json::{self, Map, Value};
use tessera_sdk::types::RuleInput;

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
    Trait {
        /// The trait's name (or dotted path).
        name: String,
        /// What to check.
        test: TraitTest,
    },
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

/// What a trait condition checks.
#[derive(Debug, Clone, PartialEq)]
pub enum TraitTest {
    /// The trait equals the value.
    Equals(Value),
    /// The trait is missing or differs from the value.
    NotEquals(Value),
    /// The trait is present and not null (or, with `false`, absent or null).
    Exists(bool),
    /// The trait is greater than the bound.
    Gt(Bound),
    /// The trait is less than the bound.
    Lt(Bound),
    /// The string trait contains the text, or the array trait contains the value.
    Contains(Value),
}

/// The right-hand side of `gt` and `lt`.
#[derive(Debug, Clone, PartialEq)]
pub enum Bound {
    /// Compared with number traits (and strings that parse as numbers).
    Number(f64),
    /// Compared as text with string traits.
    Text(String),
}

const TRAIT_TESTS: [&str; 6] = ["equals", "not_equals", "exists", "gt", "lt", "contains"];

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
            Self::Trait { .. } => true,
            Self::Event { .. } => false,
        }
    }

    /// Decides `input`; `traits` are the contact's parsed traits (empty when not needed).
    pub fn holds(&self, input: &RuleInput, traits: &Map<String, Value>) -> bool {
        match self {
            Self::All(rules) => rules.iter().all(|r| r.holds(input, traits)),
            Self::Any(rules) => rules.iter().any(|r| r.holds(input, traits)),
            Self::Not(rule) => !rule.holds(input, traits),
            Self::Trait { name, test } => test.holds(lookup(traits, name)),
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

impl TraitTest {
    fn holds(&self, value: Option<&Value>) -> bool {
        let value = value.filter(|v| !v.is_null());
        match self {
            Self::Exists(expected) => value.is_some() == *expected,
            Self::Equals(expected) => value.is_some_and(|v| same(v, expected)),
            Self::NotEquals(expected) => !value.is_some_and(|v| same(v, expected)),
            Self::Gt(bound) => value.and_then(|v| compare(v, bound)) == Some(Ordering::Greater),
            Self::Lt(bound) => value.and_then(|v| compare(v, bound)) == Some(Ordering::Less),
            Self::Contains(needle) => match (value, needle) {
                (Some(Value::String(text)), Value::String(part)) => text.contains(part.as_str()),
                (Some(Value::Array(items)), needle) => items.iter().any(|item| same(item, needle)),
                _ => false,
            },
        }
    }
}

/// JSON equality where `1` equals `1.0`.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

fn compare(value: &Value, bound: &Bound) -> Option<Ordering> {
    match (value, bound) {
        (Value::Number(n), Bound::Number(b)) => n.as_f64()?.partial_cmp(b),
        (Value::String(s), Bound::Number(b)) => s.trim().parse::<f64>().ok()?.partial_cmp(b),
        (Value::String(s), Bound::Text(b)) => Some(s.as_str().cmp(b.as_str())),
        _ => None,
    }
}

/// The trait `name`, or the nested value its dotted path leads to.
fn lookup<'a>(traits: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    if let Some(value) = traits.get(name) {
        return Some(value);
    }
    if !name.contains('.') {
        return None;
    }
    let mut parts = name.split('.');
    let mut value = traits.get(parts.next()?)?;
    for part in parts {
        value = value.as_object()?.get(part)?;
    }
    Some(value)
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
        return compile_trait(fields, at);
    }
    if is("event") {
        return compile_event(fields, at);
    }
    Err(format!(
        "{at}: expected one of `all`, `any`, `not`, `trait` or `event`, found {}",
        describe_keys(fields)
    ))
}

fn compile_trait(fields: &Map<String, Value>, at: &str) -> Result<Rule, String> {
    let name = match &fields["trait"] {
        Value::String(name) if !name.is_empty() => name.clone(),
        _ => return Err(format!("{at}.trait: must be a non-empty string")),
    };
    if let Some(extra) = fields
        .keys()
        .find(|k| *k != "trait" && !TRAIT_TESTS.contains(&k.as_str()))
    {
        return Err(format!(
            "{at}: unknown key `{extra}` in a trait condition (expected one of {})",
            TRAIT_TESTS.join(", ")
        ));
    }
    let mut tests = fields.iter().filter(|(k, _)| *k != "trait");
    let (op, operand) = match (tests.next(), tests.next()) {
        (Some(test), None) => test,
        (None, _) => {
            return Err(format!(
                "{at}: trait `{name}` needs one of {}",
                TRAIT_TESTS.join(", ")
            ));
        }
        (Some(_), Some(_)) => return Err(format!("{at}: trait `{name}` takes exactly one test")),
    };
    let test = match op.as_str() {
        "equals" => TraitTest::Equals(operand.clone()),
        "not_equals" => TraitTest::NotEquals(operand.clone()),
        "contains" => TraitTest::Contains(operand.clone()),
        "exists" => TraitTest::Exists(
            operand
                .as_bool()
                .ok_or_else(|| format!("{at}.exists: must be true or false"))?,
        ),
        "gt" => TraitTest::Gt(bound(operand, &format!("{at}.gt"))?),
        _ => TraitTest::Lt(bound(operand, &format!("{at}.lt"))?),
    };
    Ok(Rule::Trait { name, test })
}

fn bound(operand: &Value, at: &str) -> Result<Bound, String> {
    match operand {
        Value::Number(n) => n
            .as_f64()
            .map(Bound::Number)
            .ok_or_else(|| format!("{at}: number out of range")),
        Value::String(s) => Ok(Bound::Text(s.clone())),
        other => Err(format!(
            "{at}: must be a number or a string, not {}",
            json::type_name(other)
        )),
    }
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
    fn errors_point_at_the_bad_condition() {
        assert_eq!(
            error(
                json!({"all": [{"trait": "plan", "equals": "pro"}, {"trait": "plan", "matches": "p"}]})
            ),
            "params.all[1]: unknown key `matches` in a trait condition \
             (expected one of equals, not_equals, exists, gt, lt, contains)"
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
            error(json!({"trait": "plan"})).split(" needs").next(),
            Some("params: trait `plan`")
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

    #[test]
    fn dotted_names_reach_nested_traits() {
        let traits = json!({"address": {"city": "Paris"}, "a.b": 1});
        let traits = traits.as_object().unwrap();
        assert_eq!(lookup(traits, "address.city"), Some(&json!("Paris")));
        assert_eq!(lookup(traits, "a.b"), Some(&json!(1)));
        assert_eq!(lookup(traits, "address.zip"), None);
    }

    #[test]
    fn numbers_compare_by_value() {
        assert!(same(&json!(1), &json!(1.0)));
        assert!(!same(&json!("1"), &json!(1)));
        assert_eq!(
            compare(&json!("41.5"), &Bound::Number(41.0)),
            Some(Ordering::Greater)
        );
        assert_eq!(compare(&json!(true), &Bound::Number(1.0)), None);
    }
}
