//! A segment rule over contact traits and event counts, combined with `all`, `any` and `not`.
//!
//! The parameters are compiled once per batch (see [`rule`]); each contact's traits are
//! parsed only when the rule reads traits at all, so count-only rules stay cheap.

pub mod rule;

use tessera_sdk::SegmentRule;
use tessera_sdk::json::{Map, Value};
use tessera_sdk::types::RuleInput;

use rule::Rule;

/// The trait rule.
pub struct TraitRule;

impl SegmentRule for TraitRule {
    fn evaluate(params: &Value, batch: Vec<RuleInput>) -> Result<Vec<bool>, String> {
        let rule = Rule::parse(params)?;
        let reads_traits = rule.reads_traits();
        let none = Map::new();
        Ok(batch
            .iter()
            .map(|input| {
                if !reads_traits {
                    return rule.holds(input, &none);
                }
                // Traits that are not a JSON object count as no traits at all.
                match parse_traits(&input.contact.traits) {
                    Some(traits) => rule.holds(input, &traits),
                    None => rule.holds(input, &none),
                }
            })
            .collect())
    }
}

tessera_sdk::export_segment_rule!(TraitRule);

fn parse_traits(text: &str) -> Option<Map<String, Value>> {
    match tessera_sdk::serde_json::from_str(text) {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_sdk::json::json;
    use tessera_sdk::types::Contact;

    fn contact(id: &str, traits: Value) -> RuleInput {
        RuleInput::new(Contact::new(id).with_traits(traits))
    }

    fn decide(params: Value, batch: Vec<RuleInput>) -> Vec<bool> {
        TraitRule::evaluate(&params, batch).unwrap()
    }

    #[test]
    fn all_of_trait_and_event_count() {
        let params = json!({"all": [
            {"trait": "plan", "equals": "pro"},
            {"event": "Order Completed", "at_least": 3}
        ]});
        let batch = vec![
            contact("pro-buyer", json!({"plan": "pro"})).with_count("Order Completed", 3),
            contact("pro-browser", json!({"plan": "pro"})).with_count("Order Completed", 2),
            contact("free-buyer", json!({"plan": "free"})).with_count("Order Completed", 9),
            contact("no-traits", Value::Null).with_count("Order Completed", 5),
        ];
        assert_eq!(decide(params, batch), vec![true, false, false, false]);
    }

    #[test]
    fn any_and_not() {
        let params = json!({"any": [
            {"trait": "vip", "equals": true},
            {"not": {"trait": "email", "exists": true}}
        ]});
        let batch = vec![
            contact("vip", json!({"vip": true, "email": "a@x.test"})),
            contact("no-email", json!({"vip": false})),
            contact("plain", json!({"email": "b@x.test"})),
        ];
        assert_eq!(decide(params, batch), vec![true, true, false]);
    }

    #[test]
    fn trait_tests() {
        let batch = || {
            vec![
                contact(
                    "a",
                    json!({"age": 42, "tags": ["beta", "eu"], "name": "Ada Lovelace", "since": "2021-03-01"}),
                ),
                contact(
                    "b",
                    json!({"age": "17", "tags": [], "name": "Bob", "since": null}),
                ),
            ]
        };
        let check = |condition: Value| decide(condition, batch());
        assert_eq!(check(json!({"trait": "age", "gt": 18})), vec![true, false]);
        assert_eq!(check(json!({"trait": "age", "lt": 18})), vec![false, true]);
        assert_eq!(
            check(json!({"trait": "age", "equals": 42.0})),
            vec![true, false]
        );
        assert_eq!(
            check(json!({"trait": "name", "not_equals": "Bob"})),
            vec![true, false]
        );
        assert_eq!(
            check(json!({"trait": "missing", "not_equals": "x"})),
            vec![true, true]
        );
        assert_eq!(
            check(json!({"trait": "tags", "contains": "beta"})),
            vec![true, false]
        );
        assert_eq!(
            check(json!({"trait": "name", "contains": "Love"})),
            vec![true, false]
        );
        assert_eq!(
            check(json!({"trait": "since", "exists": true})),
            vec![true, false]
        );
        assert_eq!(
            check(json!({"trait": "since", "exists": false})),
            vec![false, true]
        );
        assert_eq!(
            check(json!({"trait": "since", "gt": "2020-12-31"})),
            vec![true, false]
        );
    }

    #[test]
    fn event_bounds() {
        let params = json!({"event": "Login", "at_least": 1, "at_most": 2});
        let batch = vec![
            contact("zero", json!({})),
            contact("one", json!({})).with_count("Login", 1),
            contact("three", json!({})).with_count("Login", 3),
        ];
        assert_eq!(decide(params, batch), vec![false, true, false]);
    }

    #[test]
    fn empty_combinators() {
        let batch = vec![contact("c", json!({}))];
        assert_eq!(decide(json!({"all": []}), batch.clone()), vec![true]);
        assert_eq!(decide(json!({"any": []}), batch), vec![false]);
    }

    #[test]
    fn bad_params_fail_the_batch() {
        let error =
            TraitRule::evaluate(&json!({"trait": "plan", "is": "pro"}), vec![]).unwrap_err();
        assert!(error.contains("unknown key `is`"), "{error}");
    }

    #[test]
    fn a_thousand_contacts_decide_in_order() {
        let batch: Vec<RuleInput> = (0..1000)
            .map(|i| {
                let plan = if i % 2 == 0 { "pro" } else { "free" };
                contact(&format!("c{i}"), json!({"plan": plan}))
                    .with_count("Order Completed", i % 5)
            })
            .collect();
        let params = json!({"all": [
            {"trait": "plan", "equals": "pro"},
            {"event": "Order Completed", "at_least": 3}
        ]});
        let decisions = decide(params, batch);
        assert_eq!(decisions.len(), 1000);
        let expected: Vec<bool> = (0..1000).map(|i| i % 2 == 0 && i % 5 >= 3).collect();
        assert_eq!(decisions, expected);
    }
}
