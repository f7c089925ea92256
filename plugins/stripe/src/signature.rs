//! Stripe's `Stripe-Signature` scheme: `t=<unix>,v1=<hex>[,v1=<hex>...]`, checked in constant time.
//!
//! Each `v1` is the lower-case hex HMAC-SHA256 of `"{t}.{raw body}"` under the endpoint's
//! signing secret (the whole `whsec_...` string is the key). Stripe sends several `v1`
//! values while a secret is being rolled; any one matching passes, and other schemes
//! (`v0`, test-mode legacy) are ignored. As in Stripe's libraries, the timestamp is read as
//! an integer and signed as its decimal form, and a timestamp older than the tolerance is
//! refused (a later one is not: it only means the clocks disagree).

use tessera_sdk::hmac;

/// Stripe's own default tolerance, in seconds.
pub const DEFAULT_TOLERANCE_SECS: u64 = 300;

/// The `v1` signature of `body` sent at `timestamp`, as Stripe computes it.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut signed = format!("{timestamp}.").into_bytes();
    signed.extend_from_slice(body);
    hmac::sign_sha256_hex(secret, &signed)
}

/// Checks `header` (the `Stripe-Signature` value) for `body` at `now` (unix seconds).
/// A `tolerance_secs` of 0 skips the age check.
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
    let timestamp: i64 = timestamp
        .ok_or("Stripe-Signature has no timestamp (t=)")?
        .parse()
        .map_err(|_| "Stripe-Signature's timestamp is not a whole number of seconds")?;
    if signatures.is_empty() {
        return Err("Stripe-Signature has no v1 signature".into());
    }
    let expected = sign(secret, timestamp, body);
    // Every candidate is compared, so the time taken says nothing about which one matched.
    let matched = signatures.iter().fold(false, |matched, candidate| {
        hmac::constant_time_eq(expected.as_bytes(), candidate.as_bytes()) | matched
    });
    if !matched {
        return Err("Stripe-Signature does not match the body under this secret".into());
    }
    let tolerance = i64::try_from(tolerance_secs).unwrap_or(i64::MAX);
    if tolerance > 0 && timestamp < now.saturating_sub(tolerance) {
        return Err(format!(
            "Stripe-Signature's timestamp is {} s old, over the {tolerance_secs} s tolerance",
            now - timestamp
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"whsec_test_secret";
    const BODY: &[u8] = b"{\"id\": \"evt_test_webhook\", \"object\": \"event\"}";
    const NOW: i64 = 1_700_000_000;

    fn header(timestamp: i64, secret: &[u8]) -> String {
        format!("t={timestamp},v1={}", sign(secret, timestamp, BODY))
    }

    #[test]
    fn a_fresh_signature_passes() {
        assert_eq!(verify(SECRET, &header(NOW, SECRET), BODY, NOW, 300), Ok(()));
    }

    #[test]
    fn any_v1_may_match_and_other_schemes_are_ignored() {
        let good = sign(SECRET, NOW, BODY);
        let bad = sign(b"whsec_old", NOW, BODY);
        let header = format!("t={NOW},v1={bad},v1={good},v0={bad}");
        assert_eq!(verify(SECRET, &header, BODY, NOW, 300), Ok(()));
        let only_v0 = format!("t={NOW},v0={good}");
        assert!(
            verify(SECRET, &only_v0, BODY, NOW, 300)
                .unwrap_err()
                .contains("no v1")
        );
    }

    #[test]
    fn age_is_checked_against_the_tolerance() {
        let old = NOW - 301;
        let error = verify(SECRET, &header(old, SECRET), BODY, NOW, 300).unwrap_err();
        assert!(error.contains("301 s old"), "{error}");
        assert_eq!(
            verify(SECRET, &header(NOW - 300, SECRET), BODY, NOW, 300),
            Ok(())
        );
        assert_eq!(verify(SECRET, &header(old, SECRET), BODY, NOW, 0), Ok(()));
        // A timestamp ahead of our clock is not stale.
        assert_eq!(
            verify(SECRET, &header(NOW + 600, SECRET), BODY, NOW, 300),
            Ok(())
        );
    }

    #[test]
    fn the_signed_timestamp_is_part_of_the_mac() {
        let forged = format!("t={},v1={}", NOW + 1, sign(SECRET, NOW, BODY));
        assert!(verify(SECRET, &forged, BODY, NOW, 300).is_err());
    }

    #[test]
    fn malformed_headers_are_refused() {
        for (header, want) in [
            ("", "no timestamp"),
            ("v1=abcd", "no timestamp"),
            ("t=soon,v1=abcd", "whole number"),
            ("t=1700000000", "no v1"),
            ("t=1700000000,v1=zz", "does not match"),
        ] {
            let error = verify(SECRET, header, BODY, NOW, 300).unwrap_err();
            assert!(error.contains(want), "{header}: {error}");
        }
    }
}
