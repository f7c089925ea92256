//! Timestamped webhook signatures (`t=<unix>,v1=<hex>[,v1=<hex>...]`) and the connector config they use.
//!
//! Several senders (Stripe's `Stripe-Signature`, Calendly's `Calendly-Webhook-Signature`)
//! sign a delivery the same way: each `v1` is the lower-case hex HMAC-SHA256 of
//! `"{t}.{raw body}"` under the shared secret. A sender lists several `v1` values while a
//! secret is being rolled; any one matching passes, and other schemes (`v0`, ...) are
//! ignored. A timestamp older than the tolerance is refused; a later one is not (it only
//! means the clocks disagree).
//!
//! A connector describes its header once and lets [`TimestampedScheme::verify_request`] read
//! config key `secret`, config key `tolerance_secs` (0 turns the age check off, to replay
//! old deliveries) and the clock:
//!
//! ```
//! use tessera_sdk::signature::{self, TimestampedScheme};
//! use tessera_sdk::testing::Harness;
//!
//! const SCHEME: TimestampedScheme = TimestampedScheme::new("Acme-Signature");
//!
//! let _harness = Harness::with_secret("s3cret");
//! let request = SCHEME.signed_request(b"s3cret", signature::now_unix(), "{}");
//! assert_eq!(SCHEME.verify_request(&request), Ok(()));
//! ```

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config;
use crate::hmac;
use crate::types::{ConnectorError, HttpRequest};

/// The tolerance when config key `tolerance_secs` is unset, in seconds (Stripe's own).
pub const DEFAULT_TOLERANCE_SECS: u64 = 300;

/// How the header's `t` enters the signed `"{t}.{body}"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignedTimestamp {
    /// The decimal form of `t` read as an integer, as Stripe's libraries sign it.
    Integer,
    /// `t` exactly as the header spells it, as Calendly's example code signs it.
    AsSent,
}

/// One sender's use of the timestamped scheme: its header and how it signs `t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampedScheme {
    header: &'static str,
    signed_timestamp: SignedTimestamp,
    default_tolerance_secs: u64,
}

impl TimestampedScheme {
    /// The scheme carried in header `header`, spelled as error messages should name it
    /// (the lookup ignores case), signing `t` as an integer, with a tolerance of
    /// [`DEFAULT_TOLERANCE_SECS`] unless configured.
    pub const fn new(header: &'static str) -> Self {
        Self {
            header,
            signed_timestamp: SignedTimestamp::Integer,
            default_tolerance_secs: DEFAULT_TOLERANCE_SECS,
        }
    }

    /// The same scheme, signing `t` as `signed_timestamp` says.
    pub const fn signing_timestamp(mut self, signed_timestamp: SignedTimestamp) -> Self {
        self.signed_timestamp = signed_timestamp;
        self
    }

    /// The header's name.
    pub const fn header(&self) -> &'static str {
        self.header
    }

    /// Checks `header` (the signature header's value) for `body` under `secret` at `now`
    /// (unix seconds). A `tolerance_secs` of 0 skips the age check. Every `v1` is compared
    /// in constant time, so the time taken says nothing about the right signature.
    pub fn verify(
        &self,
        secret: &[u8],
        header: &str,
        body: &[u8],
        now: i64,
        tolerance_secs: u64,
    ) -> Result<(), String> {
        let name = self.header;
        let mut timestamp_text = None;
        let mut signatures = Vec::new();
        for part in header.split(',') {
            let Some((key, value)) = part.split_once('=') else {
                continue;
            };
            match key.trim() {
                "t" if timestamp_text.is_none() => timestamp_text = Some(value.trim()),
                "v1" => signatures.push(value.trim()),
                _ => {}
            }
        }
        let timestamp_text =
            timestamp_text.ok_or_else(|| format!("{name} has no timestamp (t=)"))?;
        let timestamp: i64 = timestamp_text
            .parse()
            .map_err(|_| format!("{name}'s timestamp is not a whole number of seconds"))?;
        if signatures.is_empty() {
            return Err(format!("{name} has no v1 signature"));
        }
        let expected = match self.signed_timestamp {
            SignedTimestamp::Integer => sign(secret, timestamp, body),
            SignedTimestamp::AsSent => sign(secret, timestamp_text, body),
        };
        let matched = signatures.iter().fold(false, |matched, candidate| {
            hmac::constant_time_eq(expected.as_bytes(), candidate.as_bytes()) | matched
        });
        if !matched {
            return Err(format!(
                "{name} does not match the body under the configured secret"
            ));
        }
        let tolerance = i64::try_from(tolerance_secs).unwrap_or(i64::MAX);
        if tolerance > 0 && timestamp < now.saturating_sub(tolerance) {
            return Err(format!(
                "{name}'s timestamp is {} s old, over the {tolerance_secs} s tolerance",
                now.saturating_sub(timestamp)
            ));
        }
        Ok(())
    }

    /// Checks `request` against config key `secret` at the current time, with config key
    /// `tolerance_secs`. Every failure is `Unauthorized`, saying what is wrong: no secret
    /// configured, an invalid tolerance, a missing header, or [`verify`](Self::verify)'s
    /// reasons.
    pub fn verify_request(&self, request: &HttpRequest) -> Result<(), ConnectorError> {
        let unauthorized = ConnectorError::Unauthorized;
        let secret = configured_secret()?;
        let tolerance = self.tolerance_secs().map_err(unauthorized)?;
        let header = request
            .header(self.header)
            .ok_or_else(|| unauthorized(format!("missing {} header", self.header)))?;
        self.verify(
            secret.as_bytes(),
            header,
            &request.body,
            now_unix(),
            tolerance,
        )
        .map_err(unauthorized)
    }

    /// Config key `tolerance_secs`, or the scheme's default when it is unset; an error
    /// naming the key when it is not a whole number of seconds.
    pub fn tolerance_secs(&self) -> Result<u64, String> {
        Ok(config::parse::<u64>("tolerance_secs")?.unwrap_or(self.default_tolerance_secs))
    }

    /// For `self_test`: config key `secret` is set and `tolerance_secs` is valid.
    pub fn check_config(&self) -> Result<(), String> {
        config::require("secret")?;
        self.tolerance_secs()?;
        Ok(())
    }

    /// A `POST` of `body` carrying this scheme's header, signed under `secret` at
    /// `timestamp` as the sender would; for tests.
    pub fn signed_request(
        &self,
        secret: &[u8],
        timestamp: i64,
        body: impl Into<Vec<u8>>,
    ) -> HttpRequest {
        let body = body.into();
        let value = header_value(secret, timestamp, &body);
        HttpRequest::post("/", body).with_header(self.header, value)
    }
}

/// The `v1` signature of `body` sent at `timestamp`: the hex HMAC-SHA256 of
/// `"{timestamp}.{body}"` under `secret`.
pub fn sign(secret: &[u8], timestamp: impl fmt::Display, body: &[u8]) -> String {
    let mut signed = format!("{timestamp}.").into_bytes();
    signed.extend_from_slice(body);
    hmac::sign_sha256_hex(secret, &signed)
}

/// The header value `t={timestamp},v1={signature}` a sender puts on `body`.
pub fn header_value(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    format!("t={timestamp},v1={}", sign(secret, timestamp, body))
}

/// Config key `secret`, the connector's signing secret, or `Unauthorized` when it is unset
/// or empty (a connector without one refuses every delivery).
pub fn configured_secret() -> Result<String, ConnectorError> {
    config::require("secret").map_err(|_| {
        ConnectorError::Unauthorized("the connector has no `secret` configured".into())
    })
}

/// Now, in unix seconds (inside a component, the host's wall clock).
pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"whsec_test_secret";
    const BODY: &[u8] = b"{\"id\": \"evt_test_webhook\", \"object\": \"event\"}";
    const NOW: i64 = 1_700_000_000;
    const INTEGER: TimestampedScheme = TimestampedScheme::new("Stripe-Signature");
    const AS_SENT: TimestampedScheme = TimestampedScheme::new("Calendly-Webhook-Signature")
        .signing_timestamp(SignedTimestamp::AsSent);

    fn header(timestamp: i64, secret: &[u8]) -> String {
        header_value(secret, timestamp, BODY)
    }

    #[test]
    fn a_fresh_signature_passes() {
        for scheme in [INTEGER, AS_SENT] {
            assert_eq!(
                scheme.verify(SECRET, &header(NOW, SECRET), BODY, NOW, 300),
                Ok(())
            );
        }
    }

    #[test]
    fn any_v1_may_match_and_other_schemes_are_ignored() {
        let good = sign(SECRET, NOW, BODY);
        let bad = sign(b"whsec_old", NOW, BODY);
        for scheme in [INTEGER, AS_SENT] {
            let header = format!("t={NOW},v1={bad},v1={good},v0={bad}");
            assert_eq!(scheme.verify(SECRET, &header, BODY, NOW, 300), Ok(()));
            let only_v0 = format!("t={NOW},v0={good}");
            assert!(
                scheme
                    .verify(SECRET, &only_v0, BODY, NOW, 300)
                    .unwrap_err()
                    .contains("no v1")
            );
        }
    }

    #[test]
    fn age_is_checked_against_the_tolerance() {
        let old = NOW - 301;
        for scheme in [INTEGER, AS_SENT] {
            let error = scheme
                .verify(SECRET, &header(old, SECRET), BODY, NOW, 300)
                .unwrap_err();
            assert!(error.contains("301 s old"), "{error}");
            assert!(error.contains("300 s tolerance"), "{error}");
            assert_eq!(
                scheme.verify(SECRET, &header(NOW - 300, SECRET), BODY, NOW, 300),
                Ok(())
            );
            assert_eq!(
                scheme.verify(SECRET, &header(old, SECRET), BODY, NOW, 0),
                Ok(())
            );
            // A timestamp ahead of our clock is not stale.
            assert_eq!(
                scheme.verify(SECRET, &header(NOW + 600, SECRET), BODY, NOW, 300),
                Ok(())
            );
        }
    }

    #[test]
    fn the_signed_timestamp_is_part_of_the_mac() {
        let forged = format!("t={},v1={}", NOW + 1, sign(SECRET, NOW, BODY));
        for scheme in [INTEGER, AS_SENT] {
            assert!(scheme.verify(SECRET, &forged, BODY, NOW, 300).is_err());
        }
    }

    #[test]
    fn integer_signs_the_parsed_number_and_as_sent_the_text() {
        let t = format!("0{NOW}");
        let integer = format!("t={t},v1={}", sign(SECRET, NOW, BODY));
        let as_sent = format!("t={t},v1={}", sign(SECRET, &t, BODY));
        assert_eq!(INTEGER.verify(SECRET, &integer, BODY, NOW, 300), Ok(()));
        assert!(INTEGER.verify(SECRET, &as_sent, BODY, NOW, 300).is_err());
        assert_eq!(AS_SENT.verify(SECRET, &as_sent, BODY, NOW, 300), Ok(()));
        assert!(AS_SENT.verify(SECRET, &integer, BODY, NOW, 300).is_err());
    }

    #[test]
    fn malformed_headers_are_refused_naming_the_header() {
        for (header, want) in [
            ("", "no timestamp"),
            ("v1=abcd", "no timestamp"),
            ("t=,v1=abcd", "whole number"),
            ("t=soon,v1=abcd", "whole number"),
            ("t=1700000000", "no v1"),
            ("t=1700000000,v1=", "does not match"),
            ("t=1700000000,v1=zz", "does not match"),
        ] {
            for scheme in [INTEGER, AS_SENT] {
                let error = scheme.verify(SECRET, header, BODY, NOW, 300).unwrap_err();
                assert!(error.contains(want), "{header}: {error}");
                assert!(error.starts_with(scheme.header()), "{header}: {error}");
            }
        }
    }

    #[cfg(not(target_arch = "wasm32"))]
    mod with_config {
        use super::*;
        use crate::testing::{Harness, expect_unauthorized};

        #[test]
        fn verify_request_reads_secret_tolerance_and_clock() {
            let harness = Harness::new();
            let request = INTEGER.signed_request(SECRET, now_unix(), BODY);
            let why = expect_unauthorized(INTEGER.verify_request(&request));
            assert_eq!(why, "the connector has no `secret` configured");
            assert_eq!(
                INTEGER.check_config(),
                Err("config key `secret` is not set".to_string())
            );

            harness.set_config("secret", "whsec_test_secret");
            assert_eq!(INTEGER.verify_request(&request), Ok(()));
            assert_eq!(INTEGER.check_config(), Ok(()));
            let unsigned = HttpRequest::post("/", BODY);
            let why = expect_unauthorized(INTEGER.verify_request(&unsigned));
            assert_eq!(why, "missing Stripe-Signature header");

            let stale = INTEGER.signed_request(SECRET, now_unix() - 301, BODY);
            assert!(expect_unauthorized(INTEGER.verify_request(&stale)).contains("tolerance"));
            harness.set_config("tolerance_secs", 0);
            assert_eq!(INTEGER.verify_request(&stale), Ok(()));

            harness.set_config("tolerance_secs", "five minutes");
            assert!(
                INTEGER
                    .check_config()
                    .unwrap_err()
                    .contains("tolerance_secs")
            );
            let why = expect_unauthorized(INTEGER.verify_request(&request));
            assert!(why.contains("tolerance_secs"), "{why}");
        }
    }
}
