//! One prepared plugin version and its calls: fresh instance, limits, deadline, typed outcome.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use tokio::sync::Semaphore;
use tracing::Instrument;
use wasmtime::component::{Instance, InstancePre, ResourceTable};
use wasmtime::{Store, Trap};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi_http::WasiHttpCtx;

use super::bindings::channel::exports::tessera::cx::sender as channel_api;
use super::bindings::connector::exports::tessera::cx::{self_test, source as connector_api};
use super::bindings::segment_rule::exports::tessera::cx::rule as rule_api;
use super::bindings::types::{
    ConnectorError, Delivery, Event, HttpRequest, Message, PollPage, RuleInput, SendError,
};
use super::engine::EPOCH_TICK;
use super::error::{CallError, CallFailure, LoadError};
use super::net_policy::AddressGrants;
use super::outbound::{OutboundHooks, OutboundPolicy};
use super::state::{CallEnv, CallLimiter, LimitHit, PluginState};
use super::stats::{CallStats, CallStatsSnapshot};
use super::{PluginKind, SandboxSpec};
use crate::runtime::host_imports::LOG_BUDGET;

/// Most events one webhook call or poll page may return.
pub const MAX_EVENTS_PER_CALL: usize = 10_000;

enum Exports {
    Connector(connector_api::GuestIndices),
    SegmentRule(rule_api::GuestIndices),
    Channel(channel_api::GuestIndices),
}

/// A compiled, world-checked plugin version, ready for calls.
pub struct SandboxedPlugin {
    spec: SandboxSpec,
    pre: InstancePre<PluginState>,
    exports: Exports,
    self_test: Option<self_test::GuestIndices>,
    policy: Arc<OutboundPolicy>,
    tcp_allow: Arc<[std::net::SocketAddr]>,
    name: Arc<str>,
    slots: Arc<Semaphore>,
    stats: CallStats,
    imports: Vec<String>,
}

impl SandboxedPlugin {
    pub(super) fn new(
        spec: SandboxSpec,
        pre: InstancePre<PluginState>,
        grants: Arc<AddressGrants>,
        slots: Arc<Semaphore>,
    ) -> Result<Self, LoadError> {
        let connector = connector_api::GuestIndices::new(&pre);
        let rule = rule_api::GuestIndices::new(&pre);
        let channel = channel_api::GuestIndices::new(&pre);
        let found = [
            (PluginKind::Connector, connector.is_ok()),
            (PluginKind::SegmentRule, rule.is_ok()),
            (PluginKind::Channel, channel.is_ok()),
        ]
        .into_iter()
        .find_map(|(k, ok)| ok.then_some(k));
        let mismatch = |e: wasmtime::Error| LoadError::WorldMismatch {
            expected: spec.kind,
            found,
            detail: format!("{e:#}"),
        };
        let exports = match spec.kind {
            PluginKind::Connector => Exports::Connector(connector.map_err(mismatch)?),
            PluginKind::SegmentRule => Exports::SegmentRule(rule.map_err(mismatch)?),
            PluginKind::Channel => Exports::Channel(channel.map_err(mismatch)?),
        };
        let policy = Arc::new(OutboundPolicy {
            plugin: spec.plugin.clone(),
            allow: spec.http_allow.clone(),
            grants,
            timeout: spec.timeout,
            max_response_bytes: spec.http_response_bytes,
            requests: AtomicU64::new(0),
            denied: AtomicU64::new(0),
        });
        let imports = pre
            .component()
            .component_type()
            .imports(pre.engine())
            .map(|(name, _)| name.to_string())
            .collect();
        Ok(Self {
            stats: CallStats::new(&spec.plugin, &spec.version, &spec.sha256),
            imports,
            self_test: self_test::GuestIndices::new(&pre).ok(),
            tcp_allow: spec.tcp_allow.clone().into(),
            name: format!("{}@{}", spec.plugin, spec.version).into(),
            spec,
            pre,
            exports,
            policy,
            slots,
        })
    }

    /// What this version was granted.
    pub fn spec(&self) -> &SandboxSpec {
        &self.spec
    }

    /// The interfaces the component imports (`wasi:http/outgoing-handler@0.2.6`, ...), as
    /// read from the component itself.
    pub fn imports(&self) -> &[String] {
        &self.imports
    }

    /// True when the component exports `self-test`.
    pub fn has_self_test(&self) -> bool {
        self.self_test.is_some()
    }

    /// This version's call counters.
    pub fn stats(&self) -> CallStatsSnapshot {
        self.stats.snapshot()
    }

    /// Outbound HTTP requests attempted and refused by policy.
    pub fn http_counts(&self) -> (u64, u64) {
        (
            self.policy.requests.load(Ordering::Relaxed),
            self.policy.denied.load(Ordering::Relaxed),
        )
    }

    fn new_store(&self, env: &CallEnv) -> Store<PluginState> {
        let stderr = MemoryOutputPipe::new(16 << 10);
        let mut wasi = WasiCtxBuilder::new();
        wasi.stderr(stderr.clone())
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        for (k, v) in &self.spec.env {
            wasi.env(k, v);
        }
        if !self.tcp_allow.is_empty() && env.effects.is_live() {
            let allow = self.tcp_allow.clone();
            wasi.allow_tcp(true).socket_addr_check(move |addr, use_| {
                let ok = match use_ {
                    // A connect is first checked as an implicit bind to the wildcard address.
                    SocketAddrUse::TcpBind => addr.ip().is_unspecified() && addr.port() == 0,
                    SocketAddrUse::TcpConnect => allow.contains(&addr),
                    _ => false,
                };
                Box::pin(async move { ok })
            });
        } else {
            wasi.allow_tcp(false);
        }
        let state = PluginState {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            hooks: OutboundHooks::new(self.policy.clone(), env.effects.clone()),
            table: ResourceTable::new(),
            limiter: CallLimiter::new(self.spec.memory_bytes, self.spec.table_elements),
            env: env.clone(),
            plugin: self.name.clone(),
            stderr,
            logs_left: LOG_BUDGET,
        };
        let mut store = Store::new(self.pre.engine(), state);
        store.limiter(|s| &mut s.limiter);
        let ticks = u64::try_from(
            self.spec
                .timeout
                .as_millis()
                .div_ceil(EPOCH_TICK.as_millis()),
        )
        .unwrap_or(u64::MAX)
        .saturating_add(1);
        store.set_epoch_deadline(ticks);
        store.epoch_deadline_trap();
        // Fails (and is ignored) when the engine does not meter fuel.
        let _ = store.set_fuel(self.fuel_budget());
        store
    }

    fn fuel_budget(&self) -> u64 {
        self.spec.fuel.unwrap_or(u64::MAX)
    }

    fn fail(&self, cause: CallFailure) -> CallError {
        CallError {
            plugin: self.spec.plugin.clone(),
            version: self.spec.version.clone(),
            sha256: self.spec.sha256.clone(),
            cause,
        }
    }

    fn classify(&self, err: &wasmtime::Error, state: &PluginState) -> CallFailure {
        match state.limiter.hit {
            Some(LimitHit::Memory(wanted)) => {
                return CallFailure::MemoryLimit {
                    wanted,
                    limit: self.spec.memory_bytes,
                };
            }
            Some(LimitHit::Table(_)) => return CallFailure::TableLimit,
            None => {}
        }
        match err.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => CallFailure::Deadline(self.spec.timeout),
            Some(Trap::StackOverflow) => CallFailure::StackOverflow,
            Some(Trap::OutOfFuel) => CallFailure::FuelExhausted(self.fuel_budget()),
            Some(trap) => {
                let stderr = state.stderr_tail();
                if stderr.contains("panicked") {
                    CallFailure::Panic(stderr)
                } else {
                    CallFailure::Trap(trap.to_string())
                }
            }
            None => CallFailure::Trap(format!("{err:#}")),
        }
    }

    /// Runs `call` on a fresh instance under this version's limits and deadline.
    async fn invoke<T>(
        &self,
        env: &CallEnv,
        op: &'static str,
        call: impl AsyncFnOnce(&mut Store<PluginState>, &Instance) -> wasmtime::Result<T>,
    ) -> Result<T, CallError> {
        let span = tracing::info_span!("plugin_call", plugin = %self.spec.plugin, version = %self.spec.version, op);
        async {
            let started = Instant::now();
            let _permit = self
                .slots
                .acquire()
                .await
                .map_err(|_| self.fail(CallFailure::Instantiate("runtime shut down".into())))?;
            let mut store = self.new_store(env);
            // Epochs do not advance a guest that waits inside a host call (sleep, HTTP), so an
            // outer timeout bounds the whole call too.
            let outer = self.spec.timeout.saturating_add(EPOCH_TICK * 5);
            let result = tokio::time::timeout(outer, async {
                let instance = self
                    .pre
                    .instantiate_async(&mut store)
                    .await
                    .map_err(|e| (true, e))?;
                call(&mut store, &instance).await.map_err(|e| (false, e))
            })
            .await;
            let outcome = match result {
                Ok(Ok(value)) => Ok(value),
                Err(_) => Err(CallFailure::Deadline(self.spec.timeout)),
                Ok(Err((instantiating, e))) => {
                    let failure = self.classify(&e, store.data());
                    Err(match failure {
                        CallFailure::Trap(msg) if instantiating => CallFailure::Instantiate(msg),
                        other => other,
                    })
                }
            };
            let failure = outcome.as_ref().err();
            let fuel = store.get_fuel().ok().map(|left| self.fuel_budget() - left);
            self.stats.record(
                started.elapsed(),
                store.data().limiter.peak_memory,
                fuel,
                failure,
            );
            if let Some(f) = failure {
                tracing::warn!(cause = f.code(), "plugin call failed: {f}");
            }
            outcome.map_err(|cause| self.fail(cause))
        }
        .instrument(span)
        .await
    }

    /// Records a contract violation the host found in the guest's answer.
    fn malformed(&self, msg: String) -> CallError {
        let cause = CallFailure::MalformedOutput(msg);
        self.stats.record_failure(&cause);
        tracing::warn!(plugin = %self.spec.plugin, version = %self.spec.version, "plugin call failed: {cause}");
        self.fail(cause)
    }

    fn wrong_kind(&self, op: &str) -> CallError {
        self.fail(CallFailure::MalformedOutput(format!(
            "`{op}` called on a {} plugin",
            self.spec.kind
        )))
    }

    /// Connector: verifies and maps one webhook request.
    pub async fn handle_webhook(
        &self,
        env: &CallEnv,
        request: &HttpRequest,
    ) -> Result<Result<Vec<Event>, ConnectorError>, CallError> {
        let Exports::Connector(idx) = &self.exports else {
            return Err(self.wrong_kind("handle-webhook"));
        };
        let out = self
            .invoke(env, "handle-webhook", async |store, instance| {
                idx.load(&mut *store, instance)?
                    .call_handle_webhook(&mut *store, request)
                    .await
            })
            .await?;
        if let Ok(events) = &out {
            self.check_events(events)?;
        }
        Ok(out)
    }

    /// Connector: pulls the page after `cursor`.
    pub async fn poll(
        &self,
        env: &CallEnv,
        cursor: Option<&str>,
    ) -> Result<Result<PollPage, ConnectorError>, CallError> {
        let Exports::Connector(idx) = &self.exports else {
            return Err(self.wrong_kind("poll"));
        };
        let out = self
            .invoke(env, "poll", async |store, instance| {
                idx.load(&mut *store, instance)?
                    .call_poll(&mut *store, cursor)
                    .await
            })
            .await?;
        if let Ok(page) = &out {
            self.check_events(&page.events)?;
        }
        Ok(out)
    }

    /// Segment rule: decides membership for a batch.
    pub async fn evaluate(
        &self,
        env: &CallEnv,
        params: &str,
        batch: &[RuleInput],
    ) -> Result<Result<Vec<bool>, String>, CallError> {
        let Exports::SegmentRule(idx) = &self.exports else {
            return Err(self.wrong_kind("evaluate"));
        };
        let out = self
            .invoke(env, "evaluate", async |store, instance| {
                idx.load(&mut *store, instance)?
                    .call_evaluate(&mut *store, params, batch)
                    .await
            })
            .await?;
        if let Ok(decisions) = &out
            && decisions.len() != batch.len()
        {
            return Err(self.malformed(format!(
                "{} decisions for a batch of {}",
                decisions.len(),
                batch.len()
            )));
        }
        Ok(out)
    }

    /// Channel: sends one message.
    pub async fn send(
        &self,
        env: &CallEnv,
        message: &Message,
    ) -> Result<Result<Delivery, SendError>, CallError> {
        let Exports::Channel(idx) = &self.exports else {
            return Err(self.wrong_kind("send"));
        };
        self.invoke(env, "send", async |store, instance| {
            idx.load(&mut *store, instance)?
                .call_send(&mut *store, message)
                .await
        })
        .await
    }

    /// Runs the version's `self-test`; a component without one passes.
    pub async fn self_test(&self, env: &CallEnv) -> Result<Result<(), String>, CallError> {
        let Some(idx) = &self.self_test else {
            return Ok(Ok(()));
        };
        self.invoke(env, "self-test", async |store, instance| {
            idx.load(&mut *store, instance)?
                .call_self_test(&mut *store)
                .await
        })
        .await
    }

    fn check_events(&self, events: &[Event]) -> Result<(), CallError> {
        if events.len() > MAX_EVENTS_PER_CALL {
            return Err(self.malformed(format!(
                "{} events, more than {MAX_EVENTS_PER_CALL}",
                events.len()
            )));
        }
        for (i, e) in events.iter().enumerate() {
            if e.id.is_empty() || e.id.len() > 256 {
                return Err(self.malformed(format!("event {i}: id must be 1 to 256 bytes")));
            }
            for (field, text) in [("properties", &e.properties), ("traits", &e.traits)] {
                if !matches!(
                    serde_json::from_str::<serde_json::Value>(text),
                    Ok(serde_json::Value::Object(_))
                ) {
                    return Err(self.malformed(format!("event {i}: {field} is not a JSON object")));
                }
            }
        }
        Ok(())
    }
}
