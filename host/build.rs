//! Packs the SDK this binary speaks (its Cargo.toml with workspace fields resolved, src/, wit/)
//! and the workspace's Cargo.lock into the build, for `tessera plugin new` to unpack where no
//! checkout is at hand.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

fn main() {
    let host = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let root = host
        .parent()
        .expect("the host crate sits in the workspace")
        .to_path_buf();
    let sdk = root.join("sdk");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    for watched in ["sdk", "Cargo.toml", "Cargo.lock"] {
        println!("cargo::rerun-if-changed={}", root.join(watched).display());
    }

    let manifest = resolved_manifest(&root.join("Cargo.toml"), &sdk.join("Cargo.toml"));
    let manifest_path = out.join("tessera-sdk-Cargo.toml");
    std::fs::write(&manifest_path, &manifest).expect("write the resolved SDK manifest");

    let mut files: Vec<(String, PathBuf)> = vec![("Cargo.toml".into(), manifest_path)];
    for dir in ["src", "wit"] {
        for relative in walk(&sdk, &sdk.join(dir)) {
            let path = sdk.join(&relative);
            files.push((relative, path));
        }
    }
    files.sort();

    let mut hash = Sha256::new();
    let mut code = String::from("/// The SDK's files: path in the crate, bytes.\n");
    code.push_str("pub const FILES: &[(&str, &[u8])] = &[\n");
    for (relative, path) in &files {
        let bytes = std::fs::read(path).expect("read an SDK file");
        hash.update(relative.as_bytes());
        hash.update([0]);
        hash.update((bytes.len() as u64).to_le_bytes());
        hash.update(&bytes);
        writeln!(
            code,
            "    ({relative:?}, include_bytes!({:?})),",
            path.display().to_string()
        )
        .expect("write to a String");
    }
    code.push_str("];\n");
    let version = toml_version(&manifest);
    writeln!(
        code,
        "/// The SDK's version.\npub const VERSION: &str = {version:?};"
    )
    .expect("write to a String");
    writeln!(
        code,
        "/// sha256 of the SDK's files, hex.\npub const SHA256: &str = {:?};",
        hex::encode(hash.finalize())
    )
    .expect("write to a String");
    writeln!(
        code,
        "/// The workspace's Cargo.lock: the dependency versions the SDK is tested with.\n\
         pub const LOCK: &[u8] = include_bytes!({:?});",
        root.join("Cargo.lock").display().to_string()
    )
    .expect("write to a String");
    std::fs::write(out.join("embedded_sdk.rs"), code).expect("write embedded_sdk.rs");
}

/// Files under `dir`, relative to `base` with `/` separators.
fn walk(base: &Path, dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(base, &path));
        } else {
            let relative = path.strip_prefix(base).expect("under the base");
            let parts: Vec<_> = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            out.push(parts.join("/"));
        }
    }
    out
}

fn toml_version(manifest: &str) -> String {
    let table: toml::Table = manifest.parse().expect("the resolved manifest parses");
    table["package"]["version"]
        .as_str()
        .expect("a package version")
        .to_string()
}

/// The SDK's Cargo.toml with `x.workspace = true` replaced by the workspace's values, as
/// `cargo package` writes it, so that the crate builds outside the workspace.
fn resolved_manifest(workspace: &Path, member: &Path) -> String {
    let read = |path: &Path| -> toml::Table {
        std::fs::read_to_string(path)
            .expect("read a manifest")
            .parse()
            .expect("a manifest parses")
    };
    let workspace = read(workspace);
    let mut member = read(member);
    let shared = &workspace["workspace"];
    if let Some(toml::Value::Table(package)) = member.get_mut("package") {
        for (key, value) in package.iter_mut() {
            if inherits(value) {
                *value = shared["package"][key.as_str()].clone();
            }
        }
    }
    let deps = shared["dependencies"]
        .as_table()
        .expect("workspace.dependencies");
    resolve_deps(&mut member, deps);
    if let Some(toml::Value::Table(targets)) = member.get_mut("target") {
        for (_, target) in targets.iter_mut() {
            if let toml::Value::Table(target) = target {
                resolve_deps(target, deps);
            }
        }
    }
    format!(
        "# tessera-sdk as this tessera binary carries it (inherited fields resolved).\n{}",
        toml::to_string(&member).expect("a manifest serializes")
    )
}

fn inherits(value: &toml::Value) -> bool {
    value
        .as_table()
        .and_then(|t| t.get("workspace"))
        .and_then(toml::Value::as_bool)
        == Some(true)
}

/// Resolves `{ workspace = true, ... }` entries of the dependency tables in `table`.
fn resolve_deps(table: &mut toml::Table, shared: &toml::Table) {
    for section in ["dependencies", "dev-dependencies", "build-dependencies"] {
        let Some(toml::Value::Table(deps)) = table.get_mut(section) else {
            continue;
        };
        for (name, dep) in deps.iter_mut() {
            if !inherits(dep) {
                continue;
            }
            let mut resolved = match &shared[name.as_str()] {
                toml::Value::String(version) => {
                    let mut t = toml::Table::new();
                    t.insert("version".into(), toml::Value::String(version.clone()));
                    t
                }
                toml::Value::Table(t) => t.clone(),
                other => panic!("workspace dependency {name}: unexpected {other}"),
            };
            assert!(
                !resolved.contains_key("path"),
                "workspace dependency {name} is a path; the SDK must depend on registry crates"
            );
            let own = dep.as_table().expect("inheriting dependency is a table");
            for (key, value) in own {
                match key.as_str() {
                    "workspace" => {}
                    "features" => {
                        let mut features = resolved
                            .get("features")
                            .and_then(toml::Value::as_array)
                            .cloned()
                            .unwrap_or_default();
                        for f in value.as_array().into_iter().flatten() {
                            if !features.contains(f) {
                                features.push(f.clone());
                            }
                        }
                        resolved.insert("features".into(), toml::Value::Array(features));
                    }
                    _ => {
                        resolved.insert(key.clone(), value.clone());
                    }
                }
            }
            *dep = toml::Value::Table(resolved);
        }
    }
}
