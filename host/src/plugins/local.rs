//! Running one call's input on a version ([`run_input`]), and a sandbox outside any host
//! ([`LocalSandbox`]) for `tessera plugin test` and `replay`.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use serde_json::{Map, Value, json};

use crate::runtime::{AddressGrants, CallEnv, EngineLimits, KvNamespace, Runtime, SandboxedPlugin};

use super::call_input::CallInput;
use super::call_output::{CallReport, outcome_json};
use super::{Manifest, OperatorLimits, PluginError, sha256_hex};

/// Runs `input` on `plugin` with `env` and reports the outcome and its cost.
pub async fn run_input(plugin: &SandboxedPlugin, env: &CallEnv, input: &CallInput) -> CallReport {
    let fuel_before = plugin.stats().fuel_consumed.unwrap_or(0);
    let started = Instant::now();
    let (ok, outcome) = match input {
        CallInput::Webhook { request } => match request.to_request() {
            Ok(request) => outcome_json(&plugin.handle_webhook(env, &request).await),
            Err(e) => (
                false,
                json!({ "failure": { "code": "bad_input", "message": e.to_string() } }),
            ),
        },
        CallInput::Poll { cursor } => outcome_json(&plugin.poll(env, cursor.as_deref()).await),
        CallInput::Evaluate { params, batch } => {
            outcome_json(&plugin.evaluate(env, params, batch).await)
        }
        CallInput::Describe { params } => outcome_json(&plugin.describe(env, params).await),
        CallInput::Send { message } => outcome_json(&plugin.send(env, message).await),
        CallInput::Status { request } => match request.to_request() {
            Ok(request) => outcome_json(&plugin.status(env, &request).await),
            Err(e) => (
                false,
                json!({ "failure": { "code": "bad_input", "message": e.to_string() } }),
            ),
        },
        CallInput::SelfTest => outcome_json(&plugin.self_test(env).await),
    };
    let micros = started.elapsed().as_micros() as u64;
    let stats = plugin.stats();
    CallReport {
        ok,
        outcome,
        micros,
        peak_memory_bytes: stats.peak_memory_bytes,
        fuel: stats.fuel_consumed.map(|f| f.saturating_sub(fuel_before)),
    }
}

/// The host's sandbox without a host: same engine settings (plus fuel metering, so each run
/// reports the instructions it used), same limits from the manifest, an in-memory kv, no
/// network grants beyond the manifest's allowlist.
pub struct LocalSandbox {
    runtime: Runtime,
    limits: OperatorLimits,
    kv: Arc<dyn KvNamespace>,
}

impl LocalSandbox {
    /// A sandbox caching compiled code under `cache_dir`.
    pub fn new(cache_dir: &Path) -> Result<Self, PluginError> {
        let engine = EngineLimits {
            max_instances: 4,
            fuel: true,
            ..EngineLimits::default()
        };
        let runtime =
            Runtime::new(&engine, AddressGrants::default(), cache_dir).map_err(|source| {
                PluginError::Load {
                    plugin: "(local)".into(),
                    source,
                }
            })?;
        Ok(Self {
            runtime,
            limits: OperatorLimits::default(),
            // The host's kv (ledger and default quotas) on an engine in memory.
            kv: super::kv::namespace(
                &crate::store::MemoryEngine::new(),
                "local",
                &crate::store::KvLedger::new(crate::store::KvQuota::default(), []),
            )
            .map_err(PluginError::Store)?,
        })
    }

    /// Compiles a component and checks it implements its manifest's world.
    pub fn load(
        &self,
        manifest_text: &str,
        wasm: &[u8],
    ) -> Result<Arc<SandboxedPlugin>, PluginError> {
        let manifest = Manifest::parse(manifest_text)?;
        let spec = self.limits.sandbox(&manifest, &sha256_hex(wasm));
        let plugin = self
            .runtime
            .prepare(spec, || Ok(wasm.to_vec()))
            .map_err(|source| PluginError::Load {
                plugin: manifest.id.clone(),
                source,
            })?;
        Ok(Arc::new(plugin))
    }

    /// Runs one input with `config` and reports outcome and cost.
    pub async fn run(
        &self,
        plugin: &SandboxedPlugin,
        config: Map<String, Value>,
        input: &CallInput,
    ) -> CallReport {
        let env = CallEnv {
            config: Arc::new(Value::Object(config)),
            kv: self.kv.clone(),
            read_only: false,
            effects: crate::runtime::Effects::Live,
            logs: None,
        };
        run_input(plugin, &env, input).await
    }
}
