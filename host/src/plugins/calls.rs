//! Typed calls into a slot: canary routing, failure capture with the exact input, shadow runs
//! of a candidate on a copy of the input, automatic rollback, and replays of kept failures.

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use serde_json::Value;

use super::store::FailureRecord;
use crate::runtime::types::{
    ConnectorError, Decision, Delivery, HttpRequest, Message, RuleInput, RuleNeeds, SendError,
    StatusUpdate,
};
use crate::runtime::{
    CallEnv, CallError, ConnectorEvent, ConnectorPage, Effects, FailureCause, PluginKind,
    SandboxedPlugin,
};
use crate::tasks::{TaskError, isolated};

use super::call_output::{CallReport, outcome_json, readable_error};
use super::local::run_input;
use super::rollout::{Rollout, RolloutMode, ShadowSample};
use super::slot::{Lease, PluginSlot};
use super::{Actor, CallInput, PluginError, PluginRegistry, WebhookInput};
use crate::clock::now_ms;

/// Headers whose values are credentials, never kept.
const CREDENTIAL_HEADERS: [&str; 5] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-api-key",
    "x-tessera-write-key",
];
/// What stands in for a redacted value.
const REDACTED: &str = "********";

impl PluginRegistry {
    /// Calls a connector's `handle-webhook`. A canary routes by the request body, which is
    /// the same for every redelivery of one vendor event.
    pub async fn handle_webhook(
        &self,
        id: &str,
        request: &HttpRequest,
    ) -> Result<Result<Vec<ConnectorEvent>, ConnectorError>, PluginError> {
        let input = || CallInput::Webhook {
            request: WebhookInput::from_request(request),
        };
        self.call(
            id,
            PluginKind::Connector,
            Some(&request.body),
            input,
            async |p, env| p.handle_webhook(env, request).await,
        )
        .await
    }

    /// Calls a connector's `poll`.
    pub async fn poll(
        &self,
        id: &str,
        cursor: Option<&str>,
    ) -> Result<Result<ConnectorPage, ConnectorError>, PluginError> {
        let input = || CallInput::Poll {
            cursor: cursor.map(str::to_string),
        };
        let key = cursor.map(str::as_bytes);
        self.call(id, PluginKind::Connector, key, input, async |p, env| {
            p.poll(env, cursor).await
        })
        .await
    }

    /// Calls a segment rule's `evaluate`. During a canary the batch is split by contact:
    /// each contact's decision comes from the version its id routes to, so a contact sees one
    /// version whatever batch it is in; the decisions come back in the batch's order.
    pub async fn evaluate(
        &self,
        id: &str,
        params: &str,
        batch: &[RuleInput],
    ) -> Result<Result<Vec<Decision>, String>, PluginError> {
        let rollout = self.slot(id)?.rollout();
        let Some(rollout) = rollout.filter(|r| matches!(r.mode, RolloutMode::Canary(_))) else {
            return self.evaluate_one_arm(id, params, batch).await;
        };
        let (candidate, live): (Vec<usize>, Vec<usize>) = (0..batch.len())
            .partition(|&i| rollout.routes_to_candidate(Some(batch[i].contact.id.as_bytes())));
        if candidate.is_empty() || live.is_empty() {
            return self.evaluate_one_arm(id, params, batch).await;
        }
        let mut decisions = vec![Decision::from(false); batch.len()];
        for arm in [candidate, live] {
            // Every contact of a part routes to the same arm, so its first one routes the call.
            let part: Vec<RuleInput> = arm.iter().map(|&i| batch[i].clone()).collect();
            // The sandbox has checked there is one decision per contact.
            match self.evaluate_one_arm(id, params, &part).await? {
                Ok(got) => {
                    for (&i, decision) in arm.iter().zip(got) {
                        decisions[i] = decision;
                    }
                }
                Err(e) => return Ok(Err(e)),
            }
        }
        Ok(Ok(decisions))
    }

    /// One `evaluate` call, routed by the batch's first contact.
    async fn evaluate_one_arm(
        &self,
        id: &str,
        params: &str,
        batch: &[RuleInput],
    ) -> Result<Result<Vec<Decision>, String>, PluginError> {
        let input = || CallInput::Evaluate {
            params: params.to_string(),
            batch: batch.to_vec(),
        };
        let key = batch.first().map(|r| r.contact.id.as_bytes());
        self.call(id, PluginKind::SegmentRule, key, input, async |p, env| {
            p.evaluate(env, params, batch).await
        })
        .await
    }

    /// Asks a segment rule what a segment with `params` depends on; an error is the rule's
    /// reason for refusing the params. A canary routes it like any call without a key.
    pub async fn describe_rule(
        &self,
        id: &str,
        params: &str,
    ) -> Result<Result<RuleNeeds, String>, PluginError> {
        let input = || CallInput::Describe {
            params: params.to_string(),
        };
        self.call(id, PluginKind::SegmentRule, None, input, async |p, env| {
            p.describe(env, params).await
        })
        .await
    }

    /// Calls a channel's `send`. A canary routes by recipient.
    pub async fn send(
        &self,
        id: &str,
        message: &Message,
    ) -> Result<Result<Delivery, SendError>, PluginError> {
        let input = || CallInput::Send {
            message: message.clone(),
        };
        let key = Some(message.to.as_bytes());
        self.call(id, PluginKind::Channel, key, input, async |p, env| {
            p.send(env, message).await
        })
        .await
    }

    /// Calls a channel's `status` with a provider's status callback. A canary routes by the
    /// request body, like a connector's webhook.
    pub async fn channel_status(
        &self,
        id: &str,
        request: &HttpRequest,
    ) -> Result<Result<Vec<StatusUpdate>, String>, PluginError> {
        let input = || CallInput::Status {
            request: WebhookInput::from_request(request),
        };
        self.call(
            id,
            PluginKind::Channel,
            Some(&request.body),
            input,
            async |p, env| p.status(env, request).await,
        )
        .await
    }

    /// One call: lease (canary routing), run, keep the input if it failed, account the
    /// rollout (verdict, shadow run), release the lease.
    async fn call<T: Serialize, E: Serialize>(
        &self,
        id: &str,
        kind: PluginKind,
        key: Option<&[u8]>,
        input: impl Fn() -> CallInput,
        call: impl AsyncFnOnce(&SandboxedPlugin, &CallEnv) -> Result<Result<T, E>, CallError>,
    ) -> Result<Result<T, E>, PluginError> {
        let slot = self.slot(id)?;
        let lease = slot.lease(kind, key)?;
        let started = Instant::now();
        let outcome = call(&lease.plugin, &lease.env).await;
        let micros = started.elapsed().as_micros() as u64;
        // A call refused under load never ran: no failure record (a flood of refusals would
        // evict the real ones) and no count on a canary's arms.
        if matches!(&outcome, Err(e) if e.cause.is_load()) {
            return lease.finish(outcome);
        }
        let failed = !matches!(outcome, Ok(Ok(_)));
        if failed {
            self.keep_failure(&slot, &lease.plugin, &outcome, micros, input());
        }
        if let Some(rollout) = &lease.rollout {
            self.account(&slot, rollout, &lease, &outcome, micros, failed, &input)
                .await;
        }
        lease.finish(outcome)
    }

    /// Canary: counts the call on its arm and rolls back on a bad verdict. Shadow: runs the
    /// candidate on a copy of the input in the background and compares outcomes.
    #[allow(clippy::too_many_arguments)]
    async fn account<T: Serialize, E: Serialize>(
        &self,
        slot: &Arc<PluginSlot>,
        rollout: &Arc<Rollout>,
        lease: &Lease,
        outcome: &Result<Result<T, E>, CallError>,
        micros: u64,
        failed: bool,
        input: &impl Fn() -> CallInput,
    ) {
        match &rollout.mode {
            RolloutMode::Canary(_) if lease.on_candidate => {
                rollout.candidate_arm.record(micros, failed);
                if let Some(reason) = rollout.verdict() {
                    let actor = Actor::host(reason);
                    if let Err(e) = self
                        .end_rollout(&slot.id, super::Action::AutoRollback, &actor)
                        .await
                    {
                        tracing::error!(plugin = %slot.id, "automatic rollback failed: {e}");
                    }
                }
            }
            RolloutMode::Canary(_) => rollout.live_arm.record(micros, failed),
            RolloutMode::Shadow => {
                rollout.live_arm.record(micros, failed);
                if rollout.begin_shadow() {
                    let live = outcome_json(outcome).1;
                    let input = self.redacted(slot, &rollout.candidate, input());
                    let tape = match &lease.env.effects {
                        Effects::Taped(tape) => Some(tape.clone()),
                        _ => None,
                    };
                    spawn_shadow(rollout.clone(), slot.shadow_env(tape), input, live);
                }
            }
        }
    }

    /// Keeps a failed call's input, secrets redacted, for `replay`.
    fn keep_failure<T: Serialize, E: Serialize>(
        &self,
        slot: &PluginSlot,
        plugin: &SandboxedPlugin,
        outcome: &Result<Result<T, E>, CallError>,
        micros: u64,
        input: CallInput,
    ) {
        // A refused signature is the caller's doing, not the plugin's: it is kept in a small
        // class of its own, so that anyone without the secret can neither fill the store nor
        // evict real failures.
        let (code, message, refused) = match outcome {
            Err(e) => (e.cause.cause(), e.to_string(), false),
            Ok(Err(e)) => {
                // `code: message` from the `{code, message}` the API shows errors as.
                let error = readable_error(serde_json::json!(e));
                let refused = error["code"] == "unauthorized";
                let message = match (error["code"].as_str(), error["message"].as_str()) {
                    (Some(code), Some(message)) => format!("{code}: {message}"),
                    _ => error.to_string(),
                };
                (FailureCause::Error, message, refused)
            }
            Ok(Ok(_)) => return,
        };
        let spec = plugin.spec();
        let limits = self.config.failures;
        let max_input = if refused {
            limits.refused_max_input_bytes
        } else {
            limits.max_input_bytes
        };
        let (input, input_truncated) = bounded_input(self.redacted(slot, plugin, input), max_input);
        let record = FailureRecord {
            id: 0,
            at_ms: now_ms(),
            sha256: spec.sha256.clone(),
            version: spec.version.clone(),
            call: input.name().into(),
            code,
            message,
            micros,
            input,
            input_truncated,
        };
        let kept = if refused {
            self.store.put_refusal(&slot.id, &record, &limits)
        } else {
            self.store.put_failure(&slot.id, &record, &limits)
        };
        if let Err(e) = kept {
            tracing::error!(plugin = %slot.id, "failure not kept: {e}");
        }
    }

    /// `input` with credential headers and the slot's secret config values blanked.
    fn redacted(&self, slot: &PluginSlot, plugin: &SandboxedPlugin, input: CallInput) -> CallInput {
        let secrets: Vec<String> = self
            .version_record(&slot.id, &plugin.spec().sha256)
            .map(|v| v.manifest.config.secrets)
            .unwrap_or_default()
            .iter()
            .filter_map(|k| slot.config.load().get(k).map(value_text))
            .filter(|v| v.len() >= 4)
            .collect();
        redact(input, &secrets)
    }

    /// A plugin's kept failures, newest first.
    pub fn failures(&self, id: &str) -> Result<Vec<FailureRecord>, PluginError> {
        self.slot(id)?;
        Ok(self.store.failures(id)?)
    }

    /// One kept failure.
    pub fn failure(&self, id: &str, failure: u64) -> Result<FailureRecord, PluginError> {
        self.failures(id)?
            .into_iter()
            .find(|f| f.id == failure)
            .ok_or_else(|| PluginError::UnknownFailure {
                plugin: id.into(),
                id: failure,
            })
    }

    /// Runs a kept failure's input again on version `sha` (default: the version that failed)
    /// with the slot's config and the version's limits, without effects: kv writes refused,
    /// outbound HTTP answered by a stub.
    pub async fn replay_failure(
        &self,
        id: &str,
        failure: u64,
        sha: Option<&str>,
    ) -> Result<CallReport, PluginError> {
        let record = self.failure(id, failure)?;
        if record.input_truncated {
            return Err(PluginError::TruncatedFailure {
                plugin: id.into(),
                id: failure,
            });
        }
        let slot = self.slot(id)?;
        let plugin = self.load_version(&slot, sha.unwrap_or(&record.sha256))?;
        Ok(run_input(&plugin, &slot.shadow_env(None), &record.input).await)
    }

    /// The newest `limit` log lines of the plugin's calls.
    pub fn logs(&self, id: &str, limit: usize) -> Result<Vec<super::LogLine>, PluginError> {
        Ok(self.slot(id)?.logs.tail(limit))
    }
}

/// `input` cut to about `max` bytes of JSON when it is larger (request body, query and
/// headers; poll cursor; evaluate batch; message body and metadata), and whether it was cut.
fn bounded_input(input: CallInput, max: usize) -> (CallInput, bool) {
    let size = |i: &CallInput| serde_json::to_vec(i).map_or(usize::MAX, |v| v.len());
    if size(&input) <= max {
        return (input, false);
    }
    // Each text gets a share of the budget, the rest goes to names and punctuation.
    let share = max / 4;
    let input = match input {
        CallInput::Webhook { request } => CallInput::Webhook {
            request: bounded_request(request, share),
        },
        CallInput::Status { request } => CallInput::Status {
            request: bounded_request(request, share),
        },
        CallInput::Poll { cursor } => CallInput::Poll {
            cursor: cursor.map(|c| cut(c, share)),
        },
        CallInput::Evaluate { params, batch } => {
            let params = cut(params, share);
            let mut left = max.saturating_sub(params.len()).saturating_sub(64);
            let batch = batch
                .into_iter()
                .take_while(|r| {
                    let n = serde_json::to_vec(r).map_or(usize::MAX, |v| v.len());
                    let fits = n <= left;
                    left = left.saturating_sub(n);
                    fits
                })
                .collect();
            CallInput::Evaluate { params, batch }
        }
        CallInput::Send { mut message } => {
            message.body = cut(message.body, share);
            message.html = message.html.map(|h| cut(h, share / 2));
            message.headers.truncate(16);
            for header in &mut message.headers {
                header.value = cut(std::mem::take(&mut header.value), share / 64);
            }
            message.metadata = cut(message.metadata, share / 2);
            message.subject = message.subject.map(|s| cut(s, share / 8));
            message.to = cut(message.to, share / 8);
            message.id = cut(message.id, share / 8);
            CallInput::Send { message }
        }
        CallInput::Describe { params } => CallInput::Describe {
            params: cut(params, share),
        },
        CallInput::SelfTest => CallInput::SelfTest,
    };
    (input, true)
}

/// A kept request cut to about `share` bytes per text.
fn bounded_request(request: WebhookInput, share: usize) -> WebhookInput {
    let mut headers_left = share;
    let headers = request
        .headers
        .into_iter()
        .take_while(|(k, v)| {
            let n = k.len().saturating_add(v.len()).saturating_add(8);
            let fits = n <= headers_left;
            headers_left = headers_left.saturating_sub(n);
            fits
        })
        .collect();
    WebhookInput {
        method: cut(request.method, 16),
        path: cut(request.path, share / 4),
        query: cut(request.query, share / 4),
        headers,
        body: cut(request.body, share),
        body_base64: request.body_base64.map(|b| cut(b, share)),
    }
}

/// `text` cut to at most `max` bytes, on a character boundary.
fn cut(mut text: String, max: usize) -> String {
    if text.len() > max {
        let at = (0..=max)
            .rev()
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(0);
        text.truncate(at);
    }
    text
}

/// Runs the candidate on `input` without effects and records the comparison. The call runs
/// isolated: a panic stops the run's shadow calls (with the reason) instead of the host.
fn spawn_shadow(rollout: Arc<Rollout>, env: CallEnv, input: CallInput, live: Value) {
    tokio::spawn(async move {
        let plugin = rollout.candidate.spec().plugin.clone();
        let candidate = rollout.clone();
        let call = isolated("shadow", &plugin, async move {
            let report = run_input(&candidate.candidate, &env, &input).await;
            (report, input, env)
        });
        match call.await {
            Ok((report, input, env)) => {
                rollout.candidate_arm.record(report.micros, !report.ok);
                rollout.finish_shadow(ShadowSample {
                    at_ms: now_ms(),
                    input: serde_json::to_value(&input).unwrap_or(Value::Null),
                    live,
                    candidate: report.outcome,
                    candidate_requests: env.effects.recorded(),
                });
            }
            Err(TaskError::Panicked(message)) => rollout.shadow_panicked(&message),
            Err(TaskError::Cancelled) => rollout.shadow_abandoned(),
        }
    });
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Blanks the values of credential headers.
fn redact_headers(request: &mut WebhookInput) {
    for (name, value) in &mut request.headers {
        if CREDENTIAL_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            *value = REDACTED.into();
        }
    }
}

/// Blanks credential headers and every occurrence of `secrets` in the input.
pub fn redact(input: CallInput, secrets: &[String]) -> CallInput {
    let input = match input {
        CallInput::Webhook { mut request } => {
            redact_headers(&mut request);
            CallInput::Webhook { request }
        }
        CallInput::Status { mut request } => {
            redact_headers(&mut request);
            CallInput::Status { request }
        }
        other => other,
    };
    if secrets.is_empty() {
        return input;
    }
    let Ok(mut text) = serde_json::to_string(&input) else {
        return input;
    };
    for secret in secrets {
        // Match the secret as it appears inside JSON text.
        let escaped = serde_json::to_string(secret).unwrap_or_default();
        let escaped = escaped.trim_matches('"');
        text = text.replace(escaped, REDACTED);
    }
    serde_json::from_str(&text).unwrap_or(input)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_and_secret_values_are_blanked() {
        let input = CallInput::Webhook {
            request: WebhookInput {
                headers: vec![
                    ("Authorization".into(), "Bearer tok".into()),
                    ("x-sig".into(), "abc".into()),
                ],
                body: r#"{"token":"s3cret-value","n":1}"#.into(),
                ..WebhookInput::default()
            },
        };
        let CallInput::Webhook { request } = redact(input, &["s3cret-value".into()]) else {
            panic!("webhook expected")
        };
        assert_eq!(request.headers[0].1, REDACTED);
        assert_eq!(request.headers[1].1, "abc");
        assert_eq!(request.body, r#"{"token":"********","n":1}"#);
    }

    #[test]
    fn a_large_input_is_cut_to_the_bound_and_marked() {
        let small = CallInput::Webhook {
            request: WebhookInput {
                body: "x".repeat(100),
                ..WebhookInput::default()
            },
        };
        let (kept, cut_) = bounded_input(small, 1 << 10);
        assert!(!cut_, "a small input is kept whole");
        assert!(matches!(kept, CallInput::Webhook { request } if request.body.len() == 100));
        let large = CallInput::Webhook {
            request: WebhookInput {
                headers: (0..1000)
                    .map(|i| (format!("h{i}"), "v".repeat(100)))
                    .collect(),
                body: "é".repeat(1 << 20),
                ..WebhookInput::default()
            },
        };
        let (kept, cut_) = bounded_input(large, 64 << 10);
        assert!(cut_);
        let size = serde_json::to_vec(&kept).unwrap().len();
        assert!(size <= 64 << 10, "{size} bytes");
    }
}
