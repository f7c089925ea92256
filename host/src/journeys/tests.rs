//! The journey stage over in-memory backends: runs started by the feed, moved by events and
//! timers, and moves redone after their batch was lost doing each effect and count once.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use super::{ChannelPlugins, Journeys, Memberships, RunState};
use crate::ingest::{Ingest, StoredEvent};
use crate::outbox::{Filter, Outbox};
use crate::profiles::{Profiles, catch_up};
use crate::store::{Engine, Entry, MemoryEngine, MemoryLog, StoreError, Tree};

#[derive(Default)]
struct FakeMemberships(Mutex<BTreeSet<(String, String)>>);

impl Memberships for FakeMemberships {
    fn is_member(&self, segment: &str, contact: &str) -> Result<bool, StoreError> {
        Ok(self
            .0
            .lock()
            .unwrap()
            .contains(&(segment.to_string(), contact.to_string())))
    }
}

/// Every plugin id but `not-a-channel` is an installed channel.
struct FakeChannels;

impl ChannelPlugins for FakeChannels {
    fn refuse_channel(&self, id: &str) -> Option<String> {
        (id == "not-a-channel").then(|| format!("plugin `{id}` is not a channel"))
    }
}

struct Pipeline {
    engine: Arc<MemoryEngine>,
    ingest: Arc<Ingest>,
    profiles: Profiles,
    outbox: Outbox,
    journeys: Journeys,
    members: Arc<FakeMemberships>,
    sent: u64,
}

impl Pipeline {
    fn new() -> Self {
        let engine = Arc::new(MemoryEngine::new());
        let ingest = Arc::new(
            Ingest::new(
                Arc::new(MemoryLog::new()),
                &*engine,
                Duration::from_secs(3600),
            )
            .unwrap(),
        );
        let profiles = Profiles::open(&*engine).unwrap();
        // Another reader that never acknowledges keeps feed pages readable, so a page can
        // be redone as after a crash.
        profiles.register_feed_reader("keeps-pages").unwrap();
        let outbox = Outbox::open(engine.clone()).unwrap();
        let members = Arc::new(FakeMemberships::default());
        let journeys = Journeys::open(
            &*engine,
            profiles.clone(),
            members.clone(),
            Arc::new(FakeChannels),
            ingest.clone(),
            outbox.clone(),
        )
        .unwrap();
        Self {
            engine,
            ingest,
            profiles,
            outbox,
            journeys,
            members,
            sent: 0,
        }
    }

    async fn track(&mut self, user: &str, name: &str, properties: Value) {
        self.sent += 1;
        let event: StoredEvent = serde_json::from_value(json!({
            "message_id": format!("m{}", self.sent), "type": "track", "event": name,
            "user_id": user, "timestamp": "2026-01-01T00:00:00Z",
            "received_at": "2026-01-01T00:00:00Z", "source": "test", "properties": properties,
        }))
        .unwrap();
        self.ingest.ingest(vec![event]).await.unwrap();
        catch_up(&self.ingest, &self.profiles).unwrap();
    }

    /// Runs stage steps until one does nothing, then applies what they logged.
    async fn settle(&self) {
        while self.journeys.step().await.unwrap() > 0 {
            catch_up(&self.ingest, &self.profiles).unwrap();
        }
        catch_up(&self.ingest, &self.profiles).unwrap();
    }

    fn contact(&self, user: &str) -> crate::profiles::Contact {
        self.profiles
            .find(&crate::ingest::Identity::new("user_id", user))
            .unwrap()
            .expect("contact")
    }

    fn tree(&self) -> Tree {
        self.engine.open(super::store::KEYSPACE).unwrap()
    }

    fn snapshot(&self) -> Vec<Entry> {
        self.tree().iter().map(Result::unwrap).collect()
    }

    /// Puts the journey keyspace back as it was: every batch written since is lost, as in a
    /// crash; the outbox and the log keep what the effects wrote.
    fn restore(&self, snapshot: &[Entry]) {
        let tree = self.tree();
        tree.clear().unwrap();
        for (k, v) in snapshot {
            tree.insert(k, v).unwrap();
        }
    }

    fn queued(&self) -> Vec<crate::outbox::Delivery> {
        self.outbox.list(&Filter::default(), 0, 1_000).unwrap()
    }

    fn journey_updates(&self) -> usize {
        self.ingest
            .log()
            .read(1, 10_000)
            .unwrap()
            .into_iter()
            .filter(|(_, bytes)| {
                serde_json::from_slice::<StoredEvent>(bytes)
                    .is_ok_and(|e| e.message_id.starts_with("journey:"))
            })
            .count()
    }
}

fn journey(id: &str, trigger: &str, steps: Value) -> Value {
    json!({ "id": id, "trigger": { "event": trigger }, "reentry": "always", "steps": steps })
}

#[tokio::test]
async fn a_page_redone_after_its_batches_were_lost_does_each_effect_and_count_once() {
    let mut p = Pipeline::new();
    p.journeys
        .create(journey(
            "j",
            "Go",
            json!([
                { "update_traits": { "seen": true } },
                { "send": { "channel": "webhook-channel", "template": "hello" } },
                { "wait": { "duration": "1h" } }
            ]),
        ))
        .await
        .unwrap();
    let before = p.snapshot();
    p.track("u1", "Go", json!({})).await;
    p.track("u2", "Go", json!({})).await;
    p.settle().await;
    let queued = p.queued();
    assert_eq!(queued.len(), 2);
    assert_eq!(p.journey_updates(), 2);

    // The crash: every journey batch of that page is gone, the effects are not. The send
    // step's enqueue landed and its move did not: the redone move finds the message queued
    // (its idempotency key is the run and step), leaves it as it was and moves on.
    p.restore(&before);
    assert_eq!(p.journeys.followed_seq().unwrap(), 0);
    p.settle().await;

    assert_eq!(
        p.queued(),
        queued,
        "each send queued once, its record unchanged"
    );
    assert_eq!(p.journey_updates(), 2, "each trait update logged once");
    assert_eq!(p.contact("u1").traits["seen"], true);
    let counts = &p.journeys.counts("j").unwrap()[0].steps;
    for (i, _, _, c) in &counts[..2] {
        assert_eq!((c.entered, c.completed), (2, 2), "step {i}: {c:?}");
    }
    assert_eq!((counts[2].3.entered, counts[2].3.waiting), (2, 2));
    let runs = p.journeys.runs("j", None, None, 10).unwrap();
    assert_eq!(runs.len(), 2);
    assert!(runs.iter().all(|r| r.state == RunState::Waiting));
}

#[tokio::test]
async fn a_timer_move_redone_after_its_batch_was_lost_fires_once() {
    let mut p = Pipeline::new();
    p.journeys
        .create(journey(
            "j",
            "Go",
            json!([
                { "wait": { "duration": "1s" } },
                { "send": { "channel": "webhook-channel", "template": "after-wait" } }
            ]),
        ))
        .await
        .unwrap();
    for user in ["a", "b", "c"] {
        p.track(user, "Go", json!({})).await;
    }
    p.journeys.step().await.unwrap();
    assert!(p.queued().is_empty());
    let waiting = p.snapshot();
    // Every timer is due once its second has passed (long enough that the first step, on a
    // loaded machine, ends before any comes due).
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    p.settle().await;
    let first = p.queued();
    assert_eq!(first.len(), 3);
    // Fired in due order, then run id: the queue order is the runs' order.
    let runs: Vec<String> = first
        .iter()
        .map(|d| d.journey.as_ref().unwrap().run.clone())
        .collect();
    let mut sorted = runs.clone();
    sorted.sort();
    assert_eq!(runs, sorted);

    p.restore(&waiting);
    p.settle().await;
    assert_eq!(p.queued(), first, "no timer fired twice");
    let counts = &p.journeys.counts("j").unwrap()[0].steps;
    assert_eq!(
        (
            counts[0].3.entered,
            counts[0].3.waiting,
            counts[0].3.completed
        ),
        (3, 0, 3)
    );
    assert_eq!(counts[1].3.completed, 3);
    assert!(
        p.journeys
            .runs("j", Some(RunState::Completed), None, 10)
            .unwrap()
            .len()
            == 3
    );
}

#[tokio::test]
async fn a_wait_matches_only_events_after_it_began_and_branches_read_segments() {
    let mut p = Pipeline::new();
    p.journeys
        .create(json!({
            "id": "j", "trigger": { "event": "Start" },
            "steps": [
                { "wait_until": { "event": "Paid", "where": [{ "property": "total", "gte": 10 }], "timeout": "1d" } },
                { "branch": { "all": [{ "in_segment": "vip" }], "then": "vip" } },
                { "send": { "channel": "c", "template": "plain" } },
                { "exit": {} },
                { "id": "vip", "send": { "channel": "c", "template": "vip" } }
            ]
        }))
        .await
        .unwrap();
    p.track("u", "Paid", json!({ "total": 50 })).await;
    p.track("u", "Start", json!({})).await;
    p.settle().await;
    let runs = p.journeys.runs("j", None, None, 10).unwrap();
    assert_eq!(
        runs[0].state,
        RunState::Waiting,
        "the earlier Paid does not count"
    );
    p.track("u", "Paid", json!({ "total": 5 })).await;
    p.settle().await;
    assert!(p.queued().is_empty(), "the condition holds it");
    let contact = p.contact("u").id;
    p.members
        .0
        .lock()
        .unwrap()
        .insert(("vip".into(), contact.clone()));
    p.track("u", "Paid", json!({ "total": 12 })).await;
    p.settle().await;
    let queued = p.queued();
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].template.as_deref(), Some("vip"));
    assert_eq!(queued[0].contact, contact);
    let runs = p.journeys.runs_of_contact(&contact).unwrap();
    assert_eq!(runs[0].state, RunState::Completed);
    let outcomes: Vec<Option<String>> = runs[0].visits.iter().map(|v| v.outcome.clone()).collect();
    assert_eq!(
        outcomes,
        vec![
            Some("matched".into()),
            Some("then".into()),
            Some(format!("queued {}.4", runs[0].id))
        ]
    );
}

#[tokio::test]
async fn deleting_a_journey_removes_its_runs_and_timers_but_not_its_messages() {
    let mut p = Pipeline::new();
    p.journeys
        .create(journey(
            "j",
            "Go",
            json!([
                { "send": { "channel": "c", "template": "t" } },
                { "wait": { "duration": "1h" } }
            ]),
        ))
        .await
        .unwrap();
    p.track("u", "Go", json!({})).await;
    p.settle().await;
    p.journeys.delete("j").await.unwrap();
    let left: Vec<u8> = p
        .snapshot()
        .into_iter()
        .map(|(k, _)| k[0])
        .filter(|b| *b != super::store::prefix::META)
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    assert_eq!(p.queued().len(), 1);
    assert!(
        p.journeys
            .runs_of_contact(&p.contact("u").id)
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn an_erased_contacts_runs_and_messages_are_dropped_and_counted_as_exits() {
    let mut p = Pipeline::new();
    p.journeys
        .create(journey(
            "j",
            "Go",
            json!([
                { "send": { "channel": "c", "template": "t" } },
                { "wait": { "duration": "1h" } }
            ]),
        ))
        .await
        .unwrap();
    p.track("gone", "Go", json!({ "secret": "x" })).await;
    p.track("kept", "Go", json!({})).await;
    p.settle().await;
    let gone = p.contact("gone").id;
    p.journeys.forget_contact(&gone).await.unwrap();
    assert!(p.journeys.runs_of_contact(&gone).unwrap().is_empty());
    let left = p.queued();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].contact, p.contact("kept").id);
    assert_eq!(p.journeys.runs("j", None, None, 10).unwrap().len(), 1);
    let wait = p.journeys.counts("j").unwrap()[0].steps[1].3;
    assert_eq!((wait.entered, wait.waiting, wait.exited), (2, 1, 1));
}
