//! The outbox: messages waiting to be delivered, each stored once under its idempotency key
//! with its state. Only enqueueing exists so far: every message stays `queued` and nothing is
//! sent (no worker, policy, templates or channel calls yet).

use std::ops::Bound;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::store::{Batch, Engine, StoreError, Tree, decode_json, encode_json};

/// The outbox's keyspace.
pub const KEYSPACE: &str = "outbox";

/// Key prefixes in [`KEYSPACE`]. Every index value is the delivery id; index keys end with the
/// enqueue sequence (big-endian), so each index lists deliveries in the order they were queued
/// (per contact: the order a worker must keep).
mod prefix {
    /// `d ++ id` -> [`super::Delivery`].
    pub const DELIVERY: u8 = b'd';
    /// `q ++ seq` -> id: every delivery.
    pub const QUEUED_AT: u8 = b'q';
    /// `c ++ contact ++ 0 ++ seq` -> id.
    pub const CONTACT: u8 = b'c';
    /// `j ++ journey ++ 0 ++ seq` -> id.
    pub const JOURNEY: u8 = b'j';
    /// `s ++ state ++ 0 ++ seq` -> id: what a worker takes next.
    pub const STATE: u8 = b's';
}

/// Where a delivery is in its life. Only `queued` is reached today; the delivery worker adds
/// the states after it (sending, sent, delivered, deferred, failed, dead), moving the state
/// index entry in the same batch as the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Waiting for a worker.
    Queued,
}

impl DeliveryState {
    /// The state as written in the API and the state index.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Queued => "queued",
        }
    }

    /// Parses an API filter value.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "queued" => Some(DeliveryState::Queued),
            _ => None,
        }
    }
}

/// What asked for a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JourneyOrigin {
    /// The journey.
    pub journey: String,
    /// The definition version the run follows.
    pub version: u32,
    /// The run.
    pub run: String,
    /// The send step's index in that version.
    pub step: usize,
    /// The step's id.
    pub step_id: String,
}

/// A message to enqueue.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMessage {
    /// Its idempotency key: a journey send is `{run}.{step}`. Enqueueing the same key again
    /// changes nothing.
    pub idempotency_key: String,
    /// The contact it is for.
    pub contact: String,
    /// The channel plugin that will send it.
    pub channel: String,
    /// The template it will be rendered from.
    pub template: String,
    /// Data for the template.
    pub data: Value,
    /// The journey step that asked for it.
    pub journey: Option<JourneyOrigin>,
}

/// A stored message and its state. Fields are added with serde defaults, so records written
/// now stay readable as the delivery stage grows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// Its id: the idempotency key.
    pub id: String,
    /// Where it is in its life.
    pub state: DeliveryState,
    /// Enqueue order, from 1 (a number the store never gives out twice).
    pub seq: u64,
    /// The contact it is for.
    pub contact: String,
    /// The channel plugin that will send it.
    pub channel: String,
    /// The template it will be rendered from.
    pub template: String,
    /// Data for the template.
    pub data: Value,
    /// The journey step that asked for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub journey: Option<JourneyOrigin>,
    /// When it was queued, Unix ms.
    pub created_ms: i64,
    /// When its state last changed, Unix ms.
    pub updated_ms: i64,
}

/// Which deliveries a listing wants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only this contact's.
    pub contact: Option<String>,
    /// Only this journey's.
    pub journey: Option<String>,
    /// Only those in this state.
    pub state: Option<DeliveryState>,
}

/// The outbox (one keyspace).
#[derive(Clone)]
pub struct Outbox {
    tree: Tree,
    engine: Arc<dyn Engine>,
    /// Serialises enqueues, so one key is checked and written by one caller at a time.
    enqueue: Arc<Mutex<()>>,
}

impl Outbox {
    /// Opens the outbox keyspace of `engine`.
    pub fn open(engine: Arc<dyn Engine>) -> Result<Self, StoreError> {
        Ok(Self {
            tree: engine.open(KEYSPACE)?,
            engine,
            enqueue: Arc::new(Mutex::new(())),
        })
    }

    /// Stores a message as `queued` under its idempotency key, with its index entries, in one
    /// atomic batch, and makes it durable. A key already stored is left as it is: returns the
    /// stored delivery and whether this call created it.
    pub fn enqueue(
        &self,
        message: NewMessage,
        now_ms: i64,
    ) -> Result<(Delivery, bool), StoreError> {
        let _one = self.enqueue.lock().unwrap_or_else(|e| e.into_inner());
        let key = delivery_key(&message.idempotency_key);
        if let Some(bytes) = self.tree.get(&key)? {
            return Ok((decode_json(&key, &bytes)?, false));
        }
        // From 1, so `after = 0` lists from the start.
        let seq = self.engine.generate_id()?.saturating_add(1);
        let delivery = Delivery {
            id: message.idempotency_key,
            state: DeliveryState::Queued,
            seq,
            contact: message.contact,
            channel: message.channel,
            template: message.template,
            data: message.data,
            journey: message.journey,
            created_ms: now_ms,
            updated_ms: now_ms,
        };
        let id = delivery.id.as_bytes();
        let mut batch = Batch::default();
        batch.insert(&key, encode_json(&delivery)?);
        batch.insert(index_key(prefix::QUEUED_AT, None, seq), id);
        batch.insert(index_key(prefix::CONTACT, Some(&delivery.contact), seq), id);
        if let Some(origin) = &delivery.journey {
            batch.insert(index_key(prefix::JOURNEY, Some(&origin.journey), seq), id);
        }
        batch.insert(
            index_key(prefix::STATE, Some(delivery.state.as_str()), seq),
            id,
        );
        self.tree.apply(batch)?;
        self.tree.flush()?;
        Ok((delivery, true))
    }

    /// One delivery.
    pub fn get(&self, id: &str) -> Result<Option<Delivery>, StoreError> {
        let key = delivery_key(id);
        self.tree
            .get(&key)?
            .map(|bytes| decode_json(&key, &bytes))
            .transpose()
    }

    /// Deliveries matching `filter` in the order they were queued, after enqueue sequence
    /// `after`, at most `limit`.
    pub fn list(
        &self,
        filter: &Filter,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        // Walk the narrowest index; check the rest on the record.
        let (p, name) = if let Some(c) = &filter.contact {
            (prefix::CONTACT, Some(c.as_str()))
        } else if let Some(j) = &filter.journey {
            (prefix::JOURNEY, Some(j.as_str()))
        } else if let Some(s) = filter.state {
            (prefix::STATE, Some(s.as_str()))
        } else {
            (prefix::QUEUED_AT, None)
        };
        let from = index_key(p, name, after.saturating_add(1));
        let to = index_key(p, name, u64::MAX);
        let mut out = Vec::new();
        for item in self
            .tree
            .range(Bound::Included(&from), Bound::Included(&to), false)
        {
            let (_, id) = item?;
            let id = String::from_utf8_lossy(&id).into_owned();
            let Some(d) = self.get(&id)? else { continue };
            let wanted = filter.contact.as_ref().is_none_or(|c| *c == d.contact)
                && filter
                    .journey
                    .as_ref()
                    .is_none_or(|j| d.journey.as_ref().is_some_and(|o| o.journey == *j))
                && filter.state.is_none_or(|s| s == d.state);
            if wanted {
                out.push(d);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }
}

impl Outbox {
    /// Removes every message for `contact` with its index entries (the contact was erased);
    /// returns how many.
    pub fn forget_contact(&self, contact: &str) -> Result<usize, StoreError> {
        let _one = self.enqueue.lock().unwrap_or_else(|e| e.into_inner());
        let start = index_key(prefix::CONTACT, Some(contact), 0);
        let start = &start[..start.len() - 8];
        let mut batch = Batch::default();
        let mut n = 0;
        for item in self.tree.scan_prefix(start) {
            let (k, id) = item?;
            batch.remove(&k);
            let id = String::from_utf8_lossy(&id).into_owned();
            let Some(d) = self.get(&id)? else { continue };
            batch.remove(delivery_key(&id));
            batch.remove(index_key(prefix::QUEUED_AT, None, d.seq));
            batch.remove(index_key(prefix::STATE, Some(d.state.as_str()), d.seq));
            if let Some(origin) = &d.journey {
                batch.remove(index_key(prefix::JOURNEY, Some(&origin.journey), d.seq));
            }
            n += 1;
        }
        self.tree.apply(batch)?;
        self.tree.flush()?;
        Ok(n)
    }
}

fn delivery_key(id: &str) -> Vec<u8> {
    [&[prefix::DELIVERY], id.as_bytes()].concat()
}

fn index_key(p: u8, name: Option<&str>, seq: u64) -> Vec<u8> {
    let mut key = vec![p];
    if let Some(name) = name {
        key.extend_from_slice(name.as_bytes());
        key.push(0);
    }
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryEngine;
    use serde_json::json;

    fn message(key: &str, contact: &str, journey: &str) -> NewMessage {
        NewMessage {
            idempotency_key: key.into(),
            contact: contact.into(),
            channel: "webhook-channel".into(),
            template: "welcome".into(),
            data: json!({ "n": 1 }),
            journey: Some(JourneyOrigin {
                journey: journey.into(),
                version: 1,
                run: key.split('.').next().unwrap_or_default().into(),
                step: 2,
                step_id: "2".into(),
            }),
        }
    }

    #[test]
    fn one_key_is_queued_once_whatever_the_retries() {
        let outbox = Outbox::open(Arc::new(MemoryEngine::new())).unwrap();
        let (first, created) = outbox.enqueue(message("r1.2", "c1", "j"), 10).unwrap();
        assert!(created);
        assert_eq!(first.state, DeliveryState::Queued);
        let mut again = message("r1.2", "c1", "j");
        again.template = "changed".into();
        let (second, created) = outbox.enqueue(again, 20).unwrap();
        assert!(!created);
        assert_eq!(second, first, "the first record stays");
        assert_eq!(outbox.list(&Filter::default(), 0, 10).unwrap().len(), 1);
        assert_eq!(outbox.get("r1.2").unwrap(), Some(first));
        assert_eq!(outbox.get("r9.9").unwrap(), None);
    }

    #[test]
    fn listings_filter_by_contact_journey_and_state_in_queue_order() {
        let outbox = Outbox::open(Arc::new(MemoryEngine::new())).unwrap();
        outbox.enqueue(message("a.1", "c1", "j1"), 1).unwrap();
        outbox.enqueue(message("b.1", "c2", "j1"), 2).unwrap();
        outbox.enqueue(message("c.1", "c1", "j2"), 3).unwrap();
        let ids = |f: Filter| -> Vec<String> {
            outbox
                .list(&f, 0, 10)
                .unwrap()
                .into_iter()
                .map(|d| d.id)
                .collect()
        };
        assert_eq!(ids(Filter::default()), ["a.1", "b.1", "c.1"]);
        let c1 = Filter {
            contact: Some("c1".into()),
            ..Filter::default()
        };
        assert_eq!(ids(c1), ["a.1", "c.1"]);
        let j1 = Filter {
            journey: Some("j1".into()),
            ..Filter::default()
        };
        assert_eq!(ids(j1), ["a.1", "b.1"]);
        let both = Filter {
            contact: Some("c1".into()),
            journey: Some("j2".into()),
            state: Some(DeliveryState::Queued),
        };
        assert_eq!(ids(both), ["c.1"]);
        // Paging continues after the last sequence seen.
        let first = outbox.list(&Filter::default(), 0, 1).unwrap();
        let rest = outbox.list(&Filter::default(), first[0].seq, 10).unwrap();
        assert_eq!(rest.len(), 2);
        assert_eq!(DeliveryState::parse("queued"), Some(DeliveryState::Queued));
        // An erased contact's messages go with every index entry.
        assert_eq!(outbox.forget_contact("c1").unwrap(), 2);
        assert_eq!(ids(Filter::default()), ["b.1"]);
        let j2 = Filter {
            journey: Some("j2".into()),
            ..Filter::default()
        };
        assert!(ids(j2).is_empty());
        assert_eq!(outbox.get("a.1").unwrap(), None);
        assert_eq!(DeliveryState::parse("sent"), None);
    }
}
