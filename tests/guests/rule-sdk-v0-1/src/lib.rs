//! Test guest: a segment rule written against the SDK's `SegmentRule` trait and
//! `export_segment_rule!`, as rules were before contract 0.2, and left unchanged: it still
//! builds, as a 0.1 component. With params `{"trait": "plan", "equals": "pro"}` the contacts
//! whose trait `plan` is `"pro"` are in.

use tessera_sdk::SegmentRule;
use tessera_sdk::json::Value;
use tessera_sdk::types::RuleInput;

/// The rule.
pub struct TraitEquals;

impl SegmentRule for TraitEquals {
    fn evaluate(params: &Value, batch: Vec<RuleInput>) -> Result<Vec<bool>, String> {
        let key = params
            .get("trait")
            .and_then(Value::as_str)
            .ok_or("parameters need `trait`, a trait name")?;
        let wanted = params
            .get("equals")
            .ok_or("parameters need `equals`, the value to match")?;
        Ok(batch
            .iter()
            .map(|input| input.contact.traits_value().get(key) == Some(wanted))
            .collect())
    }
}

tessera_sdk::export_segment_rule!(TraitEquals);
