//! Test guest: the `versioned` connector, built twice (`version-a`, `version-b`) from this file.
//!
//! Each build answers every webhook with one `track` event named after its package's last
//! letter (`a` or `b`) whose id is the request body, so a test can tell which version served.
//! A webhook to `/fetch` first GETs the URL in its body and puts the answer's status and text
//! in the event's properties (the manifest must allow the host).

use tessera_sdk::Connector;
use tessera_sdk::http::Request;
use tessera_sdk::json::json;
use tessera_sdk::types::{ConnectorError, ContactRef, Event, HttpRequest};

/// `a` for `tessera-guest-version-a`, `b` for `tessera-guest-version-b`.
const LETTER: &str = {
    let name = env!("CARGO_PKG_NAME").as_bytes();
    match name.split_last() {
        Some((b'a', _)) => "a",
        Some((b'b', _)) => "b",
        _ => panic!("the package name must end in a or b"),
    }
};

/// The versioned connector.
pub struct Versioned;

impl Connector for Versioned {
    fn handle_webhook(request: HttpRequest) -> Result<Vec<Event>, ConnectorError> {
        let id = String::from_utf8_lossy(&request.body).into_owned();
        let event = Event::track(id.clone(), LETTER, ContactRef::user("versioned"));
        if request.path != "/fetch" {
            return Ok(vec![event]);
        }
        let answer = Request::get(&id)
            .send()
            .map_err(|e| ConnectorError::Upstream(e.message().to_string()))?;
        let text = String::from_utf8_lossy(&answer.body).into_owned();
        Ok(vec![event.with_properties(
            json!({ "status": answer.status, "answer": text }),
        )])
    }
}

tessera_sdk::export_connector!(Versioned);
