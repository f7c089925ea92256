//! A segment rule: the contact performed an event N times within a window (contract 0.2).
//!
//! ```json
//! {"event": "Order Completed", "at_least": 2, "within": {"days": 30},
//!  "where": {"property": "total", "gt": 100}}
//! ```
//!
//! - `event`: the event name.
//! - exactly one count: `at_least` (count >= N), `exactly` (= N) or `fewer_than` (< N).
//! - `within`: the window, one of `{"seconds": n}`, `{"minutes": n}`, `{"hours": n}`,
//!   `{"days": n}` (at most 3,660 days).
//! - `where` (optional): conditions on the event's properties, as in
//!   [`tessera_sdk::condition`] with `property` naming the field.
//!
//! Events are judged by **event time**: an event counts while its timestamp is in
//! `(now - window, now]`, however late it arrived (an import of last week's orders counts
//! where it belongs). Every decision about a contact with a qualifying event asks the host to
//! evaluate it again when the oldest of them leaves the window, which is when time alone
//! next changes the count: a member of an `at_least` segment leaves once too few remain, and
//! a `fewer_than` segment takes the contact back in.

use tessera_sdk::Rule;
use tessera_sdk::condition::Condition;
use tessera_sdk::json::{self, Map, Value};
use tessera_sdk::time::{DAY_MS, HOUR_MS, MINUTE_MS, SECOND_MS};
use tessera_sdk::types::{Decision, PastEvent, RuleInput, RuleNeeds};

/// The longest window, in days.
const MAX_DAYS: i64 = 3_660;

/// The event-window rule.
pub struct EventWindow;

/// How the count of qualifying events must compare with N.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    /// count >= N.
    AtLeast(u64),
    /// count = N.
    Exactly(u64),
    /// count < N.
    FewerThan(u64),
}

impl Count {
    /// How many of the newest qualifying events decide the test.
    fn needed(self) -> u64 {
        match self {
            Count::AtLeast(n) | Count::FewerThan(n) => n,
            Count::Exactly(n) => n.saturating_add(1),
        }
    }

    fn holds(self, count: u64) -> bool {
        match self {
            Count::AtLeast(n) => count >= n,
            Count::Exactly(n) => count == n,
            Count::FewerThan(n) => count < n,
        }
    }
}

/// Parsed parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    /// The event name.
    pub event: String,
    /// The count test.
    pub count: Count,
    /// The window, milliseconds.
    pub window_ms: i64,
    /// Conditions on the event's properties.
    pub filter: Option<Condition>,
}

const KEYS: [&str; 6] = [
    "event",
    "at_least",
    "exactly",
    "fewer_than",
    "within",
    "where",
];

impl Params {
    /// Checks and parses the parameters; errors name the bad key.
    pub fn parse(params: &Value) -> Result<Self, String> {
        let Value::Object(fields) = params else {
            return Err(format!(
                "params: must be an object, not {}",
                json::type_name(params)
            ));
        };
        if let Some(extra) = fields.keys().find(|k| !KEYS.contains(&k.as_str())) {
            return Err(format!(
                "params: unknown key `{extra}` (expected event, at_least, exactly, fewer_than, within, where)"
            ));
        }
        let event = match fields.get("event") {
            Some(Value::String(name)) if !name.is_empty() => name.clone(),
            _ => return Err("params.event: must be a non-empty event name".into()),
        };
        let count = parse_count(fields)?;
        let window_ms = parse_window(fields.get("within"))?;
        let filter = fields
            .get("where")
            .map(|w| Condition::parse_at(w, "property", "params.where"))
            .transpose()?;
        Ok(Self {
            event,
            count,
            window_ms,
            filter,
        })
    }

    /// True when `event` is one this rule counts at `now_ms`.
    fn qualifies(&self, event: &PastEvent, now_ms: i64) -> bool {
        if event.name.as_deref() != Some(self.event.as_str()) {
            return false;
        }
        // The host hands over the window already; checked again so the rule stands alone.
        if event.timestamp_ms <= now_ms.saturating_sub(self.window_ms)
            || event.timestamp_ms > now_ms
        {
            return false;
        }
        match &self.filter {
            None => true,
            // Properties that are not a JSON object count as none.
            Some(condition) => match json::parse_object(event.properties.as_bytes()) {
                Ok(properties) => condition.holds(&properties),
                Err(_) => condition.holds(&Map::new()),
            },
        }
    }

    /// The decision about one contact. It keeps the newest qualifying events the count test
    /// can turn on (N of them for `at_least` and `fewer_than`, N + 1 for `exactly`): older
    /// ones leave the window first, so they never change the outcome, and the host need
    /// not hand them again.
    pub fn decide(&self, input: &RuleInput) -> Decision {
        let now = input.now_ms;
        let qualifying: Vec<usize> = (0..input.events.len())
            .filter(|&i| self.qualifies(&input.events[i], now))
            .collect();
        let count = qualifying.len() as u64;
        let needed = usize::try_from(self.count.needed()).unwrap_or(usize::MAX);
        // The host hands events oldest first: the newest are at the end.
        let kept = &qualifying[qualifying.len().saturating_sub(needed)..];
        let decision = Decision::member(self.count.holds(count)).keep(kept.iter().copied());
        match kept.first() {
            // The outcome next changes by time alone when the oldest kept one leaves the
            // window.
            Some(&oldest) => decision.recheck_at(
                input.events[oldest]
                    .timestamp_ms
                    .saturating_add(self.window_ms),
            ),
            None => decision,
        }
    }
}

fn parse_count(fields: &Map<String, Value>) -> Result<Count, String> {
    let given: Vec<&str> = ["at_least", "exactly", "fewer_than"]
        .into_iter()
        .filter(|k| fields.contains_key(*k))
        .collect();
    let [key] = given.as_slice() else {
        return Err(format!(
            "params: give exactly one of `at_least`, `exactly`, `fewer_than` (found {})",
            if given.is_empty() {
                "none".to_string()
            } else {
                given.join(", ")
            }
        ));
    };
    let n = fields[*key]
        .as_u64()
        .ok_or_else(|| format!("params.{key}: must be a whole number of at least 0"))?;
    Ok(match *key {
        "at_least" => Count::AtLeast(n),
        "exactly" => Count::Exactly(n),
        _ if n == 0 => return Err("params.fewer_than: must be at least 1".into()),
        _ => Count::FewerThan(n),
    })
}

fn parse_window(within: Option<&Value>) -> Result<i64, String> {
    const UNITS: [(&str, i64); 4] = [
        ("seconds", SECOND_MS),
        ("minutes", MINUTE_MS),
        ("hours", HOUR_MS),
        ("days", DAY_MS),
    ];
    let expected = "params.within: must be one of {\"seconds\": n}, {\"minutes\": n}, {\"hours\": n}, {\"days\": n}";
    let Some(Value::Object(within)) = within else {
        return Err(expected.into());
    };
    let mut entries = within.iter();
    let (Some((unit, amount)), None) = (entries.next(), entries.next()) else {
        return Err(expected.into());
    };
    let Some((_, unit_ms)) = UNITS.iter().find(|(name, _)| name == unit) else {
        return Err(expected.into());
    };
    let amount = amount
        .as_u64()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("params.within.{unit}: must be a whole number of at least 1"))?;
    let ms = i64::try_from(amount)
        .ok()
        .and_then(|n| n.checked_mul(*unit_ms))
        .filter(|ms| *ms <= MAX_DAYS * DAY_MS)
        .ok_or_else(|| format!("params.within: at most {MAX_DAYS} days"))?;
    Ok(ms)
}

impl Rule for EventWindow {
    fn describe(params: &Value) -> Result<RuleNeeds, String> {
        let params = Params::parse(params)?;
        Ok(RuleNeeds::new()
            .with_event(params.event)
            .with_window_ms(params.window_ms as u64))
    }

    fn evaluate(params: &Value, batch: Vec<RuleInput>) -> Result<Vec<Decision>, String> {
        let params = Params::parse(params)?;
        Ok(batch.iter().map(|input| params.decide(input)).collect())
    }
}

tessera_sdk::export_rule!(EventWindow);

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_sdk::json::json;
    use tessera_sdk::testing::{decide, decide_and_keep, describe, evaluate};
    use tessera_sdk::types::Contact;

    const NOW: i64 = 1_700_000_000_000;

    fn big_spender() -> Value {
        json!({"event": "Order Completed", "at_least": 2, "within": {"days": 30},
               "where": {"property": "total", "gt": 100}})
    }

    fn order(days_ago: i64, total: f64) -> PastEvent {
        PastEvent::track("Order Completed", NOW - days_ago * DAY_MS)
            .with_properties(json!({"total": total}))
    }

    fn contact(events: Vec<PastEvent>) -> RuleInput {
        events
            .into_iter()
            .fold(RuleInput::new(Contact::new("c1")).at(NOW), |input, e| {
                input.with_past_event(e)
            })
    }

    #[test]
    fn describe_asks_for_the_event_in_the_window() {
        let needs = describe::<EventWindow>(big_spender()).unwrap();
        assert_eq!(needs.events, vec!["Order Completed".to_string()]);
        assert!(needs.traits.is_empty());
        assert_eq!(needs.window_ms, Some(30 * DAY_MS as u64));
        let short = json!({"event": "Ping", "exactly": 1, "within": {"seconds": 3}});
        assert_eq!(
            describe::<EventWindow>(short).unwrap().window_ms,
            Some(3_000)
        );
    }

    #[test]
    fn two_big_orders_in_the_window_make_a_member_until_the_older_ages_out() {
        let (decision, kept) = decide_and_keep::<EventWindow>(
            big_spender(),
            contact(vec![
                order(40, 500.0),
                order(10, 150.0),
                order(3, 99.0),
                order(2, 101.0),
            ]),
        );
        // The 40-day-old order is out of the window and the 99 one is too small: 2 count,
        // and they are the two the rule needs to see again.
        assert!(decision.member);
        assert_eq!(kept, Some(vec![order(10, 150.0), order(2, 101.0)]));
        assert_eq!(
            decision.recheck_at_ms,
            Some(NOW - 10 * DAY_MS + 30 * DAY_MS)
        );
    }

    #[test]
    fn one_big_order_is_not_enough_but_still_asks_for_a_recheck() {
        let decision = decide::<EventWindow>(big_spender(), contact(vec![order(5, 300.0)]));
        assert!(!decision.member);
        assert_eq!(decision.recheck_at_ms, Some(NOW + 25 * DAY_MS));
        let nothing = decide::<EventWindow>(big_spender(), contact(vec![]));
        assert_eq!(nothing, Decision::member(false).keep([]));
    }

    #[test]
    fn the_recheck_sees_the_member_leave() {
        let input = contact(vec![order(29, 200.0), order(1, 200.0)]);
        let first = decide::<EventWindow>(big_spender(), input.clone());
        assert!(first.member);
        let at = first.recheck_at_ms.unwrap();
        // At the recheck time the older order has left the window (it is open at its edge).
        let later = decide::<EventWindow>(
            big_spender(),
            RuleInput {
                now_ms: at,
                ..input
            },
        );
        assert!(!later.member);
        assert_eq!(later.recheck_at_ms, Some(NOW - DAY_MS + 30 * DAY_MS));
    }

    #[test]
    fn exactly_and_fewer_than() {
        let logins = |n: i64| {
            contact(
                (0..n)
                    .map(|i| PastEvent::track("Login", NOW - (i + 1) * HOUR_MS))
                    .collect(),
            )
        };
        let exactly = json!({"event": "Login", "exactly": 2, "within": {"hours": 24}});
        let fewer = json!({"event": "Login", "fewer_than": 2, "within": {"hours": 24}});
        let batch = vec![logins(0), logins(1), logins(2), logins(3)];
        let members = |params: Value| -> Vec<bool> {
            evaluate::<EventWindow>(params, batch.clone())
                .unwrap()
                .iter()
                .map(|d| d.member)
                .collect()
        };
        assert_eq!(members(exactly), vec![false, false, true, false]);
        assert_eq!(members(fewer), vec![true, true, false, false]);
    }

    #[test]
    fn other_events_and_future_timestamps_do_not_count() {
        let params = json!({"event": "Login", "at_least": 1, "within": {"minutes": 10}});
        let input = contact(vec![
            PastEvent::track("Logout", NOW - MINUTE_MS),
            PastEvent::track("Login", NOW + MINUTE_MS),
        ]);
        assert_eq!(
            decide::<EventWindow>(params, input),
            Decision::member(false).keep([])
        );
    }

    #[test]
    fn the_kept_events_decide_as_the_whole_window_does_now_and_later() {
        // Orders of every size, a day apart: whatever the count test, the kept ones plus
        // a new order decide as the whole history plus it does, now and once time passed.
        let history: Vec<PastEvent> = (0..40)
            .map(|i| order(40 - i, f64::from((i * 37 % 200) as u32)))
            .collect();
        for count in ["at_least", "exactly", "fewer_than"] {
            for n in 1..6 {
                let params = json!({"event": "Order Completed", count: n,
                                    "within": {"days": 30}, "where": {"property": "total", "gt": 100}});
                let (first, kept) =
                    decide_and_keep::<EventWindow>(params.clone(), contact(history.clone()));
                let kept = kept.expect("the rule keeps a list");
                for (later, new) in [
                    (0, 150.0),
                    (0, 50.0),
                    (5 * DAY_MS, 150.0),
                    (29 * DAY_MS, 120.0),
                ] {
                    let at = NOW + later;
                    let fresh = PastEvent::track("Order Completed", at)
                        .with_properties(json!({"total": new}));
                    let with = |events: Vec<PastEvent>| {
                        let mut input = contact(events).at(at);
                        input.events.push(fresh.clone());
                        input.member = first.member;
                        input
                    };
                    let by_all = decide::<EventWindow>(params.clone(), with(history.clone()));
                    let by_kept = decide::<EventWindow>(params.clone(), with(kept.clone()));
                    assert_eq!(by_all.member, by_kept.member, "{params} +{later}ms {new}");
                    assert_eq!(by_all.recheck_at_ms, by_kept.recheck_at_ms, "{params}");
                }
            }
        }
    }

    #[test]
    fn bad_params_are_refused_with_the_reason() {
        let refused = |params: Value| describe::<EventWindow>(params).unwrap_err();
        assert_eq!(
            refused(json!({"at_least": 1, "within": {"days": 1}})),
            "params.event: must be a non-empty event name"
        );
        assert_eq!(
            refused(json!({"event": "x", "within": {"days": 1}})),
            "params: give exactly one of `at_least`, `exactly`, `fewer_than` (found none)"
        );
        assert_eq!(
            refused(json!({"event": "x", "at_least": 1, "exactly": 1, "within": {"days": 1}})),
            "params: give exactly one of `at_least`, `exactly`, `fewer_than` (found at_least, exactly)"
        );
        assert!(
            refused(json!({"event": "x", "at_least": 1, "within": {"weeks": 1}}))
                .starts_with("params.within: must be one of")
        );
        assert_eq!(
            refused(json!({"event": "x", "at_least": 1, "within": {"days": 0}})),
            "params.within.days: must be a whole number of at least 1"
        );
        assert_eq!(
            refused(json!({"event": "x", "at_least": 1, "within": {"days": 4000}})),
            "params.within: at most 3660 days"
        );
        assert_eq!(
            refused(json!({"event": "x", "fewer_than": 0, "within": {"days": 1}})),
            "params.fewer_than: must be at least 1"
        );
        assert_eq!(
            refused(json!({"event": "x", "at_least": 1, "within": {"days": 1}, "when": 1})),
            "params: unknown key `when` (expected event, at_least, exactly, fewer_than, within, where)"
        );
        assert!(
            refused(json!({"event": "x", "at_least": 1, "within": {"days": 1},
                           "where": {"trait": "plan", "equals": 1}}))
            .starts_with("params.where: expected one of")
        );
    }
}
