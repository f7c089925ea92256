//! Runtime bench: per-call cost through Tessera's runtime against bare wasmtime on the same
//! component in the same run, and activation latency from the compiled-code cache.
//!
//! Run: `scripts/build-plugins.sh && cargo bench -p tessera-tests --bench runtime`

use std::time::{Duration, Instant};

use serde_json::json;
use tessera::plugins::Actor;
use tessera::plugins::PluginRegistry;
use tessera::runtime::contract::latest;
use tessera::runtime::contract::latest::segment_rule::exports::tessera::cx::rule::GuestIndices;
use tessera::runtime::types::{Contact, RuleInput};
use tessera::server::{Server, ServerConfig};
use tessera_tests::{artifact, manifest};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

struct Bare {
    wasi: WasiCtx,
    table: ResourceTable,
}

impl WasiView for Bare {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

fn batch(n: usize) -> Vec<RuleInput> {
    (0..n)
        .map(|i| RuleInput {
            contact: Contact {
                id: format!("c{i}"),
                identities: vec![],
                traits: json!({ "plan": if i % 2 == 0 { "pro" } else { "free" }, "age": i })
                    .to_string(),
            },
            event: None,
            counts: vec![],
            member: false,
            events: vec![],
            now_ms: 0,
        })
        .collect()
}

/// Bare wasmtime: `InstancePre` + fresh store + typed call, nothing else.
struct BareRule {
    engine: Engine,
    pre: wasmtime::component::InstancePre<Bare>,
    idx: GuestIndices,
}

impl BareRule {
    fn new(engine: &Engine) -> Self {
        let mut linker = Linker::<Bare>::new(engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).unwrap();
        let component = Component::from_file(engine, artifact("trait-rule")).unwrap();
        linker.define_unknown_imports_as_traps(&component).unwrap();
        let pre = linker.instantiate_pre(&component).unwrap();
        let idx = GuestIndices::new(&pre).unwrap();
        Self {
            engine: engine.clone(),
            pre,
            idx,
        }
    }

    async fn call(
        &self,
        params: &str,
        batch: &[latest::types::RuleInput],
    ) -> Vec<latest::types::Decision> {
        let mut store = Store::new(
            &self.engine,
            Bare {
                wasi: WasiCtx::builder().build(),
                table: ResourceTable::new(),
            },
        );
        store.set_epoch_deadline(1_000);
        let instance = self.pre.instantiate_async(&mut store).await.unwrap();
        let guest = self.idx.load(&mut store, &instance).unwrap();
        guest
            .call_evaluate(&mut store, params, batch)
            .await
            .unwrap()
            .unwrap()
    }
}

async fn per_call<F: AsyncFnMut()>(iters: usize, mut f: F) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        f().await;
    }
    start.elapsed() / iters as u32
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

async fn compare(
    registry: &PluginRegistry,
    bare: &BareRule,
    size: usize,
    iters: usize,
) -> (Duration, Duration) {
    let params = json!({ "trait": "plan", "equals": "pro" }).to_string();
    let input = batch(size);
    // Bare wasmtime takes the generated type; the host converts its own at each call.
    let generated: Vec<latest::types::RuleInput> = input.iter().map(Into::into).collect();
    let (mut host, mut base) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        base.push(
            per_call(iters, async || {
                assert_eq!(bare.call(&params, &generated).await.len(), size)
            })
            .await,
        );
        host.push(
            per_call(iters, async || {
                assert_eq!(
                    registry
                        .evaluate("trait-rule", &params, &input)
                        .await
                        .unwrap()
                        .unwrap()
                        .len(),
                    size
                )
            })
            .await,
        );
    }
    (median(host), median(base))
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let scale = if quick { 10 } else { 1 };
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(dir.path());
    config.admin_key = Some("bench".into());
    let server = Server::start(config.clone()).await.unwrap();
    let registry = server.registry().clone();
    let rule = registry
        .upload(
            &manifest("trait-rule"),
            &std::fs::read(artifact("trait-rule")).unwrap(),
            &Actor::host("bench"),
        )
        .unwrap();
    registry.activate("trait-rule", &rule.sha256).await.unwrap();
    let bare = BareRule::new(registry.runtime().engine());

    println!(
        "# Tessera runtime bench{}",
        if quick { " (quick)" } else { "" }
    );
    println!("| case | host per call | bare wasmtime per call | ratio |");
    println!("|---|---|---|---|");
    for (size, iters) in [(1, 20_000 / scale), (1_000, 1_000 / scale)] {
        let (host, base) = compare(&registry, &bare, size, iters).await;
        println!(
            "| segment rule, batch of {size} | {:.1} µs | {:.1} µs | {:.2}x |",
            host.as_secs_f64() * 1e6,
            base.as_secs_f64() * 1e6,
            host.as_secs_f64() / base.as_secs_f64()
        );
    }

    // Activation: two versions uploaded (compiled into the cache), then a fresh host on the
    // same data dir activates them: the first from the on-disk compiled code, then warm.
    let a = registry
        .upload(
            &manifest("version-a"),
            &std::fs::read(artifact("version-a")).unwrap(),
            &Actor::host("bench"),
        )
        .unwrap();
    let b = registry
        .upload(
            &manifest("version-b"),
            &std::fs::read(artifact("version-b")).unwrap(),
            &Actor::host("bench"),
        )
        .unwrap();
    registry.activate("versioned", &a.sha256).await.unwrap();
    drop(registry);
    drop(server);
    let server = Server::start(config).await.unwrap();
    let registry = server.registry().clone();
    let start = Instant::now();
    registry.activate("versioned", &b.sha256).await.unwrap();
    let cold = start.elapsed();
    let rounds = 200 / scale;
    let start = Instant::now();
    for i in 0..rounds {
        let sha = if i % 2 == 0 { &a.sha256 } else { &b.sha256 };
        registry.activate("versioned", sha).await.unwrap();
    }
    let warm = start.elapsed() / rounds as u32;
    println!();
    println!("| activation | latency |");
    println!("|---|---|");
    println!(
        "| from the on-disk compiled cache (validate + self-test + swap) | {:.2} ms |",
        cold.as_secs_f64() * 1e3
    );
    println!(
        "| of an already loaded version (mean of {rounds}) | {:.2} ms |",
        warm.as_secs_f64() * 1e3
    );
}
