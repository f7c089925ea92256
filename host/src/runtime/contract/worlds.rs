//! Every world of every served contract, as a third party reads it in `wit/`, is what the
//! sandbox links: a component that imports everything a world offers (its `sandbox` WASI
//! interfaces included) and exports what it asks loads in the host; one importing more does
//! not. The components are built from the WIT alone (`wit-component`'s dummy module).

use std::path::{Path, PathBuf};
use std::time::Duration;

use wit_component::{ComponentEncoder, StringEncoding, dummy_module, embed_component_metadata};
use wit_parser::{ManglingAndAbi, Resolve};

use super::Contract;
use crate::runtime::net_policy::AddressGrants;
use crate::runtime::{EngineLimits, LoadError, PluginKind, Runtime, SandboxSpec};

fn wit_dir(contract: Contract) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../wit")
        .join(format!("v{}", contract.package_version()))
}

/// A component with `world`'s imports and exports, `extra` WIT added to the package first.
fn component(contract: Contract, world: &str, extra: Option<&str>) -> Vec<u8> {
    let mut resolve = Resolve::default();
    let (package, _) = resolve
        .push_dir(wit_dir(contract))
        .expect("contract WIT parses");
    let world = match extra {
        None => resolve
            .select_world(&[package], Some(world))
            .expect("world exists"),
        Some(text) => {
            let extra = resolve
                .push_str("extra.wit", text)
                .expect("extra WIT parses");
            resolve
                .select_world(&[extra], Some("extra"))
                .expect("extra world")
        }
    };
    let mut module = dummy_module(&resolve, world, ManglingAndAbi::Standard32);
    embed_component_metadata(&mut module, &resolve, world, StringEncoding::UTF8).expect("metadata");
    ComponentEncoder::default()
        .module(&module)
        .expect("module")
        .validate(true)
        .encode()
        .expect("component")
}

fn load(contract: Contract, kind: PluginKind, bytes: Vec<u8>) -> Result<(), LoadError> {
    let cache = tempfile::tempdir().expect("temp dir");
    let runtime = Runtime::new(
        &EngineLimits::default(),
        AddressGrants::default(),
        cache.path(),
    )?;
    let spec = SandboxSpec {
        plugin: "worlds".into(),
        version: "1.0.0".into(),
        sha256: crate::digest::sha256_hex(&bytes),
        kind,
        contract: contract.as_str().into(),
        memory_bytes: 16 << 20,
        table_elements: 10_000,
        timeout: Duration::from_secs(1),
        http_allow: Vec::new(),
        http_response_bytes: 1 << 20,
        tcp_allow: Vec::new(),
        tcp_config: Vec::new(),
        env: Vec::new(),
        fuel: None,
        max_concurrency: 1,
    };
    runtime.prepare(spec, || Ok(bytes)).map(drop)
}

const WORLDS: [(&str, PluginKind); 3] = [
    ("connector", PluginKind::Connector),
    ("segment-rule", PluginKind::SegmentRule),
    ("channel", PluginKind::Channel),
];

#[test]
fn every_world_as_written_loads_in_the_sandbox() {
    for contract in Contract::ALL {
        for (world, kind) in WORLDS {
            let bytes = component(*contract, world, None);
            load(*contract, kind, bytes)
                .unwrap_or_else(|e| panic!("{world}@{}: {e}", contract.as_str()));
        }
    }
}

#[test]
fn the_latest_worlds_declare_what_the_sandbox_links() {
    let contract = Contract::LATEST;
    let mut resolve = Resolve::default();
    let (package, _) = resolve.push_dir(wit_dir(contract)).expect("WIT parses");
    for (world, _) in WORLDS {
        let id = resolve
            .select_world(&[package], Some(world))
            .expect("world");
        let imports: Vec<String> = resolve.worlds[id]
            .imports
            .keys()
            .map(|key| resolve.name_world_key(key))
            .collect();
        for wasi in [
            "wasi:http/outgoing-handler@0.2.4",
            "wasi:sockets/tcp@0.2.4",
            "wasi:cli/environment@0.2.4",
            "wasi:filesystem/preopens@0.2.4",
        ] {
            assert!(imports.iter().any(|i| i == wasi), "{world}: {imports:?}");
        }
    }
}

#[test]
fn an_import_outside_the_sandbox_world_is_refused() {
    let contract = Contract::LATEST;
    let version = contract.package_version();
    let extra = format!(
        "package test:extra;\n\
         world extra {{\n\
             include tessera:cx/connector@{version};\n\
             import wasi:http/incoming-handler@0.2.4;\n\
         }}\n"
    );
    let bytes = component(contract, "connector", Some(&extra));
    let refused = load(contract, PluginKind::Connector, bytes).expect_err("must not load");
    assert!(
        refused.to_string().contains("incoming-handler"),
        "{refused}"
    );
}
