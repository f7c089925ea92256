//! Test guest: a connector that floods the host's log with huge fields.
//!
//! `POST /fields` with body `LINES FIELDS MIB` writes LINES log records, each with FIELDS
//! fields whose values all point at one MIB-MiB buffer (default `100 16 4`): the guest holds
//! 4 MiB, a host that copies every field holds FIELDS x MIB MiB per record. `POST /lines`
//! with body `LINES` writes LINES short records. Either returns one event.

use std::mem::ManuallyDrop;

use tessera_sdk::Connector;
use tessera_sdk::bindings::connector::tessera::cx::log::{Level, log};
use tessera_sdk::types::{ConnectorError, ContactRef, Event, HttpRequest};

/// The flooding connector.
pub struct LogFlood;

impl Connector for LogFlood {
    fn handle_webhook(request: HttpRequest) -> Result<Vec<Event>, ConnectorError> {
        let body = String::from_utf8_lossy(&request.body).trim().to_string();
        let numbers: Vec<usize> = body
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        let arg = |i: usize, default: usize| numbers.get(i).copied().unwrap_or(default);
        match request.path.as_str() {
            "/fields" => {
                let (lines, fields, mib) = (arg(0, 100), arg(1, 16), arg(2, 4));
                let value = ManuallyDrop::new("v".repeat(mib << 20));
                // Every value aliases `value`; the list is never dropped, so nothing is freed
                // twice.
                let list: ManuallyDrop<Vec<(String, String)>> = ManuallyDrop::new(
                    (0..fields)
                        .map(|i| {
                            // SAFETY: the bytes are never written nor freed.
                            let alias = unsafe {
                                String::from_raw_parts(
                                    value.as_ptr().cast_mut(),
                                    value.len(),
                                    value.capacity(),
                                )
                            };
                            (format!("field{i}"), alias)
                        })
                        .collect(),
                );
                for n in 0..lines {
                    log(Level::Info, &format!("flood line {n}"), &list);
                }
            }
            "/lines" => {
                for n in 0..arg(0, 100) {
                    log(Level::Info, &format!("short line {n}"), &[]);
                }
            }
            other => return Err(ConnectorError::Unsupported(format!("no route `{other}`"))),
        }
        Ok(vec![Event::track(
            format!("flood-{body}"),
            "flooded",
            ContactRef::user("flooder"),
        )])
    }
}

tessera_sdk::export_connector!(LogFlood);
