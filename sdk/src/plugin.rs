//! The three plugin kinds as traits with defaults, and the glue that exports them.

use std::marker::PhantomData;

use serde_json::Value;

use crate::bindings;
use crate::types::{
    ConnectorError, Delivery, Event, HttpRequest, Message, PollPage, RuleInput, SendError,
};

/// A connector: vendor webhooks or pulled data in, canonical events out.
/// Export it with [`export_connector!`](crate::export_connector).
pub trait Connector {
    /// Verifies and maps one webhook request. An error stores nothing: `Unauthorized`
    /// answers 401, `BadRequest` 400, `Unsupported` 422. An empty list acknowledges a
    /// request that carries no event.
    fn handle_webhook(request: HttpRequest) -> Result<Vec<Event>, ConnectorError>;

    /// Pulls the page after `cursor` (`None` on the first poll). The default says this
    /// connector takes webhooks only.
    fn poll(cursor: Option<String>) -> Result<PollPage, ConnectorError> {
        let _ = cursor;
        Err(ConnectorError::Unsupported(
            "this connector takes webhooks only; it does not poll".to_string(),
        ))
    }

    /// Runs before a new version goes live, with the operator's config: an error keeps
    /// the old version live and is shown to the operator.
    fn self_test() -> Result<(), String> {
        Ok(())
    }
}

/// A segment rule: decides, for a batch of contacts, who belongs to a segment.
/// Export it with [`export_segment_rule!`](crate::export_segment_rule).
pub trait SegmentRule {
    /// One decision per input, in order (`true`: in the segment). `params` is the segment's
    /// rule parameters (a JSON object; one rule plugin serves many segments). An error
    /// fails the whole batch.
    fn evaluate(params: &Value, batch: Vec<RuleInput>) -> Result<Vec<bool>, String>;

    /// Runs before a new version goes live; see [`Connector::self_test`].
    fn self_test() -> Result<(), String> {
        Ok(())
    }
}

/// A channel adapter: delivers messages through one provider.
/// Export it with [`export_channel!`](crate::export_channel).
pub trait Channel {
    /// Sends one message. `message.id` is the idempotency key: sending the same id twice
    /// must not deliver twice where the provider allows it.
    fn send(message: Message) -> Result<Delivery, SendError>;

    /// Runs before a new version goes live; see [`Connector::self_test`].
    fn self_test() -> Result<(), String> {
        Ok(())
    }
}

/// Parses the rule parameters and checks the rule answers once per input.
pub(crate) fn evaluate_rule<T: SegmentRule>(
    params: &str,
    batch: Vec<RuleInput>,
) -> Result<Vec<bool>, String> {
    let params: Value = match params.trim() {
        "" => Value::Object(Default::default()),
        text => serde_json::from_str(text)
            .map_err(|e| format!("rule parameters are not valid JSON: {e}"))?,
    };
    let inputs = batch.len();
    let decisions = T::evaluate(&params, batch)?;
    if decisions.len() != inputs {
        return Err(format!(
            "the rule returned {} decisions for {inputs} inputs",
            decisions.len()
        ));
    }
    Ok(decisions)
}

/// Exports a [`Connector`] through the generated bindings.
#[doc(hidden)]
pub struct ConnectorExport<T>(PhantomData<T>);

impl<T: Connector> bindings::connector::exports::tessera::cx::source::Guest for ConnectorExport<T> {
    fn handle_webhook(request: HttpRequest) -> Result<Vec<Event>, ConnectorError> {
        T::handle_webhook(request)
    }

    fn poll(cursor: Option<String>) -> Result<PollPage, ConnectorError> {
        T::poll(cursor)
    }
}

impl<T: Connector> bindings::self_test::exports::tessera::cx::self_test::Guest
    for ConnectorExport<T>
{
    fn self_test() -> Result<(), String> {
        T::self_test()
    }
}

/// Exports a [`SegmentRule`] through the generated bindings.
#[doc(hidden)]
pub struct SegmentRuleExport<T>(PhantomData<T>);

impl<T: SegmentRule> bindings::segment_rule::exports::tessera::cx::rule::Guest
    for SegmentRuleExport<T>
{
    fn evaluate(params: String, batch: Vec<RuleInput>) -> Result<Vec<bool>, String> {
        evaluate_rule::<T>(&params, batch)
    }
}

impl<T: SegmentRule> bindings::self_test::exports::tessera::cx::self_test::Guest
    for SegmentRuleExport<T>
{
    fn self_test() -> Result<(), String> {
        T::self_test()
    }
}

/// Exports a [`Channel`] through the generated bindings.
#[doc(hidden)]
pub struct ChannelExport<T>(PhantomData<T>);

impl<T: Channel> bindings::channel::exports::tessera::cx::sender::Guest for ChannelExport<T> {
    fn send(message: Message) -> Result<Delivery, SendError> {
        T::send(message)
    }
}

impl<T: Channel> bindings::self_test::exports::tessera::cx::self_test::Guest for ChannelExport<T> {
    fn self_test() -> Result<(), String> {
        T::self_test()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Contact, ContactRef};

    struct Everyone;

    impl SegmentRule for Everyone {
        fn evaluate(params: &Value, batch: Vec<RuleInput>) -> Result<Vec<bool>, String> {
            if params.get("broken").is_some() {
                return Ok(Vec::new());
            }
            Ok(batch.iter().map(|_| true).collect())
        }
    }

    struct Hooks;

    impl Connector for Hooks {
        fn handle_webhook(request: HttpRequest) -> Result<Vec<Event>, ConnectorError> {
            let id = request.body_text().unwrap_or("none").to_string();
            Ok(vec![Event::track(id, "hook", ContactRef::user("u1"))])
        }
    }

    #[test]
    fn rule_params_must_be_json() {
        let error = evaluate_rule::<Everyone>("{", vec![]).unwrap_err();
        assert!(
            error.starts_with("rule parameters are not valid JSON"),
            "{error}"
        );
    }

    #[test]
    fn rule_must_answer_once_per_input() {
        let batch = vec![RuleInput::new(Contact::new("c1"))];
        assert_eq!(
            evaluate_rule::<Everyone>("{}", batch.clone()),
            Ok(vec![true])
        );
        let error = evaluate_rule::<Everyone>(r#"{"broken":1}"#, batch).unwrap_err();
        assert_eq!(error, "the rule returned 0 decisions for 1 inputs");
    }

    #[test]
    fn connector_defaults_refuse_polls_and_pass_self_test() {
        assert!(matches!(
            Hooks::poll(None),
            Err(ConnectorError::Unsupported(_))
        ));
        assert_eq!(Hooks::self_test(), Ok(()));
        let events = Hooks::handle_webhook(HttpRequest::post("/", "abc")).unwrap();
        assert_eq!(events[0].id, "abc");
    }
}
