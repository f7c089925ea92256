//! The outbox's records and their moves: enqueue once per key, take the due heads of a
//! channel's queue, finish an attempt (sent, deferred, dead), replay dead letters. Each move
//! writes the record and every index entry it changes in one atomic batch, under one lock.

use std::collections::HashMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::Notify;

use super::keys::{self, prefix};
use super::record::{
    Attempt, AttemptOutcome, Content, Delivery, DeliveryState, JourneyOrigin, MAX_ERROR_BYTES,
    StatusRecord, cut_text,
};
use super::retry::{RetryOverride, RetrySettings};
use super::{KEYSPACE, OutboxConfig, OutboxError};
use crate::store::{Batch, Engine, StoreError, Tree, decode_json, encode_json};

/// Most statuses a record keeps.
const MAX_STATUSES: usize = 20;

/// A message to enqueue.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMessage {
    /// Its idempotency key: a journey send is `{run}.{step}`, an API send `api:{key}`.
    /// Enqueueing the same key again changes nothing.
    pub idempotency_key: String,
    /// The contact it is for.
    pub contact: String,
    /// The channel plugin that will send it.
    pub channel: String,
    /// The recipient, when the send names one.
    pub to: Option<String>,
    /// The template it will be rendered from.
    pub template: Option<String>,
    /// Content given with the send.
    pub content: Option<Content>,
    /// Data for the template; context for the channel.
    pub data: Value,
    /// The journey step that asked for it.
    pub journey: Option<JourneyOrigin>,
    /// sha256 of the API request that asked for it.
    pub request_sha256: Option<String>,
}

/// Which deliveries a listing wants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only this contact's.
    pub contact: Option<String>,
    /// Only this channel's.
    pub channel: Option<String>,
    /// Only this journey's.
    pub journey: Option<String>,
    /// Only those in this state.
    pub state: Option<DeliveryState>,
}

/// An event about a delivery, for the contact's event log: written with the move it reports,
/// so a crash cannot lose it, and appended by the worker under a message id that makes a
/// second append a duplicate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryEvent {
    /// `Message Sent`, `Message Failed`, ...
    pub name: String,
    /// The event's message id.
    pub message_id: String,
    /// The contact it is about.
    pub contact: String,
    /// Its properties (delivery id, channel, journey, ...).
    pub properties: Value,
    /// When it happened, Unix ms.
    pub at_ms: i64,
}

/// Where an attempt left a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Landed {
    /// Sent.
    Sent,
    /// Waiting for its next attempt at this time.
    Deferred(i64),
    /// Dead (a permanent error, or its attempts ran out).
    Dead,
}

/// Wakes channel workers when their queue changes; notes channels it has not seen before.
#[derive(Default)]
pub(super) struct Wakers {
    lanes: Mutex<HashMap<String, Arc<Notify>>>,
    /// Woken when a channel gets its first waker.
    pub(super) new_lane: Notify,
}

impl Wakers {
    /// The waker of `channel`, made on first use.
    pub(super) fn lane(&self, channel: &str) -> Arc<Notify> {
        let mut lanes = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = lanes.get(channel) {
            return n.clone();
        }
        let n = Arc::new(Notify::new());
        lanes.insert(channel.to_string(), n.clone());
        self.new_lane.notify_one();
        n
    }

    /// Every channel with a waker.
    pub(super) fn channels(&self) -> Vec<String> {
        let lanes = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
        lanes.keys().cloned().collect()
    }

    fn wake(&self, channel: &str) {
        // A permit is stored when the worker is not waiting, so no wake is lost.
        self.lane(channel).notify_one();
    }
}

/// The outbox (one keyspace).
#[derive(Clone)]
pub struct Outbox {
    tree: Tree,
    engine: Arc<dyn Engine>,
    /// Serialises every move, so a key is checked and written by one caller at a time and a
    /// contact's queue is read and changed as one.
    writer: Arc<Mutex<()>>,
    pub(super) wakers: Arc<Wakers>,
    config: OutboxConfig,
    /// Open deliveries (queued, deferred, sending), against [`OutboxConfig::max_open`].
    open: Arc<AtomicU64>,
}

impl Outbox {
    /// Opens the outbox keyspace of `engine` with the default config.
    pub fn open(engine: Arc<dyn Engine>) -> Result<Self, StoreError> {
        Self::open_with(engine, OutboxConfig::default())
    }

    /// Opens the outbox keyspace of `engine`, indexing records an earlier version wrote.
    pub fn open_with(engine: Arc<dyn Engine>, config: OutboxConfig) -> Result<Self, StoreError> {
        let outbox = Self {
            tree: engine.open(KEYSPACE)?,
            engine,
            writer: Arc::new(Mutex::new(())),
            wakers: Arc::new(Wakers::default()),
            config,
            open: Arc::new(AtomicU64::new(0)),
        };
        outbox.reindex_if_older()?;
        let open = outbox.tree.scan_prefix(&[prefix::OPEN]).count() as u64;
        outbox.open.store(open, Ordering::Relaxed);
        for channel in outbox.ready_channels()? {
            outbox.wakers.wake(&channel);
        }
        Ok(outbox)
    }

    /// The host-wide defaults every channel starts from.
    pub fn config(&self) -> &OutboxConfig {
        &self.config
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores a message as `queued` under its idempotency key, with its index entries, in one
    /// atomic batch, and makes it durable. A key already stored is left as it is: returns the
    /// stored delivery and whether this call created it. Refused when the outbox holds
    /// [`OutboxConfig::max_open`] open deliveries.
    pub fn enqueue(
        &self,
        message: NewMessage,
        now_ms: i64,
    ) -> Result<(Delivery, bool), OutboxError> {
        let _one = self.lock();
        let key = keys::delivery(&message.idempotency_key);
        if let Some(bytes) = self.tree.get(&key)? {
            return Ok((decode_json(&key, &bytes)?, false));
        }
        let open = self.open.load(Ordering::Relaxed);
        if open >= self.config.max_open {
            return Err(OutboxError::Full {
                limit: self.config.max_open,
            });
        }
        // From 1, so `after = 0` lists from the start.
        let seq = self.engine.generate_id()?.saturating_add(1);
        let mut delivery = Delivery {
            id: message.idempotency_key,
            state: DeliveryState::Queued,
            seq,
            order: seq,
            contact: message.contact,
            channel: message.channel,
            to: message.to,
            template: message.template,
            content: message.content,
            data: message.data,
            journey: message.journey,
            request_sha256: message.request_sha256,
            created_ms: now_ms,
            updated_ms: now_ms,
            next_attempt_ms: Some(now_ms),
            attempt_count: 0,
            attempts_counted: 0,
            attempts: Vec::new(),
            provider_id: None,
            error: None,
            sent_ms: None,
            statuses: Vec::new(),
        };
        let mut batch = Batch::default();
        let id = delivery.id.as_bytes();
        batch.insert(keys::index(prefix::QUEUED_AT, None, seq), id);
        batch.insert(
            keys::index(prefix::CONTACT, Some(&delivery.contact), seq),
            id,
        );
        batch.insert(
            keys::index(prefix::CHANNEL, Some(&delivery.channel), seq),
            id,
        );
        if let Some(origin) = &delivery.journey {
            batch.insert(keys::index(prefix::JOURNEY, Some(&origin.journey), seq), id);
        }
        self.open_in(&mut batch, &mut delivery, None)?;
        batch.insert(&key, encode_json(&delivery)?);
        self.tree.apply(batch)?;
        self.tree.flush()?;
        self.open.fetch_add(1, Ordering::Relaxed);
        self.wakers.wake(&delivery.channel);
        Ok((delivery, true))
    }

    /// Stages `d` (queued, due at `next_attempt_ms`) into its contact's queue on its channel:
    /// its open entry, its state entry, and a ready entry when nothing of the contact's is
    /// ahead of it. `old_state`: the state entry to move it from.
    fn open_in(
        &self,
        batch: &mut Batch,
        d: &mut Delivery,
        old_state: Option<DeliveryState>,
    ) -> Result<(), StoreError> {
        let ahead = self
            .tree
            .scan_prefix(&keys::open_prefix(&d.channel, &d.contact))
            .next()
            .transpose()?
            .is_some_and(|(k, _)| k < keys::open(&d.channel, &d.contact, d.place()));
        batch.insert(
            keys::open(&d.channel, &d.contact, d.place()),
            d.id.as_bytes(),
        );
        if !ahead {
            let due = d.next_attempt_ms.unwrap_or(d.updated_ms);
            batch.insert(keys::ready(&d.channel, due, d.seq), d.id.as_bytes());
        }
        self.move_state(batch, d, old_state, DeliveryState::Queued);
        Ok(())
    }

    fn move_state(
        &self,
        batch: &mut Batch,
        d: &mut Delivery,
        from: Option<DeliveryState>,
        to: DeliveryState,
    ) {
        if let Some(from) = from {
            batch.remove(keys::index(prefix::STATE, Some(from.as_str()), d.seq));
        }
        batch.insert(
            keys::index(prefix::STATE, Some(to.as_str()), d.seq),
            d.id.as_bytes(),
        );
        d.state = to;
    }

    /// Stages the end of `d`'s place in its contact's queue: its open entry goes, and the
    /// next open delivery of the contact on the channel becomes ready at its due time.
    fn close_in(&self, batch: &mut Batch, d: &Delivery) -> Result<(), StoreError> {
        let own = keys::open(&d.channel, &d.contact, d.place());
        batch.remove(&own);
        for item in self
            .tree
            .scan_prefix(&keys::open_prefix(&d.channel, &d.contact))
        {
            let (k, id) = item?;
            if k == own {
                continue;
            }
            let id = String::from_utf8_lossy(&id).into_owned();
            if let Some(next) = self.get(&id)? {
                let due = next.next_attempt_ms.unwrap_or(next.updated_ms);
                batch.insert(keys::ready(&next.channel, due, next.seq), id.as_bytes());
            }
            break;
        }
        Ok(())
    }

    /// One delivery.
    pub fn get(&self, id: &str) -> Result<Option<Delivery>, StoreError> {
        let key = keys::delivery(id);
        self.tree
            .get(&key)?
            .map(|bytes| decode_json(&key, &bytes))
            .transpose()
    }

    fn put(&self, batch: &mut Batch, d: &Delivery) -> Result<(), StoreError> {
        batch.insert(keys::delivery(&d.id), encode_json(d)?);
        Ok(())
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
        } else if let Some(c) = &filter.channel {
            (prefix::CHANNEL, Some(c.as_str()))
        } else {
            (prefix::QUEUED_AT, None)
        };
        let from = keys::index(p, name, after.saturating_add(1));
        let to = keys::index(p, name, u64::MAX);
        let mut out = Vec::new();
        for item in self
            .tree
            .range(Bound::Included(&from), Bound::Included(&to), false)
        {
            let (_, id) = item?;
            let id = String::from_utf8_lossy(&id).into_owned();
            let Some(d) = self.get(&id)? else { continue };
            if filter_matches(filter, &d) {
                out.push(d);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// How many deliveries are open (queued, deferred, sending).
    pub fn open_count(&self) -> u64 {
        self.open.load(Ordering::Relaxed)
    }

    /// Channels with a delivery in their ready queue.
    pub fn ready_channels(&self) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        let mut from = vec![prefix::READY];
        loop {
            let next = self.tree.range_from(&from).next().transpose()?;
            let Some((k, _)) = next else { break };
            if k.first() != Some(&prefix::READY) {
                break;
            }
            let Some(channel) = keys::name_of(&k) else {
                break;
            };
            out.push(channel.to_string());
            // Past every key of this channel: its name followed by a byte above 0.
            from = keys::named(prefix::READY, channel);
            *from.last_mut().expect("ends with 0") = 1;
        }
        Ok(out)
    }

    /// When the first delivery in `channel`'s ready queue is due, if it has one.
    pub fn next_due(&self, channel: &str) -> Result<Option<i64>, StoreError> {
        let first = self
            .tree
            .scan_prefix(&keys::named(prefix::READY, channel))
            .next()
            .transpose()?;
        Ok(first.and_then(|(k, _)| keys::ready_due(&k)))
    }

    /// Takes up to `limit` of `channel`'s ready deliveries due by `now_ms`, in due order, and
    /// marks them `sending`.
    pub fn claim(
        &self,
        channel: &str,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let _one = self.lock();
        let from = keys::named(prefix::READY, channel);
        let to = keys::ready(channel, now_ms.saturating_add(1), 0);
        let mut batch = Batch::default();
        let mut out = Vec::new();
        for item in self
            .tree
            .range(Bound::Included(&from), Bound::Excluded(&to), false)
        {
            let (k, id) = item?;
            batch.remove(&k);
            let id = String::from_utf8_lossy(&id).into_owned();
            let Some(mut d) = self.get(&id)? else {
                continue;
            };
            if !matches!(d.state, DeliveryState::Queued | DeliveryState::Deferred) {
                continue;
            }
            let was = d.state;
            self.move_state(&mut batch, &mut d, Some(was), DeliveryState::Sending);
            d.updated_ms = now_ms;
            self.put(&mut batch, &d)?;
            out.push(d);
            if out.len() >= limit {
                break;
            }
        }
        if !batch.is_empty() {
            self.tree.apply(batch)?;
        }
        Ok(out)
    }

    /// Records `attempt` on the delivery `id` (which is `sending`) and moves it on: sent,
    /// deferred with back-off under `settings`, or dead. `unit` in [0, 1) draws the jitter.
    /// `None` when the delivery is gone (its contact was erased meanwhile) or not sending.
    pub fn finish(
        &self,
        id: &str,
        attempt: Attempt,
        settings: &RetrySettings,
        now_ms: i64,
        unit: f64,
    ) -> Result<Option<(Delivery, Landed)>, StoreError> {
        let _one = self.lock();
        let Some(mut d) = self.get(id)? else {
            return Ok(None);
        };
        if d.state != DeliveryState::Sending {
            return Ok(None);
        }
        let mut batch = Batch::default();
        let outcome = attempt.outcome;
        let error = attempt.error.clone();
        let retry_after = attempt.retry_after_ms;
        if let Some(p) = &attempt.provider_id {
            d.provider_id = Some(p.clone());
        }
        d.push_attempt(attempt);
        d.updated_ms = now_ms;
        let landed = match outcome {
            AttemptOutcome::Sent => {
                d.sent_ms = Some(now_ms);
                d.next_attempt_ms = None;
                d.error = None;
                if let Some(p) = &d.provider_id {
                    batch.insert(keys::provider(&d.channel, p), d.id.as_bytes());
                }
                self.move_state(
                    &mut batch,
                    &mut d,
                    Some(DeliveryState::Sending),
                    DeliveryState::Sent,
                );
                self.close_in(&mut batch, &d)?;
                Landed::Sent
            }
            AttemptOutcome::Permanent => self.dead_in(&mut batch, &mut d, error)?,
            AttemptOutcome::Retryable | AttemptOutcome::Unavailable
                if d.attempts_counted >= settings.max_attempts =>
            {
                let gave_up = format!(
                    "gave up after {} attempts; the last: {}",
                    d.attempts_counted,
                    error.as_deref().unwrap_or("no reason given")
                );
                let error = Some(cut_text(&gave_up, MAX_ERROR_BYTES));
                self.dead_in(&mut batch, &mut d, error)?
            }
            AttemptOutcome::Retryable
            | AttemptOutcome::Unavailable
            | AttemptOutcome::Interrupted => {
                let wait = if outcome == AttemptOutcome::Interrupted {
                    0
                } else {
                    settings.delay_ms(d.attempts_counted, retry_after, unit)
                };
                let due = now_ms.saturating_add(i64::try_from(wait).unwrap_or(i64::MAX));
                d.error = error;
                d.next_attempt_ms = Some(due);
                let to = if outcome == AttemptOutcome::Interrupted {
                    DeliveryState::Queued
                } else {
                    DeliveryState::Deferred
                };
                self.move_state(&mut batch, &mut d, Some(DeliveryState::Sending), to);
                batch.insert(keys::ready(&d.channel, due, d.seq), d.id.as_bytes());
                Landed::Deferred(due)
            }
        };
        match landed {
            Landed::Sent => self.event_in(&mut batch, &d, super::SENT, "sent")?,
            Landed::Dead => self.event_in(&mut batch, &d, super::FAILED, "dead")?,
            Landed::Deferred(_) => {}
        }
        self.put(&mut batch, &d)?;
        self.tree.apply(batch)?;
        self.tree.flush()?;
        if matches!(landed, Landed::Sent | Landed::Dead) {
            self.open.fetch_sub(1, Ordering::Relaxed);
        }
        self.wakers.wake(&d.channel);
        Ok(Some((d, landed)))
    }

    /// Stages `d` (sending) going to the dead letters with `error`.
    fn dead_in(
        &self,
        batch: &mut Batch,
        d: &mut Delivery,
        error: Option<String>,
    ) -> Result<Landed, StoreError> {
        d.error = error;
        d.next_attempt_ms = None;
        self.move_state(batch, d, Some(DeliveryState::Sending), DeliveryState::Dead);
        self.close_in(batch, d)?;
        Ok(Landed::Dead)
    }

    /// Stages the event `name` about `d` (its message id names the delivery, the attempt and
    /// `what`, so the same move redone logs nothing twice).
    fn event_in(
        &self,
        batch: &mut Batch,
        d: &Delivery,
        name: &str,
        what: &str,
    ) -> Result<(), StoreError> {
        let mut properties = json!({
            "delivery_id": d.id,
            "channel": d.channel,
            "attempts": d.attempt_count,
        });
        if let Some(origin) = &d.journey {
            properties["journey"] = json!(origin.journey);
            properties["journey_version"] = json!(origin.version);
            properties["run"] = json!(origin.run);
            properties["step"] = json!(origin.step_id);
        }
        if let Some(p) = &d.provider_id {
            properties["provider_id"] = json!(p);
        }
        if let Some(e) = &d.error {
            properties["error"] = json!(e);
        }
        let event = DeliveryEvent {
            name: name.to_string(),
            message_id: format!("delivery:{}:{}:{what}", d.id, d.attempt_count),
            contact: d.contact.clone(),
            properties,
            at_ms: d.updated_ms,
        };
        let n = self.engine.generate_id()?;
        batch.insert(keys::index(prefix::EVENT, None, n), encode_json(&event)?);
        Ok(())
    }

    /// Events waiting to be appended to the log, oldest first, at most `limit`, with the keys
    /// to pass to [`Outbox::events_logged`].
    pub fn pending_events(
        &self,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, DeliveryEvent)>, StoreError> {
        self.tree
            .scan_prefix(&[prefix::EVENT])
            .take(limit)
            .map(|item| {
                let (k, v) = item?;
                let event = decode_json(&k, &v)?;
                Ok((k, event))
            })
            .collect()
    }

    /// Forgets events once they are in the log.
    pub fn events_logged(&self, keys: Vec<Vec<u8>>) -> Result<(), StoreError> {
        let mut batch = Batch::default();
        for k in keys {
            batch.remove(k);
        }
        self.tree.apply(batch)
    }

    /// Puts a `sending` delivery back, due at `due_ms`, without counting an attempt: the call
    /// never ran (the plugin was at its share of the instance pool).
    pub fn release(&self, id: &str, due_ms: i64) -> Result<(), StoreError> {
        let _one = self.lock();
        let Some(mut d) = self.get(id)? else {
            return Ok(());
        };
        if d.state != DeliveryState::Sending {
            return Ok(());
        }
        let mut batch = Batch::default();
        d.next_attempt_ms = Some(due_ms);
        self.move_state(
            &mut batch,
            &mut d,
            Some(DeliveryState::Sending),
            DeliveryState::Queued,
        );
        batch.insert(keys::ready(&d.channel, due_ms, d.seq), d.id.as_bytes());
        self.put(&mut batch, &d)?;
        self.tree.apply(batch)?;
        self.wakers.wake(&d.channel);
        Ok(())
    }

    /// After a restart: every delivery still `sending` was in flight when the host stopped.
    /// Each gets an `interrupted` attempt and is due again at once, with the same key.
    pub fn recover_in_flight(&self, now_ms: i64) -> Result<usize, StoreError> {
        let ids: Vec<String> = self
            .tree
            .scan_prefix(&keys::named(prefix::STATE, DeliveryState::Sending.as_str()))
            .map(|item| item.map(|(_, id)| String::from_utf8_lossy(&id).into_owned()))
            .collect::<Result<_, _>>()?;
        let settings = self.config.defaults;
        let mut n = 0;
        for id in ids {
            let Some(d) = self.get(&id)? else { continue };
            let attempt = Attempt {
                n: d.attempt_count.saturating_add(1),
                channel: d.channel.clone(),
                version: None,
                started_ms: d.updated_ms,
                duration_ms: u64::try_from(now_ms.saturating_sub(d.updated_ms)).unwrap_or(0),
                outcome: AttemptOutcome::Interrupted,
                error: Some("the host stopped while this attempt was in flight".into()),
                provider_id: None,
                retry_after_ms: None,
            };
            if self.finish(&id, attempt, &settings, now_ms, 0.0)?.is_some() {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Moves a dead delivery back to `queued`, behind what its contact has waiting on its
    /// channel, with a fresh allowance of attempts.
    pub fn retry(&self, id: &str, now_ms: i64) -> Result<Delivery, OutboxError> {
        let _one = self.lock();
        let mut d = self
            .get(id)?
            .ok_or_else(|| OutboxError::NotFound(id.to_string()))?;
        if d.state != DeliveryState::Dead {
            return Err(OutboxError::NotDead {
                id: id.to_string(),
                state: d.state,
            });
        }
        let mut batch = Batch::default();
        d.order = self.engine.generate_id()?.saturating_add(1);
        d.attempts_counted = 0;
        d.next_attempt_ms = Some(now_ms);
        d.updated_ms = now_ms;
        self.open_in(&mut batch, &mut d, Some(DeliveryState::Dead))?;
        self.put(&mut batch, &d)?;
        self.tree.apply(batch)?;
        self.tree.flush()?;
        self.open.fetch_add(1, Ordering::Relaxed);
        self.wakers.wake(&d.channel);
        Ok(d)
    }

    /// Dead letters matching `channel` and whose error contains `error` (each when given),
    /// oldest first, at most `limit`.
    pub fn dead_letters(
        &self,
        channel: Option<&str>,
        error: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        let mut out = Vec::new();
        for item in self
            .tree
            .scan_prefix(&keys::named(prefix::STATE, DeliveryState::Dead.as_str()))
        {
            let (_, id) = item?;
            let id = String::from_utf8_lossy(&id).into_owned();
            let Some(d) = self.get(&id)? else { continue };
            let wanted = channel.is_none_or(|c| d.channel == c)
                && error.is_none_or(|e| d.error.as_deref().is_some_and(|x| x.contains(e)));
            if wanted {
                out.push(d);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// The sent delivery of `channel` the provider knows as `provider_id`.
    pub fn by_provider_id(
        &self,
        channel: &str,
        provider_id: &str,
    ) -> Result<Option<Delivery>, StoreError> {
        match self.tree.get(&keys::provider(channel, provider_id))? {
            Some(id) => self.get(&String::from_utf8_lossy(&id)),
            None => Ok(None),
        }
    }

    /// Records a provider's status on a sent delivery: `delivered` and `failed` move its
    /// state (a later `sent` does not undo them); every status is kept, the newest 20.
    pub fn record_status(
        &self,
        id: &str,
        status: StatusRecord,
        to: Option<DeliveryState>,
    ) -> Result<Option<Delivery>, StoreError> {
        let _one = self.lock();
        let Some(mut d) = self.get(id)? else {
            return Ok(None);
        };
        let mut batch = Batch::default();
        if let Some(to) = to
            && matches!(d.state, DeliveryState::Sent | DeliveryState::Delivered)
            && d.state != to
        {
            let from = d.state;
            self.move_state(&mut batch, &mut d, Some(from), to);
        }
        d.statuses.push(status);
        if d.statuses.len() > MAX_STATUSES {
            let extra = d.statuses.len() - MAX_STATUSES;
            d.statuses.drain(..extra);
        }
        self.put(&mut batch, &d)?;
        self.tree.apply(batch)?;
        Ok(Some(d))
    }

    /// `channel`'s retry settings: the host's defaults with its override applied.
    pub fn settings(&self, channel: &str) -> Result<RetrySettings, StoreError> {
        Ok(self.config.defaults.with(&self.settings_override(channel)?))
    }

    /// `channel`'s override, empty when it has none.
    pub fn settings_override(&self, channel: &str) -> Result<RetryOverride, StoreError> {
        let key = keys::settings(channel);
        Ok(match self.tree.get(&key)? {
            Some(bytes) => decode_json(&key, &bytes)?,
            None => RetryOverride::default(),
        })
    }

    /// Sets `channel`'s override, after checking the settings it makes.
    pub fn set_settings(
        &self,
        channel: &str,
        o: RetryOverride,
    ) -> Result<RetrySettings, OutboxError> {
        let settings = self.config.defaults.with(&o);
        settings.check().map_err(OutboxError::InvalidSettings)?;
        self.tree
            .insert(&keys::settings(channel), &encode_json(&o)?)?;
        self.tree.flush()?;
        self.wakers.wake(channel);
        Ok(settings)
    }

    /// Removes every message for `contact` with its index entries (the contact was erased);
    /// returns how many.
    pub fn forget_contact(&self, contact: &str) -> Result<usize, StoreError> {
        let _one = self.lock();
        let mut batch = Batch::default();
        let mut n = 0;
        let mut closed = 0;
        for item in self
            .tree
            .scan_prefix(&keys::named(prefix::CONTACT, contact))
        {
            let (k, id) = item?;
            batch.remove(&k);
            let id = String::from_utf8_lossy(&id).into_owned();
            let Some(d) = self.get(&id)? else { continue };
            batch.remove(keys::delivery(&id));
            batch.remove(keys::index(prefix::QUEUED_AT, None, d.seq));
            batch.remove(keys::index(prefix::STATE, Some(d.state.as_str()), d.seq));
            batch.remove(keys::index(prefix::CHANNEL, Some(&d.channel), d.seq));
            if let Some(origin) = &d.journey {
                batch.remove(keys::index(prefix::JOURNEY, Some(&origin.journey), d.seq));
            }
            if let Some(p) = &d.provider_id {
                batch.remove(keys::provider(&d.channel, p));
            }
            if d.state.is_open() {
                batch.remove(keys::open(&d.channel, &d.contact, d.place()));
                let due = d.next_attempt_ms.unwrap_or(d.updated_ms);
                batch.remove(keys::ready(&d.channel, due, d.seq));
                closed += 1;
            }
            n += 1;
        }
        self.tree.apply(batch)?;
        self.tree.flush()?;
        self.open.fetch_sub(closed, Ordering::Relaxed);
        Ok(n)
    }

    /// Builds the channel, open and ready indexes from the records when the store was written
    /// by a version without them (every delivery then was `queued`).
    fn reindex_if_older(&self) -> Result<(), StoreError> {
        let layout = self.tree.get(&[prefix::LAYOUT])?;
        if layout.as_deref() == Some(&[keys::LAYOUT_VERSION][..]) {
            return Ok(());
        }
        let _one = self.lock();
        let mut records = Vec::new();
        for item in self.tree.scan_prefix(&[prefix::QUEUED_AT]) {
            let (_, id) = item?;
            if let Some(d) = self.get(&String::from_utf8_lossy(&id))? {
                records.push(d);
            }
        }
        for mut d in records {
            let mut batch = Batch::default();
            batch.insert(
                keys::index(prefix::CHANNEL, Some(&d.channel), d.seq),
                d.id.as_bytes(),
            );
            if d.state.is_open() {
                let was = d.state;
                d.next_attempt_ms = d.next_attempt_ms.or(Some(d.updated_ms));
                self.open_in(&mut batch, &mut d, Some(was))?;
                self.put(&mut batch, &d)?;
            }
            // One batch per record, so the next sees its open entry.
            self.tree.apply(batch)?;
        }
        self.tree
            .insert(&[prefix::LAYOUT], &[keys::LAYOUT_VERSION])?;
        self.tree.flush()
    }
}

fn filter_matches(filter: &Filter, d: &Delivery) -> bool {
    filter.contact.as_ref().is_none_or(|c| *c == d.contact)
        && filter.channel.as_ref().is_none_or(|c| *c == d.channel)
        && filter
            .journey
            .as_ref()
            .is_none_or(|j| d.journey.as_ref().is_some_and(|o| o.journey == *j))
        && filter.state.is_none_or(|s| s == d.state)
}
