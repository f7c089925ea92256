//! Test guest: a connector that makes the host hold memory outside its own linear memory.
//!
//! `POST /fields` with body `COUNT SIZE` creates COUNT `wasi:http` header maps (`fields`),
//! each with one SIZE-byte value, and keeps every one until the call ends. No capability is
//! needed: creating header maps is not a request. The guest's own memory holds one SIZE-byte
//! buffer; the host holds COUNT copies unless it charges them to the plugin. The event's
//! `outcome` is `kept:N` or `err:N:<error>` when creating the N+1th failed visibly.

use tessera_sdk::Connector;
use tessera_sdk::json::json;
use tessera_sdk::types::{ConnectorError, ContactRef, Event, HttpRequest};
use wasi::http::types::Fields;

/// The hoarding connector.
pub struct ResourceHoarder;

impl Connector for ResourceHoarder {
    fn handle_webhook(request: HttpRequest) -> Result<Vec<Event>, ConnectorError> {
        let body = String::from_utf8_lossy(&request.body).trim().to_string();
        let mut words = body.split_whitespace().map(|w| w.parse::<usize>().ok());
        let (Some(Some(count)), Some(Some(size))) = (words.next(), words.next()) else {
            return Err(ConnectorError::BadRequest(
                "the body is `COUNT SIZE`".into(),
            ));
        };
        let value = vec![b'a'; size];
        let mut kept = Vec::with_capacity(count);
        let mut outcome = None;
        for n in 0..count {
            let fields = Fields::new();
            if let Err(e) = fields.append("x-pad", &value) {
                outcome = Some(format!("err:{n}:{e:?}"));
                break;
            }
            kept.push(fields);
        }
        let outcome = outcome.unwrap_or_else(|| format!("kept:{}", kept.len()));
        let id = format!("hoard-{}", kept.len());
        Ok(vec![
            Event::track(id, "hoarded", ContactRef::user("hoarder"))
                .with_properties(json!({ "outcome": outcome })),
        ])
    }
}

tessera_sdk::export_connector!(ResourceHoarder);
