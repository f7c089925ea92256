//! A Stripe webhook connector: checks `Stripe-Signature`, then maps the event.
//!
//! The endpoint's signing secret (`whsec_...`; the whole string is the HMAC key) is config
//! key `secret`. `Stripe-Signature` is the SDK's timestamped scheme
//! ([`tessera_sdk::signature`]): `t=<unix>,v1=<hex>`, several `v1` while a secret is being
//! rolled, `v0` (test-mode legacy) ignored, and `t` signed as the integer it reads as, as in
//! Stripe's libraries. A signature older than `tolerance_secs` (default 300, Stripe's own;
//! 0 turns the check off to replay old deliveries) is refused. See [`mapping`] for what
//! each event type becomes.

mod mapping;
#[cfg(test)]
mod samples;

use tessera_sdk::signature::TimestampedScheme;
use tessera_sdk::types::{ConnectorError, Event, HttpRequest};
use tessera_sdk::{Connector, log};

/// The header carrying the timestamped signatures, and how Stripe signs.
const SIGNATURE: TimestampedScheme = TimestampedScheme::new("Stripe-Signature");

/// The Stripe connector.
pub struct Stripe;

impl Connector for Stripe {
    fn handle_webhook(request: HttpRequest) -> Result<Vec<Event>, ConnectorError> {
        SIGNATURE.verify_request(&request)?;
        let events = mapping::events(&request.body)?;
        log::debug("mapped webhook", &[("events", &events.len())]);
        Ok(events)
    }

    fn self_test() -> Result<(), String> {
        SIGNATURE.check_config()
    }
}

tessera_sdk::export_connector!(Stripe);

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use tessera_sdk::json::json;
    use tessera_sdk::signature::{self, now_unix};
    use tessera_sdk::testing::{Harness, expect_unauthorized};
    use tessera_sdk::types::{EventKind, Identity};

    const SECRET: &str = "whsec_test_secret";

    fn signed_at(body: &str, timestamp: i64) -> HttpRequest {
        SIGNATURE.signed_request(SECRET.as_bytes(), timestamp, body)
    }

    fn signed(body: &str) -> HttpRequest {
        signed_at(body, now_unix())
    }

    #[test]
    fn documented_checkout_session_completed_maps_to_order_completed() {
        let _h = Harness::with_secret(SECRET);
        let events = Stripe::handle_webhook(signed(samples::CHECKOUT_SESSION_COMPLETED)).unwrap();
        assert_eq!(events.len(), 1);
        let event = &events[0];
        assert_eq!(event.id, "stripe:evt_1NG8Du2eZvKYlo2CUI79vXWy");
        assert_eq!(event.kind, EventKind::Track);
        assert_eq!(event.name.as_deref(), Some("Order Completed"));
        assert_eq!(event.timestamp.as_deref(), Some("2023-03-23T19:37:45Z"));
        assert_eq!(
            event.contact.identities,
            vec![
                Identity::new("stripe:customer", "cus_NffrFeUfNV2Hib"),
                Identity::new("email", "jenny.rosen@example.com"),
            ]
        );
        assert_eq!(
            event.properties_value(),
            json!({
                "order_id": "cs_test_a11YYufWQzNY63zpQ6QSNRQhkUpVph4WRmzW0zWJO2znZKdVujZ0N0S22u",
                "total": 21.98,
                "subtotal": 21.98,
                "tax": 0.0,
                "discount": 0.0,
                "shipping": 0.0,
                "currency": "USD",
                "payment_intent": "pi_3MoZwNLkdIwHu7ix1oJ1Kc2M",
                "mode": "payment",
                "payment_status": "paid"
            })
        );
    }

    #[test]
    fn zero_decimal_currencies_are_not_divided() {
        let _h = Harness::with_secret(SECRET);
        let body = samples::CHECKOUT_SESSION_COMPLETED
            .replace("\"currency\": \"usd\"", "\"currency\": \"jpy\"")
            .replace("2198", "1500");
        let events = Stripe::handle_webhook(signed(&body)).unwrap();
        let properties = events[0].properties_value();
        assert_eq!(properties["total"], 1500);
        assert_eq!(properties["currency"], "JPY");
    }

    #[test]
    fn signature_from_stripes_own_libraries_is_accepted() {
        // stripe-node's webhook test payload and secret. Both
        // `stripe.webhooks.generateTestHeaderString({payload, secret, timestamp})` (stripe-node)
        // and `WebhookSignature._compute_signature("%d.%s" % (t, payload), secret)`
        // (stripe-python) give this header; stripe-python's `verify_header` accepts it.
        const PAYLOAD: &str = "{\n  \"id\": \"evt_test_webhook\",\n  \"object\": \"event\"\n}";
        const LIBRARY_HEADER: &str =
            "t=1700000000,v1=4f1cd7feda9826e746b7d482c4badebb657398df1099e1046364f6196a230150";
        assert_eq!(
            format!(
                "t=1700000000,v1={}",
                signature::sign(SECRET.as_bytes(), 1_700_000_000, PAYLOAD.as_bytes())
            ),
            LIBRARY_HEADER
        );
        let h = Harness::with_secret(SECRET);
        // The header is old, so replaying it needs the age check off.
        h.set_config("tolerance_secs", 0);
        let request =
            HttpRequest::post("/", PAYLOAD).with_header("Stripe-Signature", LIBRARY_HEADER);
        // The signature passes; the payload has no `type`, so mapping refuses it.
        assert!(matches!(
            Stripe::handle_webhook(request),
            Err(ConnectorError::BadRequest(_))
        ));
    }

    #[test]
    fn wrong_secret_is_unauthorized() {
        let h = Harness::with_secret(SECRET);
        let request = signed(samples::CHECKOUT_SESSION_COMPLETED);
        h.set_config("secret", "whsec_another_endpoint");
        assert!(expect_unauthorized(Stripe::handle_webhook(request)).contains("does not match"));
    }

    #[test]
    fn missing_header_is_unauthorized() {
        let _h = Harness::with_secret(SECRET);
        let request = HttpRequest::post("/", samples::CHECKOUT_SESSION_COMPLETED);
        assert!(expect_unauthorized(Stripe::handle_webhook(request)).contains("missing"));
    }

    #[test]
    fn stale_timestamp_is_unauthorized_unless_the_check_is_off() {
        let h = Harness::with_secret(SECRET);
        let old = now_unix() - 301;
        let why = expect_unauthorized(Stripe::handle_webhook(signed_at(
            samples::CHECKOUT_SESSION_COMPLETED,
            old,
        )));
        assert!(why.contains("tolerance"), "{why}");
        h.set_config("tolerance_secs", 600);
        assert!(
            Stripe::handle_webhook(signed_at(samples::CHECKOUT_SESSION_COMPLETED, old)).is_ok()
        );
        h.set_config("tolerance_secs", 0);
        let ancient = signed_at(samples::CHECKOUT_SESSION_COMPLETED, 1_600_000_000);
        assert!(Stripe::handle_webhook(ancient).is_ok());
    }

    #[test]
    fn second_v1_matching_is_enough() {
        let _h = Harness::with_secret(SECRET);
        let body = samples::CHECKOUT_SESSION_COMPLETED;
        let t = now_unix();
        let old = signature::sign(b"whsec_rolled_secret", t, body.as_bytes());
        let new = signature::sign(SECRET.as_bytes(), t, body.as_bytes());
        let request = HttpRequest::post("/", body).with_header(
            "Stripe-Signature",
            format!("t={t},v1={old},v1={new},v0=6ffbb59b2300aae63f272406069a9788598b792a944a07aba816edb039989a39"),
        );
        assert_eq!(Stripe::handle_webhook(request).unwrap().len(), 1);
    }

    #[test]
    fn malformed_json_is_a_bad_request() {
        let _h = Harness::with_secret(SECRET);
        match Stripe::handle_webhook(signed("{\"id\": \"evt_1\", \"type\":")) {
            Err(ConnectorError::BadRequest(why)) => assert!(why.contains("JSON"), "{why}"),
            other => panic!("expected bad-request, got {other:?}"),
        }
    }

    #[test]
    fn unknown_type_is_acknowledged_without_events() {
        let _h = Harness::with_secret(SECRET);
        let body = json!({"id": "evt_1", "object": "event", "type": "payment_intent.created",
                          "created": 1, "data": {"object": {"id": "pi_1", "customer": "cus_1"}}});
        match Stripe::handle_webhook(signed(&body.to_string())) {
            Ok(events) => assert!(events.is_empty(), "{events:?}"),
            Err(e) => panic!("expected no events, got {e:?}"),
        }
    }

    #[test]
    fn self_test_needs_the_secret_and_a_valid_tolerance() {
        let h = Harness::new();
        assert_eq!(
            Stripe::self_test(),
            Err("config key `secret` is not set".to_string())
        );
        let why = expect_unauthorized(Stripe::handle_webhook(signed("{}")));
        assert!(why.contains("no `secret`"), "{why}");
        h.set_config("secret", SECRET);
        assert_eq!(Stripe::self_test(), Ok(()));
        h.set_config("tolerance_secs", "five minutes");
        assert!(Stripe::self_test().unwrap_err().contains("tolerance_secs"));
        assert!(
            expect_unauthorized(Stripe::handle_webhook(signed("{}"))).contains("tolerance_secs")
        );
    }

    #[test]
    fn polling_is_unsupported() {
        let _h = Harness::with_secret(SECRET);
        assert!(matches!(
            Stripe::poll(None),
            Err(ConnectorError::Unsupported(_))
        ));
    }
}
