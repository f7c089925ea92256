//! Test guest: a connector whose events break the contract in the ways the host must catch.
//!
//! The request body is `CASE ID` (the public webhook route has one path, so the case is in
//! the body):
//!
//! | case               | answers                                                   |
//! |--------------------|-----------------------------------------------------------|
//! | `ok`               | one well-formed `track` event with id ID                  |
//! | `empty-id`         | an event with an empty id                                 |
//! | `long-id`          | an event with a 257-byte id                               |
//! | `array-properties` | an event whose properties are a JSON array                |
//! | `text-traits`      | an event whose traits are not JSON at all                 |
//! | `second-bad`       | a good event, then one whose properties are a JSON number |
//! | `panic`            | panics with a message that quotes the request body        |
//! | `refuse`           | returns a bad-request error that quotes the request body  |
//!
//! The contract carries properties and traits as JSON text, so a guest can put anything
//! there; the SDK's helpers never do, which is why this guest sets the fields by hand.

use tessera_sdk::Connector;
use tessera_sdk::types::{ConnectorError, ContactRef, Event, HttpRequest};

/// The malformed connector.
pub struct Malformed;

fn event(id: impl Into<String>) -> Event {
    Event::track(id, "malformed", ContactRef::user("malformed"))
}

impl Connector for Malformed {
    fn handle_webhook(request: HttpRequest) -> Result<Vec<Event>, ConnectorError> {
        let body = String::from_utf8_lossy(&request.body).into_owned();
        let (case, body) = body
            .trim()
            .split_once(' ')
            .unwrap_or((body.trim(), "malformed"));
        let events = match case {
            "ok" => vec![event(body)],
            "empty-id" => vec![event("")],
            "long-id" => vec![event("x".repeat(257))],
            "array-properties" => {
                let mut e = event(body);
                e.properties = "[1, 2, 3]".to_string();
                vec![e]
            }
            "text-traits" => {
                let mut e = event(body);
                e.traits = "plan=pro".to_string();
                vec![e]
            }
            "second-bad" => {
                let mut bad = event(format!("{body}-2"));
                bad.properties = "42".to_string();
                vec![event(format!("{body}-1")), bad]
            }
            "panic" => panic!("guest panic quoting the request: {body}"),
            "refuse" => {
                return Err(ConnectorError::BadRequest(format!(
                    "guest refusal quoting the request: {body}"
                )));
            }
            other => {
                return Err(ConnectorError::Unsupported(format!(
                    "no such case `{other}`"
                )));
            }
        };
        Ok(events)
    }
}

tessera_sdk::export_connector!(Malformed);
