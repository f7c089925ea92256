//! `tessera plugin build`: cargo for wasm32-wasip2, then the artifact checked to be a
//! component that implements the world its plugin.toml names.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::SystemTime;

use anyhow::{Context, bail};
use serde_json::Value;
use tessera::plugins::{Manifest, sha256_hex};

use super::sandbox;

/// The target plugins are built for.
pub const TARGET: &str = "wasm32-wasip2";

/// The component-model binary header: magic `\0asm`, version 0x0d, layer 0x01.
const COMPONENT_HEADER: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];

/// A plugin crate on disk and where cargo puts its component.
pub struct PluginCrate {
    /// The crate folder.
    pub dir: PathBuf,
    /// `<target dir>/wasm32-wasip2/release/<lib name>.wasm`.
    pub artifact: PathBuf,
}

impl PluginCrate {
    /// The crate in `dir`, asking `cargo metadata` where its artifact goes.
    pub fn locate(dir: &Path) -> anyhow::Result<Self> {
        anyhow::ensure!(
            dir.join("plugin.toml").exists() && dir.join("Cargo.toml").exists(),
            "{} has no Cargo.toml and plugin.toml; run this inside a plugin crate or pass --path \
             (`tessera plugin new` creates one)",
            dir.display()
        );
        let output = Command::new("cargo")
            .args(["metadata", "--format-version", "1", "--no-deps"])
            .current_dir(dir)
            .stderr(Stdio::inherit())
            .output()
            .context("running `cargo metadata`; is Rust installed (https://rustup.rs)?")?;
        anyhow::ensure!(
            output.status.success(),
            "`cargo metadata` failed in {}",
            dir.display()
        );
        let metadata: Value = serde_json::from_slice(&output.stdout)?;
        let artifact = artifact_path(&metadata)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            artifact,
        })
    }

    /// The text of plugin.toml.
    pub fn manifest_text(&self) -> anyhow::Result<String> {
        let path = self.dir.join("plugin.toml");
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
    }

    /// True when a source file changed after the component was built.
    fn is_stale(&self) -> bool {
        let built = modified(&self.artifact);
        let sources = [self.dir.join("Cargo.toml"), self.dir.join("src")];
        sources
            .iter()
            .any(|p| newest(p).is_some_and(|t| built.is_none_or(|b| t > b)))
    }
}

/// Where the cdylib of the one package in `cargo metadata` output lands for [`TARGET`].
fn artifact_path(metadata: &Value) -> anyhow::Result<PathBuf> {
    let target_dir = metadata["target_directory"]
        .as_str()
        .context("`cargo metadata` gave no target_directory")?;
    let package = &metadata["packages"][0];
    let lib = package["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| {
            t["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "cdylib"))
        })
        .and_then(|t| t["name"].as_str())
        .context("Cargo.toml needs `[lib] crate-type = [\"cdylib\"]` to build a component")?;
    Ok(Path::new(target_dir)
        .join(TARGET)
        .join("release")
        .join(format!("{}.wasm", lib.replace('-', "_"))))
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The newest modification time of `path` and, for a folder, of everything in it.
fn newest(path: &Path) -> Option<SystemTime> {
    let own = modified(path);
    let Ok(entries) = std::fs::read_dir(path) else {
        return own;
    };
    entries
        .flatten()
        .filter_map(|e| newest(&e.path()))
        .chain(own)
        .max()
}

/// A built component with the manifest it ships with.
pub struct Component {
    /// The .wasm file.
    pub path: PathBuf,
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// plugin.toml as written.
    pub manifest_text: String,
    /// plugin.toml parsed.
    pub manifest: Manifest,
    /// sha256 of the bytes: the version's id on a host.
    pub sha256: String,
}

impl Component {
    /// Reads the crate's built component and plugin.toml; checks the component header.
    pub fn read(krate: &PluginCrate) -> anyhow::Result<Self> {
        let path = krate.artifact.clone();
        let bytes = std::fs::read(&path).with_context(|| {
            format!(
                "{} is not built yet\nhint: run `tessera plugin build`",
                path.display()
            )
        })?;
        if !bytes.starts_with(&COMPONENT_HEADER) {
            bail!(
                "{} is not a WebAssembly component\nhint: build it with `tessera plugin build` \
                 (target {TARGET}, crate-type cdylib)",
                path.display()
            );
        }
        let manifest_text = krate.manifest_text()?;
        let manifest = Manifest::parse(&manifest_text)
            .with_context(|| format!("{}", krate.dir.join("plugin.toml").display()))?;
        let sha256 = sha256_hex(&bytes);
        Ok(Self {
            path,
            bytes,
            manifest_text,
            manifest,
            sha256,
        })
    }

    /// Reads the component for `push`, warning when sources changed after it was built.
    pub fn read_for_upload(krate: &PluginCrate) -> anyhow::Result<Self> {
        let component = Self::read(krate)?;
        if krate.is_stale() {
            eprintln!(
                "warning: src/ or Cargo.toml changed after {} was built; run `tessera plugin build` to include the changes",
                component.path.display()
            );
        }
        Ok(component)
    }
}

/// Runs `cargo ARGS` in `dir`, its progress and errors shown as they come.
pub fn cargo(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let shown = format!("cargo {}", args.join(" "));
    eprintln!("> {shown}");
    let status = Command::new("cargo")
        .args(args)
        .current_dir(dir)
        .status()
        .with_context(|| format!("running `{shown}`; is Rust installed (https://rustup.rs)?"))?;
    anyhow::ensure!(status.success(), "`{shown}` failed (see above)");
    Ok(())
}

/// `rustup target add wasm32-wasip2` when rustup is there (quiet unless it fails).
fn ensure_target(dir: &Path) -> anyhow::Result<()> {
    let Ok(output) = Command::new("rustup")
        .args(["target", "add", TARGET])
        .current_dir(dir)
        .output()
    else {
        return Ok(()); // No rustup: the toolchain must already have the target.
    };
    if !output.status.success() {
        bail!(
            "`rustup target add {TARGET}` failed:\n{}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// Builds the crate in `dir` and checks the result in a local sandbox.
pub fn build(dir: &Path) -> anyhow::Result<Component> {
    let krate = PluginCrate::locate(dir)?;
    ensure_target(dir)?;
    cargo(dir, &["build", "--release", "--target", TARGET])?;
    let component = Component::read(&krate)?;
    sandbox::Local::open()?.load(&component)?;
    Ok(component)
}

/// `tessera plugin build`.
pub fn run(dir: &Path) -> anyhow::Result<()> {
    let c = build(dir)?;
    let m = &c.manifest;
    println!("Built {} {} ({})", m.id, m.version, m.kind);
    println!("  component  {}", c.path.display());
    println!("  size       {} bytes", c.bytes.len());
    println!("  sha256     {}", c.sha256);
    println!(
        "  checked    a component implementing tessera:cx@{}.0 world `{}`",
        m.contract, m.kind
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_artifact_is_the_cdylib_under_the_target_dir() {
        let metadata = json!({
            "target_directory": "/t",
            "packages": [{"name": "acme-shop", "targets": [
                {"name": "build-script-build", "kind": ["custom-build"]},
                {"name": "acme-shop", "kind": ["cdylib"]}
            ]}]
        });
        let want = Path::new("/t/wasm32-wasip2/release/acme_shop.wasm");
        assert_eq!(artifact_path(&metadata).unwrap(), want);
        let no_lib = json!({"target_directory": "/t", "packages": [{"targets": []}]});
        let error = artifact_path(&no_lib).unwrap_err().to_string();
        assert!(error.contains("crate-type"), "{error}");
    }

    #[test]
    fn a_core_module_is_not_a_component() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("plugin.toml"), "").unwrap();
        let artifact = dir.path().join("x.wasm");
        std::fs::write(&artifact, b"\0asm\x01\0\0\0").unwrap();
        let krate = PluginCrate {
            dir: dir.path().to_path_buf(),
            artifact,
        };
        let error = Component::read(&krate).err().unwrap().to_string();
        assert!(error.contains("not a WebAssembly component"), "{error}");
    }
}
