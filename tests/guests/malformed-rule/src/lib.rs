//! Test guest: a segment rule that answers the wrong number of decisions.
//!
//! With params `{"extra": N}` it answers N more decisions than the batch has inputs, with
//! `{"missing": N}` N fewer (none when N is larger), otherwise one per input (all `true`).
//! The SDK's export checks the count itself, so this guest exports through the generated
//! bindings directly, as a guest written without the SDK would.

use tessera_sdk::bindings;
use tessera_sdk::json::Value;
use tessera_sdk::types::{Decision, RuleInput, RuleNeeds};

/// The miscounting rule.
pub struct Miscounting;

fn number(params: &Value, key: &str) -> usize {
    params.get(key).and_then(Value::as_u64).unwrap_or(0) as usize
}

impl bindings::segment_rule::exports::tessera::cx::rule::Guest for Miscounting {
    fn describe(_params: String) -> Result<RuleNeeds, String> {
        Ok(RuleNeeds::everything())
    }

    fn evaluate(params: String, batch: Vec<RuleInput>) -> Result<Vec<Decision>, String> {
        let params: Value = match params.trim() {
            "" => Value::Null,
            text => tessera_sdk::serde_json::from_str(text).map_err(|e| format!("params: {e}"))?,
        };
        let answers =
            (batch.len() + number(&params, "extra")).saturating_sub(number(&params, "missing"));
        Ok(vec![Decision::member(true); answers])
    }
}

impl bindings::self_test::exports::tessera::cx::self_test::Guest for Miscounting {
    fn self_test() -> Result<(), String> {
        Ok(())
    }
}

#[cfg(target_arch = "wasm32")]
const _: () = {
    tessera_sdk::bindings::segment_rule::export_segment_rule_kind!(
        Miscounting with_types_in tessera_sdk::bindings::segment_rule
    );
    tessera_sdk::bindings::self_test::export_self_test_kind!(
        Miscounting with_types_in tessera_sdk::bindings::self_test
    );
};
