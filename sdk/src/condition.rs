//! Conditions on the fields of a JSON object (a contact's traits, an event's properties),
//! parsed from rule parameters with errors that point at the bad spot, then tested per
//! contact or event.
//!
//! ```
//! use tessera_sdk::condition::Condition;
//! use tessera_sdk::json::json;
//!
//! let vip = Condition::parse(
//!     &json!({"all": [
//!         {"trait": "plan", "in": ["pro", "enterprise"]},
//!         {"trait": "signed_up", "before": "2024-01-01"},
//!         {"not": {"trait": "churned", "equals": true}}
//!     ]}),
//!     "trait",
//! )
//! .unwrap();
//! let traits = json!({"plan": "pro", "signed_up": "2023-06-01T09:00:00Z"});
//! assert!(vip.holds(traits.as_object().unwrap()));
//! assert_eq!(vip.names(), vec!["plan", "signed_up", "churned"]);
//! ```
//!
//! A leaf names its field under a key chosen by the caller (`trait`, `property`) and takes
//! exactly one test:
//!
//! | test | operand | holds when the field |
//! |---|---|---|
//! | `equals` | any JSON | equals it (numbers by value: `1` = `1.0`) |
//! | `not_equals` | any JSON | is missing, null, or differs |
//! | `exists` | `true`/`false` | is present and not null (or, with `false`, is not) |
//! | `gt`, `lt` | number or string | is greater / less (numbers, and strings that parse as numbers, by value; strings against a string bound as text) |
//! | `contains` | any JSON | is a string containing the text, or an array holding the value |
//! | `in` | array | equals one of its items |
//! | `before`, `after` | a date (`2024-03-01` or RFC 3339) | is a date string earlier / later |
//!
//! `all` (every one holds; true when empty), `any` (some holds; false when empty) and `not`
//! combine them. A dotted name (`address.city`) reaches into nested objects when no field
//! has that exact name.

use std::cmp::Ordering;

use serde_json::{Map, Value};

use crate::json;
use crate::time::parse_ms;

/// The tests a leaf may use.
pub const TESTS: [&str; 9] = [
    "equals",
    "not_equals",
    "exists",
    "gt",
    "lt",
    "contains",
    "in",
    "before",
    "after",
];

/// A parsed condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// Every one holds (true when empty).
    All(Vec<Condition>),
    /// Some one holds (false when empty).
    Any(Vec<Condition>),
    /// The inner one does not hold.
    Not(Box<Condition>),
    /// A test on one field.
    Field(FieldTest),
}

/// A test on one field of an object.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldTest {
    /// The field's name, or a dotted path into nested objects.
    pub name: String,
    /// What to check.
    pub test: Test,
}

/// What a [`FieldTest`] checks.
#[derive(Debug, Clone, PartialEq)]
pub enum Test {
    /// Equals the value.
    Equals(Value),
    /// Missing, null, or different from the value.
    NotEquals(Value),
    /// Present and not null (`true`), or missing or null (`false`).
    Exists(bool),
    /// Greater than the bound.
    Gt(Bound),
    /// Less than the bound.
    Lt(Bound),
    /// A string containing the text, or an array holding the value.
    Contains(Value),
    /// Equals one of the values.
    In(Vec<Value>),
    /// A date earlier than this one (Unix ms).
    Before(i64),
    /// A date later than this one (Unix ms).
    After(i64),
}

/// The right-hand side of `gt` and `lt`.
#[derive(Debug, Clone, PartialEq)]
pub enum Bound {
    /// Compared by value with numbers, and with strings that parse as numbers.
    Number(f64),
    /// Compared as text with strings (which orders RFC 3339 timestamps in one offset).
    Text(String),
}

impl Condition {
    /// Parses `value`, whose leaves name their field under `field` (`"trait"`,
    /// `"property"`); errors start with `params`.
    pub fn parse(value: &Value, field: &str) -> Result<Self, String> {
        Self::parse_at(value, field, "params")
    }

    /// [`Condition::parse`] with errors starting at `at` (`params.where`).
    pub fn parse_at(value: &Value, field: &str, at: &str) -> Result<Self, String> {
        let Value::Object(fields) = value else {
            return Err(format!(
                "{at}: must be an object, not {}",
                json::type_name(value)
            ));
        };
        if let Some(key) = ["all", "any"].into_iter().find(|k| fields.contains_key(*k)) {
            only(fields, key, at)?;
            let Value::Array(items) = &fields[key] else {
                return Err(format!("{at}.{key}: must be an array of conditions"));
            };
            let inner = items
                .iter()
                .enumerate()
                .map(|(i, item)| Self::parse_at(item, field, &format!("{at}.{key}[{i}]")))
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(if key == "all" {
                Self::All(inner)
            } else {
                Self::Any(inner)
            });
        }
        if fields.contains_key("not") {
            only(fields, "not", at)?;
            let inner = Self::parse_at(&fields["not"], field, &format!("{at}.not"))?;
            return Ok(Self::Not(Box::new(inner)));
        }
        if fields.contains_key(field) {
            return FieldTest::parse(fields, field, at).map(Self::Field);
        }
        Err(format!(
            "{at}: expected one of `all`, `any`, `not` or `{field}`, found {}",
            describe_keys(fields)
        ))
    }

    /// True when `object` satisfies the condition.
    pub fn holds(&self, object: &Map<String, Value>) -> bool {
        match self {
            Self::All(inner) => inner.iter().all(|c| c.holds(object)),
            Self::Any(inner) => inner.iter().any(|c| c.holds(object)),
            Self::Not(inner) => !inner.holds(object),
            Self::Field(test) => test.holds(object),
        }
    }

    /// The field names it reads, each once, in the order they appear.
    pub fn names(&self) -> Vec<&str> {
        let mut out = Vec::new();
        self.collect_names(&mut out);
        out
    }

    fn collect_names<'a>(&'a self, out: &mut Vec<&'a str>) {
        match self {
            Self::All(inner) | Self::Any(inner) => {
                inner.iter().for_each(|c| c.collect_names(out));
            }
            Self::Not(inner) => inner.collect_names(out),
            Self::Field(test) => {
                if !out.contains(&test.name.as_str()) {
                    out.push(&test.name);
                }
            }
        }
    }
}

impl FieldTest {
    /// Parses a leaf: `fields` holds `field` (the name) and exactly one test.
    pub fn parse(fields: &Map<String, Value>, field: &str, at: &str) -> Result<Self, String> {
        let name = match &fields[field] {
            Value::String(name) if !name.is_empty() => name.clone(),
            _ => return Err(format!("{at}.{field}: must be a non-empty string")),
        };
        if let Some(extra) = fields
            .keys()
            .find(|k| *k != field && !TESTS.contains(&k.as_str()))
        {
            return Err(format!(
                "{at}: unknown key `{extra}` in a {field} condition (expected one of {})",
                TESTS.join(", ")
            ));
        }
        let mut tests = fields.iter().filter(|(k, _)| *k != field);
        let (op, operand) = match (tests.next(), tests.next()) {
            (Some(test), None) => test,
            (None, _) => {
                return Err(format!(
                    "{at}: {field} `{name}` needs one of {}",
                    TESTS.join(", ")
                ));
            }
            (Some(_), Some(_)) => {
                return Err(format!("{at}: {field} `{name}` takes exactly one test"));
            }
        };
        let at_op = format!("{at}.{op}");
        let test = match op.as_str() {
            "equals" => Test::Equals(operand.clone()),
            "not_equals" => Test::NotEquals(operand.clone()),
            "contains" => Test::Contains(operand.clone()),
            "exists" => Test::Exists(
                operand
                    .as_bool()
                    .ok_or_else(|| format!("{at_op}: must be true or false"))?,
            ),
            "gt" => Test::Gt(bound(operand, &at_op)?),
            "lt" => Test::Lt(bound(operand, &at_op)?),
            "in" => match operand {
                Value::Array(items) => Test::In(items.clone()),
                other => {
                    return Err(format!(
                        "{at_op}: must be an array of values, not {}",
                        json::type_name(other)
                    ));
                }
            },
            _ => {
                let date = operand
                    .as_str()
                    .and_then(parse_ms)
                    .ok_or_else(|| format!("{at_op}: must be a date, `2024-03-01` or RFC 3339"))?;
                if op == "before" {
                    Test::Before(date)
                } else {
                    Test::After(date)
                }
            }
        };
        Ok(Self { name, test })
    }

    /// True when the field of `object` passes the test.
    pub fn holds(&self, object: &Map<String, Value>) -> bool {
        self.test.holds(lookup(object, &self.name))
    }
}

impl Test {
    /// True when `value` (the field, `None` when missing) passes.
    pub fn holds(&self, value: Option<&Value>) -> bool {
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
            Self::In(items) => value.is_some_and(|v| items.iter().any(|item| same(v, item))),
            Self::Before(date) => date_of(value).is_some_and(|d| d < *date),
            Self::After(date) => date_of(value).is_some_and(|d| d > *date),
        }
    }
}

/// The field `name` of `object`, or the nested value its dotted path leads to.
pub fn lookup<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    if let Some(value) = object.get(name) {
        return Some(value);
    }
    if !name.contains('.') {
        return None;
    }
    let mut parts = name.split('.');
    let mut value = object.get(parts.next()?)?;
    for part in parts {
        value = value.as_object()?.get(part)?;
    }
    Some(value)
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

fn date_of(value: Option<&Value>) -> Option<i64> {
    value?.as_str().and_then(parse_ms)
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

fn only(fields: &Map<String, Value>, key: &str, at: &str) -> Result<(), String> {
    match fields.keys().find(|k| k.as_str() != key) {
        Some(extra) => Err(format!("{at}: `{key}` cannot be combined with `{extra}`")),
        None => Ok(()),
    }
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
    use serde_json::json;

    fn holds(condition: Value, object: Value) -> bool {
        Condition::parse(&condition, "trait")
            .unwrap()
            .holds(object.as_object().unwrap())
    }

    fn error(condition: Value) -> String {
        Condition::parse(&condition, "trait").unwrap_err()
    }

    #[test]
    fn every_test_decides_both_ways() {
        let ada = json!({"age": 42, "tags": ["beta"], "name": "Ada Lovelace", "plan": "pro",
                         "since": "2021-03-01", "score": "7.5", "gone": null});
        let cases = [
            (json!({"trait": "plan", "equals": "pro"}), true),
            (json!({"trait": "plan", "equals": "free"}), false),
            (json!({"trait": "age", "equals": 42.0}), true),
            (json!({"trait": "plan", "not_equals": "free"}), true),
            (json!({"trait": "plan", "not_equals": "pro"}), false),
            (json!({"trait": "missing", "not_equals": "x"}), true),
            (json!({"trait": "plan", "exists": true}), true),
            (json!({"trait": "gone", "exists": true}), false),
            (json!({"trait": "gone", "exists": false}), true),
            (json!({"trait": "age", "gt": 18}), true),
            (json!({"trait": "age", "gt": 42}), false),
            (json!({"trait": "age", "lt": 43}), true),
            (json!({"trait": "score", "gt": 7}), true),
            (json!({"trait": "name", "lt": "B"}), true),
            (json!({"trait": "tags", "contains": "beta"}), true),
            (json!({"trait": "tags", "contains": "eu"}), false),
            (json!({"trait": "name", "contains": "Love"}), true),
            (json!({"trait": "plan", "in": ["pro", "enterprise"]}), true),
            (json!({"trait": "plan", "in": ["free"]}), false),
            (json!({"trait": "age", "in": [41, 42]}), true),
            (json!({"trait": "since", "before": "2022-01-01"}), true),
            (json!({"trait": "since", "before": "2021-03-01"}), false),
            (
                json!({"trait": "since", "after": "2021-02-28T23:59:59Z"}),
                true,
            ),
            (json!({"trait": "plan", "after": "2021-01-01"}), false),
            (json!({"trait": "missing", "before": "2100-01-01"}), false),
        ];
        for (condition, expected) in cases {
            assert_eq!(
                holds(condition.clone(), ada.clone()),
                expected,
                "{condition}"
            );
        }
    }

    #[test]
    fn combinators_nest() {
        let condition = json!({"any": [
            {"all": [{"trait": "plan", "equals": "pro"}, {"trait": "age", "gt": 40}]},
            {"not": {"trait": "email", "exists": true}}
        ]});
        assert!(holds(
            condition.clone(),
            json!({"plan": "pro", "age": 41, "email": "a@x"})
        ));
        assert!(!holds(
            condition.clone(),
            json!({"plan": "pro", "age": 39, "email": "a@x"})
        ));
        assert!(holds(condition, json!({"plan": "free"})));
        assert!(holds(json!({"all": []}), json!({})));
        assert!(!holds(json!({"any": []}), json!({})));
    }

    #[test]
    fn names_are_listed_once_in_order() {
        let condition = Condition::parse(
            &json!({"all": [{"trait": "b", "exists": true}, {"any": [
                {"trait": "a", "equals": 1}, {"not": {"trait": "b", "equals": 2}}]}]}),
            "trait",
        )
        .unwrap();
        assert_eq!(condition.names(), vec!["b", "a"]);
    }

    #[test]
    fn the_leaf_key_is_the_callers() {
        let condition =
            Condition::parse(&json!({"property": "total", "gt": 100}), "property").unwrap();
        assert!(condition.holds(json!({"total": 120.5}).as_object().unwrap()));
        assert!(!condition.holds(json!({"total": 99}).as_object().unwrap()));
        assert!(
            Condition::parse(&json!({"trait": "total", "gt": 1}), "property")
                .unwrap_err()
                .contains("expected one of `all`, `any`, `not` or `property`")
        );
    }

    #[test]
    fn dotted_names_reach_nested_fields() {
        let object = json!({"address": {"city": "Paris"}, "a.b": 1});
        let object = object.as_object().unwrap();
        assert_eq!(lookup(object, "address.city"), Some(&json!("Paris")));
        assert_eq!(lookup(object, "a.b"), Some(&json!(1)));
        assert_eq!(lookup(object, "address.zip"), None);
    }

    #[test]
    fn errors_point_at_the_bad_spot() {
        assert_eq!(
            error(
                json!({"all": [{"trait": "plan", "equals": "pro"}, {"trait": "plan", "is": "p"}]})
            ),
            "params.all[1]: unknown key `is` in a trait condition (expected one of equals, \
             not_equals, exists, gt, lt, contains, in, before, after)"
        );
        assert_eq!(
            error(json!({"trait": "plan", "equals": 1, "exists": true})),
            "params: trait `plan` takes exactly one test"
        );
        assert_eq!(
            error(json!({"trait": "plan", "in": "pro"})),
            "params.in: must be an array of values, not a string"
        );
        assert_eq!(
            error(json!({"trait": "since", "before": "last week"})),
            "params.before: must be a date, `2024-03-01` or RFC 3339"
        );
        assert_eq!(
            error(json!({"not": {"trait": ""}})),
            "params.not.trait: must be a non-empty string"
        );
        assert_eq!(
            error(json!({"all": [], "any": []})),
            "params: `all` cannot be combined with `any`"
        );
        assert_eq!(error(json!([1])), "params: must be an object, not an array");
        assert_eq!(
            error(json!({})),
            "params: expected one of `all`, `any`, `not` or `trait`, found an empty object"
        );
    }
}
