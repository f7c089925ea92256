//! Calendly's `Calendly-Webhook-Signature` scheme: `t=<unix>,v1=<hex>`, checked in constant time.
//!
//! `v1` is the lower-case hex HMAC-SHA256 of `"{t}.{raw body}"` under the webhook signing
//! key, `t` exactly as the header spells it (Calendly's own example code concatenates the
//! text). Any `v1` matching passes. A timestamp older than the tolerance is refused;
//! Calendly's example uses three minutes, this connector defaults to five so a delayed
//! retry or a slightly slow clock does not fail.

use tessera_sdk::hmac;

/// The default tolerance, in seconds.
pub const DEFAULT_TOLERANCE_SECS: u64 = 300;

/// The `v1` signature of `body` sent at `timestamp` (the header's `t` text).
pub fn sign(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    let mut signed = format!("{timestamp}.").into_bytes();
    signed.extend_from_slice(body);
    hmac::sign_sha256_hex(secret, &signed)
}

/// Checks `header` (the `Calendly-Webhook-Signature` value) for `body` at `now` (unix
/// seconds). A `tolerance_secs` of 0 skips the age check.
pub fn verify(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now: i64,
    tolerance_secs: u64,
) -> Result<(), String> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        let Some((key, value)) = part.split_once('=') else {
            continue;
        };
        match key.trim() {
            "t" if timestamp.is_none() => timestamp = Some(value.trim()),
            "v1" => signatures.push(value.trim()),
            _ => {}
        }
    }
    let timestamp_text = timestamp.ok_or("Calendly-Webhook-Signature has no timestamp (t=)")?;
    let timestamp: i64 = timestamp_text
        .parse()
        .map_err(|_| "Calendly-Webhook-Signature's timestamp is not a whole number of seconds")?;
    if signatures.is_empty() {
        return Err("Calendly-Webhook-Signature has no v1 signature".into());
    }
    let expected = sign(secret, timestamp_text, body);
    // Every candidate is compared, so the time taken says nothing about which one matched.
    let matched = signatures.iter().fold(false, |matched, candidate| {
        hmac::constant_time_eq(expected.as_bytes(), candidate.as_bytes()) | matched
    });
    if !matched {
        return Err("Calendly-Webhook-Signature does not match the body under this key".into());
    }
    let tolerance = i64::try_from(tolerance_secs).unwrap_or(i64::MAX);
    if tolerance > 0 && timestamp < now.saturating_sub(tolerance) {
        return Err(format!(
            "Calendly-Webhook-Signature's timestamp is {} s old, over the {tolerance_secs} s tolerance",
            now - timestamp
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"calendly_test_signing_key";
    const BODY: &[u8] = br#"{"event":"invitee.created"}"#;
    const NOW: i64 = 1_700_000_000;

    fn header(timestamp: i64, key: &[u8]) -> String {
        let t = timestamp.to_string();
        format!("t={t},v1={}", sign(key, &t, BODY))
    }

    #[test]
    fn a_fresh_signature_passes() {
        assert_eq!(verify(KEY, &header(NOW, KEY), BODY, NOW, 300), Ok(()));
    }

    #[test]
    fn any_v1_may_match() {
        let t = NOW.to_string();
        let header = format!(
            "t={t},v1={},v1={}",
            sign(b"old", &t, BODY),
            sign(KEY, &t, BODY)
        );
        assert_eq!(verify(KEY, &header, BODY, NOW, 300), Ok(()));
    }

    #[test]
    fn age_is_checked_against_the_tolerance() {
        let error = verify(KEY, &header(NOW - 301, KEY), BODY, NOW, 300).unwrap_err();
        assert!(error.contains("301 s old"), "{error}");
        assert_eq!(verify(KEY, &header(NOW - 300, KEY), BODY, NOW, 300), Ok(()));
        assert_eq!(verify(KEY, &header(NOW - 301, KEY), BODY, NOW, 0), Ok(()));
    }

    #[test]
    fn the_signed_timestamp_is_part_of_the_mac() {
        let forged = format!("t={},v1={}", NOW + 1, sign(KEY, &NOW.to_string(), BODY));
        assert!(verify(KEY, &forged, BODY, NOW, 300).is_err());
    }

    #[test]
    fn malformed_headers_are_refused() {
        for (header, want) in [
            ("", "no timestamp"),
            ("v1=abcd", "no timestamp"),
            ("t=,v1=abcd", "whole number"),
            ("t=1700000000", "no v1"),
            ("t=1700000000,v1=", "does not match"),
        ] {
            let error = verify(KEY, header, BODY, NOW, 300).unwrap_err();
            assert!(error.contains(want), "{header}: {error}");
        }
    }
}
