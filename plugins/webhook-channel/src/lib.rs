//! A channel that POSTs each message as JSON to an HTTP endpoint, signed per the Standard
//! Webhooks spec (<https://www.standardwebhooks.com>) when a secret is set.
//!
//! The endpoint is the message's `to` when it is an http(s) URL, else config `url`. Each
//! request carries `webhook-id` (the message id: the same on every attempt, so receivers
//! deduplicate on it), `webhook-timestamp` (unix seconds) and, with config `secret`
//! (`whsec_` + base64), `webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`.
//!
//! Outcomes: a 2xx is a delivery (the provider id comes from `x-request-id`); 408, 429, 5xx,
//! timeouts and connection failures are retried (honouring `Retry-After` in seconds); a
//! destination the host refuses, a URL that is not http(s), redirects and other statuses
//! fail for good.

use std::time::Duration;

use tessera_sdk::http::{HttpError, Request, Response, Url};
use tessera_sdk::json::{Value, json};
use tessera_sdk::signature::now_unix;
use tessera_sdk::types::{Delivery, Message, SendError};
use tessera_sdk::{Channel, config, hmac, log};

/// One delivery attempt's timeout unless config `timeout_ms` says otherwise; below the
/// manifest's 5 s call limit, so a slow endpoint is a retryable timeout, not a killed call.
const DEFAULT_TIMEOUT_MS: u64 = 4000;
/// The endpoint's answer is only read for its status and headers; cap what is buffered.
const MAX_RESPONSE_BYTES: u64 = 64 * 1024;
/// The prefix of a Standard Webhooks secret.
const SECRET_PREFIX: &str = "whsec_";

/// The webhook channel.
pub struct WebhookChannel;

impl Channel for WebhookChannel {
    fn send(message: Message) -> Result<Delivery, SendError> {
        let url = destination(&message)?;
        let timeout = config::parse::<u64>("timeout_ms")
            .map_err(SendError::permanent)?
            .unwrap_or(DEFAULT_TIMEOUT_MS);
        let key = signing_key().map_err(SendError::permanent)?;
        let body = payload(&message).to_string();
        let timestamp = now_unix();

        let mut request = Request::post(url.to_string())
            .header("content-type", "application/json")
            .header("idempotency-key", message.id.as_str())
            .header("webhook-id", message.id.as_str())
            .header("webhook-timestamp", timestamp.to_string())
            .header(
                "user-agent",
                concat!("tessera-webhook-channel/", env!("CARGO_PKG_VERSION")),
            )
            .timeout(Duration::from_millis(timeout))
            .max_response_bytes(MAX_RESPONSE_BYTES);
        if let Some(key) = key {
            request = request.header(
                "webhook-signature",
                signature(&key, &message.id, timestamp, body.as_bytes()),
            );
        }

        let response = request
            .body(body)
            .send()
            .map_err(|e| from_http_error(e, &url))?;
        outcome(&response, &url)
    }

    /// Refuses to go live with a secret that is not `whsec_` + base64, or a `url` that is not
    /// http(s).
    fn self_test() -> Result<(), String> {
        signing_key()?;
        if let Some(url) = config::get("url").filter(|u| !u.is_empty()) {
            Url::parse(&url)
                .map_err(|_| format!("`url` must be an http or https URL, not `{url}`"))?;
        }
        Ok(())
    }
}

tessera_sdk::export_channel!(WebhookChannel);

/// Where the message goes: `to` when it names one, else config `url`.
fn destination(message: &Message) -> Result<Url, SendError> {
    let (text, whence) = if message.to.is_empty() {
        match config::get("url").filter(|u| !u.is_empty()) {
            Some(url) => (url, "config `url`"),
            None => {
                return Err(SendError::permanent(
                    "no destination: the message has no `to` and the channel no config `url`",
                ));
            }
        }
    } else {
        (message.to.clone(), "`to`")
    };
    // `Url` only accepts http and https, so anything else fails here for good.
    Url::parse(&text).map_err(|_| {
        SendError::permanent(format!(
            "{whence} must be an http or https URL, not `{text}`"
        ))
    })
}

/// The HMAC key from config `secret` (`whsec_` + base64, 24 to 64 bytes), none when unset.
fn signing_key() -> Result<Option<Vec<u8>>, String> {
    let Some(secret) = config::get("secret").filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let encoded = secret.strip_prefix(SECRET_PREFIX).ok_or_else(|| {
        format!("`secret` must start with `{SECRET_PREFIX}` (a Standard Webhooks secret)")
    })?;
    let key = hmac::decode_base64(encoded)
        .map_err(|_| format!("`secret` must be `{SECRET_PREFIX}` followed by base64"))?;
    if !(24..=64).contains(&key.len()) {
        return Err(format!(
            "`secret` must hold 24 to 64 bytes after `{SECRET_PREFIX}`, not {}",
            key.len()
        ));
    }
    Ok(Some(key))
}

/// `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`.
fn signature(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut signed = format!("{id}.{timestamp}.").into_bytes();
    signed.extend_from_slice(body);
    format!(
        "v1,{}",
        hmac::encode_base64(&hmac::sign_sha256(key, &signed))
    )
}

/// The JSON body: the message's fields, metadata (and a JSON body) as JSON values.
fn payload(message: &Message) -> Value {
    let metadata = tessera_sdk::serde_json::from_str::<Value>(&message.metadata)
        .unwrap_or_else(|_| Value::String(message.metadata.clone()));
    let body = match message.content_type.as_str() {
        "application/json" => tessera_sdk::serde_json::from_str::<Value>(&message.body)
            .unwrap_or_else(|_| Value::String(message.body.clone())),
        _ => Value::String(message.body.clone()),
    };
    let mut payload = json!({
        "id": message.id,
        "channel": message.channel,
        "to": message.to,
        "subject": message.subject,
        "body": body,
        "content_type": message.content_type,
        "metadata": metadata,
    });
    if let Some(html) = &message.html {
        payload["html"] = json!(html);
    }
    if !message.headers.is_empty() {
        payload["headers"] = message
            .headers
            .iter()
            .map(|h| json!({ "name": h.name, "value": h.value }))
            .collect();
    }
    payload
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

    /// The example secret of the Standard Webhooks spec's test vectors.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn message() -> Message {
        Message::new(
            "run-1.2",
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

    fn header(sent: &Request, name: &str) -> Option<String> {
        sent.headers()
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }

    /// The Standard Webhooks spec's test vector: this id, timestamp and body signed with
    /// [`SECRET`] give this signature.
    #[test]
    fn signatures_match_the_standard_webhooks_test_vector() {
        let key = hmac::decode_base64("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            signature(
                &key,
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn posts_signed_json_with_the_message_id_as_webhook_id() {
        let harness = Harness::new();
        harness
            .set_config("secret", SECRET)
            .respond(Response::new(202).with_header("X-Request-Id", "prov-9"));
        let delivery = WebhookChannel::send(message().with_html("<p>Hello</p>")).unwrap();
        assert_eq!(delivery.provider_id.as_deref(), Some("prov-9"));
        assert_eq!(delivery.detail.as_deref(), Some("HTTP 202"));

        let sent = &harness.sent_requests()[0];
        assert_eq!(sent.method(), "POST");
        assert_eq!(sent.url(), "https://hooks.example.com/in");
        assert_eq!(header(sent, "webhook-id").as_deref(), Some("run-1.2"));
        assert_eq!(header(sent, "idempotency-key").as_deref(), Some("run-1.2"));
        let timestamp: i64 = header(sent, "webhook-timestamp").unwrap().parse().unwrap();
        let key = signing_key().unwrap().unwrap();
        assert_eq!(
            header(sent, "webhook-signature"),
            Some(signature(&key, "run-1.2", timestamp, sent.body_bytes()))
        );
        let body: Value = tessera_sdk::serde_json::from_slice(sent.body_bytes()).unwrap();
        assert_eq!(
            body,
            json!({
                "id": "run-1.2", "channel": "webhook", "to": "https://hooks.example.com/in",
                "subject": "Hi", "body": "Hello", "content_type": "text/plain",
                "metadata": {"contact": "c-1"}, "html": "<p>Hello</p>"
            })
        );
    }

    #[test]
    fn a_json_body_travels_as_json_to_the_configured_url() {
        let harness = Harness::new();
        harness
            .set_config("url", "https://hooks.example.com/fixed")
            .respond(Response::new(200));
        let m = Message {
            to: String::new(),
            ..message()
        }
        .with_content_type("application/json");
        let m = Message {
            body: r#"{"order":7}"#.into(),
            ..m
        };
        WebhookChannel::send(m).unwrap();
        let sent = &harness.sent_requests()[0];
        assert_eq!(sent.url(), "https://hooks.example.com/fixed");
        assert_eq!(
            header(sent, "webhook-signature"),
            None,
            "no secret, no signature"
        );
        let body: Value = tessera_sdk::serde_json::from_slice(sent.body_bytes()).unwrap();
        assert_eq!(body["body"], json!({"order": 7}));
    }

    #[test]
    fn a_secret_that_is_not_standard_keeps_the_version_from_going_live() {
        let harness = Harness::new();
        for (secret, why) in [
            ("s3cret", "must start with `whsec_`"),
            ("whsec_!!!", "followed by base64"),
            ("whsec_c2hvcnQ=", "24 to 64 bytes"),
        ] {
            harness.set_config("secret", secret);
            let e = WebhookChannel::self_test().unwrap_err();
            assert!(e.contains(why), "{why} in {e}");
            assert!(permanent(WebhookChannel::send(message())).contains(why));
        }
        harness
            .set_config("secret", SECRET)
            .set_config("url", "ftp://x");
        assert!(WebhookChannel::self_test().unwrap_err().contains("`url`"));
        harness.set_config("url", "https://hooks.example.com/");
        WebhookChannel::self_test().unwrap();
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
        for status in [400, 404, 410] {
            harness.respond(Response::new(status));
            assert!(permanent(WebhookChannel::send(message())).contains(&format!("HTTP {status}")));
        }
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
    fn a_destination_that_is_not_http_is_permanent_and_sends_nothing() {
        let harness = Harness::new();
        for to in ["mailto:ada@example.com", "ftp://example.com/x", "not a url"] {
            let why = permanent(WebhookChannel::send(Message {
                to: to.into(),
                ..message()
            }));
            assert!(why.contains("must be an http or https URL"), "{why}");
        }
        let why = permanent(WebhookChannel::send(Message {
            to: String::new(),
            ..message()
        }));
        assert!(why.contains("no destination"), "{why}");
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
