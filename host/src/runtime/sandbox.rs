//! One prepared plugin version and its calls: fresh instance, limits, deadline, typed outcome.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use tokio::sync::Semaphore;
use tracing::Instrument;
use wasmtime::component::{ComponentExportIndex, Instance, InstancePre, ResourceTable};
use wasmtime::{Store, Trap, UpdateDeadline};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi_http::WasiHttpCtx;

use super::contract::{Contract, v0_1, v0_2};
use super::engine::{EPOCH_TICK, GuestPool};
use super::error::{CallError, CallFailure, LoadError};
use super::events::{ConnectorEvent, ConnectorPage, accept_page, accept_webhook};
use super::log_import::LogLimitExceeded;
use super::net_policy::{AddressRefused, check_address};
use super::outbound::{OutboundHooks, OutboundNet, OutboundPolicy};
use super::output::{
    LiftedConnectorError, LiftedDecisions, LiftedDecisions2, LiftedDelivery, LiftedDescribe,
    LiftedEvents, LiftedPollPage, LiftedSendError, LiftedStatusUpdates, Message as LiftedMessage,
    Metered, OutputLimitExceeded,
};
use super::resources::HostResources;
use super::share::{SHARE_WAIT, Share};
use super::state::{CallEnv, CallLimiter, LimitHit, PluginState};
use super::stats::{CallStats, CallStatsSnapshot};
use super::tcp_grant::{self, TcpGrant};
use super::types::{
    ConnectorError, Decision, Delivery, HttpRequest, Message, RuleInput, RuleNeeds, SendError,
    StatusUpdate,
};

/// What a channel without a `status` export answers a status callback.
pub const NO_STATUS_CALLBACKS: &str = "this channel takes no status callbacks";
use super::{PluginKind, SandboxSpec};

/// A call into an export of a fresh instance, as run on the guest threads.
type GuestFuture<'a, T> = Pin<Box<dyn Future<Output = wasmtime::Result<T>> + Send + 'a>>;

/// What a call must hold before it runs: a slot of the engine's instance pool, a place in
/// its plugin's share of that pool, and the threads guests run on.
pub(super) struct CallSlots {
    pub(super) pool: Arc<Semaphore>,
    pub(super) share: Arc<Share>,
    pub(super) guests: Arc<GuestPool>,
}

/// Aborts the guest task when the call is abandoned (its request went away): the guest stops
/// at its next epoch tick and gives its slots back.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> AbortOnDrop<T> {
    async fn await_result(mut self) -> Result<T, tokio::task::JoinError> {
        (&mut self.0).await
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The exports the host calls, looked up once per version. Each call lifts their results
/// through the budgeted types of [`super::output`], not through the generated bindings, so
/// that nothing is copied out of the guest before its size is known.
enum Exports {
    Connector {
        handle_webhook: ComponentExportIndex,
        poll: ComponentExportIndex,
    },
    SegmentRule {
        evaluate: ComponentExportIndex,
        /// Contract 0.2 and later; a 0.1 rule cannot say what it needs.
        describe: Option<ComponentExportIndex>,
    },
    Channel {
        send: ComponentExportIndex,
        /// Contract 0.2 and later, and optional: a channel without it takes no callbacks.
        status: Option<ComponentExportIndex>,
    },
}

/// The index of `func` in the exported interface `interface`.
fn export_index(
    pre: &InstancePre<PluginState>,
    interface: &str,
    func: &str,
) -> Result<ComponentExportIndex, wasmtime::Error> {
    let component = pre.component();
    let instance = component
        .get_export_index(None, interface)
        .ok_or_else(|| wasmtime::format_err!("no exported instance `{interface}`"))?;
    component
        .get_export_index(Some(&instance), func)
        .ok_or_else(|| wasmtime::format_err!("`{interface}` exports no `{func}`"))
}

/// A compiled, world-checked plugin version, ready for calls.
pub struct SandboxedPlugin {
    spec: SandboxSpec,
    contract: Contract,
    pre: InstancePre<PluginState>,
    exports: Exports,
    self_test: Option<ComponentExportIndex>,
    policy: Arc<OutboundPolicy>,
    tcp_allow: Arc<[std::net::SocketAddr]>,
    name: Arc<str>,
    slots: CallSlots,
    stats: CallStats,
    imports: Vec<String>,
}

impl SandboxedPlugin {
    pub(super) fn new(
        spec: SandboxSpec,
        contract: Contract,
        pre: InstancePre<PluginState>,
        net: Arc<OutboundNet>,
        slots: CallSlots,
    ) -> Result<Self, LoadError> {
        // The contract's generated indices check the world's types; the calls use indices of
        // their own, looked up under the contract version's interface names.
        contract.check_world(&pre, spec.kind)?;
        let mismatch = |e: wasmtime::Error| LoadError::WorldMismatch {
            expected: spec.kind,
            found: Some(spec.kind),
            detail: format!("{e:#}"),
        };
        let index = |interface: &str, func: &str| {
            export_index(&pre, &contract.interface(interface), func).map_err(mismatch)
        };
        let exports = match spec.kind {
            PluginKind::Connector => Exports::Connector {
                handle_webhook: index("source", "handle-webhook")?,
                poll: index("source", "poll")?,
            },
            PluginKind::SegmentRule => Exports::SegmentRule {
                evaluate: index("rule", "evaluate")?,
                describe: match contract {
                    Contract::V0_1 => None,
                    Contract::V0_2 => Some(index("rule", "describe")?),
                },
            },
            PluginKind::Channel => Exports::Channel {
                send: index("sender", "send")?,
                status: match contract {
                    Contract::V0_1 => None,
                    Contract::V0_2 => index("status", "handle").ok(),
                },
            },
        };
        // `self-test` is optional: a component without it (or with another shape) has none.
        let self_test = contract
            .exports_self_test(&pre)
            .then(|| export_index(&pre, &contract.interface("self-test"), "self-test").ok())
            .flatten();
        let policy = Arc::new(OutboundPolicy {
            plugin: spec.plugin.clone(),
            allow: spec.http_allow.clone(),
            net,
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
            self_test,
            contract,
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

    /// The contract version the component implements, as read from its exports.
    pub fn contract(&self) -> Contract {
        self.contract
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

    /// What this call may reach over TCP; nothing when its effects are not live.
    async fn tcp_grant(&self, env: &CallEnv) -> TcpGrant {
        if !env.effects.is_live() || (self.tcp_allow.is_empty() && self.spec.tcp_config.is_empty())
        {
            return TcpGrant::default();
        }
        tcp_grant::for_call(
            &self.tcp_allow,
            &self.spec.tcp_config,
            &env.config,
            &self.policy.net,
        )
        .await
    }

    /// The first `config:<key>` server in `env`'s config that the operator's policy
    /// refuses, with its key: a config to refuse before it goes live.
    pub async fn refused_tcp_server(&self, env: &CallEnv) -> Option<(String, AddressRefused)> {
        if self.spec.tcp_config.is_empty() {
            return None;
        }
        let grant =
            tcp_grant::for_call(&[], &self.spec.tcp_config, &env.config, &self.policy.net).await;
        grant.refused.into_iter().next()
    }

    fn new_store(&self, env: &CallEnv, tcp: TcpGrant, deadline: Instant) -> Store<PluginState> {
        let stderr = MemoryOutputPipe::new(16 << 10);
        let mut wasi = WasiCtxBuilder::new();
        wasi.stderr(stderr.clone())
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        for (k, v) in &self.spec.env {
            wasi.env(k, v);
        }
        if !tcp.addrs.is_empty() {
            let (allow, net) = (Arc::<[_]>::from(tcp.addrs), self.policy.net.clone());
            wasi.allow_tcp(true).socket_addr_check(move |addr, use_| {
                let ok = match use_ {
                    // A connect is first checked as an implicit bind to the wildcard address.
                    SocketAddrUse::TcpBind => addr.ip().is_unspecified() && addr.port() == 0,
                    // The grant was checked at upload; checked again in case it was not.
                    SocketAddrUse::TcpConnect => {
                        allow.contains(&addr) && check_address(addr, &net.grants).is_ok()
                    }
                    _ => false,
                };
                Box::pin(async move { ok })
            });
        } else {
            wasi.allow_tcp(false);
        }
        let resources = HostResources::for_memory_cap(self.spec.memory_bytes);
        let mut http = WasiHttpCtx::new();
        http.set_field_size_limit(resources.field_bytes);
        let mut table = ResourceTable::new();
        table.set_max_capacity(resources.handles);
        let state = PluginState {
            wasi: wasi.build(),
            http,
            hooks: OutboundHooks::new(self.policy.clone(), env.effects.clone()),
            table,
            limiter: CallLimiter::new(self.spec.memory_bytes, self.spec.table_elements),
            env: match tcp.config {
                // The guest sees the address the host resolved in place of the name.
                Some(config) => CallEnv {
                    config,
                    ..env.clone()
                },
                None => env.clone(),
            },
            plugin: self.name.clone(),
            stderr,
            logs: Default::default(),
        };
        let mut store = Store::new(self.pre.engine(), state);
        store.limiter(|s| &mut s.limiter);
        // At every epoch tick the guest yields its thread to the other calls, so however many
        // spin, each one gets its turn; past the call's deadline the tick traps it instead.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            Ok(if Instant::now() >= deadline {
                UpdateDeadline::Interrupt
            } else {
                UpdateDeadline::Yield(1)
            })
        });
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
        if let Some(e) = err.downcast_ref::<OutputLimitExceeded>() {
            return CallFailure::OutputLimit(e.0.clone());
        }
        if let Some(e) = err.downcast_ref::<LogLimitExceeded>() {
            return CallFailure::LogLimit(e.to_string());
        }
        if let Some(what) = HostResources::exhausted(err) {
            return CallFailure::ResourceLimit(what);
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

    /// Runs `call` on a fresh instance under this version's limits and deadline, on the guest
    /// threads: the caller's thread only waits. The call first takes a place in its plugin's
    /// share (waiting at most [`SHARE_WAIT`], or its deadline if shorter), then an instance slot.
    async fn invoke<T, F>(&self, env: &CallEnv, op: &'static str, call: F) -> Result<T, CallError>
    where
        T: Send + 'static,
        F: for<'a> FnOnce(&'a mut Store<PluginState>, &'a Instance) -> GuestFuture<'a, T>
            + Send
            + 'static,
    {
        let span = tracing::info_span!("plugin_call", plugin = %self.spec.plugin, version = %self.spec.version, op);
        async {
            let started = Instant::now();
            let limit = self.spec.max_concurrency;
            let Some(share) = self
                .slots
                .share
                .enter(limit, SHARE_WAIT.min(self.spec.timeout))
                .await
            else {
                let cause = CallFailure::ConcurrencyLimit { limit };
                self.stats.record_failure(&cause);
                tracing::warn!(cause = cause.code(), "plugin call refused: {cause}");
                return Err(self.fail(cause));
            };
            let permit = self
                .slots
                .pool
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| self.fail(CallFailure::Instantiate("runtime shut down".into())))?;
            let guests =
                self.slots.guests.handle().ok_or_else(|| {
                    self.fail(CallFailure::Instantiate("runtime shut down".into()))
                })?;
            let tcp = self.tcp_grant(env).await;
            let store = self.new_store(
                env,
                tcp,
                crate::tasks::instant_after(Instant::now(), self.spec.timeout),
            );
            let pre = self.pre.clone();
            // Epochs do not advance a guest that waits inside a host call (sleep, HTTP), so an
            // outer timeout bounds the whole call too.
            let outer = self.spec.timeout.saturating_add(EPOCH_TICK * 5);
            let task = guests.spawn(
                async move {
                    let mut store = store;
                    let result = tokio::time::timeout(outer, async {
                        let instance = pre
                            .instantiate_async(&mut store)
                            .await
                            .map_err(|e| (true, e))?;
                        call(&mut store, &instance).await.map_err(|e| (false, e))
                    })
                    .await;
                    drop((permit, share));
                    (store, result)
                }
                .in_current_span(),
            );
            let (store, result) = AbortOnDrop(task).await_result().await.map_err(|e| {
                let failure = if e.is_cancelled() {
                    CallFailure::Instantiate("runtime shut down".into())
                } else {
                    CallFailure::Trap(format!("the host failed running the call: {e}"))
                };
                self.stats.record_failure(&failure);
                self.fail(failure)
            })?;
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
        self.refuse(CallFailure::MalformedOutput(msg))
    }

    /// Records a failure the host found in the guest's answer after the call.
    fn refuse(&self, cause: CallFailure) -> CallError {
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
    ) -> Result<Result<Vec<ConnectorEvent>, ConnectorError>, CallError> {
        let Exports::Connector { handle_webhook, .. } = &self.exports else {
            return Err(self.wrong_kind("handle-webhook"));
        };
        type Out = Metered<Result<LiftedEvents, LiftedConnectorError>>;
        let export = *handle_webhook;
        let Metered(out, spent) = match self.contract {
            Contract::V0_1 => {
                let request = v0_1::types::HttpRequest::from(request);
                self.invoke(env, "handle-webhook", move |store, instance| {
                    Box::pin(async move {
                        let func = instance
                            .get_typed_func::<(&v0_1::types::HttpRequest,), (Out,)>(
                                &mut *store,
                                export,
                            )?;
                        Ok(func.call_async(&mut *store, (&request,)).await?.0)
                    })
                })
                .await?
            }
            Contract::V0_2 => {
                let request = v0_2::types::HttpRequest::from(request);
                self.invoke(env, "handle-webhook", move |store, instance| {
                    Box::pin(async move {
                        let func = instance
                            .get_typed_func::<(&v0_2::types::HttpRequest,), (Out,)>(
                                &mut *store,
                                export,
                            )?;
                        Ok(func.call_async(&mut *store, (&request,)).await?.0)
                    })
                })
                .await?
            }
        };
        accept_webhook(out, spent).map_err(|cause| self.refuse(cause))
    }

    /// Connector: pulls the page after `cursor`.
    pub async fn poll(
        &self,
        env: &CallEnv,
        cursor: Option<&str>,
    ) -> Result<Result<ConnectorPage, ConnectorError>, CallError> {
        let Exports::Connector { poll, .. } = &self.exports else {
            return Err(self.wrong_kind("poll"));
        };
        type Out = Metered<Result<LiftedPollPage, LiftedConnectorError>>;
        let (export, cursor) = (*poll, cursor.map(str::to_string));
        let Metered(out, spent) = self
            .invoke(env, "poll", move |store, instance| {
                Box::pin(async move {
                    let func =
                        instance.get_typed_func::<(Option<&str>,), (Out,)>(&mut *store, export)?;
                    Ok(func.call_async(&mut *store, (cursor.as_deref(),)).await?.0)
                })
            })
            .await?;
        accept_page(out, spent).map_err(|cause| self.refuse(cause))
    }

    /// Segment rule: decides membership for a batch. The input is lowered through the
    /// conversions of the contract the component implements: a 0.1 rule gets no past events
    /// and no clock, and its bools become decisions without a recheck time.
    pub async fn evaluate(
        &self,
        env: &CallEnv,
        params: &str,
        batch: &[RuleInput],
    ) -> Result<Result<Vec<Decision>, String>, CallError> {
        let Exports::SegmentRule { evaluate, .. } = &self.exports else {
            return Err(self.wrong_kind("evaluate"));
        };
        let (export, params) = (*evaluate, params.to_string());
        let out: Result<Vec<Decision>, String> = match self.contract {
            Contract::V0_1 => {
                type Input = v0_1::types::RuleInput;
                let input: Vec<Input> = batch.iter().map(Input::from).collect();
                self.invoke(env, "evaluate", move |store, instance| {
                    Box::pin(async move {
                        let func = instance
                            .get_typed_func::<(&str, &[Input]), (Metered<LiftedDecisions>,)>(
                                &mut *store,
                                export,
                            )?;
                        Ok(func.call_async(&mut *store, (&params, &input)).await?.0.0)
                    })
                })
                .await?
                .map(|decisions| decisions.0.into_iter().map(Decision::from).collect())
                .map_err(|message| message.0)
            }
            Contract::V0_2 => {
                type Input = v0_2::types::RuleInput;
                let input: Vec<Input> = batch.iter().map(Input::from).collect();
                self.invoke(env, "evaluate", move |store, instance| {
                    Box::pin(async move {
                        let func = instance
                            .get_typed_func::<(&str, &[Input]), (Metered<LiftedDecisions2>,)>(
                                &mut *store,
                                export,
                            )?;
                        Ok(func.call_async(&mut *store, (&params, &input)).await?.0.0)
                    })
                })
                .await?
                .map(|decisions| decisions.0.into_iter().map(Decision::from).collect())
                .map_err(|message| message.0)
            }
        };
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

    /// Segment rule: checks `params` and says what the rule depends on. A 0.1 rule, which
    /// has no `describe`, checks its params by deciding an empty batch and is taken to
    /// depend on everything ([`RuleNeeds::everything`]).
    pub async fn describe(
        &self,
        env: &CallEnv,
        params: &str,
    ) -> Result<Result<RuleNeeds, String>, CallError> {
        let Exports::SegmentRule { describe, .. } = &self.exports else {
            return Err(self.wrong_kind("describe"));
        };
        let Some(export) = *describe else {
            return Ok(self
                .evaluate(env, params, &[])
                .await?
                .map(|_| RuleNeeds::everything()));
        };
        let params = params.to_string();
        let out = self
            .invoke(env, "describe", move |store, instance| {
                Box::pin(async move {
                    let func = instance.get_typed_func::<(&str,), (Metered<LiftedDescribe>,)>(
                        &mut *store,
                        export,
                    )?;
                    Ok(func.call_async(&mut *store, (&params,)).await?.0.0)
                })
            })
            .await?;
        Ok(out.map(RuleNeeds::from).map_err(|message| message.0))
    }

    /// Channel: sends one message.
    pub async fn send(
        &self,
        env: &CallEnv,
        message: &Message,
    ) -> Result<Result<Delivery, SendError>, CallError> {
        let Exports::Channel { send, .. } = &self.exports else {
            return Err(self.wrong_kind("send"));
        };
        type Out = Metered<Result<LiftedDelivery, LiftedSendError>>;
        let export = *send;
        let out = match self.contract {
            Contract::V0_1 => {
                let message = v0_1::types::Message::from(message);
                self.invoke(env, "send", move |store, instance| {
                    Box::pin(async move {
                        let func = instance.get_typed_func::<(&v0_1::types::Message,), (Out,)>(
                            &mut *store,
                            export,
                        )?;
                        Ok(func.call_async(&mut *store, (&message,)).await?.0.0)
                    })
                })
                .await?
            }
            Contract::V0_2 => {
                let message = v0_2::types::Message::from(message);
                self.invoke(env, "send", move |store, instance| {
                    Box::pin(async move {
                        let func = instance.get_typed_func::<(&v0_2::types::Message,), (Out,)>(
                            &mut *store,
                            export,
                        )?;
                        Ok(func.call_async(&mut *store, (&message,)).await?.0.0)
                    })
                })
                .await?
            }
        };
        Ok(out.map(Delivery::from).map_err(SendError::from))
    }

    /// Channel: reads one provider status callback into status updates. A channel without
    /// the `status` export (every 0.1 channel) answers that it takes none.
    pub async fn status(
        &self,
        env: &CallEnv,
        request: &HttpRequest,
    ) -> Result<Result<Vec<StatusUpdate>, String>, CallError> {
        let Exports::Channel { status, .. } = &self.exports else {
            return Err(self.wrong_kind("status"));
        };
        let Some(export) = *status else {
            return Ok(Err(NO_STATUS_CALLBACKS.to_string()));
        };
        let request = v0_2::types::HttpRequest::from(request);
        let out = self
            .invoke(env, "status", move |store, instance| {
                Box::pin(async move {
                    let func = instance
                        .get_typed_func::<(&v0_2::types::HttpRequest,), (Metered<LiftedStatusUpdates>,)>(
                            &mut *store,
                            export,
                        )?;
                    Ok(func.call_async(&mut *store, (&request,)).await?.0.0)
                })
            })
            .await?;
        Ok(out
            .map(|updates| updates.0.into_iter().map(StatusUpdate::from).collect())
            .map_err(|message| message.0))
    }

    /// True when this version is a channel that reads status callbacks.
    pub fn takes_status_callbacks(&self) -> bool {
        matches!(
            self.exports,
            Exports::Channel {
                status: Some(_),
                ..
            }
        )
    }

    /// Runs the version's `self-test`; a component without one passes.
    pub async fn self_test(&self, env: &CallEnv) -> Result<Result<(), String>, CallError> {
        let Some(idx) = &self.self_test else {
            return Ok(Ok(()));
        };
        type Out = Metered<Result<(), LiftedMessage>>;
        let export = *idx;
        let out = self
            .invoke(env, "self-test", move |store, instance| {
                Box::pin(async move {
                    let func = instance.get_typed_func::<(), (Out,)>(&mut *store, export)?;
                    Ok(func.call_async(&mut *store, ()).await?.0.0)
                })
            })
            .await?;
        Ok(out.map_err(|message| message.0))
    }
}
