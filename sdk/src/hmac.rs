//! Constant-time HMAC-SHA256 signatures, and the hex and base64 decoding signatures come in.
//!
//! ```
//! use tessera_sdk::hmac;
//!
//! let mac = hmac::sign_sha256(b"secret", b"body");
//! let header = format!("sha256={}", hmac::encode_hex(&mac));
//! let expected = hmac::decode_hex(header.strip_prefix("sha256=").unwrap()).unwrap();
//! assert!(hmac::verify_sha256(b"secret", b"body", &expected));
//! ```

use std::fmt;

use ::hmac::{Hmac, Mac};
use base64::Engine as _;
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &[u8], message: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(message);
    mac
}

/// The HMAC-SHA256 of `message` under `secret`.
pub fn sign_sha256(secret: &[u8], message: &[u8]) -> [u8; 32] {
    mac(secret, message).finalize().into_bytes().into()
}

/// The HMAC-SHA256 of `message` under `secret`, as lower-case hex.
pub fn sign_sha256_hex(secret: &[u8], message: &[u8]) -> String {
    encode_hex(&sign_sha256(secret, message))
}

/// True when `expected_mac` is the HMAC-SHA256 of `message` under `secret`. The comparison
/// takes the same time wherever the bytes differ, so it leaks nothing about the right MAC.
pub fn verify_sha256(secret: &[u8], message: &[u8], expected_mac: &[u8]) -> bool {
    mac(secret, message).verify_slice(expected_mac).is_ok()
}

/// Compares two byte strings in constant time (for their common length).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// Why a hex or base64 string did not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(String);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DecodeError {}

/// Decodes hex (either case, surrounding whitespace ignored).
pub fn decode_hex(text: &str) -> Result<Vec<u8>, DecodeError> {
    hex::decode(text.trim()).map_err(|e| DecodeError(format!("not valid hex: {e}")))
}

/// Lower-case hex of `bytes`.
pub fn encode_hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// Decodes base64, standard or URL-safe alphabet, with or without padding.
pub fn decode_base64(text: &str) -> Result<Vec<u8>, DecodeError> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let text = text.trim();
    let engines = [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD];
    let mut last = None;
    for engine in engines {
        match engine.decode(text) {
            Ok(bytes) => return Ok(bytes),
            Err(e) => last = Some(e),
        }
    }
    Err(DecodeError(format!(
        "not valid base64: {}",
        last.map(|e| e.to_string()).unwrap_or_default()
    )))
}

/// Standard base64 (with padding) of `bytes`.
pub fn encode_base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 4231, test case 2.
    const KEY: &[u8] = b"Jefe";
    const DATA: &[u8] = b"what do ya want for nothing?";
    const MAC_HEX: &str = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";

    #[test]
    fn signs_the_rfc_4231_vector() {
        assert_eq!(sign_sha256_hex(KEY, DATA), MAC_HEX);
    }

    #[test]
    fn verifies_the_right_mac_only() {
        let mac = decode_hex(MAC_HEX).unwrap();
        assert!(verify_sha256(KEY, DATA, &mac));
        let mut wrong = mac.clone();
        wrong[31] ^= 1;
        assert!(!verify_sha256(KEY, DATA, &wrong));
        assert!(!verify_sha256(KEY, DATA, &mac[..31]));
        assert!(!verify_sha256(b"other", DATA, &mac));
        assert!(!verify_sha256(KEY, DATA, &[]));
    }

    #[test]
    fn decodes_hex_of_either_case() {
        assert_eq!(decode_hex(" 0aFF ").unwrap(), vec![0x0a, 0xff]);
        assert!(decode_hex("0g").is_err());
        assert!(decode_hex("abc").is_err());
    }

    #[test]
    fn decodes_base64_of_both_alphabets() {
        let bytes = [0xfb, 0xff, 0x01];
        assert_eq!(decode_base64(&encode_base64(&bytes)).unwrap(), bytes);
        assert_eq!(decode_base64("-_8B").unwrap(), bytes);
        assert_eq!(decode_base64("aGk").unwrap(), b"hi");
        assert!(decode_base64("***").is_err());
    }

    #[test]
    fn constant_time_eq_needs_equal_lengths() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
