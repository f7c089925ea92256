//! A delivery as stored: the message, where it is in its life, and every attempt at it.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Most attempts a record keeps (the newest); `attempt_count` counts them all.
pub const MAX_KEPT_ATTEMPTS: usize = 50;
/// Longest error text kept on an attempt or a record: a plugin may return 64 KiB.
pub const MAX_ERROR_BYTES: usize = 1024;

/// Where a delivery is in its life.
///
/// `queued`, `deferred` and `sending` are open: the delivery holds its contact's place in its
/// channel's queue, so a later message to the same contact on the same channel waits for it.
/// The others are closed. `dead` is the dead-letter list: replayable by the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Waiting for its turn: due now, or behind an earlier message to the same contact.
    Queued,
    /// Waiting for its next attempt after a retryable failure (`next_attempt_ms`).
    Deferred,
    /// An attempt is in flight. Found so after a restart, it is attempted again with the
    /// same idempotency key.
    Sending,
    /// The provider accepted it.
    Sent,
    /// The provider reported it reached the recipient.
    Delivered,
    /// The provider reported, after accepting it, that it could not be delivered.
    Failed,
    /// Given up: a permanent error, or its attempts ran out. Replayable.
    Dead,
}

impl DeliveryState {
    /// Every state, in life order.
    pub const ALL: [DeliveryState; 7] = [
        DeliveryState::Queued,
        DeliveryState::Deferred,
        DeliveryState::Sending,
        DeliveryState::Sent,
        DeliveryState::Delivered,
        DeliveryState::Failed,
        DeliveryState::Dead,
    ];

    /// The state as written in the API and the state index.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Queued => "queued",
            DeliveryState::Deferred => "deferred",
            DeliveryState::Sending => "sending",
            DeliveryState::Sent => "sent",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
            DeliveryState::Dead => "dead",
        }
    }

    /// Parses an API filter value.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// True while the delivery holds its contact's place in its channel's queue.
    pub fn is_open(self) -> bool {
        matches!(
            self,
            DeliveryState::Queued | DeliveryState::Deferred | DeliveryState::Sending
        )
    }
}

/// What asked for a message from a journey.
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

/// Content given with the send (the API's inline content), already final: nothing renders it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Content {
    /// The subject, for channels that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The plain-text body (an email's text part).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The HTML body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
    /// A structured body (a webhook's JSON), sent as `application/json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
}

/// How one attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// The provider accepted the message.
    Sent,
    /// The channel said it may succeed later.
    Retryable,
    /// The channel said it never will.
    Permanent,
    /// The channel could not be called, or its call failed (not installed, disabled, its
    /// breaker open, a trap, a deadline): retried like a retryable error.
    Unavailable,
    /// The host stopped while the attempt was in flight; it is made again with the same key
    /// and does not count against the attempts allowed.
    Interrupted,
}

/// One attempt at sending.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// 1 for the first attempt.
    pub n: u32,
    /// The channel plugin asked.
    pub channel: String,
    /// The version of it that answered, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// When it started, Unix ms.
    pub started_ms: i64,
    /// How long it took, ms.
    pub duration_ms: u64,
    /// How it ended.
    pub outcome: AttemptOutcome,
    /// What went wrong, cut to [`MAX_ERROR_BYTES`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The provider's id for the message, on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_id: Option<String>,
    /// The provider's `Retry-After`, ms, when it gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

/// A status a provider reported about a sent message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusRecord {
    /// `delivered`, `bounced`, ...
    pub status: String,
    /// The provider's own words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// When the host received it, Unix ms.
    pub at_ms: i64,
}

/// A stored message and its state. Fields are added with serde defaults, so records written
/// by earlier versions stay readable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// Its id: the idempotency key, handed to the channel as the message id.
    pub id: String,
    /// Where it is in its life.
    pub state: DeliveryState,
    /// Enqueue order, from 1 (a number the store never gives out twice).
    pub seq: u64,
    /// Its place in its contact's queue on its channel: `seq`, or a later number once it is
    /// replayed from the dead letters (it then goes behind what is waiting).
    #[serde(default)]
    pub order: u64,
    /// The contact it is for.
    pub contact: String,
    /// The channel plugin that sends it.
    pub channel: String,
    /// The recipient the send named; none: the contact's address for the channel's medium.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// The template it is rendered from (journey sends).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// Content given with the send (API sends).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Content>,
    /// Data for the template, and context handed to the channel.
    pub data: Value,
    /// The journey step that asked for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub journey: Option<JourneyOrigin>,
    /// sha256 of the API request that queued it, so a repeat of its idempotency key with
    /// another message is told apart from a retry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_sha256: Option<String>,
    /// When it was queued, Unix ms.
    pub created_ms: i64,
    /// When its state last changed, Unix ms.
    pub updated_ms: i64,
    /// When it is next due (queued or deferred), Unix ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_ms: Option<i64>,
    /// Attempts made, all of them (the record keeps the newest [`MAX_KEPT_ATTEMPTS`]).
    #[serde(default)]
    pub attempt_count: u32,
    /// Attempts that count against the channel's allowance since it was last queued
    /// (interrupted ones do not; a replay starts afresh).
    #[serde(default)]
    pub attempts_counted: u32,
    /// The newest attempts, oldest first.
    #[serde(default)]
    pub attempts: Vec<Attempt>,
    /// The provider's id for the message, once sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_id: Option<String>,
    /// Why it is dead or failed, or the last retryable error while deferred.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When it was sent, Unix ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_ms: Option<i64>,
    /// Statuses the provider reported after sending, oldest first (at most 20).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub statuses: Vec<StatusRecord>,
}

impl Delivery {
    /// Its place in the queue (`order`, or `seq` for records written before `order` existed).
    pub fn place(&self) -> u64 {
        if self.order == 0 {
            self.seq
        } else {
            self.order
        }
    }

    /// Appends an attempt, keeping the newest [`MAX_KEPT_ATTEMPTS`].
    pub fn push_attempt(&mut self, attempt: Attempt) {
        self.attempt_count = self.attempt_count.saturating_add(1);
        if attempt.outcome != AttemptOutcome::Interrupted {
            self.attempts_counted = self.attempts_counted.saturating_add(1);
        }
        self.attempts.push(attempt);
        if self.attempts.len() > MAX_KEPT_ATTEMPTS {
            let extra = self.attempts.len() - MAX_KEPT_ATTEMPTS;
            self.attempts.drain(..extra);
        }
    }
}

/// `text` cut to at most `max` bytes on a character boundary, marked when cut.
pub fn cut_text(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let at = (0..=max)
        .rev()
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(0);
    format!("{}…", &text[..at])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_parse_from_their_names_and_only_early_ones_are_open() {
        for state in DeliveryState::ALL {
            assert_eq!(DeliveryState::parse(state.as_str()), Some(state));
        }
        assert_eq!(DeliveryState::parse("lost"), None);
        let open: Vec<_> = DeliveryState::ALL
            .into_iter()
            .filter(|s| s.is_open())
            .collect();
        assert_eq!(
            open,
            [
                DeliveryState::Queued,
                DeliveryState::Deferred,
                DeliveryState::Sending
            ]
        );
    }

    #[test]
    fn a_record_queued_before_attempts_existed_still_reads() {
        let old = serde_json::json!({
            "id": "r1.2", "state": "queued", "seq": 7, "contact": "c1",
            "channel": "webhook-channel", "template": "welcome", "data": {"n": 1},
            "created_ms": 1, "updated_ms": 1
        });
        let d: Delivery = serde_json::from_value(old).unwrap();
        assert_eq!(d.place(), 7);
        assert_eq!(d.template.as_deref(), Some("welcome"));
        assert!(d.attempts.is_empty());
    }

    #[test]
    fn kept_attempts_are_bounded_but_all_are_counted() {
        let mut d: Delivery = serde_json::from_value(serde_json::json!({
            "id": "x", "state": "queued", "seq": 1, "contact": "c", "channel": "ch",
            "data": null, "created_ms": 0, "updated_ms": 0
        }))
        .unwrap();
        for n in 1..=(MAX_KEPT_ATTEMPTS as u32 + 5) {
            d.push_attempt(Attempt {
                n,
                channel: "ch".into(),
                version: None,
                started_ms: 0,
                duration_ms: 0,
                outcome: if n == 1 {
                    AttemptOutcome::Interrupted
                } else {
                    AttemptOutcome::Retryable
                },
                error: None,
                provider_id: None,
                retry_after_ms: None,
            });
        }
        assert_eq!(d.attempts.len(), MAX_KEPT_ATTEMPTS);
        assert_eq!(d.attempt_count, MAX_KEPT_ATTEMPTS as u32 + 5);
        assert_eq!(d.attempts_counted, MAX_KEPT_ATTEMPTS as u32 + 4);
        assert_eq!(d.attempts[0].n, 6);
        assert_eq!(cut_text("héllo", 2), "h…");
        assert_eq!(cut_text("hi", 2), "hi");
    }
}
