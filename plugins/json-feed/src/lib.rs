//! A pull connector for a paginated JSON feed of Segment-style events.
//!
//! Each poll GETs `url?cursor=<cursor>&limit=<page_size>` (no `cursor` on the first poll),
//! with `Authorization: Bearer <token>` when a token is set, and expects
//! `{"events": [...], "next_cursor": "..." | null, "has_more": bool}`. The events are
//! Segment-style objects read by [`tessera_sdk::segment`]; one without `messageId` gets
//! `whk-<first 32 hex digits of the SHA-256 of the compact JSON of the page's events>-<index>`,
//! so a page fetched again gets the same ids. `next_cursor` becomes the page's cursor and
//! `has_more` asks the host for the next page at once. A failed request or a non-2xx answer
//! is an `upstream` error (the host backs off); an answer that is not such a page is a
//! `bad-request`. Webhooks are not taken.

use std::time::Duration;

use tessera_sdk::http::{Request, Url};
use tessera_sdk::json::{self, Value};
use tessera_sdk::types::{ConnectorError, Event, HttpRequest, PollPage};
use tessera_sdk::{Connector, config, hash, log, segment};

/// Events asked for per page unless config `page_size` says otherwise.
const DEFAULT_PAGE_SIZE: u32 = 100;
/// The largest `page_size` accepted.
const MAX_PAGE_SIZE: u32 = 1000;
/// One request's timeout: below the manifest's 10 s call limit, so a slow feed is an
/// `upstream` error rather than a killed call.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(8);
/// How much of an error answer's body is quoted in the error.
const QUOTED_BODY_CHARS: usize = 200;

/// The JSON feed connector.
pub struct JsonFeed;

impl Connector for JsonFeed {
    fn handle_webhook(_request: HttpRequest) -> Result<Vec<Event>, ConnectorError> {
        Err(ConnectorError::Unsupported(
            "json-feed pulls its events by polling; it takes no webhooks".to_string(),
        ))
    }

    fn poll(cursor: Option<String>) -> Result<PollPage, ConnectorError> {
        let settings = Settings::from_config().map_err(ConnectorError::BadRequest)?;
        let url = settings.page_url(cursor.as_deref());
        let mut request = Request::get(url.as_str())
            .header("accept", "application/json")
            .header(
                "user-agent",
                concat!("tessera-json-feed/", env!("CARGO_PKG_VERSION")),
            )
            .timeout(REQUEST_TIMEOUT);
        if let Some(token) = &settings.token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let response = request
            .send()
            .map_err(|e| ConnectorError::Upstream(format!("GET {url}: {e}")))?;
        if !response.is_success() {
            let text = response.text();
            let quoted: String = text.chars().take(QUOTED_BODY_CHARS).collect();
            return Err(ConnectorError::Upstream(format!(
                "GET {url} answered HTTP {}: {}",
                response.status,
                quoted.trim()
            )));
        }
        let page = parse_page(&response.body)?;
        log::debug(
            "polled the feed",
            &[("events", &page.events.len()), ("more", &page.more)],
        );
        Ok(page)
    }

    fn self_test() -> Result<(), String> {
        Settings::from_config().map(drop)
    }
}

tessera_sdk::export_connector!(JsonFeed);

/// The operator's config, checked.
struct Settings {
    url: Url,
    token: Option<String>,
    page_size: u32,
}

impl Settings {
    fn from_config() -> Result<Self, String> {
        let raw = config::require("url")?;
        let url = Url::parse(&raw)
            .map_err(|e| format!("config key `url` must be an http or https URL: {e}"))?;
        let page_size = config::parse::<u32>("page_size")?.unwrap_or(DEFAULT_PAGE_SIZE);
        if !(1..=MAX_PAGE_SIZE).contains(&page_size) {
            return Err(format!(
                "config key `page_size` must be between 1 and {MAX_PAGE_SIZE}, not {page_size}"
            ));
        }
        let token = config::get("token").filter(|t| !t.is_empty());
        Ok(Self {
            url,
            token,
            page_size,
        })
    }

    /// The URL of the page after `cursor`: the feed URL with `cursor` (when there is one)
    /// and `limit` added to its query.
    fn page_url(&self, cursor: Option<&str>) -> String {
        let mut url = self.url.to_string();
        if !url.contains('?') {
            url.push('?');
        } else if !url.ends_with(['?', '&']) {
            url.push('&');
        }
        if let Some(cursor) = cursor {
            url.push_str("cursor=");
            url.push_str(&percent_encode(cursor));
            url.push('&');
        }
        url.push_str(&format!("limit={}", self.page_size));
        url
    }
}

/// `text` with everything but unreserved URL characters percent-encoded.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn bad(message: impl Into<String>) -> ConnectorError {
    ConnectorError::BadRequest(message.into())
}

/// Reads one page: `events` (required), `next_cursor` and `has_more` (optional).
fn parse_page(body: &[u8]) -> Result<PollPage, ConnectorError> {
    let mut page = json::parse_object(body).map_err(|e| bad(format!("the feed's answer: {e}")))?;
    let events = match page.remove("events") {
        Some(Value::Array(items)) => items,
        Some(other) => {
            return Err(bad(format!(
                "the feed's `events` must be an array, not {}",
                json::type_name(&other)
            )));
        }
        None => return Err(bad("the feed's answer has no `events` array")),
    };
    let cursor = match page.get("next_cursor") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(other) => {
            return Err(bad(format!(
                "the feed's `next_cursor` must be a string or null, not {}",
                json::type_name(other)
            )));
        }
    };
    let more = match page.get("has_more") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(more)) => *more,
        Some(other) => {
            return Err(bad(format!(
                "the feed's `has_more` must be a boolean, not {}",
                json::type_name(other)
            )));
        }
    };
    if more && cursor.is_none() {
        return Err(bad(
            "the feed says `has_more` but gives no `next_cursor` to ask for the next page",
        ));
    }
    // Only needed when an event has no messageId; computed at most once.
    let mut events_digest = None;
    let events = segment::events(&events, |index| {
        let digest = events_digest.get_or_insert_with(|| {
            hash::sha256_hex(Value::Array(events.clone()).to_string().as_bytes())
        });
        format!("whk-{}-{index}", &digest[..32])
    })
    .map_err(|e| match e {
        ConnectorError::BadRequest(why) => bad(format!("the feed's page: {why}")),
        other => other,
    })?;
    Ok(PollPage {
        events,
        cursor,
        more,
    })
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use tessera_sdk::http::{HttpError, Response};
    use tessera_sdk::json::json;
    use tessera_sdk::testing::{Harness, expect_bad_request};
    use tessera_sdk::types::EventKind;

    const FEED: &str = "https://feed.example.com/v1/events";

    fn harness() -> Harness {
        let harness = Harness::new();
        harness.set_config("url", FEED);
        harness
    }

    fn page(events: Value, next_cursor: Value, has_more: bool) -> Response {
        Response::new(200).with_body(
            json!({ "events": events, "next_cursor": next_cursor, "has_more": has_more })
                .to_string(),
        )
    }

    fn track(id: &str, user: &str) -> Value {
        json!({ "type": "track", "messageId": id, "userId": user, "event": "Order Completed",
                "properties": { "total": 42 }, "timestamp": "2030-01-01T00:00:00Z" })
    }

    fn header<'a>(request: &'a Request, name: &str) -> Option<&'a str> {
        request
            .headers()
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn upstream(result: Result<PollPage, ConnectorError>) -> String {
        match result {
            Err(ConnectorError::Upstream(why)) => why,
            other => panic!("expected upstream, got {other:?}"),
        }
    }

    #[test]
    fn first_poll_has_no_cursor_and_maps_the_page() {
        let h = harness();
        h.set_config("token", "feed-token");
        let identify = json!({ "type": "identify", "messageId": "m-2", "anonymousId": "a-1",
                               "traits": { "email": "ada@example.com", "plan": "pro" } });
        h.respond(page(
            json!([track("m-1", "u-1"), identify]),
            json!("c-1"),
            true,
        ));

        let page = JsonFeed::poll(None).unwrap();
        assert_eq!(page.cursor.as_deref(), Some("c-1"));
        assert!(page.more);
        assert_eq!(page.events.len(), 2);
        assert_eq!(page.events[0].id, "m-1");
        assert_eq!(page.events[0].kind, EventKind::Track);
        assert_eq!(page.events[0].name.as_deref(), Some("Order Completed"));
        assert_eq!(page.events[0].contact.user_id.as_deref(), Some("u-1"));
        assert_eq!(page.events[0].properties_value()["total"], 42);
        assert_eq!(
            page.events[0].timestamp.as_deref(),
            Some("2030-01-01T00:00:00Z")
        );
        assert_eq!(page.events[1].kind, EventKind::Identify);
        assert_eq!(page.events[1].traits_value()["plan"], "pro");
        assert_eq!(
            page.events[1].contact.identities[0].value,
            "ada@example.com"
        );

        let sent = h.sent_requests();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].method(), "GET");
        assert_eq!(sent[0].url(), format!("{FEED}?limit=100"));
        assert_eq!(header(&sent[0], "authorization"), Some("Bearer feed-token"));
    }

    #[test]
    fn later_polls_send_the_cursor_encoded_and_the_page_size() {
        let h = Harness::new();
        h.set_config("url", format!("{FEED}?stream=orders#ignored"))
            .set_config("page_size", 5);
        h.respond(page(json!([]), Value::Null, false));

        let page = JsonFeed::poll(Some("2030-01-01T00:00:00Z/a b&c".into())).unwrap();
        assert!(page.events.is_empty());
        assert_eq!(page.cursor, None, "no next cursor keeps the current one");
        assert!(!page.more);
        let sent = h.sent_requests();
        assert_eq!(
            sent[0].url(),
            format!("{FEED}?stream=orders&cursor=2030-01-01T00%3A00%3A00Z%2Fa%20b%26c&limit=5")
        );
        assert_eq!(
            header(&sent[0], "authorization"),
            None,
            "no token, no header"
        );
    }

    #[test]
    fn a_trailing_question_mark_or_ampersand_is_reused() {
        for (url, want) in [
            (format!("{FEED}?"), format!("{FEED}?limit=100")),
            (format!("{FEED}?a=1&"), format!("{FEED}?a=1&limit=100")),
        ] {
            let h = Harness::new();
            h.set_config("url", url.as_str());
            h.respond(page(json!([]), Value::Null, false));
            JsonFeed::poll(None).unwrap();
            assert_eq!(h.sent_requests()[0].url(), want);
        }
    }

    #[test]
    fn http_failures_are_upstream_errors() {
        let h = harness();
        h.respond(Response::new(500).with_body("database is down"));
        let why = upstream(JsonFeed::poll(Some("c-3".into())));
        assert!(
            why.contains("HTTP 500") && why.contains("database is down"),
            "{why}"
        );

        h.fail_http(HttpError::Connect("connection refused".into()));
        let why = upstream(JsonFeed::poll(None));
        assert!(why.contains("connection refused"), "{why}");

        h.fail_http(HttpError::Denied("not granted".into()));
        assert!(upstream(JsonFeed::poll(None)).contains("denied"));
    }

    #[test]
    fn answers_that_are_not_pages_are_bad_requests() {
        let h = harness();
        let cases = [
            ("{not json", "not valid JSON"),
            ("[]", "must be a JSON object"),
            (r#"{"next_cursor": "c"}"#, "no `events` array"),
            (r#"{"events": {}}"#, "`events` must be an array"),
            (
                r#"{"events": [], "next_cursor": true}"#,
                "`next_cursor` must be",
            ),
            (
                r#"{"events": [], "has_more": "yes"}"#,
                "`has_more` must be a boolean",
            ),
            (r#"{"events": [], "has_more": true}"#, "no `next_cursor`"),
            (
                r#"{"events": [{"type": "track", "messageId": "m", "userId": "u", "event": "A"}, {"type": "shout", "userId": "u"}]}"#,
                "the feed's page: event 1: unknown type `shout`",
            ),
        ];
        for (body, want) in cases {
            h.respond(Response::new(200).with_body(body));
            let why = expect_bad_request(JsonFeed::poll(None));
            assert!(why.contains(want), "{body}: {why} should mention {want}");
        }
    }

    #[test]
    fn missing_message_ids_are_derived_from_the_page_events() {
        let h = harness();
        let events = json!([
            {"type": "track", "userId": "u-1", "event": "A"},
            track("m-2", "u-1")
        ]);
        let digest = hash::sha256_hex(events.to_string().as_bytes());
        h.respond(page(events.clone(), json!("c-1"), false));
        let first = JsonFeed::poll(None).unwrap();
        assert_eq!(first.events[0].id, format!("whk-{}-0", &digest[..32]));
        assert_eq!(first.events[1].id, "m-2");

        h.respond(page(events, json!("c-2"), true));
        let again = JsonFeed::poll(None).unwrap();
        assert_eq!(
            again.events[0].id, first.events[0].id,
            "same events, same ids"
        );
    }

    #[test]
    fn numeric_cursors_are_taken_as_text() {
        let h = harness();
        h.respond(page(json!([track("m-1", "u-1")]), json!(17), true));
        assert_eq!(JsonFeed::poll(None).unwrap().cursor.as_deref(), Some("17"));
    }

    #[test]
    fn webhooks_are_unsupported() {
        let _h = harness();
        assert!(matches!(
            JsonFeed::handle_webhook(HttpRequest::post("/", "{}")),
            Err(ConnectorError::Unsupported(_))
        ));
    }

    #[test]
    fn self_test_checks_the_config() {
        let h = Harness::new();
        assert_eq!(
            JsonFeed::self_test(),
            Err("config key `url` is not set".to_string())
        );
        h.set_config("url", "ftp://feed.example.com/");
        assert!(JsonFeed::self_test().unwrap_err().contains("http or https"));
        h.set_config("url", FEED).set_config("page_size", 0);
        assert!(JsonFeed::self_test().unwrap_err().contains("between 1 and"));
        h.set_config("page_size", "many");
        assert!(JsonFeed::self_test().unwrap_err().contains("page_size"));
        h.set_config("page_size", 50);
        assert_eq!(JsonFeed::self_test(), Ok(()));
        assert!(h.sent_requests().is_empty(), "the self-test sends nothing");
    }

    #[test]
    fn a_missing_url_at_poll_time_is_a_bad_request() {
        let _h = Harness::new();
        assert!(expect_bad_request(JsonFeed::poll(None)).contains("`url`"));
    }
}
