//! sha256 in lower-case hex: the identity of a plugin version and the stored form of keys.

use sha2::{Digest, Sha256};

/// sha256 of `bytes`, lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}
