//! A Calendly webhook connector: checks `Calendly-Webhook-Signature`, then maps the booking.
//!
//! The webhook signing key is config key `secret`. `Calendly-Webhook-Signature` is the SDK's
//! timestamped scheme ([`tessera_sdk::signature`]): `t=<unix>,v1=<hex>`, with `t` signed
//! exactly as the header spells it (Calendly's own example code concatenates the text). A
//! signature older than `tolerance_secs` is refused; Calendly's example uses three minutes,
//! this connector defaults to five (300 s) so a delayed retry or a slightly slow clock does
//! not fail, and 0 turns the check off to replay old deliveries. See [`mapping`] for the
//! events.

mod mapping;
#[cfg(test)]
mod samples;

use tessera_sdk::signature::{SignedTimestamp, TimestampedScheme};
use tessera_sdk::types::{ConnectorError, Event, HttpRequest};
use tessera_sdk::{Connector, log};

/// The header carrying the timestamped signature, and how Calendly signs.
const SIGNATURE: TimestampedScheme =
    TimestampedScheme::new("Calendly-Webhook-Signature").signing_timestamp(SignedTimestamp::AsSent);

/// The Calendly connector.
pub struct Calendly;

impl Connector for Calendly {
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

tessera_sdk::export_connector!(Calendly);

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use tessera_sdk::json::json;
    use tessera_sdk::signature::{self, now_unix};
    use tessera_sdk::testing::{Harness, expect_unauthorized};
    use tessera_sdk::types::{EventKind, Identity};

    const KEY: &str = "calendly_test_signing_key";
    const INVITEE: &str =
        "https://api.calendly.com/scheduled_events/AAAAAAAAAAAAAAAA/invitees/AAAAAAAAAAAAAAAA";

    fn signed_at(body: &str, timestamp: i64) -> HttpRequest {
        SIGNATURE.signed_request(KEY.as_bytes(), timestamp, body)
    }

    fn signed(body: &str) -> HttpRequest {
        signed_at(body, now_unix())
    }

    /// The documented example as an `invitee.canceled` delivery for the same invitee.
    fn canceled_sample() -> String {
        let mut body = tessera_sdk::json::parse(samples::INVITEE_CREATED.as_bytes()).unwrap();
        body["event"] = json!("invitee.canceled");
        body["created_at"] = json!("2020-11-24T09:12:00.000000Z");
        body["payload"]["status"] = json!("canceled");
        body["payload"]["cancellation"] = json!({
            "canceled_by": "John Doe", "reason": "Schedule conflict", "canceler_type": "invitee",
            "created_at": "2020-11-24T09:11:59.000000Z"
        });
        body.to_string()
    }

    #[test]
    fn documented_invitee_created_maps_to_meeting_scheduled() {
        let _h = Harness::with_secret(KEY);
        let events = Calendly::handle_webhook(signed(samples::INVITEE_CREATED)).unwrap();
        assert_eq!(events.len(), 1);
        let event = &events[0];
        assert_eq!(event.id, format!("calendly:{INVITEE}:invitee.created"));
        assert_eq!(event.kind, EventKind::Track);
        assert_eq!(event.name.as_deref(), Some("Meeting Scheduled"));
        assert_eq!(
            event.timestamp.as_deref(),
            Some("2020-11-23T17:51:19.000000Z")
        );
        assert_eq!(
            event.contact.identities,
            vec![
                Identity::new("calendly:invitee", INVITEE),
                Identity::new("email", "test@example.com"),
            ]
        );
        assert_eq!(
            event.traits_value(),
            json!({"email": "test@example.com", "name": "John Doe"})
        );
        assert_eq!(
            event.properties_value(),
            json!({
                "event_type_name": "15 Minute Meeting",
                "event_type": "https://api.calendly.com/event_types/GBGBDCAADAEDCRZ2",
                "start_time": "2019-08-24T14:15:22.123456Z",
                "end_time": "2019-08-24T14:15:22.123456Z",
                "scheduled_event_uri": "https://api.calendly.com/scheduled_events/GBGBDCAADAEDCRZ2",
                "invitee_uri": INVITEE,
                "location_type": "physical",
                "timezone": "America/New_York",
                "rescheduled": false
            })
        );
    }

    #[test]
    fn invitee_canceled_maps_to_meeting_canceled_with_its_own_id() {
        let _h = Harness::with_secret(KEY);
        let events = Calendly::handle_webhook(signed(&canceled_sample())).unwrap();
        let event = &events[0];
        assert_eq!(event.id, format!("calendly:{INVITEE}:invitee.canceled"));
        assert_eq!(event.name.as_deref(), Some("Meeting Canceled"));
        let properties = event.properties_value();
        assert_eq!(properties["cancel_reason"], "Schedule conflict");
        assert_eq!(properties["canceled_by"], "John Doe");
        assert_eq!(properties["canceler_type"], "invitee");
        assert_eq!(properties["start_time"], "2019-08-24T14:15:22.123456Z");
    }

    #[test]
    fn signature_from_calendlys_documented_code_is_accepted() {
        // Calendly's example verification code computes
        // `crypto.createHmac('sha256', key).update(t + '.' + body, 'utf8').digest('hex')`;
        // run with this key, timestamp and body it gives this header.
        const BODY: &str = r#"{"event":"invitee.created","payload":{"uri":"https://api.calendly.com/scheduled_events/AAAAAAAAAAAAAAAA/invitees/AAAAAAAAAAAAAAAA","email":"test@example.com","name":"John Doe"}}"#;
        const DOCUMENTED_HEADER: &str =
            "t=1492774577,v1=3452bacc014e10c8ef801cdb26d5b3af4fd842deae9ec209b30f620e2db56236";
        assert_eq!(
            format!(
                "t=1492774577,v1={}",
                signature::sign(KEY.as_bytes(), "1492774577", BODY.as_bytes())
            ),
            DOCUMENTED_HEADER
        );
        let h = Harness::with_secret(KEY);
        h.set_config("tolerance_secs", 0);
        let request = HttpRequest::post("/", BODY)
            .with_header("Calendly-Webhook-Signature", DOCUMENTED_HEADER);
        let events = Calendly::handle_webhook(request).unwrap();
        assert_eq!(events[0].id, format!("calendly:{INVITEE}:invitee.created"));
    }

    #[test]
    fn wrong_key_is_unauthorized() {
        let h = Harness::with_secret(KEY);
        let request = signed(samples::INVITEE_CREATED);
        h.set_config("secret", "another_signing_key");
        assert!(expect_unauthorized(Calendly::handle_webhook(request)).contains("does not match"));
    }

    #[test]
    fn missing_header_is_unauthorized() {
        let _h = Harness::with_secret(KEY);
        let request = HttpRequest::post("/", samples::INVITEE_CREATED);
        assert!(expect_unauthorized(Calendly::handle_webhook(request)).contains("missing"));
    }

    #[test]
    fn stale_timestamp_is_unauthorized_unless_the_check_is_off() {
        let h = Harness::with_secret(KEY);
        let old = now_unix() - 301;
        let why = expect_unauthorized(Calendly::handle_webhook(signed_at(
            samples::INVITEE_CREATED,
            old,
        )));
        assert!(why.contains("tolerance"), "{why}");
        h.set_config("tolerance_secs", 600);
        assert!(Calendly::handle_webhook(signed_at(samples::INVITEE_CREATED, old)).is_ok());
        h.set_config("tolerance_secs", 0);
        assert!(
            Calendly::handle_webhook(signed_at(samples::INVITEE_CREATED, 1_492_774_577)).is_ok()
        );
    }

    #[test]
    fn second_v1_matching_is_enough() {
        let _h = Harness::with_secret(KEY);
        let body = samples::INVITEE_CREATED;
        let t = now_unix().to_string();
        let stale_key = signature::sign(b"previous_signing_key", &t, body.as_bytes());
        let current = signature::sign(KEY.as_bytes(), &t, body.as_bytes());
        let request = HttpRequest::post("/", body).with_header(
            "Calendly-Webhook-Signature",
            format!("t={t},v1={stale_key},v1={current}"),
        );
        assert_eq!(Calendly::handle_webhook(request).unwrap().len(), 1);
    }

    #[test]
    fn malformed_json_is_a_bad_request() {
        let _h = Harness::with_secret(KEY);
        match Calendly::handle_webhook(signed("{\"event\": \"invitee.created\", ")) {
            Err(ConnectorError::BadRequest(why)) => assert!(why.contains("JSON"), "{why}"),
            other => panic!("expected bad-request, got {other:?}"),
        }
    }

    #[test]
    fn unknown_event_is_acknowledged_without_events() {
        let _h = Harness::with_secret(KEY);
        let body = samples::INVITEE_CREATED.replace("invitee.created", "invitee_no_show.created");
        match Calendly::handle_webhook(signed(&body)) {
            Ok(events) => assert!(events.is_empty(), "{events:?}"),
            Err(e) => panic!("expected no events, got {e:?}"),
        }
    }

    #[test]
    fn self_test_needs_the_secret_and_a_valid_tolerance() {
        let h = Harness::new();
        assert_eq!(
            Calendly::self_test(),
            Err("config key `secret` is not set".to_string())
        );
        let why = expect_unauthorized(Calendly::handle_webhook(signed("{}")));
        assert!(why.contains("no `secret`"), "{why}");
        h.set_config("secret", KEY);
        assert_eq!(Calendly::self_test(), Ok(()));
        h.set_config("tolerance_secs", -5);
        assert!(
            Calendly::self_test()
                .unwrap_err()
                .contains("tolerance_secs")
        );
    }

    #[test]
    fn polling_is_unsupported() {
        let _h = Harness::with_secret(KEY);
        assert!(matches!(
            Calendly::poll(None),
            Err(ConnectorError::Unsupported(_))
        ));
    }
}
