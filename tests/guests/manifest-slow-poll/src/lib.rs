//! Test guest: a pull connector whose every poll takes 20 seconds, so that a test can kill
//! the host in the middle of a poll round and see what the restarted host makes of it.

use std::time::Duration;

use tessera_sdk::Connector;
use tessera_sdk::types::{ConnectorError, Event, HttpRequest, PollPage};

/// How long one poll takes.
const POLL_TAKES: Duration = Duration::from_secs(20);

/// The slow pull connector.
pub struct SlowPoll;

impl Connector for SlowPoll {
    fn handle_webhook(_request: HttpRequest) -> Result<Vec<Event>, ConnectorError> {
        Ok(Vec::new())
    }

    fn poll(cursor: Option<String>) -> Result<PollPage, ConnectorError> {
        std::thread::sleep(POLL_TAKES);
        Ok(PollPage {
            events: Vec::new(),
            cursor,
            more: false,
        })
    }
}

tessera_sdk::export_connector!(SlowPoll);
