//! Test guest: a segment rule bound to the published `wit/v0.1.0` directly (no SDK), the way
//! a plugin built before contract 0.2 existed is. With params `{"trait": "plan", "equals":
//! "pro"}` the contacts whose trait `plan` is `"pro"` are in. It has no `describe`, answers
//! bools, and must keep running on a host whose newest contract is 0.2.

wit_bindgen::generate!({
    path: "../../../wit/v0.1.0",
    world: "tessera:cx/segment-rule@0.1.0",
});

use exports::tessera::cx::rule::Guest as RuleGuest;
use exports::tessera::cx::self_test::Guest as SelfTestGuest;
use serde_json::Value;
use tessera::cx::types::RuleInput;

/// The rule.
struct TraitEquals;

impl RuleGuest for TraitEquals {
    fn evaluate(params: String, batch: Vec<RuleInput>) -> Result<Vec<bool>, String> {
        let params: Value =
            serde_json::from_str(&params).map_err(|e| format!("params are not JSON: {e}"))?;
        let name = params
            .get("trait")
            .and_then(Value::as_str)
            .ok_or("params need `trait`, a trait name")?;
        let wanted = params
            .get("equals")
            .ok_or("params need `equals`, the value to match")?;
        Ok(batch
            .iter()
            .map(|input| {
                serde_json::from_str::<Value>(&input.contact.traits)
                    .ok()
                    .and_then(|traits| traits.get(name).cloned())
                    .as_ref()
                    == Some(wanted)
            })
            .collect())
    }
}

impl SelfTestGuest for TraitEquals {
    fn self_test() -> Result<(), String> {
        Ok(())
    }
}

export!(TraitEquals);
