//! Segments: who belongs to which segment, decided by rule plugins as the profile stage
//! applies events (incrementally, in batches), when a rule's recheck timer comes due, and by
//! background recomputes; every membership change is a `Segment Entered` / `Segment Exited`
//! event in the log.

mod rules;
mod stage;
mod store;
mod views;

use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;
use tokio::sync::{Mutex, Notify};

pub use rules::{RuleError, RuleVersion, Rules};
pub use stage::run_stage;
pub use store::{Member, Recompute, SegmentDef};

use crate::clock::now_ms;
use crate::ingest::{Ingest, IngestError};
use crate::plugins::PluginError;
use crate::profiles::Profiles;
use crate::store::{Batch, Engine, StoreError};
use store::{SegmentStore, pair, prefix};

/// The name under which the segment stage reads the profile change feed.
pub const FEED_READER: &str = "segments";

/// Why a segment operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    /// No segment with that id.
    #[error("no segment `{0}`")]
    NotFound(String),
    /// A segment with that id exists.
    #[error("segment `{0}` exists; PUT /v1/segments/{0} changes it")]
    Exists(String),
    /// The definition is malformed.
    #[error("{0}")]
    Invalid(String),
    /// The rule plugin refused the params.
    #[error("the rule refused the params: {0}")]
    RuleRefused(String),
    /// Calling the rule plugin failed.
    #[error(transparent)]
    Plugin(#[from] PluginError),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Membership events could not be logged.
    #[error(transparent)]
    Ingest(#[from] IngestError),
    /// The event log could not be read.
    #[error(transparent)]
    Log(#[from] crate::store::LogError),
}

impl From<RuleError> for SegmentError {
    fn from(e: RuleError) -> Self {
        match e {
            RuleError::Plugin(e) => SegmentError::Plugin(e),
            RuleError::Refused(m) => SegmentError::RuleRefused(m),
            e @ RuleError::NotARule(..) => SegmentError::Invalid(e.to_string()),
        }
    }
}

/// A segment definition as a client writes it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentInput {
    /// Its id; on create, derived from the name when absent.
    #[serde(default)]
    pub id: Option<String>,
    /// A name for people (the id when absent).
    #[serde(default)]
    pub name: Option<String>,
    /// The segment-rule plugin's id.
    pub rule: String,
    /// The rule's parameters (a JSON object).
    #[serde(default)]
    pub params: Option<Value>,
}

/// The segment stage: definitions, memberships, and the loop that keeps them current.
#[derive(Clone)]
pub struct Segments {
    store: SegmentStore,
    rules: Rules,
    profiles: Profiles,
    ingest: Arc<Ingest>,
    /// Held by whoever writes definitions or memberships (the stage's steps, the API).
    writer: Arc<Mutex<()>>,
    /// Wakes the stage (a definition changed).
    wake: Arc<Notify>,
}

impl Segments {
    /// Opens the segment keyspace of `engine` and registers as a reader of the profile feed.
    pub fn open(
        engine: &dyn Engine,
        rules: Rules,
        profiles: Profiles,
        ingest: Arc<Ingest>,
    ) -> Result<Self, StoreError> {
        profiles.register_feed_reader(FEED_READER)?;
        Ok(Self {
            store: SegmentStore {
                tree: engine.open(store::KEYSPACE)?,
            },
            rules,
            profiles,
            ingest,
            writer: Arc::new(Mutex::new(())),
            wake: Arc::new(Notify::new()),
        })
    }

    /// Every segment, by id.
    pub fn list(&self) -> Result<Vec<SegmentDef>, SegmentError> {
        Ok(self.store.defs()?)
    }

    /// One segment.
    pub fn get(&self, id: &str) -> Result<SegmentDef, SegmentError> {
        self.store
            .def(id)?
            .ok_or_else(|| SegmentError::NotFound(id.into()))
    }

    /// Creates a segment: checks the params with the rule, then recomputes its members in
    /// the background.
    pub async fn create(&self, input: SegmentInput) -> Result<SegmentDef, SegmentError> {
        let id = match &input.id {
            Some(id) => id.clone(),
            None => slug(input.name.as_deref().unwrap_or_default()),
        };
        check_id(&id)?;
        let (name, params) = check_input(&id, &input)?;
        let needs = self
            .rules
            .describe(&input.rule, &params.to_string())
            .await?;
        let _w = self.writer.lock().await;
        if self.store.def(&id)?.is_some() {
            return Err(SegmentError::Exists(id));
        }
        let now = now_ms() as i64;
        let def = SegmentDef {
            id: id.clone(),
            name,
            rule: input.rule,
            params,
            version: 1,
            needs,
            members: 0,
            rule_sha256: None,
            rule_version: None,
            created_ms: now,
            updated_ms: now,
            recompute: Some(self.new_recompute("created", now)),
            last_error: None,
        };
        self.put(&def)?;
        self.wake.notify_one();
        Ok(def)
    }

    /// A new version of a segment's definition; its members are re-evaluated.
    pub async fn update(&self, id: &str, input: SegmentInput) -> Result<SegmentDef, SegmentError> {
        if input.id.as_deref().is_some_and(|given| given != id) {
            return Err(SegmentError::Invalid(
                "`id` cannot change; create a new segment instead".into(),
            ));
        }
        let (name, params) = check_input(id, &input)?;
        let needs = self
            .rules
            .describe(&input.rule, &params.to_string())
            .await?;
        let _w = self.writer.lock().await;
        let mut def = self.get(id)?;
        let now = now_ms() as i64;
        def.name = name;
        def.rule = input.rule;
        def.params = params;
        def.needs = needs;
        def.version += 1;
        def.updated_ms = now;
        def.last_error = None;
        def.recompute = Some(self.new_recompute("updated", now));
        self.put(&def)?;
        self.wake.notify_one();
        Ok(def)
    }

    /// Deletes a segment with its memberships and timers. No events are written: the
    /// segment is gone, not its members' behaviour.
    pub async fn delete(&self, id: &str) -> Result<(), SegmentError> {
        let _w = self.writer.lock().await;
        self.get(id)?;
        loop {
            let members = self.store.members(id, None, 1_000)?;
            if members.is_empty() {
                break;
            }
            let mut batch = Batch::default();
            for (contact, _) in members {
                batch.remove(pair(prefix::MEMBER, id, &contact));
                batch.remove(pair(prefix::OF_CONTACT, &contact, id));
                if let Some(due) = self.store.timer_of(id, &contact)? {
                    batch.remove(store::timer_key(due, id, &contact));
                    batch.remove(pair(prefix::TIMER_OF, id, &contact));
                }
            }
            self.store.tree.apply(batch)?;
        }
        // Timers of contacts that are not members.
        let start = pair(prefix::TIMER_OF, id, "");
        let mut batch = Batch::default();
        for item in self.store.tree.scan_prefix(&start) {
            let (k, v) = item?;
            let contact = String::from_utf8_lossy(&k[start.len()..]).into_owned();
            batch.remove(store::timer_key(store::time_of_key(&v), id, &contact));
            batch.remove(k);
        }
        // Past events the rule kept.
        for item in self.store.tree.scan_prefix(&pair(prefix::RETAINED, id, "")) {
            batch.remove(item?.0);
        }
        batch.remove([&[prefix::DEF], id.as_bytes()].concat());
        self.store.tree.apply(batch)?;
        Ok(())
    }

    /// A page of a segment's members after contact id `after`.
    pub fn members(
        &self,
        id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Member)>, SegmentError> {
        self.get(id)?;
        Ok(self.store.members(id, after, limit)?)
    }

    /// Whether a contact is in a segment now.
    pub fn is_member(&self, segment: &str, contact: &str) -> Result<bool, StoreError> {
        Ok(self.store.member(segment, contact)?.is_some())
    }

    /// The segments a contact is in.
    pub fn segments_of(&self, contact: &str) -> Result<Vec<String>, StoreError> {
        self.store.segments_of(contact)
    }

    /// How far through the profile feed the stage has got: memberships reflect every event
    /// up to this sequence.
    pub fn evaluated_seq(&self) -> Result<u64, StoreError> {
        self.store.evaluated_seq()
    }

    /// Drops an erased contact's memberships, timers and kept events (no events: the contact
    /// is gone).
    pub async fn forget_contact(&self, contact: &str) -> Result<(), SegmentError> {
        let _w = self.writer.lock().await;
        let mut writes = store::Writes::default();
        for segment in self.store.segments_of(contact)? {
            if let Some(mut def) = self.store.def(&segment)? {
                writes.exit(&mut def, contact);
                writes.defs.insert(segment.clone(), def);
            }
        }
        self.drop_contact_state(&mut writes, contact)?;
        writes.commit(&*self.store.tree)?;
        Ok(())
    }

    /// Stages the removal of a contact's timers and kept events.
    fn drop_contact_state(
        &self,
        writes: &mut store::Writes,
        contact: &str,
    ) -> Result<(), StoreError> {
        for def in self.store.defs()? {
            if let Some(due) = self.store.timer_of(&def.id, contact)? {
                writes.set_timer(&def.id, contact, Some(due), None);
            }
            writes.set_retained(&def.id, contact, None);
        }
        for (k, _) in self.store.window_all(contact)? {
            writes.batch.remove(k);
        }
        Ok(())
    }

    fn new_recompute(&self, reason: &str, now: i64) -> Recompute {
        Recompute {
            reason: reason.into(),
            started_ms: now,
            finished_ms: None,
            evaluated: 0,
            total: self.profiles.contacts_len() as u64,
            entered: 0,
            exited: 0,
            after: None,
        }
    }

    fn put(&self, def: &SegmentDef) -> Result<(), StoreError> {
        let mut writes = store::Writes::default();
        writes.defs.insert(def.id.clone(), def.clone());
        writes.commit(&*self.store.tree)
    }
}

/// Checks an id: 1 to 64 of `a-z 0-9 _ -`, starting with a letter or digit.
fn check_id(id: &str) -> Result<(), SegmentError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        && id.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(SegmentError::Invalid(format!(
            "segment id `{id}` must be 1 to 64 of a-z, 0-9, `_` and `-`, starting with a letter or digit"
        )))
    }
}

/// The name and params of a definition, checked.
fn check_input(id: &str, input: &SegmentInput) -> Result<(String, Value), SegmentError> {
    let name = input.name.clone().unwrap_or_else(|| id.to_string());
    if name.len() > 200 {
        return Err(SegmentError::Invalid(
            "`name` is longer than 200 bytes".into(),
        ));
    }
    if input.rule.is_empty() {
        return Err(SegmentError::Invalid(
            "`rule` must name a segment-rule plugin".into(),
        ));
    }
    let params = input
        .params
        .clone()
        .unwrap_or_else(|| Value::Object(Default::default()));
    if !params.is_object() {
        return Err(SegmentError::Invalid(
            "`params` must be a JSON object".into(),
        ));
    }
    Ok((name, params))
}

/// An id from a name: lower case, runs of other characters as one `-`.
fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    out.truncate(64);
    out.trim_end_matches('-').to_string()
}
