//! The encodings of the profile stage's hot records. A contact: a version byte, then
//! length-prefixed fields and the sequences of its newest events, read and written without
//! building a JSON tree; contacts written as JSON by earlier versions still read (a JSON
//! record starts with `{`, never with the version byte). A chunk of a contact's event index:
//! its first sequence in the key, the rest as varint deltas in the value (earlier versions
//! wrote one key per event with an empty value: a chunk of one).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::ingest::Identity;
use crate::store::{StoreError, decode_json};

use super::Contact;

/// First byte of a contact in this encoding.
const CONTACT_V1: u8 = 1;

/// Why a binary record did not decode.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Malformed(&'static str);

/// Encodes a contact for the store, with `recent`: the sequences of its newest events, not
/// yet in a chunk of its event index.
pub(crate) fn encode_contact(contact: &Contact, recent: &[u64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.push(CONTACT_V1);
    put_str(&mut out, &contact.id);
    put_len(&mut out, contact.identities.len());
    for identity in &contact.identities {
        put_str(&mut out, &identity.kind);
        put_str(&mut out, &identity.value);
    }
    put_len(&mut out, contact.traits.len());
    for (name, value) in &contact.traits {
        put_str(&mut out, name);
        // A trait value is any JSON: kept as its text, which `Value` writes infallibly.
        let text = serde_json::to_vec(value).unwrap_or_else(|_| b"null".to_vec());
        put_bytes(&mut out, &text);
    }
    put_len(&mut out, contact.trait_times.len());
    for (name, at) in &contact.trait_times {
        put_str(&mut out, name);
        put_str(&mut out, at);
    }
    put_len(&mut out, contact.counters.len());
    for (name, n) in &contact.counters {
        put_str(&mut out, name);
        put_u64(&mut out, *n);
    }
    put_u64(&mut out, contact.created_seq);
    put_u64(&mut out, contact.last_seq);
    match &contact.merged_into {
        Some(into) => {
            out.push(1);
            put_str(&mut out, into);
        }
        None => out.push(0),
    }
    put_len(&mut out, recent.len());
    put_seqs(&mut out, recent);
    out
}

/// Decodes a stored contact, in this encoding or as the JSON of earlier versions, and the
/// sequences of its newest events not yet in a chunk of its index (none in a JSON one).
pub(crate) fn decode_contact(key: &[u8], bytes: &[u8]) -> Result<(Contact, Vec<u64>), StoreError> {
    if bytes.first() != Some(&CONTACT_V1) {
        return Ok((decode_json(key, bytes)?, Vec::new()));
    }
    read_contact(&mut Reader(&bytes[1..])).map_err(|e| StoreError::corrupt(key, e))
}

/// The value of an event-index chunk whose first sequence (in its key) is `seqs[0]`.
pub(crate) fn encode_chunk(seqs: &[u64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(seqs.len() * 2);
    let mut last = seqs.first().copied().unwrap_or(0);
    for &seq in seqs.iter().skip(1) {
        put_u64(&mut out, seq.wrapping_sub(last));
        last = seq;
    }
    out
}

/// The sequences of an event-index chunk: `first` (from its key), then those in `value`.
pub(crate) fn decode_chunk(key: &[u8], first: u64, value: &[u8]) -> Result<Vec<u64>, StoreError> {
    let mut r = Reader(value);
    let mut out = vec![first];
    let mut last = first;
    while !r.0.is_empty() {
        last = last.wrapping_add(r.u64().map_err(|e| StoreError::corrupt(key, e))?);
        out.push(last);
    }
    Ok(out)
}

/// Sequences in increasing order: the first, then deltas.
fn put_seqs(out: &mut Vec<u8>, seqs: &[u64]) {
    let mut last = 0;
    for &seq in seqs {
        put_u64(out, seq.wrapping_sub(last));
        last = seq;
    }
}

fn read_contact(r: &mut Reader) -> Result<(Contact, Vec<u64>), Malformed> {
    let id = r.string()?;
    let n = r.len()?;
    let mut identities = Vec::with_capacity(n);
    for _ in 0..n {
        identities.push(Identity {
            kind: r.string()?,
            value: r.string()?,
        });
    }
    let mut traits = Map::new();
    for _ in 0..r.len()? {
        let name = r.string()?;
        let value: Value =
            serde_json::from_slice(r.bytes()?).map_err(|_| Malformed("a trait is not JSON"))?;
        traits.insert(name, value);
    }
    let mut trait_times = BTreeMap::new();
    for _ in 0..r.len()? {
        trait_times.insert(r.string()?, r.string()?);
    }
    let mut counters = BTreeMap::new();
    for _ in 0..r.len()? {
        counters.insert(r.string()?, r.u64()?);
    }
    let created_seq = r.u64()?;
    let last_seq = r.u64()?;
    let merged_into = match r.byte()? {
        0 => None,
        1 => Some(r.string()?),
        _ => return Err(Malformed("bad merged_into flag")),
    };
    let n = r.len()?;
    let mut recent = Vec::with_capacity(n);
    let mut last = 0u64;
    for _ in 0..n {
        last = last.wrapping_add(r.u64()?);
        recent.push(last);
    }
    if !r.0.is_empty() {
        return Err(Malformed("trailing bytes"));
    }
    let contact = Contact {
        id,
        identities,
        traits,
        trait_times,
        counters,
        created_seq,
        last_seq,
        merged_into,
    };
    Ok((contact, recent))
}

fn put_u64(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn put_len(out: &mut Vec<u8>, n: usize) {
    put_u64(out, n as u64);
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_len(out, bytes.len());
    out.extend_from_slice(bytes);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_bytes(out, s.as_bytes());
}

/// The unread rest of a binary record.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, Malformed> {
        let (&b, rest) = self.0.split_first().ok_or(Malformed("truncated"))?;
        self.0 = rest;
        Ok(b)
    }

    fn u64(&mut self) -> Result<u64, Malformed> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            n |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(n);
            }
        }
        Err(Malformed("varint too long"))
    }

    /// A count of items that follow: at most one per remaining byte, so a corrupt record
    /// cannot make the reader reserve much.
    fn len(&mut self) -> Result<usize, Malformed> {
        let n = self.u64()?;
        if n > self.0.len() as u64 {
            return Err(Malformed("count past the end"));
        }
        Ok(n as usize)
    }

    fn bytes(&mut self) -> Result<&'a [u8], Malformed> {
        let n = self.len()?;
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn string(&mut self) -> Result<String, Malformed> {
        let bytes = self.bytes()?;
        std::str::from_utf8(bytes)
            .map(str::to_string)
            .map_err(|_| Malformed("not UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Contact {
        Contact {
            id: "ct_0123".into(),
            identities: vec![
                Identity::new("user_id", "u1"),
                Identity::new("email", "Ada@Example.com"),
            ],
            traits: serde_json::json!({"plan": "pro", "n": 3, "tags": ["a", {"b": null}]})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            trait_times: [("plan".to_string(), "2030-01-01T00:00:00Z".to_string())].into(),
            counters: [("Seen".to_string(), 300), ("Ünïcode".to_string(), 1)].into(),
            created_seq: 7,
            last_seq: u64::MAX,
            merged_into: Some("ct_9".into()),
        }
    }

    #[test]
    fn a_contact_reads_back_as_written() {
        let c = sample();
        let recent = [3, 9, 1 << 40, u64::MAX];
        let bytes = encode_contact(&c, &recent);
        assert_eq!(bytes[0], CONTACT_V1);
        let (back, back_recent) = decode_contact(b"k", &bytes).expect("decode");
        assert_eq!(back_recent, recent);
        assert_eq!(
            serde_json::to_value(&back).unwrap(),
            serde_json::to_value(&c).unwrap()
        );
        let plain = Contact::default();
        let (back, _) = decode_contact(b"k", &encode_contact(&plain, &[])).expect("decode");
        assert_eq!(
            serde_json::to_value(&back).unwrap(),
            serde_json::to_value(&plain).unwrap()
        );
    }

    #[test]
    fn a_contact_stored_as_json_by_an_earlier_version_still_reads() {
        let c = sample();
        let json = serde_json::to_vec(&c).unwrap();
        let (back, recent) = decode_contact(b"k", &json).expect("decode");
        assert!(recent.is_empty());
        assert_eq!(
            serde_json::to_value(&back).unwrap(),
            serde_json::to_value(&c).unwrap()
        );
    }

    #[test]
    fn a_truncated_or_padded_record_is_corrupt_not_a_panic() {
        let bytes = encode_contact(&sample(), &[5, 6]);
        for cut in 1..bytes.len() {
            assert!(decode_contact(b"k", &bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut padded = bytes.clone();
        padded.push(0);
        assert!(decode_contact(b"k", &padded).is_err());
        assert!(decode_contact(b"k", &[CONTACT_V1, 0xff, 0xff, 0xff]).is_err());
    }

    #[test]
    fn an_index_chunk_reads_back_and_a_key_of_an_earlier_version_is_a_chunk_of_one() {
        let seqs = [7, 8, 300, 70_000, 1 << 50];
        let value = encode_chunk(&seqs);
        assert_eq!(decode_chunk(b"k", 7, &value).expect("chunk"), seqs);
        assert_eq!(decode_chunk(b"k", 42, &[]).expect("legacy"), vec![42]);
        assert!(decode_chunk(b"k", 1, &[0x80]).is_err());
    }
}
