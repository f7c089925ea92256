//! The plugin kinds as traits with defaults, and the glue that exports them: [`Connector`],
//! [`Rule`] (a segment rule, contract 0.2), [`Channel`], and [`SegmentRule`], the 0.1
//! segment rule that existing rules keep building against.

use std::marker::PhantomData;

use serde_json::Value;

use crate::bindings;
use crate::types::{
    ConnectorError, Decision, Delivery, Event, HttpRequest, Message, PollPage, RuleInput,
    RuleNeeds, SendError, StatusUpdate,
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

/// A segment rule: says what a segment's parameters make it read, and decides, for a batch
/// of contacts, who belongs. Export it with [`export_rule!`](crate::export_rule); the
/// component implements contract 0.2 (`contract = "0.2"` in its plugin.toml).
///
/// ```
/// use tessera_sdk::json::Value;
/// use tessera_sdk::types::{Decision, RuleInput, RuleNeeds};
/// use tessera_sdk::Rule;
///
/// /// Contacts who logged in at least once in the last day.
/// struct RecentLogin;
///
/// impl Rule for RecentLogin {
///     fn describe(_params: &Value) -> Result<RuleNeeds, String> {
///         Ok(RuleNeeds::new().with_event("Login").with_window_ms(86_400_000))
///     }
///
///     fn evaluate(_params: &Value, batch: Vec<RuleInput>) -> Result<Vec<Decision>, String> {
///         Ok(batch
///             .iter()
///             .map(|input| match input.events.last() {
///                 // In until the newest login is a day old.
///                 Some(login) => Decision::member(true).recheck_at(login.timestamp_ms + 86_400_000),
///                 None => Decision::member(false),
///             })
///             .collect())
///     }
/// }
///
/// tessera_sdk::export_rule!(RecentLogin);
/// ```
pub trait Rule {
    /// Checks `params` (a JSON object) and says what the rule reads: the event names and
    /// trait names whose change may change membership, and how far back (by event time) it
    /// looks at events. The host then wakes the rule only for those changes and hands it the
    /// contact's events of those names in the window. An error refuses the segment's
    /// definition; its text is what the operator sees.
    fn describe(params: &Value) -> Result<RuleNeeds, String>;

    /// One decision per input, in order. An error fails the whole batch. A decision's
    /// `recheck_at_ms` asks the host to evaluate the contact again then (when the oldest
    /// event that counts leaves the window, say), with no new event needed; its `keep`
    /// ([`Decision::keep`]) names the past events the rule needs again, so the host hands
    /// it those and the newer ones instead of the whole window each time.
    fn evaluate(params: &Value, batch: Vec<RuleInput>) -> Result<Vec<Decision>, String>;

    /// Runs before a new version goes live; see [`Connector::self_test`].
    fn self_test() -> Result<(), String> {
        Ok(())
    }
}

/// A segment rule of contract 0.1: decides membership with a bool per contact, and cannot
/// say what it reads (the host wakes it for every change and hands it no past events).
/// Export it with [`export_segment_rule!`](crate::export_segment_rule); the component
/// implements contract 0.1 (`contract = "0.1"` in its plugin.toml). New rules implement
/// [`Rule`].
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

    /// Verifies and reads one status callback from the provider (a webhook it sends about
    /// messages it took). An error refuses the request; an empty list acknowledges one that
    /// reports nothing. The default says this channel takes none.
    fn status(request: HttpRequest) -> Result<Vec<StatusUpdate>, String> {
        let _ = request;
        Err(NO_STATUS_CALLBACKS.to_string())
    }

    /// Runs before a new version goes live; see [`Connector::self_test`].
    fn self_test() -> Result<(), String> {
        Ok(())
    }
}

/// What [`Channel::status`] answers by default.
pub const NO_STATUS_CALLBACKS: &str = "this channel takes no status callbacks";

/// The rule parameters as JSON (empty text: `{}`).
fn rule_params(params: &str) -> Result<Value, String> {
    match params.trim() {
        "" => Ok(Value::Object(Default::default())),
        text => serde_json::from_str(text)
            .map_err(|e| format!("rule parameters are not valid JSON: {e}")),
    }
}

/// Parses the rule parameters and asks the rule what it reads.
pub(crate) fn describe_rule<T: Rule>(params: &str) -> Result<RuleNeeds, String> {
    T::describe(&rule_params(params)?)
}

/// Parses the rule parameters and checks the rule answers once per input.
pub(crate) fn decide_rule<T: Rule>(
    params: &str,
    batch: Vec<RuleInput>,
) -> Result<Vec<Decision>, String> {
    let params = rule_params(params)?;
    let inputs = batch.len();
    one_per_input(T::evaluate(&params, batch)?, inputs)
}

/// Parses the rule parameters and checks the rule answers once per input (contract 0.1).
pub(crate) fn evaluate_rule<T: SegmentRule>(
    params: &str,
    batch: Vec<RuleInput>,
) -> Result<Vec<bool>, String> {
    let params = rule_params(params)?;
    let inputs = batch.len();
    one_per_input(T::evaluate(&params, batch)?, inputs)
}

/// `decisions`, when the rule gave one per input; otherwise why not.
fn one_per_input<D>(decisions: Vec<D>, inputs: usize) -> Result<Vec<D>, String> {
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

/// Exports a [`Rule`] through the generated bindings (contract 0.2).
#[doc(hidden)]
pub struct RuleExport<T>(PhantomData<T>);

impl<T: Rule> bindings::segment_rule::exports::tessera::cx::rule::Guest for RuleExport<T> {
    fn describe(params: String) -> Result<RuleNeeds, String> {
        describe_rule::<T>(&params)
    }

    fn evaluate(params: String, batch: Vec<RuleInput>) -> Result<Vec<Decision>, String> {
        decide_rule::<T>(&params, batch)
    }
}

impl<T: Rule> bindings::self_test::exports::tessera::cx::self_test::Guest for RuleExport<T> {
    fn self_test() -> Result<(), String> {
        T::self_test()
    }
}

/// Exports a [`SegmentRule`] through contract 0.1's generated bindings.
#[doc(hidden)]
pub struct SegmentRuleExport<T>(PhantomData<T>);

impl<T: SegmentRule> bindings::rule_v0_1::exports::tessera::cx::rule::Guest
    for SegmentRuleExport<T>
{
    fn evaluate(
        params: String,
        batch: Vec<bindings::rule_v0_1::tessera::cx::types::RuleInput>,
    ) -> Result<Vec<bool>, String> {
        evaluate_rule::<T>(&params, batch.into_iter().map(Into::into).collect())
    }
}

impl<T: SegmentRule> bindings::self_test_v0_1::exports::tessera::cx::self_test::Guest
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

impl<T: Channel> bindings::channel::exports::tessera::cx::status::Guest for ChannelExport<T> {
    fn handle(request: HttpRequest) -> Result<Vec<StatusUpdate>, String> {
        T::status(request)
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

    struct Windowed;

    impl Rule for Windowed {
        fn describe(params: &Value) -> Result<RuleNeeds, String> {
            let event = params["event"].as_str().ok_or("`event` is required")?;
            Ok(RuleNeeds::new().with_event(event).with_window_ms(1_000))
        }

        fn evaluate(params: &Value, batch: Vec<RuleInput>) -> Result<Vec<Decision>, String> {
            if params.get("broken").is_some() {
                return Ok(Vec::new());
            }
            Ok(batch
                .iter()
                .map(|i| Decision::member(!i.events.is_empty()))
                .collect())
        }
    }

    #[test]
    fn describe_reads_params_as_json() {
        let needs = describe_rule::<Windowed>(r#"{"event":"Login"}"#).unwrap();
        assert_eq!(needs.events, vec!["Login".to_string()]);
        assert_eq!(
            describe_rule::<Windowed>("{}").unwrap_err(),
            "`event` is required"
        );
        assert!(describe_rule::<Windowed>("[").is_err());
    }

    #[test]
    fn a_0_2_rule_must_answer_once_per_input() {
        let batch = vec![RuleInput::new(Contact::new("c1"))];
        assert_eq!(
            decide_rule::<Windowed>("{}", batch.clone()),
            Ok(vec![Decision::member(false)])
        );
        let error = decide_rule::<Windowed>(r#"{"broken":1}"#, batch).unwrap_err();
        assert_eq!(error, "the rule returned 0 decisions for 1 inputs");
    }

    struct Quiet;

    impl Channel for Quiet {
        fn send(_message: Message) -> Result<Delivery, SendError> {
            Ok(Delivery::accepted())
        }
    }

    #[test]
    fn a_channel_takes_no_status_callbacks_by_default() {
        assert_eq!(
            Quiet::status(HttpRequest::post("/", "{}")),
            Err("this channel takes no status callbacks".to_string())
        );
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
