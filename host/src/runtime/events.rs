//! Connector events as the host accepts them: each checked against the event limit, its JSON
//! parsed once (ingest keeps the parsed value) and charged to the call's output budget.

use serde::Serialize;
use serde_json::{Map, Value};

use super::error::CallFailure;
use super::output::{
    LiftedConnectorError, LiftedEvent, LiftedPollPage, MAX_EVENT_BYTES, OUTPUT_BUDGET, json_cost,
};
use super::types::{ConnectorError, ContactRef, EventKind, Identity};

/// A connector's event after the host's checks: `properties` and `traits` are JSON objects.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectorEvent {
    /// Unique id at the source (1 to 256 bytes).
    pub id: String,
    /// What kind of event.
    pub kind: EventKind,
    /// Event, page or screen name.
    pub name: Option<String>,
    /// Who it is about.
    pub contact: ContactRef,
    /// When it happened, RFC 3339, as the connector spelled it.
    pub timestamp: Option<String>,
    /// Event properties.
    pub properties: Map<String, Value>,
    /// Traits to set on the contact.
    pub traits: Map<String, Value>,
}

/// One checked poll page.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectorPage {
    /// The page's events.
    pub events: Vec<ConnectorEvent>,
    /// Where the next poll starts.
    pub cursor: Option<String>,
    /// True when another page is ready now.
    pub more: bool,
}

/// Checks and converts lifted events; `spent` is what lifting them already cost.
pub(super) fn accept_events(
    lifted: Vec<LiftedEvent>,
    spent: usize,
) -> Result<Vec<ConnectorEvent>, CallFailure> {
    let mut left = OUTPUT_BUDGET.saturating_sub(spent);
    let mut out = Vec::with_capacity(lifted.len());
    for (i, e) in lifted.into_iter().enumerate() {
        let size = event_size(&e);
        if size > MAX_EVENT_BYTES {
            return Err(CallFailure::OutputLimit(format!(
                "event {i} is {size} bytes, over the event limit of {MAX_EVENT_BYTES} bytes"
            )));
        }
        if e.id.0.is_empty() || e.id.0.len() > 256 {
            return Err(CallFailure::MalformedOutput(format!(
                "event {i}: id must be 1 to 256 bytes"
            )));
        }
        let mut object = |field: &str, text: String| -> Result<Map<String, Value>, CallFailure> {
            let value: Value = match serde_json::from_str(&text) {
                Ok(v @ Value::Object(_)) => v,
                _ => {
                    return Err(CallFailure::MalformedOutput(format!(
                        "event {i}: {field} is not a JSON object"
                    )));
                }
            };
            let cost = json_cost(&value);
            left = left.checked_sub(cost).ok_or_else(|| {
                CallFailure::OutputLimit(format!(
                    "event {i}: the call's output is over its budget of {} MiB once parsed",
                    OUTPUT_BUDGET >> 20
                ))
            })?;
            match value {
                Value::Object(map) => Ok(map),
                _ => unreachable!("checked above"),
            }
        };
        let properties = object("properties", e.properties.0)?;
        let traits = object("traits", e.traits.0)?;
        out.push(ConnectorEvent {
            id: e.id.0,
            kind: e.kind.into(),
            name: e.name.map(|t| t.0),
            contact: ContactRef {
                user_id: e.contact.user_id.map(|t| t.0),
                anonymous_id: e.contact.anonymous_id.map(|t| t.0),
                identities: e
                    .contact
                    .identities
                    .0
                    .into_iter()
                    .map(|i| Identity {
                        kind: i.kind.0,
                        value: i.value.0,
                    })
                    .collect(),
            },
            timestamp: e.timestamp.map(|t| t.0),
            properties,
            traits,
        });
    }
    Ok(out)
}

/// All the text of one event, in bytes.
fn event_size(e: &LiftedEvent) -> usize {
    let opt = |t: &Option<super::output::EventText>| t.as_ref().map_or(0, |t| t.0.len());
    e.id.0.len()
        + opt(&e.name)
        + opt(&e.timestamp)
        + opt(&e.contact.user_id)
        + opt(&e.contact.anonymous_id)
        + e.contact
            .identities
            .0
            .iter()
            .map(|i| i.kind.0.len() + i.value.0.len())
            .sum::<usize>()
        + e.properties.0.len()
        + e.traits.0.len()
}

/// A lifted webhook answer, checked.
pub(super) fn accept_webhook(
    lifted: Result<super::output::LiftedEvents, LiftedConnectorError>,
    spent: usize,
) -> Result<Result<Vec<ConnectorEvent>, ConnectorError>, CallFailure> {
    match lifted {
        Ok(events) => accept_events(events.0, spent).map(Ok),
        Err(e) => Ok(Err(e.into())),
    }
}

/// A lifted poll answer, checked.
pub(super) fn accept_page(
    lifted: Result<LiftedPollPage, LiftedConnectorError>,
    spent: usize,
) -> Result<Result<ConnectorPage, ConnectorError>, CallFailure> {
    match lifted {
        Ok(page) => Ok(Ok(ConnectorPage {
            events: accept_events(page.events.0, spent)?,
            cursor: page.cursor.map(|t| t.0),
            more: page.more,
        })),
        Err(e) => Ok(Err(e.into())),
    }
}
