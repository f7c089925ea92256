//! The outbox's moves on an in-memory engine: once per key, per-contact order within a
//! channel, back-off and dead letters, replay, recovery after a crash, erasure.

use std::sync::Arc;

use serde_json::json;

use super::*;
use crate::store::{Engine, MemoryEngine};

fn message(key: &str, contact: &str, channel: &str) -> NewMessage {
    NewMessage {
        idempotency_key: key.into(),
        contact: contact.into(),
        channel: channel.into(),
        to: None,
        template: Some("welcome".into()),
        content: None,
        data: json!({ "n": 1 }),
        journey: Some(JourneyOrigin {
            journey: "j".into(),
            version: 1,
            run: key.split('.').next().unwrap_or_default().into(),
            step: 2,
            step_id: "2".into(),
        }),
        request_sha256: None,
    }
}

fn outbox() -> Outbox {
    Outbox::open(Arc::new(MemoryEngine::new())).unwrap()
}

fn attempt(outcome: AttemptOutcome, error: Option<&str>) -> Attempt {
    Attempt {
        n: 1,
        channel: "ch".into(),
        version: Some("1.0.0".into()),
        started_ms: 0,
        duration_ms: 3,
        outcome,
        error: error.map(Into::into),
        provider_id: (outcome == AttemptOutcome::Sent).then(|| "prov-1".to_string()),
        retry_after_ms: None,
    }
}

fn settings(max_attempts: u32) -> RetrySettings {
    RetrySettings {
        base_ms: 1_000,
        cap_ms: 10_000,
        max_attempts,
        concurrency: 4,
    }
}

fn ids(ds: &[Delivery]) -> Vec<&str> {
    ds.iter().map(|d| d.id.as_str()).collect()
}

#[test]
fn one_key_is_queued_once_whatever_the_retries() {
    let outbox = outbox();
    let (first, created) = outbox.enqueue(message("r1.2", "c1", "ch"), 10).unwrap();
    assert!(created);
    assert_eq!(first.state, DeliveryState::Queued);
    let mut again = message("r1.2", "c1", "ch");
    again.template = Some("changed".into());
    let (second, created) = outbox.enqueue(again, 20).unwrap();
    assert!(!created);
    assert_eq!(second, first, "the first record stays");
    assert_eq!(outbox.list(&Filter::default(), 0, 10).unwrap().len(), 1);
    assert_eq!(outbox.open_count(), 1);
}

#[test]
fn a_contact_s_messages_go_one_at_a_time_in_order_within_a_channel() {
    let outbox = outbox();
    outbox.enqueue(message("a.1", "c1", "ch"), 10).unwrap();
    outbox.enqueue(message("b.1", "c1", "ch"), 11).unwrap();
    outbox.enqueue(message("c.1", "c2", "ch"), 12).unwrap();
    outbox.enqueue(message("d.1", "c1", "other"), 13).unwrap();
    // The second message of c1 on `ch` waits for the first; another contact and another
    // channel do not.
    let taken = outbox.claim("ch", 100, 10).unwrap();
    assert_eq!(ids(&taken), ["a.1", "c.1"]);
    assert_eq!(ids(&outbox.claim("other", 100, 10).unwrap()), ["d.1"]);
    assert!(outbox.claim("ch", 100, 10).unwrap().is_empty());
    // A retryable failure keeps c1's place: b.1 still waits while a.1 is deferred.
    let (a, landed) = outbox
        .finish(
            "a.1",
            attempt(AttemptOutcome::Retryable, Some("503")),
            &settings(5),
            100,
            0.0,
        )
        .unwrap()
        .unwrap();
    assert_eq!(landed, Landed::Deferred(600));
    assert_eq!(a.state, DeliveryState::Deferred);
    assert_eq!(a.error.as_deref(), Some("503"));
    assert!(outbox.claim("ch", 599, 10).unwrap().is_empty());
    assert_eq!(outbox.next_due("ch").unwrap(), Some(600));
    assert_eq!(ids(&outbox.claim("ch", 600, 10).unwrap()), ["a.1"]);
    // Sent: b.1 becomes due.
    let (a, landed) = outbox
        .finish(
            "a.1",
            attempt(AttemptOutcome::Sent, None),
            &settings(5),
            700,
            0.0,
        )
        .unwrap()
        .unwrap();
    assert_eq!(landed, Landed::Sent);
    assert_eq!(a.attempts.len(), 2);
    assert_eq!(a.provider_id.as_deref(), Some("prov-1"));
    assert_eq!(a.sent_ms, Some(700));
    assert_eq!(ids(&outbox.claim("ch", 700, 10).unwrap()), ["b.1"]);
    assert_eq!(
        outbox.by_provider_id("ch", "prov-1").unwrap().map(|d| d.id),
        Some("a.1".to_string())
    );
}

#[test]
fn permanent_errors_and_exhausted_retries_go_to_the_dead_letters_and_come_back() {
    let outbox = outbox();
    outbox.enqueue(message("a.1", "c1", "ch"), 0).unwrap();
    outbox.enqueue(message("b.1", "c2", "ch"), 0).unwrap();
    outbox.claim("ch", 0, 10).unwrap();
    let (_, landed) = outbox
        .finish(
            "a.1",
            attempt(AttemptOutcome::Permanent, Some("HTTP 400")),
            &settings(3),
            1,
            0.0,
        )
        .unwrap()
        .unwrap();
    assert_eq!(landed, Landed::Dead);
    for n in 1..=2 {
        let (_, landed) = outbox
            .finish(
                "b.1",
                attempt(AttemptOutcome::Unavailable, Some("breaker")),
                &settings(2),
                n,
                0.0,
            )
            .unwrap()
            .unwrap();
        if n == 1 {
            assert!(matches!(landed, Landed::Deferred(_)));
            outbox.claim("ch", i64::MAX - 1, 10).unwrap();
        } else {
            assert_eq!(landed, Landed::Dead);
        }
    }
    let b = outbox.get("b.1").unwrap().unwrap();
    assert!(
        b.error
            .as_deref()
            .unwrap()
            .starts_with("gave up after 2 attempts"),
        "{b:?}"
    );
    assert_eq!(outbox.open_count(), 0);
    let dead = outbox.dead_letters(Some("ch"), Some("HTTP 4"), 10).unwrap();
    assert_eq!(ids(&dead), ["a.1"]);
    assert_eq!(outbox.dead_letters(None, None, 10).unwrap().len(), 2);
    // Two events wait for the log: one per dead letter.
    let events = outbox.pending_events(10).unwrap();
    assert_eq!(events.len(), 2);
    assert!(events.iter().all(|(_, e)| e.name == FAILED));
    assert_eq!(events[0].1.properties["delivery_id"], "a.1");
    assert_eq!(events[0].1.properties["journey"], "j");
    outbox
        .events_logged(events.into_iter().map(|(k, _)| k).collect())
        .unwrap();
    assert!(outbox.pending_events(10).unwrap().is_empty());

    let a = outbox.retry("a.1", 50).unwrap();
    assert_eq!(a.state, DeliveryState::Queued);
    assert_eq!(a.attempts_counted, 0);
    assert_eq!(a.attempts.len(), 1, "the history stays");
    assert!(matches!(
        outbox.retry("a.1", 50),
        Err(OutboxError::NotDead {
            state: DeliveryState::Queued,
            ..
        })
    ));
    assert!(matches!(
        outbox.retry("zz", 50),
        Err(OutboxError::NotFound(_))
    ));
    assert_eq!(ids(&outbox.claim("ch", 50, 10).unwrap()), ["a.1"]);
    let sent = Filter {
        state: Some(DeliveryState::Sending),
        channel: Some("ch".into()),
        ..Filter::default()
    };
    assert_eq!(ids(&outbox.list(&sent, 0, 10).unwrap()), ["a.1"]);
}

#[test]
fn a_replayed_dead_letter_goes_behind_what_its_contact_has_waiting() {
    let outbox = outbox();
    outbox.enqueue(message("a.1", "c1", "ch"), 0).unwrap();
    outbox.claim("ch", 0, 10).unwrap();
    outbox
        .finish(
            "a.1",
            attempt(AttemptOutcome::Permanent, Some("no")),
            &settings(3),
            1,
            0.0,
        )
        .unwrap();
    outbox.enqueue(message("b.1", "c1", "ch"), 2).unwrap();
    assert_eq!(ids(&outbox.claim("ch", 2, 10).unwrap()), ["b.1"]);
    outbox.retry("a.1", 3).unwrap();
    assert!(
        outbox.claim("ch", 3, 10).unwrap().is_empty(),
        "b.1 is in flight"
    );
    outbox
        .finish(
            "b.1",
            attempt(AttemptOutcome::Sent, None),
            &settings(3),
            4,
            0.0,
        )
        .unwrap();
    assert_eq!(ids(&outbox.claim("ch", 4, 10).unwrap()), ["a.1"]);
}

#[test]
fn a_delivery_in_flight_at_a_crash_is_due_again_with_the_same_key() {
    let engine = Arc::new(MemoryEngine::new());
    let outbox = Outbox::open(engine.clone()).unwrap();
    outbox.enqueue(message("a.1", "c1", "ch"), 0).unwrap();
    outbox.enqueue(message("b.1", "c1", "ch"), 0).unwrap();
    assert_eq!(ids(&outbox.claim("ch", 0, 10).unwrap()), ["a.1"]);
    // The host stops; a new one opens the same store.
    let again = Outbox::open(engine).unwrap();
    assert_eq!(again.open_count(), 2);
    assert_eq!(again.recover_in_flight(100).unwrap(), 1);
    let a = again.get("a.1").unwrap().unwrap();
    assert_eq!(a.state, DeliveryState::Queued);
    assert_eq!(a.attempts[0].outcome, AttemptOutcome::Interrupted);
    assert_eq!(
        a.attempts_counted, 0,
        "an interruption is not the message's fault"
    );
    assert_eq!(ids(&again.claim("ch", 100, 10).unwrap()), ["a.1"]);
}

#[test]
fn the_open_limit_refuses_new_messages_but_not_repeats() {
    let engine = Arc::new(MemoryEngine::new());
    let config = OutboxConfig {
        max_open: 1,
        ..OutboxConfig::default()
    };
    let outbox = Outbox::open_with(engine, config).unwrap();
    outbox.enqueue(message("a.1", "c1", "ch"), 0).unwrap();
    assert!(matches!(
        outbox.enqueue(message("b.1", "c1", "ch"), 0),
        Err(OutboxError::Full { limit: 1 })
    ));
    assert!(!outbox.enqueue(message("a.1", "c1", "ch"), 0).unwrap().1);
}

#[test]
fn listings_filter_by_contact_channel_journey_and_state_in_queue_order() {
    let outbox = outbox();
    outbox.enqueue(message("a.1", "c1", "x"), 1).unwrap();
    outbox.enqueue(message("b.1", "c2", "y"), 2).unwrap();
    let mut c = message("c.1", "c1", "y");
    c.journey.as_mut().unwrap().journey = "j2".into();
    outbox.enqueue(c, 3).unwrap();
    let list = |f: Filter| -> Vec<String> {
        outbox
            .list(&f, 0, 10)
            .unwrap()
            .into_iter()
            .map(|d| d.id)
            .collect()
    };
    assert_eq!(list(Filter::default()), ["a.1", "b.1", "c.1"]);
    let by = |contact: Option<&str>, channel: Option<&str>, journey: Option<&str>| Filter {
        contact: contact.map(Into::into),
        channel: channel.map(Into::into),
        journey: journey.map(Into::into),
        state: Some(DeliveryState::Queued),
    };
    assert_eq!(list(by(Some("c1"), None, None)), ["a.1", "c.1"]);
    assert_eq!(list(by(None, Some("y"), None)), ["b.1", "c.1"]);
    assert_eq!(list(by(Some("c1"), Some("y"), Some("j2"))), ["c.1"]);
    let first = outbox.list(&Filter::default(), 0, 1).unwrap();
    assert_eq!(
        outbox
            .list(&Filter::default(), first[0].seq, 10)
            .unwrap()
            .len(),
        2
    );
    // An erased contact's messages go with every index entry, and free their places.
    assert_eq!(outbox.forget_contact("c1").unwrap(), 2);
    assert_eq!(list(Filter::default()), ["b.1"]);
    assert_eq!(outbox.open_count(), 1);
    assert!(outbox.claim("x", 100, 10).unwrap().is_empty());
    assert_eq!(ids(&outbox.claim("y", 100, 10).unwrap()), ["b.1"]);
}

#[test]
fn a_store_of_the_queued_only_version_is_indexed_on_open() {
    let engine = Arc::new(MemoryEngine::new());
    let tree = engine.open(KEYSPACE).unwrap();
    // What the previous version wrote for one queued message.
    let old = json!({"id": "r1.2", "state": "queued", "seq": 5, "contact": "c1",
        "channel": "ch", "template": "welcome", "data": {}, "created_ms": 7, "updated_ms": 7});
    tree.insert(b"dr1.2", old.to_string().as_bytes()).unwrap();
    let mut q = vec![b'q'];
    q.extend_from_slice(&5u64.to_be_bytes());
    tree.insert(&q, b"r1.2").unwrap();
    let mut s = b"squeued\0".to_vec();
    s.extend_from_slice(&5u64.to_be_bytes());
    tree.insert(&s, b"r1.2").unwrap();
    let outbox = Outbox::open(engine).unwrap();
    assert_eq!(outbox.open_count(), 1);
    assert_eq!(outbox.ready_channels().unwrap(), ["ch"]);
    assert_eq!(ids(&outbox.claim("ch", 7, 10).unwrap()), ["r1.2"]);
}
