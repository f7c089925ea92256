//! The segment stage's records in one keyspace (so a page's writes commit as one atomic
//! batch): definitions, memberships both ways, the windowed events rules asked for, recheck
//! timers and the stage's place in the profile feed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::runtime::types::{EventKind, RuleNeeds};
use crate::store::{Batch, Keyspace, StoreError, Tree, decode_json, encode_json};

/// The keyspace's name.
pub(crate) const KEYSPACE: &str = "segments";

/// Key prefixes, one per kind of record.
pub(crate) mod prefix {
    /// Segment id -> [`super::SegmentDef`].
    pub const DEF: u8 = b'd';
    /// `segment \0 contact` -> [`super::Member`].
    pub const MEMBER: u8 = b'm';
    /// `contact \0 segment` -> nothing: a contact's memberships.
    pub const OF_CONTACT: u8 = b'c';
    /// `contact \0 time \0 seq` -> [`super::Kept`]: events rules with a window read.
    pub const WINDOW: u8 = b'w';
    /// `due \0 segment \0 contact` -> nothing: when to evaluate a contact again.
    pub const TIMER: u8 = b't';
    /// `segment \0 contact` -> due: the contact's one timer in that segment.
    pub const TIMER_OF: u8 = b'r';
    /// `segment \0 contact` -> [`super::Retained`]: the past events a rule kept.
    pub const RETAINED: u8 = b'k';
    /// Stage state (`evaluated_seq`).
    pub const META: u8 = b'x';
}

/// A segment: a rule plugin and its parameters, versioned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentDef {
    /// Its id (`[a-z0-9_-]`, at most 64).
    pub id: String,
    /// A name for people.
    pub name: String,
    /// The segment-rule plugin that decides membership.
    pub rule: String,
    /// The rule's parameters (a JSON object), validated by the rule.
    pub params: Value,
    /// Starts at 1; every update adds one.
    pub version: u64,
    /// What the rule said it depends on.
    pub needs: RuleNeeds,
    /// Members now.
    pub members: u64,
    /// The rule plugin's live version (sha256) the members were last computed with.
    pub rule_sha256: Option<String>,
    /// The rule plugin's live version string, as membership events carry it.
    pub rule_version: Option<String>,
    /// Created, Unix ms.
    pub created_ms: i64,
    /// Last changed, Unix ms.
    pub updated_ms: i64,
    /// The latest recompute (creation, update, a new rule version).
    pub recompute: Option<Recompute>,
    /// The latest failed rule call, if it failed since the last good one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// Re-evaluating every contact of a segment in the background.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recompute {
    /// Why it runs: `created`, `updated`, `rule_version`.
    pub reason: String,
    /// When it started, Unix ms (also names the membership events it writes).
    pub started_ms: i64,
    /// When it finished; none while it runs.
    pub finished_ms: Option<i64>,
    /// Contacts evaluated so far.
    pub evaluated: u64,
    /// Contacts to evaluate (an estimate taken at the start).
    pub total: u64,
    /// Contacts that entered and exited by it.
    pub entered: u64,
    /// See `entered`.
    pub exited: u64,
    /// The last contact id done (the walk goes in id order).
    pub after: Option<String>,
}

/// One membership.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// When the contact entered, Unix ms.
    pub since_ms: i64,
    /// The segment version it entered under.
    pub version: u64,
}

/// An event kept for rules with a window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Kept {
    pub kind: EventKind,
    pub name: Option<String>,
    pub properties: String,
}

/// A kept event, its event time and log sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeptAt {
    pub at_ms: i64,
    pub seq: u64,
    pub kept: Kept,
}

/// The past events a segment's rule asked to see again for one contact (its decision's
/// `keep`), and the future-stamped ones it has not seen yet; valid for the definition version
/// and rule build it was written under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Retained {
    pub version: u64,
    pub rule_sha256: String,
    pub events: Vec<KeptAt>,
}

impl Retained {
    /// `version u64, sha length u16, sha, then per event: at i64, seq u64, length u32, kept`.
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&self.version.to_be_bytes());
        let sha = self.rule_sha256.as_bytes();
        out.extend_from_slice(&(sha.len().min(u16::MAX as usize) as u16).to_be_bytes());
        out.extend_from_slice(&sha[..sha.len().min(u16::MAX as usize)]);
        for e in &self.events {
            let kept = e.kept.encode();
            out.extend_from_slice(&e.at_ms.to_be_bytes());
            out.extend_from_slice(&e.seq.to_be_bytes());
            out.extend_from_slice(&(kept.len() as u32).to_be_bytes());
            out.extend_from_slice(&kept);
        }
        out
    }

    fn decode(key: &[u8], bytes: &[u8]) -> Result<Self, StoreError> {
        let mut cursor = Cursor { key, rest: bytes };
        let version = cursor.u64()?;
        let sha_len = u16::from_be_bytes(cursor.array()?) as usize;
        let rule_sha256 = String::from_utf8(cursor.take(sha_len)?.to_vec())
            .map_err(|_| StoreError::corrupt(key, BadKept))?;
        let mut events = Vec::new();
        while !cursor.rest.is_empty() {
            let at_ms = cursor.u64()? as i64;
            let seq = cursor.u64()?;
            let len = u32::from_be_bytes(cursor.array()?) as usize;
            let kept = Kept::decode(key, cursor.take(len)?)?;
            events.push(KeptAt { at_ms, seq, kept });
        }
        Ok(Retained {
            version,
            rule_sha256,
            events,
        })
    }
}

/// The first byte of a kept event's binary form (JSON, the older form, starts with `{`).
const KEPT_BINARY: u8 = 1;

impl Kept {
    /// `1, kind, name length (u32 BE, u32::MAX: none), name, properties`: read back without
    /// unescaping the properties' JSON text, which the JSON form paid for on every read.
    pub fn encode(&self) -> Vec<u8> {
        let name = self.name.as_deref().unwrap_or("");
        let mut out = Vec::with_capacity(6 + name.len() + self.properties.len());
        out.push(KEPT_BINARY);
        out.push(kind_byte(self.kind));
        let len = match &self.name {
            Some(n) => n.len() as u32,
            None => u32::MAX,
        };
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(self.properties.as_bytes());
        out
    }

    /// Reads either form back.
    pub fn decode(key: &[u8], bytes: &[u8]) -> Result<Self, StoreError> {
        if bytes.first() != Some(&KEPT_BINARY) {
            return decode_json(key, bytes);
        }
        let corrupt = || StoreError::corrupt(key, BadKept);
        let kind = bytes
            .get(1)
            .and_then(|&b| byte_kind(b))
            .ok_or_else(corrupt)?;
        let len = bytes
            .get(2..6)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(corrupt)?;
        let (name, rest) = if len == u32::MAX {
            (None, &bytes[6..])
        } else {
            let end = 6usize.checked_add(len as usize).ok_or_else(corrupt)?;
            let name = bytes.get(6..end).ok_or_else(corrupt)?;
            let name = std::str::from_utf8(name).map_err(|_| corrupt())?;
            (Some(name.to_owned()), &bytes[end..])
        };
        let properties = std::str::from_utf8(rest).map_err(|_| corrupt())?.to_owned();
        Ok(Kept {
            kind,
            name,
            properties,
        })
    }
}

/// Reads a binary record front to back.
struct Cursor<'a> {
    key: &'a [u8],
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        if self.rest.len() < n {
            return Err(StoreError::corrupt(self.key, BadKept));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], StoreError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u64(&mut self) -> Result<u64, StoreError> {
        Ok(u64::from_be_bytes(self.array()?))
    }
}

/// A kept event's binary form does not parse.
#[derive(Debug, thiserror::Error)]
#[error("malformed kept event")]
struct BadKept;

fn kind_byte(kind: EventKind) -> u8 {
    match kind {
        EventKind::Track => 0,
        EventKind::Identify => 1,
        EventKind::Page => 2,
        EventKind::Screen => 3,
        EventKind::Group => 4,
        EventKind::Alias => 5,
    }
}

fn byte_kind(b: u8) -> Option<EventKind> {
    Some(match b {
        0 => EventKind::Track,
        1 => EventKind::Identify,
        2 => EventKind::Page,
        3 => EventKind::Screen,
        4 => EventKind::Group,
        5 => EventKind::Alias,
        _ => return None,
    })
}

/// `a \0 b`.
pub(crate) fn pair(prefix: u8, a: &str, b: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + a.len() + b.len());
    k.push(prefix);
    k.extend_from_slice(a.as_bytes());
    k.push(0);
    k.extend_from_slice(b.as_bytes());
    k
}

/// Signed milliseconds in an order-preserving big-endian form.
pub(crate) fn time_key(ms: i64) -> [u8; 8] {
    ((ms as u64) ^ (1 << 63)).to_be_bytes()
}

pub(crate) fn time_of_key(key: &[u8]) -> i64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&key[..8]);
    (u64::from_be_bytes(b) ^ (1 << 63)) as i64
}

pub(crate) fn window_key(contact: &str, at_ms: i64, seq: u64) -> Vec<u8> {
    let mut k = pair(prefix::WINDOW, contact, "");
    k.extend_from_slice(&time_key(at_ms));
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

pub(crate) fn timer_key(due_ms: i64, segment: &str, contact: &str) -> Vec<u8> {
    let mut k = vec![prefix::TIMER];
    k.extend_from_slice(&time_key(due_ms));
    k.extend_from_slice(segment.as_bytes());
    k.push(0);
    k.extend_from_slice(contact.as_bytes());
    k
}

/// A raw key and value.
pub(crate) type Entry = (Vec<u8>, Vec<u8>);

/// A due timer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Timer {
    pub due_ms: i64,
    pub segment: String,
    pub contact: String,
}

/// Typed reads over the keyspace, and writes staged into one batch.
#[derive(Clone)]
pub(crate) struct SegmentStore {
    pub tree: Tree,
}

impl SegmentStore {
    pub fn def(&self, id: &str) -> Result<Option<SegmentDef>, StoreError> {
        let key = [&[prefix::DEF], id.as_bytes()].concat();
        match self.tree.get(&key)? {
            Some(v) => decode_json(&key, &v).map(Some),
            None => Ok(None),
        }
    }

    pub fn defs(&self) -> Result<Vec<SegmentDef>, StoreError> {
        self.tree
            .scan_prefix(&[prefix::DEF])
            .map(|item| {
                let (k, v) = item?;
                decode_json(&k, &v)
            })
            .collect()
    }

    pub fn member(&self, segment: &str, contact: &str) -> Result<Option<Member>, StoreError> {
        let key = pair(prefix::MEMBER, segment, contact);
        match self.tree.get(&key)? {
            Some(v) => decode_json(&key, &v).map(Some),
            None => Ok(None),
        }
    }

    /// Members of a segment after `after`, in contact id order.
    pub fn members(
        &self,
        segment: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Member)>, StoreError> {
        let start = pair(prefix::MEMBER, segment, "");
        let from = match after {
            Some(a) => {
                let mut k = pair(prefix::MEMBER, segment, a);
                k.push(0);
                k
            }
            None => start.clone(),
        };
        let mut out = Vec::new();
        for item in self.tree.range_from(&from) {
            let (k, v) = item?;
            if !k.starts_with(&start) || out.len() >= limit {
                break;
            }
            let contact = String::from_utf8_lossy(&k[start.len()..]).into_owned();
            out.push((contact, decode_json(&k, &v)?));
        }
        Ok(out)
    }

    /// The segments a contact is in.
    pub fn segments_of(&self, contact: &str) -> Result<Vec<String>, StoreError> {
        let start = pair(prefix::OF_CONTACT, contact, "");
        self.tree
            .scan_prefix(&start)
            .map(|item| {
                let (k, _) = item?;
                Ok(String::from_utf8_lossy(&k[start.len()..]).into_owned())
            })
            .collect()
    }

    /// The contact's kept events with event time after `after_ms` (future-stamped ones
    /// included), oldest first, read forward; at most the newest `max`. The flag is true
    /// when older ones were left out.
    pub fn kept_since(
        &self,
        contact: &str,
        after_ms: i64,
        max: usize,
    ) -> Result<(std::collections::VecDeque<KeptAt>, bool), StoreError> {
        let start = pair(prefix::WINDOW, contact, "");
        let from = [start.as_slice(), &time_key(after_ms.saturating_add(1))].concat();
        let end = crate::store::prefix_end(&start).unwrap_or_else(|| vec![0xff; 1]);
        let mut out = std::collections::VecDeque::new();
        let mut dropped = false;
        for item in self.tree.range(
            std::ops::Bound::Included(&from),
            std::ops::Bound::Excluded(&end),
            false,
        ) {
            let (k, v) = item?;
            if out.len() == max {
                out.pop_front();
                dropped = true;
            }
            let at = &k[start.len()..];
            out.push_back(KeptAt {
                at_ms: time_of_key(at),
                seq: at
                    .get(8..16)
                    .and_then(|b| b.try_into().ok())
                    .map_or(0, u64::from_be_bytes),
                kept: Kept::decode(&k, &v)?,
            });
        }
        Ok((out, dropped))
    }

    /// Keys of the contact's kept events before `before_ms` (to drop them).
    pub fn window_before(&self, contact: &str, before_ms: i64) -> Result<Vec<Vec<u8>>, StoreError> {
        let start = pair(prefix::WINDOW, contact, "");
        let to = [start.as_slice(), &time_key(before_ms)].concat();
        self.tree
            .range(
                std::ops::Bound::Included(&start),
                std::ops::Bound::Excluded(&to),
                false,
            )
            .map(|item| item.map(|(k, _)| k))
            .collect()
    }

    /// Every kept event of a contact, raw (to move them when it is merged away).
    pub fn window_all(&self, contact: &str) -> Result<Vec<Entry>, StoreError> {
        let start = pair(prefix::WINDOW, contact, "");
        self.tree.scan_prefix(&start).collect()
    }

    /// Timers due at or before `now_ms`, in due order, at most `limit`.
    pub fn due_timers(&self, now_ms: i64, limit: usize) -> Result<Vec<Timer>, StoreError> {
        let to = [&[prefix::TIMER][..], &time_key(now_ms), &[0xff]].concat();
        let mut out = Vec::new();
        for item in self.tree.range(
            std::ops::Bound::Included(&[prefix::TIMER][..]),
            std::ops::Bound::Excluded(&to),
            false,
        ) {
            let (k, _) = item?;
            let due_ms = time_of_key(&k[1..]);
            let rest = &k[9..];
            let Some(nul) = rest.iter().position(|&b| b == 0) else {
                continue;
            };
            let due_ok = due_ms <= now_ms;
            if !due_ok {
                break;
            }
            out.push(Timer {
                due_ms,
                segment: String::from_utf8_lossy(&rest[..nul]).into_owned(),
                contact: String::from_utf8_lossy(&rest[nul + 1..]).into_owned(),
            });
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// When the next timer is due.
    pub fn next_timer(&self) -> Result<Option<i64>, StoreError> {
        match self.tree.scan_prefix(&[prefix::TIMER]).next() {
            Some(item) => Ok(Some(time_of_key(&item?.0[1..]))),
            None => Ok(None),
        }
    }

    pub fn timer_of(&self, segment: &str, contact: &str) -> Result<Option<i64>, StoreError> {
        Ok(self
            .tree
            .get(&pair(prefix::TIMER_OF, segment, contact))?
            .map(|v| time_of_key(&v)))
    }

    /// The past events `segment`'s rule kept for `contact`.
    pub fn retained(&self, segment: &str, contact: &str) -> Result<Option<Retained>, StoreError> {
        let key = pair(prefix::RETAINED, segment, contact);
        match self.tree.get(&key)? {
            Some(v) => Retained::decode(&key, &v).map(Some),
            None => Ok(None),
        }
    }

    pub fn evaluated_seq(&self) -> Result<u64, StoreError> {
        Ok(self
            .tree
            .get(&[prefix::META, b's'])?
            .and_then(|v| v.try_into().ok())
            .map_or(0, u64::from_be_bytes))
    }
}

/// Writes of one step of the stage, committed as one batch. Member counts are tracked per
/// segment and written with the definitions.
#[derive(Default)]
pub(crate) struct Writes {
    pub batch: Batch,
    pub defs: BTreeMap<String, SegmentDef>,
}

impl Writes {
    pub fn enter(
        &mut self,
        def: &mut SegmentDef,
        contact: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let member = Member {
            since_ms: now_ms,
            version: def.version,
        };
        self.batch.insert(
            pair(prefix::MEMBER, &def.id, contact),
            encode_json(&member)?,
        );
        self.batch
            .insert(pair(prefix::OF_CONTACT, contact, &def.id), []);
        def.members += 1;
        Ok(())
    }

    pub fn exit(&mut self, def: &mut SegmentDef, contact: &str) {
        self.batch.remove(pair(prefix::MEMBER, &def.id, contact));
        self.batch
            .remove(pair(prefix::OF_CONTACT, contact, &def.id));
        def.members = def.members.saturating_sub(1);
    }

    /// Replaces the contact's timer in the segment (`old` is the one stored).
    pub fn set_timer(&mut self, segment: &str, contact: &str, old: Option<i64>, new: Option<i64>) {
        if old == new {
            return;
        }
        if let Some(old) = old {
            self.batch.remove(timer_key(old, segment, contact));
        }
        match new {
            Some(due) => {
                self.batch.insert(timer_key(due, segment, contact), []);
                self.batch
                    .insert(pair(prefix::TIMER_OF, segment, contact), time_key(due));
            }
            None => self.batch.remove(pair(prefix::TIMER_OF, segment, contact)),
        }
    }

    pub fn keep_event(
        &mut self,
        contact: &str,
        at_ms: i64,
        seq: u64,
        kept: &Kept,
    ) -> Result<(), StoreError> {
        self.batch
            .insert(window_key(contact, at_ms, seq), kept.encode());
        Ok(())
    }

    /// Replaces the past events `segment`'s rule kept for `contact` (none: it hands the
    /// whole window next time).
    pub fn set_retained(&mut self, segment: &str, contact: &str, retained: Option<&Retained>) {
        let key = pair(prefix::RETAINED, segment, contact);
        match retained {
            Some(r) => self.batch.insert(key, r.encode()),
            None => self.batch.remove(key),
        }
    }

    pub fn evaluated_seq(&mut self, seq: u64) {
        self.batch.insert([prefix::META, b's'], seq.to_be_bytes());
    }

    /// The batch, with every touched definition written.
    pub fn into_batch(mut self) -> Result<Batch, StoreError> {
        for (id, def) in &self.defs {
            self.batch
                .insert([&[prefix::DEF], id.as_bytes()].concat(), encode_json(def)?);
        }
        Ok(self.batch)
    }

    pub fn commit(self, tree: &dyn Keyspace) -> Result<(), StoreError> {
        tree.apply(self.into_batch()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_events_read_back_in_both_forms() {
        for kept in [
            Kept {
                kind: EventKind::Track,
                name: Some("Order Completed".into()),
                properties: r#"{"total":120.5,"note":"a \"quoted\" é"}"#.into(),
            },
            Kept {
                kind: EventKind::Page,
                name: None,
                properties: "{}".into(),
            },
            Kept {
                kind: EventKind::Alias,
                name: Some(String::new()),
                properties: String::new(),
            },
        ] {
            assert_eq!(Kept::decode(b"k", &kept.encode()).unwrap(), kept);
            // Kept events written before the binary form are JSON.
            assert_eq!(
                Kept::decode(b"k", &encode_json(&kept).unwrap()).unwrap(),
                kept
            );
        }
        for bad in [&[1u8][..], &[1, 9, 0, 0, 0, 0], &[1, 0, 0, 0, 0, 9, b'a']] {
            assert!(Kept::decode(b"k", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn retained_events_read_back() {
        let retained = Retained {
            version: 7,
            rule_sha256: "ab12".into(),
            events: vec![
                KeptAt {
                    at_ms: -5,
                    seq: 3,
                    kept: Kept {
                        kind: EventKind::Track,
                        name: Some("Order".into()),
                        properties: r#"{"total":1}"#.into(),
                    },
                },
                KeptAt {
                    at_ms: 1_700_000_000_000,
                    seq: u64::MAX,
                    kept: Kept {
                        kind: EventKind::Page,
                        name: None,
                        properties: "{}".into(),
                    },
                },
            ],
        };
        let bytes = retained.encode();
        assert_eq!(Retained::decode(b"k", &bytes).unwrap(), retained);
        let empty = Retained {
            events: vec![],
            ..retained
        };
        assert_eq!(Retained::decode(b"k", &empty.encode()).unwrap(), empty);
        assert!(Retained::decode(b"k", &bytes[..bytes.len() - 1]).is_err());
    }
}
