//! Journey definitions: the JSON a client writes, checked into the typed definition a run
//! follows, with every error naming the place it is about (`steps[2].wait.duration`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::conditions::{Condition, parse_conditions};
use super::timing::{is_known_zone, parse_duration, parse_time_of_day};

/// Most steps a journey may have.
pub const MAX_STEPS: usize = 200;
/// A definition that does not check: where, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct Invalid {
    /// Where in the definition (`steps[2].wait.duration`; `""` for the whole of it).
    pub path: String,
    /// What is wrong.
    pub message: String,
}

pub(super) fn invalid(path: &str, message: impl Into<String>) -> Invalid {
    Invalid {
        path: path.to_string(),
        message: message.into(),
    }
}

/// What starts a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// A track event of this name whose properties meet every condition.
    Event {
        /// The event name.
        name: String,
        /// Conditions on its properties (and the contact), all of which must hold.
        conditions: Vec<Condition>,
    },
    /// The contact entering a segment (a `Segment Entered` event with this `segment_id`).
    SegmentEntered(String),
}

/// Whether a contact may start the journey again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reentry {
    /// Once per contact, ever.
    Never,
    /// Whenever the trigger happens while the contact has no run in progress.
    Always,
    /// When the contact's previous run started at least this long ago (ms) and has ended.
    After(u64),
}

/// Where a run goes next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Next {
    /// The step at this index (always after the current one: runs cannot loop).
    Step(usize),
    /// The run leaves the journey.
    Exit,
}

/// What a `wait_until` step waits for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Awaited {
    /// A track event of this name whose properties meet every condition.
    Event {
        /// The event name.
        name: String,
        /// Conditions on it, all of which must hold.
        conditions: Vec<Condition>,
    },
    /// The contact entering this segment (or being in it when the wait starts).
    Segment(String),
}

/// What a step does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Waits a fixed time (ms).
    WaitFor(u64),
    /// Waits until the next time the contact's wall clock shows this time of day.
    WaitUntilTime {
        /// `HH:MM[:SS]`.
        at: String,
        /// The zone when the contact has no (known) `timezone` trait.
        default_timezone: Option<String>,
    },
    /// Waits for an event or a segment entry, at most `timeout_ms`.
    WaitUntil {
        /// What it waits for.
        awaited: Awaited,
        /// How long at most.
        timeout_ms: u64,
        /// Where a run goes when the time is up.
        on_timeout: Next,
    },
    /// Goes one way or the other.
    Branch {
        /// `all` (true) or `any` of the conditions.
        all: bool,
        /// The conditions.
        conditions: Vec<Condition>,
        /// Where a run goes when they hold.
        then: Next,
        /// Where it goes when they do not.
        otherwise: Next,
    },
    /// Enqueues a message in the outbox.
    Send {
        /// The channel plugin's id.
        channel: String,
        /// The template's id.
        template: String,
        /// Data for the template (a JSON object).
        data: Value,
    },
    /// Sets traits on the contact (an identify event through the log).
    UpdateTraits(Map<String, Value>),
    /// Leaves the journey.
    Exit,
}

impl Action {
    /// The step type as written in a definition.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::WaitFor(_) | Action::WaitUntilTime { .. } => "wait",
            Action::WaitUntil { .. } => "wait_until",
            Action::Branch { .. } => "branch",
            Action::Send { .. } => "send",
            Action::UpdateTraits(_) => "update_traits",
            Action::Exit => "exit",
        }
    }

    /// Whether a run stops at this step until a timer or an event moves it on.
    pub fn waits(&self) -> bool {
        matches!(
            self,
            Action::WaitFor(_) | Action::WaitUntilTime { .. } | Action::WaitUntil { .. }
        )
    }
}

/// One step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// Its id (given, or its index).
    pub id: String,
    /// What it does.
    pub action: Action,
}

/// One checked version of a journey: what a run started on it follows to its end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JourneyDef {
    /// The journey's id.
    pub id: String,
    /// A name for people.
    pub name: String,
    /// This version (1, 2, ...).
    pub version: u32,
    /// What starts a run.
    pub trigger: Trigger,
    /// A run ends when its contact leaves this segment.
    pub exit_on_segment_exit: Option<String>,
    /// Whether a contact may start again.
    pub reentry: Reentry,
    /// The steps, in order.
    pub steps: Vec<Step>,
}

/// The step types, as written.
const STEP_KINDS: [&str; 6] = [
    "wait",
    "wait_until",
    "branch",
    "send",
    "update_traits",
    "exit",
];

/// Checks an id: 1 to 64 of `a-z 0-9 _ -`, starting with a letter or digit.
pub fn is_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        && id.as_bytes()[0].is_ascii_alphanumeric()
}

/// Checks a client's definition of journey `id` into version `version`. `id` in the body, when
/// given, must match.
pub fn parse(id: &str, version: u32, input: &Value) -> Result<JourneyDef, Invalid> {
    let Some(obj) = input.as_object() else {
        return Err(invalid("", "a journey definition is a JSON object"));
    };
    allow_keys(
        obj,
        "",
        &[
            "id",
            "name",
            "trigger",
            "exit_on_segment_exit",
            "reentry",
            "steps",
        ],
    )?;
    if let Some(given) = obj.get("id")
        && given.as_str() != Some(id)
    {
        return Err(invalid(
            "id",
            format!("must be `{id}` (the id cannot change)"),
        ));
    }
    if !is_id(id) {
        return Err(invalid(
            "id",
            "must be 1 to 64 of a-z, 0-9, `_` and `-`, starting with a letter or digit",
        ));
    }
    let name = match obj.get("name") {
        None | Some(Value::Null) => id.to_string(),
        Some(Value::String(s)) if s.len() <= 200 => s.clone(),
        Some(_) => return Err(invalid("name", "must be a string of at most 200 bytes")),
    };
    let trigger = parse_trigger(obj.get("trigger"))?;
    let exit_on_segment_exit = match obj.get("exit_on_segment_exit") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if is_id(s) => Some(s.clone()),
        Some(_) => {
            return Err(invalid("exit_on_segment_exit", "must be a segment id"));
        }
    };
    let reentry = match obj.get("reentry") {
        None | Some(Value::Null) => Reentry::Never,
        Some(Value::String(s)) if s == "never" => Reentry::Never,
        Some(Value::String(s)) if s == "always" => Reentry::Always,
        Some(Value::Object(o)) => {
            allow_keys(o, "reentry", &["after"])?;
            Reentry::After(duration(o.get("after"), "reentry.after")?)
        }
        Some(_) => {
            return Err(invalid(
                "reentry",
                "must be \"never\", \"always\" or {\"after\": \"<duration>\"}",
            ));
        }
    };
    let steps = parse_steps(obj.get("steps"))?;
    Ok(JourneyDef {
        id: id.to_string(),
        name,
        version,
        trigger,
        exit_on_segment_exit,
        reentry,
        steps,
    })
}

pub(super) fn allow_keys(
    obj: &Map<String, Value>,
    path: &str,
    allowed: &[&str],
) -> Result<(), Invalid> {
    for key in obj.keys() {
        if !allowed.contains(&key.as_str()) {
            return Err(invalid(
                &join(path, key),
                format!("unknown field; expected one of {}", allowed.join(", ")),
            ));
        }
    }
    Ok(())
}

pub(super) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

pub(super) fn string(value: Option<&Value>, path: &str) -> Result<String, Invalid> {
    match value {
        Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= 200 => Ok(s.clone()),
        None | Some(Value::Null) => Err(invalid(path, "is required")),
        Some(_) => Err(invalid(
            path,
            "must be a non-empty string of at most 200 bytes",
        )),
    }
}

pub(super) fn id_field(value: Option<&Value>, path: &str, what: &str) -> Result<String, Invalid> {
    let s = string(value, path)?;
    if is_id(&s) {
        Ok(s)
    } else {
        Err(invalid(path, format!("`{s}` is not a {what} id")))
    }
}

fn duration(value: Option<&Value>, path: &str) -> Result<u64, Invalid> {
    let text = string(value, path)?;
    parse_duration(&text).ok_or_else(|| {
        invalid(
            path,
            format!(
                "`{text}` is not a duration (a number and a unit, ms s m h d w: \"90s\", \"2h30m\"), at most ten years"
            ),
        )
    })
}

fn parse_trigger(value: Option<&Value>) -> Result<Trigger, Invalid> {
    let Some(Value::Object(obj)) = value else {
        return Err(invalid(
            "trigger",
            "is required: {\"event\": \"<name>\", \"where\": [...]} or {\"segment\": \"<id>\"}",
        ));
    };
    match (obj.get("event"), obj.get("segment")) {
        (Some(_), None) => {
            allow_keys(obj, "trigger", &["event", "where"])?;
            Ok(Trigger::Event {
                name: string(obj.get("event"), "trigger.event")?,
                conditions: parse_conditions(obj.get("where"), "trigger.where", false)?,
            })
        }
        (None, Some(_)) => {
            allow_keys(obj, "trigger", &["segment"])?;
            Ok(Trigger::SegmentEntered(id_field(
                obj.get("segment"),
                "trigger.segment",
                "segment",
            )?))
        }
        _ => Err(invalid(
            "trigger",
            "give exactly one of `event` and `segment`",
        )),
    }
}

/// A target as written: a step id, `"exit"`, or absent (the next step), resolved after
/// every step's id is known.
enum Target {
    Named(String, String),
    Following,
    Exit,
}

fn target(value: Option<&Value>, path: &str, default_exit: bool) -> Result<Target, Invalid> {
    match value {
        None | Some(Value::Null) if default_exit => Ok(Target::Exit),
        None | Some(Value::Null) => Ok(Target::Following),
        Some(Value::String(s)) if s == "exit" => Ok(Target::Exit),
        Some(Value::String(s)) => Ok(Target::Named(s.clone(), path.to_string())),
        Some(_) => Err(invalid(path, "must be a step id or \"exit\"")),
    }
}

fn parse_steps(value: Option<&Value>) -> Result<Vec<Step>, Invalid> {
    let items = match value {
        Some(Value::Array(items)) if !items.is_empty() => items,
        Some(Value::Array(_)) | None | Some(Value::Null) => {
            return Err(invalid("steps", "give at least one step"));
        }
        Some(_) => return Err(invalid("steps", "must be a list of steps")),
    };
    if items.len() > MAX_STEPS {
        return Err(invalid("steps", format!("at most {MAX_STEPS} steps")));
    }
    // Ids first, so targets can name later steps.
    let mut ids: BTreeMap<String, usize> = BTreeMap::new();
    let mut step_ids = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let path = format!("steps[{i}]");
        let id = match item.get("id") {
            None | Some(Value::Null) => i.to_string(),
            Some(Value::String(s)) if is_id(s) && s != "exit" => s.clone(),
            Some(_) => {
                return Err(invalid(
                    &join(&path, "id"),
                    "must be 1 to 64 of a-z, 0-9, `_` and `-` (and not `exit`)",
                ));
            }
        };
        if ids.insert(id.clone(), i).is_some() {
            return Err(invalid(&join(&path, "id"), format!("`{id}` is used twice")));
        }
        step_ids.push(id);
    }
    let resolve = |t: Target, at: usize| -> Result<Next, Invalid> {
        match t {
            Target::Exit => Ok(Next::Exit),
            Target::Following => Ok(Next::Step(at + 1)),
            Target::Named(name, path) => match ids.get(&name) {
                None => Err(invalid(&path, format!("no step `{name}`"))),
                Some(&j) if j <= at => Err(invalid(
                    &path,
                    format!(
                        "step `{name}` is not after this one (a run only moves forward, so it cannot loop)"
                    ),
                )),
                Some(&j) => Ok(Next::Step(j)),
            },
        }
    };
    let mut steps = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let path = format!("steps[{i}]");
        let Some(obj) = item.as_object() else {
            return Err(invalid(&path, "a step is a JSON object"));
        };
        let kinds: Vec<&str> = STEP_KINDS
            .into_iter()
            .filter(|k| obj.contains_key(*k))
            .collect();
        let [kind] = kinds[..] else {
            return Err(invalid(
                &path,
                format!("give exactly one step type: {}", STEP_KINDS.join(", ")),
            ));
        };
        allow_keys(obj, &path, &["id", kind])?;
        let at = join(&path, kind);
        let body = &obj[kind];
        let action = match kind {
            "wait" => wait(body, &at)?,
            "wait_until" => {
                let o = object(body, &at)?;
                let (awaited, keys): (Awaited, &[&str]) = match (o.get("event"), o.get("segment")) {
                    (Some(_), None) => (
                        Awaited::Event {
                            name: string(o.get("event"), &join(&at, "event"))?,
                            conditions: parse_conditions(
                                o.get("where"),
                                &join(&at, "where"),
                                false,
                            )?,
                        },
                        &["event", "where", "timeout", "on_timeout"][..],
                    ),
                    (None, Some(_)) => (
                        Awaited::Segment(id_field(
                            o.get("segment"),
                            &join(&at, "segment"),
                            "segment",
                        )?),
                        &["segment", "timeout", "on_timeout"][..],
                    ),
                    _ => return Err(invalid(&at, "give exactly one of `event` and `segment`")),
                };
                allow_keys(o, &at, keys)?;
                Action::WaitUntil {
                    awaited,
                    timeout_ms: duration(o.get("timeout"), &join(&at, "timeout"))?,
                    on_timeout: resolve(
                        target(o.get("on_timeout"), &join(&at, "on_timeout"), true)?,
                        i,
                    )?,
                }
            }
            "branch" => {
                let o = object(body, &at)?;
                allow_keys(o, &at, &["all", "any", "then", "else"])?;
                let (all, list) = match (o.get("all"), o.get("any")) {
                    (Some(list), None) => {
                        (true, parse_conditions(Some(list), &join(&at, "all"), true)?)
                    }
                    (None, Some(list)) => (
                        false,
                        parse_conditions(Some(list), &join(&at, "any"), true)?,
                    ),
                    _ => return Err(invalid(&at, "give exactly one of `all` and `any`")),
                };
                if list.is_empty() {
                    return Err(invalid(&at, "give at least one condition"));
                }
                if o.get("then").is_none() && o.get("else").is_none() {
                    return Err(invalid(
                        &at,
                        "give `then`, `else` or both (a step id or \"exit\")",
                    ));
                }
                Action::Branch {
                    all,
                    conditions: list,
                    then: resolve(target(o.get("then"), &join(&at, "then"), false)?, i)?,
                    otherwise: resolve(target(o.get("else"), &join(&at, "else"), false)?, i)?,
                }
            }
            "send" => {
                let o = object(body, &at)?;
                allow_keys(o, &at, &["channel", "template", "data"])?;
                let data = match o.get("data") {
                    None | Some(Value::Null) => Value::Object(Map::new()),
                    Some(v @ Value::Object(_)) => v.clone(),
                    Some(_) => return Err(invalid(&join(&at, "data"), "must be a JSON object")),
                };
                Action::Send {
                    channel: id_field(o.get("channel"), &join(&at, "channel"), "channel plugin")?,
                    template: string(o.get("template"), &join(&at, "template"))?,
                    data,
                }
            }
            "update_traits" => {
                let o = object(body, &at)?;
                if o.is_empty() {
                    return Err(invalid(&at, "give at least one trait"));
                }
                Action::UpdateTraits(o.clone())
            }
            _ => match body {
                Value::Null | Value::Bool(true) => Action::Exit,
                Value::Object(o) if o.is_empty() => Action::Exit,
                _ => return Err(invalid(&at, "takes no options: {}")),
            },
        };
        steps.push(Step {
            id: step_ids[i].clone(),
            action,
        });
    }
    Ok(steps)
}

fn object<'a>(value: &'a Value, path: &str) -> Result<&'a Map<String, Value>, Invalid> {
    value
        .as_object()
        .ok_or_else(|| invalid(path, "must be a JSON object"))
}

fn wait(body: &Value, at: &str) -> Result<Action, Invalid> {
    let o = object(body, at)?;
    match (o.get("duration"), o.get("until")) {
        (Some(_), None) => {
            allow_keys(o, at, &["duration"])?;
            Ok(Action::WaitFor(duration(
                o.get("duration"),
                &join(at, "duration"),
            )?))
        }
        (None, Some(_)) => {
            allow_keys(o, at, &["until", "default_timezone"])?;
            let until = string(o.get("until"), &join(at, "until"))?;
            if parse_time_of_day(&until).is_none() {
                return Err(invalid(
                    &join(at, "until"),
                    format!("`{until}` is not a time of day (HH:MM or HH:MM:SS, 24-hour)"),
                ));
            }
            let default_timezone = match o.get("default_timezone") {
                None | Some(Value::Null) => None,
                Some(Value::String(z)) if is_known_zone(z) => Some(z.clone()),
                Some(_) => {
                    return Err(invalid(
                        &join(at, "default_timezone"),
                        "must be an IANA time zone name (Europe/Paris)",
                    ));
                }
            };
            Ok(Action::WaitUntilTime {
                at: until,
                default_timezone,
            })
        }
        _ => Err(invalid(
            at,
            "give exactly one of `duration` (\"2h\") and `until` (a time of day, \"09:00\")",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err(input: Value) -> Invalid {
        parse("j", 1, &input).expect_err("refused")
    }

    fn base(steps: Value) -> Value {
        json!({ "trigger": { "event": "Signed Up" }, "steps": steps })
    }

    #[test]
    fn a_full_definition_checks_into_typed_steps() {
        let def = parse(
            "welcome",
            3,
            &json!({
                "name": "Welcome",
                "trigger": { "event": "Signed Up", "where": [{ "property": "plan", "equals": "pro" }] },
                "exit_on_segment_exit": "active",
                "reentry": { "after": "7d" },
                "steps": [
                    { "wait": { "duration": "1h" } },
                    { "id": "ask", "wait_until": { "event": "Order Completed", "timeout": "2d", "on_timeout": "nudge" } },
                    { "branch": { "all": [{ "trait": "vip", "equals": true }, { "in_segment": "big" }], "then": "thanks" } },
                    { "id": "nudge", "send": { "channel": "webhook-channel", "template": "nudge" } },
                    { "id": "thanks", "update_traits": { "thanked": true } },
                    { "wait": { "until": "09:00", "default_timezone": "Europe/Paris" } },
                    { "exit": {} }
                ]
            }),
        )
        .expect("valid");
        assert_eq!(def.version, 3);
        assert_eq!(def.reentry, Reentry::After(7 * 86_400_000));
        assert_eq!(def.steps.len(), 7);
        assert_eq!(def.steps[1].id, "ask");
        assert_eq!(def.steps[0].id, "0");
        match &def.steps[1].action {
            Action::WaitUntil {
                on_timeout,
                timeout_ms,
                ..
            } => {
                assert_eq!(*on_timeout, Next::Step(3));
                assert_eq!(*timeout_ms, 2 * 86_400_000);
            }
            other => panic!("{other:?}"),
        }
        match &def.steps[2].action {
            Action::Branch {
                then,
                otherwise,
                all,
                ..
            } => {
                assert_eq!(
                    (*then, *otherwise, *all),
                    (Next::Step(4), Next::Step(3), true)
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(def.steps[3].action.kind(), "send");
    }

    #[test]
    fn errors_point_at_the_bad_step() {
        let e = err(base(
            json!([{ "exit": {} }, { "exit": {} }, { "wait": { "duration": "2x" } }]),
        ));
        assert_eq!(e.path, "steps[2].wait.duration");
        let e = err(base(
            json!([{ "wait": { "duration": "1h", "until": "09:00" } }]),
        ));
        assert_eq!(e.path, "steps[0].wait");
        let e = err(base(json!([{ "wait": { "until": "25:00" } }])));
        assert_eq!(e.path, "steps[0].wait.until");
        let e = err(base(json!([{ "send": { "template": "t" } }])));
        assert_eq!(e.path, "steps[0].send.channel");
        let e = err(base(
            json!([{ "send": { "channel": "c", "template": "t", "dat": {} } }]),
        ));
        assert_eq!(e.path, "steps[0].send.dat");
        let e = err(base(json!([{ "jump": {} }])));
        assert_eq!(e.path, "steps[0]");
        let e = err(base(
            json!([{ "branch": { "any": [{ "trait": "x", "gt": "big" }], "then": "exit" } }]),
        ));
        assert_eq!(e.path, "steps[0].branch.any[0].gt");
        let e = err(base(
            json!([{ "branch": { "all": [{ "trait": "x", "exists": true }], "then": "nope" } }]),
        ));
        assert_eq!(e.path, "steps[0].branch.then");
        let e = err(base(
            json!([{ "wait_until": { "event": "E", "timeout": "1d", "where": [{ "trait": "x", "equals": 1 }] } }]),
        ));
        assert_eq!(e.path, "steps[0].wait_until.where[0].trait");
        let e = err(base(
            json!([{ "id": "a", "exit": {} }, { "id": "a", "exit": {} }]),
        ));
        assert_eq!(e.path, "steps[1].id");
        let e = err(base(json!([])));
        assert_eq!(e.path, "steps");
        let e =
            err(json!({ "trigger": { "event": "E", "segment": "s" }, "steps": [{ "exit": {} }] }));
        assert_eq!(e.path, "trigger");
        let e = err(json!({ "trigger": { "segment": "S S" }, "steps": [{ "exit": {} }] }));
        assert_eq!(e.path, "trigger.segment");
        let e = err(
            json!({ "trigger": { "event": "E" }, "reentry": { "after": "soon" }, "steps": [{ "exit": {} }] }),
        );
        assert_eq!(e.path, "reentry.after");
        let e = err(json!({ "trigger": { "event": "E" }, "step": [] }));
        assert_eq!(e.path, "step");
    }

    #[test]
    fn targets_only_move_forward_so_runs_cannot_loop() {
        let e = err(base(json!([
            { "id": "top", "wait": { "duration": "1h" } },
            { "branch": { "all": [{ "trait": "x", "exists": true }], "else": "top" } }
        ])));
        assert_eq!(e.path, "steps[1].branch.else");
        assert!(e.message.contains("forward"), "{}", e.message);
    }

    #[test]
    fn the_id_in_the_body_must_match() {
        let e = parse(
            "a",
            1,
            &json!({ "id": "b", "trigger": { "event": "E" }, "steps": [{ "exit": {} }] }),
        )
        .expect_err("refused");
        assert_eq!(e.path, "id");
        let e = parse(
            "Bad Id",
            1,
            &json!({ "trigger": { "event": "E" }, "steps": [{ "exit": {} }] }),
        )
        .expect_err("refused");
        assert_eq!(e.path, "id");
    }
}
