//! The outbox keyspace's key layout: one-byte prefixes, names ended by a zero byte, numbers
//! big-endian so that every index lists in order.

/// Key prefixes in [`super::KEYSPACE`]. Index values are the delivery id.
pub mod prefix {
    /// `d ++ id` -> [`super::super::Delivery`].
    pub const DELIVERY: u8 = b'd';
    /// `q ++ seq` -> id: every delivery, in enqueue order.
    pub const QUEUED_AT: u8 = b'q';
    /// `c ++ contact ++ 0 ++ seq` -> id.
    pub const CONTACT: u8 = b'c';
    /// `j ++ journey ++ 0 ++ seq` -> id.
    pub const JOURNEY: u8 = b'j';
    /// `s ++ state ++ 0 ++ seq` -> id.
    pub const STATE: u8 = b's';
    /// `h ++ channel ++ 0 ++ seq` -> id.
    pub const CHANNEL: u8 = b'h';
    /// `o ++ channel ++ 0 ++ contact ++ 0 ++ order` -> id: open deliveries (queued,
    /// deferred, sending) per channel and contact, in the order they must go.
    pub const OPEN: u8 = b'o';
    /// `r ++ channel ++ 0 ++ due ms ++ seq` -> id: deliveries a channel's worker may take
    /// once due. Only the first open delivery of each contact on the channel is here, so
    /// the worker never looks at one that must wait for an earlier one.
    pub const READY: u8 = b'r';
    /// `p ++ channel ++ 0 ++ provider id` -> id: sent deliveries by the provider's id, for
    /// status callbacks.
    pub const PROVIDER: u8 = b'p';
    /// `e ++ n` -> a [`super::super::DeliveryEvent`] to append to the event log, written
    /// in the batch of the move it reports and removed once logged.
    pub const EVENT: u8 = b'e';
    /// `k ++ channel` -> the channel's retry settings override.
    pub const SETTINGS: u8 = b'k';
    /// `m` -> the layout version of the indexes above.
    pub const LAYOUT: u8 = b'm';
}

/// The layout the indexes are in; an older store is reindexed on open.
pub const LAYOUT_VERSION: u8 = 2;

/// `d ++ id`.
pub fn delivery(id: &str) -> Vec<u8> {
    [&[prefix::DELIVERY], id.as_bytes()].concat()
}

/// `p ++ name ++ 0`: the start of one name's entries in an index.
pub fn named(p: u8, name: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(name.len() + 2);
    key.push(p);
    key.extend_from_slice(name.as_bytes());
    key.push(0);
    key
}

/// `p ++ [name ++ 0] ++ seq`.
pub fn index(p: u8, name: Option<&str>, seq: u64) -> Vec<u8> {
    let mut key = match name {
        Some(name) => named(p, name),
        None => vec![p],
    };
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// `o ++ channel ++ 0 ++ contact ++ 0`: one contact's open deliveries on one channel.
pub fn open_prefix(channel: &str, contact: &str) -> Vec<u8> {
    let mut key = named(prefix::OPEN, channel);
    key.extend_from_slice(contact.as_bytes());
    key.push(0);
    key
}

/// `o ++ channel ++ 0 ++ contact ++ 0 ++ order`.
pub fn open(channel: &str, contact: &str, order: u64) -> Vec<u8> {
    let mut key = open_prefix(channel, contact);
    key.extend_from_slice(&order.to_be_bytes());
    key
}

/// `r ++ channel ++ 0 ++ due ++ seq` (a due time before 1970 sorts as 0).
pub fn ready(channel: &str, due_ms: i64, seq: u64) -> Vec<u8> {
    let mut key = named(prefix::READY, channel);
    key.extend_from_slice(&u64::try_from(due_ms).unwrap_or(0).to_be_bytes());
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// The due time in a [`ready`] key.
pub fn ready_due(key: &[u8]) -> Option<i64> {
    let at = key.len().checked_sub(16)?;
    let due = u64::from_be_bytes(key.get(at..at + 8)?.try_into().ok()?);
    Some(i64::try_from(due).unwrap_or(i64::MAX))
}

/// The name (channel) right after the prefix byte of a `p ++ name ++ 0 ++ ...` key.
pub fn name_of(key: &[u8]) -> Option<&str> {
    let rest = key.get(1..)?;
    let end = rest.iter().position(|b| *b == 0)?;
    std::str::from_utf8(&rest[..end]).ok()
}

/// `p ++ channel ++ 0 ++ provider id`.
pub fn provider(channel: &str, provider_id: &str) -> Vec<u8> {
    let mut key = named(prefix::PROVIDER, channel);
    key.extend_from_slice(provider_id.as_bytes());
    key
}

/// `k ++ channel`.
pub fn settings(channel: &str) -> Vec<u8> {
    [&[prefix::SETTINGS], channel.as_bytes()].concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_keys_sort_by_due_time_then_sequence_and_read_back() {
        let a = ready("ch", 1_000, 9);
        let b = ready("ch", 2_000, 1);
        let c = ready("ch", 2_000, 2);
        assert!(a < b && b < c);
        assert_eq!(ready_due(&b), Some(2_000));
        assert_eq!(ready_due(&ready("ch", -5, 1)), Some(0));
        assert_eq!(name_of(&c), Some("ch"));
        assert!(ready("ch", i64::MAX, 0) < named(prefix::READY, "ch\u{1}"));
    }
}
