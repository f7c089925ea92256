//! Test guest: a connector that writes its kv namespace as hard as it may.
//!
//! `POST /fill` with body `PREFIX COUNT SIZE` sets COUNT keys `PREFIX-0` .. with SIZE-byte
//! values and stops at the first refusal. The event's `outcome` is `stored:N` or
//! `stored:N err:<error>`.

use tessera_sdk::json::json;
use tessera_sdk::types::{ConnectorError, ContactRef, Event, HttpRequest};
use tessera_sdk::{Connector, kv};

/// The kv-filling connector.
pub struct KvRace;

impl Connector for KvRace {
    fn handle_webhook(request: HttpRequest) -> Result<Vec<Event>, ConnectorError> {
        let body = String::from_utf8_lossy(&request.body).trim().to_string();
        let words: Vec<&str> = body.split_whitespace().collect();
        let (Some(prefix), Some(Ok(count)), Some(Ok(size))) = (
            words.first(),
            words.get(1).map(|w| w.parse::<usize>()),
            words.get(2).map(|w| w.parse::<usize>()),
        ) else {
            return Err(ConnectorError::BadRequest(
                "the body is `PREFIX COUNT SIZE`".into(),
            ));
        };
        if request.path != "/fill" {
            return Err(ConnectorError::Unsupported(format!(
                "no route `{}`",
                request.path
            )));
        }
        let value = vec![b'k'; size];
        let mut stored = 0;
        let mut outcome = None;
        for i in 0..count {
            match kv::set(&format!("{prefix}-{i}"), &value) {
                Ok(()) => stored += 1,
                Err(e) => {
                    outcome = Some(format!("stored:{stored} err:{e:?}"));
                    break;
                }
            }
        }
        let outcome = outcome.unwrap_or_else(|| format!("stored:{stored}"));
        Ok(vec![
            Event::track(format!("kv-{body}"), "filled", ContactRef::user("filler"))
                .with_properties(json!({ "outcome": outcome })),
        ])
    }
}

tessera_sdk::export_connector!(KvRace);
