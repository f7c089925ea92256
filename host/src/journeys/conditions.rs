//! Conditions in journey definitions (triggers, `wait_until`, `branch`): what they test
//! (a trait, an event property, segment membership), how they are written, and how they
//! are judged.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::definition::{Invalid, allow_keys, id_field, invalid, join, string};

/// Most conditions in one list.
pub const MAX_CONDITIONS: usize = 50;

/// What a condition looks at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Subject {
    /// A contact trait (dots reach into objects: `address.city`).
    Trait(String),
    /// A property of the event at hand (the trigger, or the awaited event).
    Property(String),
    /// Membership of a segment now.
    InSegment(String),
    /// Not a member of a segment now.
    NotInSegment(String),
}

/// How a value is compared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// Equal (numbers by value: `1` equals `1.0`).
    Equals(Value),
    /// Not equal (also true when absent).
    NotEquals(Value),
    /// Present and not null (`true`), or absent or null (`false`).
    Exists(bool),
    /// A number greater than.
    Gt(f64),
    /// A number greater than or equal to.
    Gte(f64),
    /// A number less than.
    Lt(f64),
    /// A number less than or equal to.
    Lte(f64),
    /// A string containing a substring, or an array containing a value.
    Contains(Value),
    /// Equal to one of the values.
    In(Vec<Value>),
    /// Segment membership (no value compared).
    Member,
}

/// One condition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Condition {
    /// What it looks at.
    pub subject: Subject,
    /// How it compares.
    pub op: Op,
}

/// What conditions are judged against.
pub struct Facts<'a> {
    /// The contact's traits.
    pub traits: &'a Map<String, Value>,
    /// The event's properties (`Null` when there is none).
    pub properties: &'a Value,
    /// Whether the contact is in a segment now.
    pub in_segment: &'a dyn Fn(&str) -> bool,
}

/// The operator names a condition may use, as written in a definition.
pub const OPERATORS: [&str; 9] = [
    "equals",
    "not_equals",
    "exists",
    "gt",
    "gte",
    "lt",
    "lte",
    "contains",
    "in",
];

impl Condition {
    /// Whether the condition holds.
    pub fn holds(&self, facts: &Facts) -> bool {
        let value = match &self.subject {
            Subject::InSegment(id) => return (facts.in_segment)(id),
            Subject::NotInSegment(id) => return !(facts.in_segment)(id),
            Subject::Trait(path) => lookup_map(facts.traits, path),
            Subject::Property(path) => facts
                .properties
                .as_object()
                .and_then(|p| lookup_map(p, path)),
        };
        let value = value.filter(|v| !v.is_null());
        match &self.op {
            Op::Equals(want) => value.is_some_and(|v| same(v, want)),
            Op::NotEquals(want) => !value.is_some_and(|v| same(v, want)),
            Op::Exists(want) => value.is_some() == *want,
            Op::Gt(n) => number(value).is_some_and(|v| v > *n),
            Op::Gte(n) => number(value).is_some_and(|v| v >= *n),
            Op::Lt(n) => number(value).is_some_and(|v| v < *n),
            Op::Lte(n) => number(value).is_some_and(|v| v <= *n),
            Op::Contains(want) => match value {
                Some(Value::String(s)) => want.as_str().is_some_and(|w| s.contains(w)),
                Some(Value::Array(items)) => items.iter().any(|i| same(i, want)),
                _ => false,
            },
            Op::In(list) => value.is_some_and(|v| list.iter().any(|w| same(v, w))),
            Op::Member => false,
        }
    }
}

/// Whether every condition holds (`all`) or at least one does.
pub fn judge(conditions: &[Condition], all: bool, facts: &Facts) -> bool {
    if all {
        conditions.iter().all(|c| c.holds(facts))
    } else {
        conditions.iter().any(|c| c.holds(facts))
    }
}

fn lookup_map<'a>(map: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(v) = map.get(path) {
        return Some(v);
    }
    let mut parts = path.split('.');
    let mut current = map.get(parts.next()?)?;
    for part in parts {
        current = current.as_object()?.get(part)?;
    }
    Some(current)
}

/// A number, or a string that reads as one (clients send `"total": "120.50"`).
fn number(value: Option<&Value>) -> Option<f64> {
    match value? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// A list of conditions; `contact` allows conditions on traits and segments besides event
/// properties (where the contact is read).
pub(super) fn parse_conditions(
    value: Option<&Value>,
    path: &str,
    contact: bool,
) -> Result<Vec<Condition>, Invalid> {
    let items = match value {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(invalid(path, "must be a list of conditions")),
    };
    if items.len() > MAX_CONDITIONS {
        return Err(invalid(
            path,
            format!("at most {MAX_CONDITIONS} conditions"),
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, c)| parse_condition(c, &format!("{path}[{i}]"), contact))
        .collect()
}

fn parse_condition(value: &Value, path: &str, contact: bool) -> Result<Condition, Invalid> {
    let Some(obj) = value.as_object() else {
        return Err(invalid(path, "a condition is a JSON object"));
    };
    let subjects: Vec<&str> = ["trait", "property", "in_segment", "not_in_segment"]
        .into_iter()
        .filter(|k| obj.contains_key(*k))
        .collect();
    let [subject_key] = subjects[..] else {
        return Err(invalid(
            path,
            "give exactly one of `trait`, `property`, `in_segment`, `not_in_segment`",
        ));
    };
    let at = join(path, subject_key);
    if !contact && subject_key != "property" {
        return Err(invalid(&at, "only event properties can be tested here"));
    }
    let subject = match subject_key {
        "trait" => Subject::Trait(string(obj.get("trait"), &at)?),
        "property" => Subject::Property(string(obj.get("property"), &at)?),
        "in_segment" => Subject::InSegment(id_field(obj.get("in_segment"), &at, "segment")?),
        _ => Subject::NotInSegment(id_field(obj.get("not_in_segment"), &at, "segment")?),
    };
    if matches!(subject, Subject::InSegment(_) | Subject::NotInSegment(_)) {
        allow_keys(obj, path, &[subject_key])?;
        return Ok(Condition {
            subject,
            op: Op::Member,
        });
    }
    let ops: Vec<&str> = OPERATORS
        .into_iter()
        .filter(|k| obj.contains_key(*k))
        .collect();
    let [op_key] = ops[..] else {
        return Err(invalid(
            path,
            format!("give exactly one operator: {}", OPERATORS.join(", ")),
        ));
    };
    let mut allowed = vec![subject_key, op_key];
    allowed.sort();
    allow_keys(obj, path, &allowed)?;
    let raw = &obj[op_key];
    let at = join(path, op_key);
    let num = || raw.as_f64().ok_or_else(|| invalid(&at, "must be a number"));
    let op = match op_key {
        "equals" => Op::Equals(raw.clone()),
        "not_equals" => Op::NotEquals(raw.clone()),
        "exists" => Op::Exists(
            raw.as_bool()
                .ok_or_else(|| invalid(&at, "must be true or false"))?,
        ),
        "gt" => Op::Gt(num()?),
        "gte" => Op::Gte(num()?),
        "lt" => Op::Lt(num()?),
        "lte" => Op::Lte(num()?),
        "contains" => Op::Contains(raw.clone()),
        _ => Op::In(
            raw.as_array()
                .cloned()
                .ok_or_else(|| invalid(&at, "must be a list"))?,
        ),
    };
    Ok(Condition { subject, op })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(subject: Subject, op: Op, traits: Value, props: Value) -> bool {
        let traits = traits.as_object().cloned().unwrap_or_default();
        let member = |s: &str| s == "vip";
        Condition { subject, op }.holds(&Facts {
            traits: &traits,
            properties: &props,
            in_segment: &member,
        })
    }

    fn t(name: &str) -> Subject {
        Subject::Trait(name.into())
    }

    #[test]
    fn traits_and_properties_compare_by_value() {
        assert!(check(
            t("plan"),
            Op::Equals(json!("pro")),
            json!({"plan": "pro"}),
            json!(null)
        ));
        assert!(!check(
            t("plan"),
            Op::Equals(json!("pro")),
            json!({}),
            json!(null)
        ));
        assert!(check(
            t("n"),
            Op::Equals(json!(1)),
            json!({"n": 1.0}),
            json!(null)
        ));
        assert!(check(
            t("plan"),
            Op::NotEquals(json!("pro")),
            json!({}),
            json!(null)
        ));
        assert!(check(
            Subject::Property("total".into()),
            Op::Gt(100.0),
            json!({}),
            json!({"total": "120.5"})
        ));
        assert!(!check(
            Subject::Property("total".into()),
            Op::Gt(100.0),
            json!({}),
            json!({"total": 100})
        ));
        assert!(check(
            t("a.city"),
            Op::Equals(json!("Oslo")),
            json!({"a": {"city": "Oslo"}}),
            json!(null)
        ));
        assert!(check(
            t("tags"),
            Op::Contains(json!("x")),
            json!({"tags": ["x"]}),
            json!(null)
        ));
        assert!(check(
            t("email"),
            Op::Contains(json!("@ex")),
            json!({"email": "a@ex.com"}),
            json!(null)
        ));
        assert!(check(
            t("plan"),
            Op::In(vec![json!("a"), json!("pro")]),
            json!({"plan": "pro"}),
            json!(null)
        ));
        assert!(check(
            t("gone"),
            Op::Exists(false),
            json!({"gone": null}),
            json!(null)
        ));
        assert!(!check(
            t("lt"),
            Op::Lt(3.0),
            json!({"lt": "x"}),
            json!(null)
        ));
    }

    #[test]
    fn segment_conditions_ask_membership() {
        assert!(check(
            Subject::InSegment("vip".into()),
            Op::Member,
            json!({}),
            json!(null)
        ));
        assert!(!check(
            Subject::NotInSegment("vip".into()),
            Op::Member,
            json!({}),
            json!(null)
        ));
        assert!(check(
            Subject::NotInSegment("x".into()),
            Op::Member,
            json!({}),
            json!(null)
        ));
    }

    #[test]
    fn all_and_any_combine() {
        let traits = json!({"plan": "pro"}).as_object().cloned().unwrap();
        let never = |_: &str| false;
        let facts = Facts {
            traits: &traits,
            properties: &Value::Null,
            in_segment: &never,
        };
        let yes = Condition {
            subject: t("plan"),
            op: Op::Equals(json!("pro")),
        };
        let no = Condition {
            subject: t("plan"),
            op: Op::Equals(json!("free")),
        };
        assert!(!judge(&[yes.clone(), no.clone()], true, &facts));
        assert!(judge(&[yes, no], false, &facts));
        assert!(judge(&[], true, &facts));
    }
}
