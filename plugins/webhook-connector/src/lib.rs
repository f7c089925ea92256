//! A connector for generic signed JSON webhooks: checks the signature, then maps the events.
//!
//! The sender signs the raw body with the shared `secret` and sends
//! `X-Tessera-Signature: sha256=<hex HMAC-SHA256>`. The body is one Segment-style event
//! object, an array of them, or `{"batch": [...]}`; see [`mapping`] for the body and
//! [`tessera_sdk::segment`] for the fields of each event.

mod mapping;

use tessera_sdk::types::{ConnectorError, Event, HttpRequest};
use tessera_sdk::{Connector, config, hmac, log, signature};

/// The header carrying the body's signature.
const SIGNATURE_HEADER: &str = "x-tessera-signature";

/// The generic webhook connector.
pub struct GenericWebhook;

impl Connector for GenericWebhook {
    fn handle_webhook(request: HttpRequest) -> Result<Vec<Event>, ConnectorError> {
        verify_signature(&request)?;
        let events = mapping::events_from_body(&request.body)?;
        log::debug("mapped webhook", &[("events", &events.len())]);
        Ok(events)
    }

    fn self_test() -> Result<(), String> {
        config::require("secret").map(|_| ())
    }
}

tessera_sdk::export_connector!(GenericWebhook);

/// Checks `X-Tessera-Signature` against the HMAC-SHA256 of the raw body, in constant time.
fn verify_signature(request: &HttpRequest) -> Result<(), ConnectorError> {
    let unauthorized = |why: &str| ConnectorError::Unauthorized(why.to_string());
    let secret = signature::configured_secret()?;
    let header = request
        .header(SIGNATURE_HEADER)
        .ok_or_else(|| unauthorized("missing X-Tessera-Signature header"))?;
    let hex = header
        .trim()
        .strip_prefix("sha256=")
        .ok_or_else(|| unauthorized("X-Tessera-Signature must look like sha256=<hex>"))?;
    let mac =
        hmac::decode_hex(hex).map_err(|_| unauthorized("X-Tessera-Signature is not valid hex"))?;
    if hmac::verify_sha256(secret.as_bytes(), &request.body, &mac) {
        Ok(())
    } else {
        Err(unauthorized("X-Tessera-Signature does not match the body"))
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use tessera_sdk::testing::{Harness, expect_unauthorized};
    use tessera_sdk::types::EventKind;

    const SECRET: &str = "whsec_test";

    fn signed(body: &str) -> HttpRequest {
        let signature = hmac::sign_sha256_hex(SECRET.as_bytes(), body.as_bytes());
        HttpRequest::post("/", body)
            .with_header("X-Tessera-Signature", format!("sha256={signature}"))
    }

    #[test]
    fn signed_track_event_is_mapped() {
        let _h = Harness::with_secret(SECRET);
        let body = r#"{"type":"track","messageId":"m-1","userId":"u-1","event":"Order Completed","properties":{"total":42}}"#;
        let events = GenericWebhook::handle_webhook(signed(body)).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].id, "m-1");
        assert_eq!(events[0].kind, EventKind::Track);
        assert_eq!(events[0].name.as_deref(), Some("Order Completed"));
        assert_eq!(events[0].properties_value()["total"], 42);
    }

    #[test]
    fn missing_signature_is_unauthorized() {
        let _h = Harness::with_secret(SECRET);
        let why = expect_unauthorized(GenericWebhook::handle_webhook(HttpRequest::post("/", "{}")));
        assert!(why.contains("missing"), "{why}");
    }

    #[test]
    fn wrong_signature_is_unauthorized() {
        let _h = Harness::with_secret(SECRET);
        let mut request = signed(r#"{"type":"track","userId":"u","event":"x"}"#);
        request.body.push(b' ');
        let why = expect_unauthorized(GenericWebhook::handle_webhook(request));
        assert!(why.contains("does not match"), "{why}");
    }

    #[test]
    fn signature_without_prefix_or_hex_is_unauthorized() {
        let _h = Harness::with_secret(SECRET);
        let plain = HttpRequest::post("/", "{}").with_header("x-tessera-signature", "abcd");
        assert!(expect_unauthorized(GenericWebhook::handle_webhook(plain)).contains("sha256="));
        let junk = HttpRequest::post("/", "{}").with_header("x-tessera-signature", "sha256=zz");
        assert!(expect_unauthorized(GenericWebhook::handle_webhook(junk)).contains("hex"));
    }

    #[test]
    fn unset_secret_fails_self_test_and_requests() {
        let _h = Harness::new();
        assert_eq!(
            GenericWebhook::self_test(),
            Err("config key `secret` is not set".to_string())
        );
        let why = expect_unauthorized(GenericWebhook::handle_webhook(signed("{}")));
        assert!(why.contains("no `secret`"), "{why}");
    }

    #[test]
    fn set_secret_passes_self_test() {
        let _h = Harness::with_secret(SECRET);
        assert_eq!(GenericWebhook::self_test(), Ok(()));
    }

    #[test]
    fn malformed_body_is_a_bad_request_after_a_good_signature() {
        let _h = Harness::with_secret(SECRET);
        match GenericWebhook::handle_webhook(signed("{not json")) {
            Err(ConnectorError::BadRequest(why)) => assert!(why.contains("JSON"), "{why}"),
            other => panic!("expected bad-request, got {other:?}"),
        }
    }

    #[test]
    fn polling_is_unsupported() {
        let _h = Harness::with_secret(SECRET);
        assert!(matches!(
            GenericWebhook::poll(None),
            Err(ConnectorError::Unsupported(_))
        ));
    }
}
