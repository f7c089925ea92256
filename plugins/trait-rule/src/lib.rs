//! A segment rule over contact traits and lifetime event counts, combined with `all`, `any`
//! and `not` (contract 0.2).
//!
//! The parameters are compiled once per batch (see [`rule`]); each contact's traits are
//! parsed only when the rule reads traits at all, so count-only rules stay cheap. `describe`
//! names the traits and events the parameters test, so the host wakes the rule only when one
//! of them changes.

pub mod rule;

use tessera_sdk::Rule as RulePlugin;
use tessera_sdk::json::{Map, Value};
use tessera_sdk::types::{Decision, RuleInput, RuleNeeds};

use rule::Rule;

/// The trait rule.
pub struct TraitRule;

impl RulePlugin for TraitRule {
    fn describe(params: &Value) -> Result<RuleNeeds, String> {
        Ok(Rule::parse(params)?.needs())
    }

    fn evaluate(params: &Value, batch: Vec<RuleInput>) -> Result<Vec<Decision>, String> {
        let rule = Rule::parse(params)?;
        let reads_traits = rule.reads_traits();
        let none = Map::new();
        Ok(batch
            .iter()
            .map(|input| {
                let member = if !reads_traits {
                    rule.holds(input, &none)
                } else {
                    // Traits that are not a JSON object count as no traits at all.
                    match parse_traits(&input.contact.traits) {
                        Some(traits) => rule.holds(input, &traits),
                        None => rule.holds(input, &none),
                    }
                };
                Decision::member(member)
            })
            .collect())
    }
}

tessera_sdk::export_rule!(TraitRule);

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
    use tessera_sdk::testing;
    use tessera_sdk::types::Contact;

    fn contact(id: &str, traits: Value) -> RuleInput {
        RuleInput::new(Contact::new(id).with_traits(traits))
    }

    /// Members, through the SDK's harness (describe, then evaluate, as the host calls).
    fn decide(params: Value, batch: Vec<RuleInput>) -> Vec<bool> {
        testing::evaluate::<TraitRule>(params, batch)
            .unwrap()
            .iter()
            .map(|d| d.member)
            .collect()
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
    fn bad_params_are_refused_by_describe() {
        let error =
            testing::describe::<TraitRule>(json!({"trait": "plan", "is": "pro"})).unwrap_err();
        assert!(error.contains("unknown key `is`"), "{error}");
    }

    #[test]
    fn in_lists_and_dates() {
        let batch = || {
            vec![
                contact(
                    "a",
                    json!({"plan": "team", "signed_up": "2023-05-01T10:00:00Z"}),
                ),
                contact("b", json!({"plan": "free", "signed_up": "2024-02-01"})),
                contact("c", json!({"plan": "pro"})),
            ]
        };
        assert_eq!(
            decide(json!({"trait": "plan", "in": ["team", "pro"]}), batch()),
            vec![true, false, true]
        );
        assert_eq!(
            decide(
                json!({"trait": "signed_up", "before": "2024-01-01"}),
                batch()
            ),
            vec![true, false, false]
        );
        assert_eq!(
            decide(
                json!({"trait": "signed_up", "after": "2024-01-01"}),
                batch()
            ),
            vec![false, true, false]
        );
    }

    #[test]
    fn describe_names_what_the_params_read() {
        let needs = testing::describe::<TraitRule>(json!({"all": [
            {"trait": "plan", "equals": "pro"},
            {"event": "Order Completed", "at_least": 3}
        ]}))
        .unwrap();
        assert_eq!(needs.traits, vec!["plan".to_string()]);
        assert_eq!(needs.events, vec!["Order Completed".to_string()]);
        assert_eq!(needs.window_ms, None);
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
