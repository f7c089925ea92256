//! A native stand-in for the host, so plugin logic runs under plain `cargo test`.
//!
//! Outside a component, [`config`](crate::config), [`kv`](crate::kv), [`log`](crate::log)
//! and [`http`](crate::http) talk to a per-thread [`Harness`] instead of the host. Every
//! test runs on its own thread, so tests never see each other's state.
//!
//! Segment rules ([`Rule`]) run through [`describe`], [`evaluate`] and [`decide`], which
//! call them as the host does: params as JSON text, and each input's past events cut to
//! what the rule's `describe` asked for (its event names, event time in
//! `(now - window, now]`, the newest [`MAX_PAST_EVENTS`]), so a test feeds a contact's whole
//! history and sees what the rule would decide in the host.
//!
//! ```
//! use tessera_sdk::http::{Request, Response};
//! use tessera_sdk::testing::Harness;
//!
//! let harness = Harness::new();
//! harness.set_config("secret", "s3cret");
//! harness.respond(Response::new(200).with_body("ok"));
//!
//! assert_eq!(tessera_sdk::config::get("secret").as_deref(), Some("s3cret"));
//! let response = Request::get("https://api.example.com/").send().unwrap();
//! assert_eq!(response.text(), "ok");
//! assert_eq!(harness.sent_requests()[0].url(), "https://api.example.com/");
//! ```

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::marker::PhantomData;

use serde_json::{Map, Value};

use crate::Rule;
use crate::http::{HttpError, Request, Response, Url};
use crate::types::{ConnectorError, Decision, KvError, Level, RuleInput, RuleNeeds};

/// Past events the host hands a rule per contact: the newest by event time in its window.
pub const MAX_PAST_EVENTS: usize = 10_000;

/// What rule `R` says a segment with `params` reads, as the host asks it when the segment
/// is defined; an error is the rule refusing the params.
pub fn describe<R: Rule>(params: Value) -> Result<RuleNeeds, String> {
    crate::plugin::describe_rule::<R>(&params.to_string())
}

/// Rule `R`'s decisions for `batch`, as the host would get them: the rule describes
/// `params` first, each input keeps only the past events that description asks for, and
/// the answer must hold one decision per input.
pub fn evaluate<R: Rule>(params: Value, batch: Vec<RuleInput>) -> Result<Vec<Decision>, String> {
    let text = params.to_string();
    let needs = crate::plugin::describe_rule::<R>(&text)?;
    let batch = batch
        .into_iter()
        .map(|input| as_host_sends(input, &needs))
        .collect();
    crate::plugin::decide_rule::<R>(&text, batch)
}

/// Rule `R`'s decision about one contact; panics, with the rule's reason, when the rule
/// refuses `params`.
pub fn decide<R: Rule>(params: Value, input: RuleInput) -> Decision {
    match evaluate::<R>(params, vec![input]) {
        Ok(mut decisions) => decisions.remove(0),
        Err(why) => panic!("the rule refused: {why}"),
    }
}

/// Rule `R`'s decision about one contact and the past events it keeps
/// ([`Decision::keep`](crate::types::Decision::keep)): what the host hands it again next
/// time, beside the events that arrive after. None when the rule keeps no list (the host
/// then hands the whole window every time).
pub fn decide_and_keep<R: Rule>(
    params: Value,
    input: RuleInput,
) -> (Decision, Option<Vec<crate::types::PastEvent>>) {
    let needs = match describe::<R>(params.clone()) {
        Ok(needs) => needs,
        Err(why) => panic!("the rule refused: {why}"),
    };
    let sent = as_host_sends(input.clone(), &needs);
    let decision = decide::<R>(params, input);
    let kept = decision.keep.as_ref().map(|keep| {
        keep.iter()
            .map(|&i| {
                sent.events
                    .get(i as usize)
                    .unwrap_or_else(|| panic!("kept index {i} is not an input event"))
                    .clone()
            })
            .collect()
    });
    (decision, kept)
}

/// `input` with only the past events the host would hand a rule that has `needs`.
fn as_host_sends(mut input: RuleInput, needs: &RuleNeeds) -> RuleInput {
    let Some(window) = needs.window_ms else {
        input.events.clear();
        return input;
    };
    let since = input
        .now_ms
        .saturating_sub(i64::try_from(window).unwrap_or(i64::MAX));
    let any = needs.events.iter().any(|n| n == "*");
    let now = input.now_ms;
    input.events.retain(|e| {
        e.timestamp_ms > since
            && e.timestamp_ms <= now
            && (any || e.name.as_ref().is_some_and(|n| needs.events.contains(n)))
    });
    input.events.sort_by_key(|e| e.timestamp_ms);
    let extra = input.events.len().saturating_sub(MAX_PAST_EVENTS);
    input.events.drain(..extra);
    input
}

/// One record a plugin logged.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRecord {
    /// Its severity.
    pub level: Level,
    /// The message.
    pub message: String,
    /// The key/value fields.
    pub fields: Vec<(String, String)>,
}

impl LogRecord {
    /// The value of field `key`, if the record has it.
    pub fn field(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct State {
    config: Map<String, Value>,
    kv: BTreeMap<String, Vec<u8>>,
    kv_read_only: bool,
    logs: Vec<LogRecord>,
    http_script: VecDeque<Result<Response, HttpError>>,
    http_sent: Vec<Request>,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
}

fn with<R>(f: impl FnOnce(&mut State) -> R) -> R {
    STATE.with(|state| f(&mut state.borrow_mut()))
}

/// The host as a test sees it: config to set, kv and logs to inspect, HTTP answers to script.
///
/// Creating one resets this thread's state; dropping it leaves the state in place.
pub struct Harness {
    // State is per thread; a handle must not wander to another one.
    _thread_bound: PhantomData<*const ()>,
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}

impl Harness {
    /// A fresh host for this thread: no config, empty kv, no logs, nothing scripted.
    pub fn new() -> Self {
        with(|state| *state = State::default());
        Self {
            _thread_bound: PhantomData,
        }
    }

    /// A fresh host whose config key `secret` is `secret`, as a connector checking
    /// signatures needs.
    pub fn with_secret(secret: impl Into<String>) -> Self {
        let harness = Self::new();
        harness.set_config("secret", secret.into());
        harness
    }

    /// Sets config key `key`; strings come back from `config::get` without quotes, other
    /// values as JSON text, as the host does.
    pub fn set_config(&self, key: impl Into<String>, value: impl Into<Value>) -> &Self {
        with(|state| state.config.insert(key.into(), value.into()));
        self
    }

    /// Removes config key `key`.
    pub fn remove_config(&self, key: &str) -> &Self {
        with(|state| state.config.remove(key));
        self
    }

    /// Replaces the whole config with `config`, which must be a JSON object.
    pub fn set_config_json(&self, config: Value) -> &Self {
        let Value::Object(map) = config else {
            panic!("the harness config must be a JSON object");
        };
        with(|state| state.config = map);
        self
    }

    /// The value stored under `key`.
    pub fn kv(&self, key: &str) -> Option<Vec<u8>> {
        with(|state| state.kv.get(key).cloned())
    }

    /// Every kv entry, by key.
    pub fn kv_entries(&self) -> BTreeMap<String, Vec<u8>> {
        with(|state| state.kv.clone())
    }

    /// Stores `value` under `key`, as a previous call would have.
    pub fn set_kv(&self, key: impl Into<String>, value: impl Into<Vec<u8>>) -> &Self {
        with(|state| state.kv.insert(key.into(), value.into()));
        self
    }

    /// Makes kv writes fail with `read-only`, as in a shadow run.
    pub fn set_kv_read_only(&self, read_only: bool) -> &Self {
        with(|state| state.kv_read_only = read_only);
        self
    }

    /// Everything logged so far.
    pub fn logs(&self) -> Vec<LogRecord> {
        with(|state| state.logs.clone())
    }

    /// True when some record's message contains `text`.
    pub fn logged(&self, text: &str) -> bool {
        with(|state| state.logs.iter().any(|r| r.message.contains(text)))
    }

    /// Queues `response` as the answer to the next outbound request.
    pub fn respond(&self, response: Response) -> &Self {
        with(|state| state.http_script.push_back(Ok(response)));
        self
    }

    /// Queues `error` as the outcome of the next outbound request.
    pub fn fail_http(&self, error: HttpError) -> &Self {
        with(|state| state.http_script.push_back(Err(error)));
        self
    }

    /// Every outbound request sent so far, in order.
    pub fn sent_requests(&self) -> Vec<Request> {
        with(|state| state.http_sent.clone())
    }
}

/// The reason of an `Unauthorized` error; panics, showing what came instead, on anything
/// else. For connector tests: `assert!(expect_unauthorized(result).contains("missing"))`.
pub fn expect_unauthorized<T: fmt::Debug>(result: Result<T, ConnectorError>) -> String {
    match result {
        Err(ConnectorError::Unauthorized(why)) => why,
        other => panic!("expected unauthorized, got {other:?}"),
    }
}

/// The reason of a `BadRequest` error; panics, showing what came instead, on anything
/// else. For connector tests: `assert!(expect_bad_request(result).contains("JSON"))`.
pub fn expect_bad_request<T: fmt::Debug>(result: Result<T, ConnectorError>) -> String {
    match result {
        Err(ConnectorError::BadRequest(why)) => why,
        other => panic!("expected bad-request, got {other:?}"),
    }
}

pub(crate) fn config_get(key: &str) -> Option<String> {
    with(|state| {
        state.config.get(key).map(|value| match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    })
}

pub(crate) fn config_get_all() -> String {
    with(|state| Value::Object(state.config.clone()).to_string())
}

pub(crate) fn kv_get(key: &str) -> Result<Option<Vec<u8>>, KvError> {
    Ok(with(|state| state.kv.get(key).cloned()))
}

pub(crate) fn kv_set(key: &str, value: &[u8]) -> Result<(), KvError> {
    with(|state| {
        if state.kv_read_only {
            return Err(KvError::ReadOnly);
        }
        state.kv.insert(key.to_string(), value.to_vec());
        Ok(())
    })
}

pub(crate) fn kv_delete(key: &str) -> Result<(), KvError> {
    with(|state| {
        if state.kv_read_only {
            return Err(KvError::ReadOnly);
        }
        state.kv.remove(key);
        Ok(())
    })
}

pub(crate) fn log(level: Level, message: &str, fields: Vec<(String, String)>) {
    with(|state| {
        state.logs.push(LogRecord {
            level,
            message: message.to_string(),
            fields,
        })
    });
}

pub(crate) fn answer_http(request: &Request, url: &Url) -> Result<Response, HttpError> {
    let scripted = with(|state| {
        state.http_sent.push(request.clone());
        state.http_script.pop_front()
    });
    let response = scripted.unwrap_or_else(|| {
        Err(HttpError::Other(format!(
            "no HTTP response scripted in the test harness for {} {url}; \
             call Harness::respond or Harness::fail_http first",
            request.method()
        )))
    })?;
    if response.body.len() as u64 > request.max_response_bytes {
        return Err(HttpError::TooLarge(format!(
            "the response from {url} is over {} bytes",
            request.max_response_bytes
        )));
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{config, kv, log};

    #[test]
    fn config_strings_come_back_without_quotes() {
        let harness = Harness::new();
        harness
            .set_config("secret", "s3cret")
            .set_config("retries", 3);
        assert_eq!(config::get("secret").as_deref(), Some("s3cret"));
        assert_eq!(config::get("retries").as_deref(), Some("3"));
        assert_eq!(config::get("missing"), None);
        assert_eq!(config::get_all()["retries"], 3);
    }

    #[test]
    fn with_secret_sets_only_the_secret() {
        Harness::new().set_config("tolerance_secs", 0);
        let _harness = Harness::with_secret("whsec_x");
        assert_eq!(config::get_all(), serde_json::json!({"secret": "whsec_x"}));
    }

    #[test]
    fn expect_unauthorized_gives_the_reason() {
        let result: Result<(), _> = Err(ConnectorError::Unauthorized("no key".into()));
        assert_eq!(expect_unauthorized(result), "no key");
    }

    #[test]
    #[should_panic(expected = "expected unauthorized, got Err(ConnectorError::BadRequest")]
    fn expect_unauthorized_panics_on_other_errors() {
        expect_unauthorized::<()>(Err(ConnectorError::BadRequest("bad".into())));
    }

    #[test]
    fn new_harness_starts_empty() {
        Harness::new().set_config("secret", "x").set_kv("k", "v");
        let harness = Harness::new();
        assert_eq!(config::get("secret"), None);
        assert_eq!(harness.kv("k"), None);
    }

    #[test]
    fn kv_round_trips_and_respects_read_only() {
        let harness = Harness::new();
        kv::set("cursor", "42").unwrap();
        assert_eq!(kv::get_string("cursor").unwrap().as_deref(), Some("42"));
        assert_eq!(harness.kv("cursor").as_deref(), Some(&b"42"[..]));
        harness.set_kv_read_only(true);
        assert_eq!(kv::set("cursor", "43"), Err(KvError::ReadOnly));
        harness.set_kv_read_only(false);
        kv::delete("cursor").unwrap();
        assert_eq!(kv::get("cursor").unwrap(), None);
    }

    struct Logins;

    impl Rule for Logins {
        fn describe(params: &Value) -> Result<RuleNeeds, String> {
            let window = params["window_ms"]
                .as_u64()
                .ok_or("`window_ms` is required")?;
            Ok(RuleNeeds::new().with_event("Login").with_window_ms(window))
        }

        fn evaluate(_: &Value, batch: Vec<RuleInput>) -> Result<Vec<Decision>, String> {
            Ok(batch
                .iter()
                .map(|i| Decision::member(i.events.len() >= 2))
                .collect())
        }
    }

    #[test]
    fn the_harness_hands_a_rule_only_what_it_asked_for() {
        use crate::types::{Contact, PastEvent};
        let input = RuleInput::new(Contact::new("c1"))
            .at(10_000)
            .with_past_event(PastEvent::track("Login", 5_000))
            .with_past_event(PastEvent::track("Login", 9_000))
            .with_past_event(PastEvent::track("Logout", 9_500))
            .with_past_event(PastEvent::track("Login", 11_000));
        let params = serde_json::json!({"window_ms": 5_000});
        // 5,000 is on the window's open edge and 11,000 in the future: one login counts.
        assert_eq!(
            decide::<Logins>(params, input.clone()),
            Decision::member(false)
        );
        let wide = serde_json::json!({"window_ms": 6_000});
        assert_eq!(decide::<Logins>(wide, input), Decision::member(true));
        assert_eq!(
            describe::<Logins>(serde_json::json!({})).unwrap_err(),
            "`window_ms` is required"
        );
    }

    #[test]
    fn logs_are_captured_with_fields() {
        let harness = Harness::new();
        log::warn("retrying", &[("attempt", &2), ("host", &"api.example.com")]);
        let logs = harness.logs();
        assert_eq!(logs.len(), 1);
        assert_eq!(logs[0].level, Level::Warn);
        assert_eq!(logs[0].field("attempt"), Some("2"));
        assert!(harness.logged("retry"));
    }
}
