//! A channel that POSTs each message as JSON to the URL in `to`, signed when a secret is set.
//!
//! Outcomes: a 2xx is a delivery (the provider id comes from `x-request-id`); 408, 429, 5xx,
//! timeouts and connection failures are retried (honouring `Retry-After` in seconds);
//! a destination the host refuses, a URL that is not http(s), and any other status fail
//! for good.

use std::time::Duration;

use tessera_sdk::http::{HttpError, Request, Response, Url};
use tessera_sdk::json::{Value, json};
use tessera_sdk::types::{Delivery, Message, SendError};
use tessera_sdk::{Channel, config, hmac, log};

/// One delivery attempt's timeout unless config `timeout_ms` says otherwise; below the
/// manifest's 5 s call limit, so a slow endpoint is a retryable timeout, not a killed call.
const DEFAULT_TIMEOUT_MS: u64 = 4000;
/// The endpoint's answer is only read for its status and headers; cap what is buffered.
const MAX_RESPONSE_BYTES: u64 = 64 * 1024;

/// The webhook channel.
pub struct WebhookChannel;

impl Channel for WebhookChannel {
    fn send(message: Message) -> Result<Delivery, SendError> {
        // `Url` only accepts http and https, so anything else fails here for good.
        let url = Url::parse(&message.to).map_err(|_| {
            SendError::permanent(format!(
                "`to` must be an http or https URL, not `{}`",
                message.to
            ))
        })?;
        let timeout = config::parse::<u64>("timeout_ms")
            .map_err(SendError::permanent)?
            .unwrap_or(DEFAULT_TIMEOUT_MS);
        let body = payload(&message).to_string();

        let mut request = Request::post(url.to_string())
            .header("content-type", "application/json")
            .header("idempotency-key", message.id.as_str())
            .header(
                "user-agent",
                concat!("tessera-webhook-channel/", env!("CARGO_PKG_VERSION")),
            )
            .timeout(Duration::from_millis(timeout))
            .max_response_bytes(MAX_RESPONSE_BYTES);
        if let Some(secret) = config::get("secret").filter(|s| !s.is_empty()) {
            let signature = hmac::sign_sha256_hex(secret.as_bytes(), body.as_bytes());
            request = request.header("x-tessera-signature", format!("sha256={signature}"));
        }

        let response = request
            .body(body)
            .send()
            .map_err(|e| from_http_error(e, &url))?;
        outcome(&response, &url)
    }
}

tessera_sdk::export_channel!(WebhookChannel);

/// The JSON body: the message's fields, metadata as a JSON value.
fn payload(message: &Message) -> Value {
    let metadata = tessera_sdk::serde_json::from_str::<Value>(&message.metadata)
        .unwrap_or_else(|_| Value::String(message.metadata.clone()));
    json!({
        "id": message.id,
        "channel": message.channel,
        "to": message.to,
        "subject": message.subject,
        "body": message.body,
        "content_type": message.content_type,
        "metadata": metadata,
    })
}

fn outcome(response: &Response, url: &Url) -> Result<Delivery, SendError> {
    let status = response.status;
    if response.is_success() {
        let mut delivery = Delivery::accepted().with_detail(format!("HTTP {status}"));
        if let Some(id) = response.header("x-request-id").filter(|id| !id.is_empty()) {
            delivery = delivery.with_provider_id(id);
        }
        return Ok(delivery);
    }
    let what = format!("{} answered HTTP {status}", url.authority);
    if status == 408 || status == 429 || (500..600).contains(&status) {
        let after_ms = response.header("retry-after").and_then(retry_after_ms);
        log::warn("webhook delivery will be retried", &[("status", &status)]);
        return Err(SendError::retryable_after(what, after_ms));
    }
    if (300..400).contains(&status) {
        return Err(SendError::permanent(format!(
            "{what}; redirects are not followed"
        )));
    }
    Err(SendError::permanent(what))
}

/// `Retry-After` given in seconds; the HTTP-date form is left to the host's back-off.
fn retry_after_ms(value: &str) -> Option<u64> {
    value
        .trim()
        .parse::<u64>()
        .ok()
        .map(|s| s.saturating_mul(1000))
}

fn from_http_error(error: HttpError, url: &Url) -> SendError {
    match error {
        HttpError::Denied(_) => SendError::permanent(format!(
            "{} is not allowed by the plugin's http capability (the operator must grant it)",
            url.authority
        )),
        HttpError::InvalidRequest(why) => SendError::permanent(why),
        HttpError::Timeout(why) => SendError::retryable(format!("timed out: {why}")),
        HttpError::Connect(why) => {
            SendError::retryable(format!("could not reach the endpoint: {why}"))
        }
        HttpError::TooLarge(why) | HttpError::Other(why) => SendError::retryable(why),
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use tessera_sdk::testing::Harness;

    fn message() -> Message {
        Message::new(
            "run-1:step-2",
            "webhook",
            "https://hooks.example.com/in",
            "Hello",
        )
        .with_subject("Hi")
        .with_metadata(json!({"contact": "c-1"}))
    }

    fn retry(result: Result<Delivery, SendError>) -> (String, Option<u64>) {
        match result {
            Err(SendError::Retryable(retry)) => (retry.message, retry.after_ms),
            other => panic!("expected a retryable error, got {other:?}"),
        }
    }

    fn permanent(result: Result<Delivery, SendError>) -> String {
        match result {
            Err(SendError::Permanent(why)) => why,
            other => panic!("expected a permanent error, got {other:?}"),
        }
    }

    #[test]
    fn posts_signed_json_with_idempotency_key() {
        let harness = Harness::new();
        harness
            .set_config("secret", "s3cret")
            .respond(Response::new(202).with_header("X-Request-Id", "prov-9"));
        let delivery = WebhookChannel::send(message()).unwrap();
        assert_eq!(delivery.provider_id.as_deref(), Some("prov-9"));
        assert_eq!(delivery.detail.as_deref(), Some("HTTP 202"));

        let sent = &harness.sent_requests()[0];
        assert_eq!(sent.method(), "POST");
        assert_eq!(sent.url(), "https://hooks.example.com/in");
        let header = |name: &str| {
            sent.headers()
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(header("idempotency-key").as_deref(), Some("run-1:step-2"));
        assert_eq!(header("content-type").as_deref(), Some("application/json"));
        let expected = format!(
            "sha256={}",
            hmac::sign_sha256_hex(b"s3cret", sent.body_bytes())
        );
        assert_eq!(header("x-tessera-signature"), Some(expected));

        let body: Value = tessera_sdk::serde_json::from_slice(sent.body_bytes()).unwrap();
        assert_eq!(
            body,
            json!({
                "id": "run-1:step-2", "channel": "webhook", "to": "https://hooks.example.com/in",
                "subject": "Hi", "body": "Hello", "content_type": "text/plain",
                "metadata": {"contact": "c-1"}
            })
        );
    }

    #[test]
    fn unsigned_without_secret() {
        let harness = Harness::new();
        harness.respond(Response::new(200));
        let delivery = WebhookChannel::send(message()).unwrap();
        assert_eq!(delivery.provider_id, None);
        let sent = &harness.sent_requests()[0];
        assert!(
            sent.headers()
                .iter()
                .all(|(k, _)| k != "x-tessera-signature")
        );
    }

    #[test]
    fn rate_limits_and_server_errors_are_retried() {
        let harness = Harness::new();
        harness.respond(Response::new(429).with_header("Retry-After", "30"));
        assert_eq!(retry(WebhookChannel::send(message())).1, Some(30_000));
        for status in [408, 500, 503] {
            harness.respond(
                Response::new(status).with_header("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT"),
            );
            let (why, after) = retry(WebhookChannel::send(message()));
            assert!(why.contains(&status.to_string()), "{why}");
            assert_eq!(after, None);
        }
    }

    #[test]
    fn other_client_errors_are_permanent() {
        let harness = Harness::new();
        harness.respond(Response::new(404));
        assert!(permanent(WebhookChannel::send(message())).contains("HTTP 404"));
        harness.respond(Response::new(301));
        assert!(permanent(WebhookChannel::send(message())).contains("redirects"));
    }

    #[test]
    fn timeouts_and_connection_failures_are_retried() {
        let harness = Harness::new();
        harness.fail_http(HttpError::Timeout("no answer".into()));
        assert!(
            retry(WebhookChannel::send(message()))
                .0
                .starts_with("timed out")
        );
        harness.fail_http(HttpError::Connect("ConnectionRefused".into()));
        assert!(
            retry(WebhookChannel::send(message()))
                .0
                .contains("could not reach")
        );
    }

    #[test]
    fn host_denial_is_permanent() {
        let harness = Harness::new();
        harness.fail_http(HttpError::Denied("HttpRequestDenied".into()));
        let why = permanent(WebhookChannel::send(message()));
        assert!(
            why.contains("not allowed by the plugin's http capability"),
            "{why}"
        );
    }

    #[test]
    fn non_http_destination_is_permanent_and_sends_nothing() {
        let harness = Harness::new();
        for to in ["mailto:ada@example.com", "ftp://example.com/x", "not a url"] {
            let why = permanent(WebhookChannel::send(Message {
                to: to.into(),
                ..message()
            }));
            assert!(why.contains("must be an http or https URL"), "{why}");
        }
        assert!(harness.sent_requests().is_empty());
    }

    #[test]
    fn configured_timeout_is_used() {
        let harness = Harness::new();
        harness
            .set_config("timeout_ms", 250)
            .respond(Response::new(200));
        WebhookChannel::send(message()).unwrap();
        assert_eq!(
            harness.sent_requests()[0].timeout_value(),
            Some(Duration::from_millis(250))
        );
    }
}
