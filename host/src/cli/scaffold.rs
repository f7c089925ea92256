//! `tessera plugin new`: a plugin crate from the templates in `templates/`, ready to build,
//! test and push unchanged.
//!
//! The crate depends on the SDK this binary speaks: the checkout's `sdk/` when the binary
//! runs from the checkout it was built in (`target/`), `--sdk-path` if given, else the SDK
//! the binary carries (packed by `build.rs`), unpacked into the crate's
//! `vendor/tessera-sdk-<version>/`, so a third party with only the binary gets a plugin that
//! builds.

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::args::Kind;

/// This checkout's root, SDK and lock file, when the binary runs where it was built.
const CHECKOUT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
const CHECKOUT_SDK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../sdk");
const CHECKOUT_LOCK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.lock");

/// The SDK this binary carries (see `build.rs`).
mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded_sdk.rs"));
}

const CARGO_TOML: &str = include_str!("templates/Cargo.toml.tmpl");
const GITIGNORE: &str = include_str!("templates/gitignore.tmpl");

/// The signing secret of the scaffolded connector's fixtures (fixtures/config.json).
const FIXTURE_SECRET: &str = "dev-secret";

/// Where the SDK dependency points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SdkSource {
    /// A folder holding tessera-sdk.
    Path(PathBuf),
    /// The SDK this binary carries, unpacked into the new crate at [`SdkSource::vendored`].
    Embedded,
}

impl SdkSource {
    /// `--sdk-path`, else this checkout's `sdk/` when the binary runs from that checkout,
    /// else the SDK the binary carries.
    pub fn choose(flag: Option<&Path>) -> anyhow::Result<Self> {
        if let Some(path) = flag {
            let path = std::fs::canonicalize(path)
                .with_context(|| format!("--sdk-path {} does not exist", path.display()))?;
            anyhow::ensure!(
                path.join("Cargo.toml").exists(),
                "--sdk-path {} has no Cargo.toml; point it at the sdk/ folder of a Tessera checkout",
                path.display()
            );
            return Ok(Self::Path(path));
        }
        Ok(match checkout_sdk() {
            Some(path) => Self::Path(path),
            None => Self::Embedded,
        })
    }

    /// Where the embedded SDK goes in the new crate: its version in the name, so that a
    /// crate made by a later binary says which SDK it carries.
    pub fn vendored() -> String {
        format!("vendor/tessera-sdk-{}", embedded::VERSION)
    }

    /// The line under `[dependencies]`.
    fn dependency(&self) -> String {
        let path = match self {
            Self::Path(path) => path.display().to_string(),
            Self::Embedded => Self::vendored(),
        };
        format!("tessera-sdk = {{ path = {} }}", toml::Value::String(path))
    }
}

/// The checkout's `sdk/`, when this binary runs from the checkout it was built in (from its
/// `target/`): a copy of the binary anywhere else uses the SDK it carries, as a third party
/// with only the binary would.
fn checkout_sdk() -> Option<PathBuf> {
    let checkout = std::fs::canonicalize(CHECKOUT).ok()?;
    let exe = std::env::current_exe()
        .and_then(std::fs::canonicalize)
        .ok()?;
    if !exe.starts_with(checkout.join("target")) {
        return None;
    }
    std::fs::canonicalize(CHECKOUT_SDK)
        .ok()
        .filter(|sdk| sdk.join("Cargo.toml").exists())
}

/// Writes the SDK this binary carries into `dir`.
fn unpack_sdk(dir: &Path) -> anyhow::Result<()> {
    for (path, bytes) in embedded::FILES {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// One file of the new crate: path relative to the crate folder, and its text.
type File = (&'static str, String);

/// `MyPlugin` for `my-plugin`: the type the template implements.
fn type_name(name: &str) -> String {
    name.split('-')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect()
}

/// Replaces `{{name}}`, `{{type}}` and `{{sdk}}` in a template.
fn render(template: &str, name: &str, sdk: &SdkSource) -> String {
    template
        .replace("{{name}}", name)
        .replace("{{type}}", &type_name(name))
        .replace("{{sdk}}", &sdk.dependency())
}

/// The kind's templates: plugin.toml, src/lib.rs, fixtures.
fn kind_files(kind: Kind, name: &str, sdk: &SdkSource) -> Vec<File> {
    let r = |template: &str| render(template, name, sdk);
    match kind {
        Kind::Connector => vec![
            (
                "plugin.toml",
                r(include_str!("templates/connector/plugin.toml")),
            ),
            (
                "src/lib.rs",
                r(include_str!("templates/connector/lib.rs.tmpl")),
            ),
            (
                "fixtures/config.json",
                r(include_str!("templates/connector/config.json")),
            ),
            (
                "fixtures/order-created.json",
                signed_webhook(include_str!("templates/connector/body.json").trim()),
            ),
        ],
        Kind::SegmentRule => vec![
            (
                "plugin.toml",
                r(include_str!("templates/segment-rule/plugin.toml")),
            ),
            (
                "src/lib.rs",
                r(include_str!("templates/segment-rule/lib.rs.tmpl")),
            ),
            (
                "fixtures/pro-and-free.json",
                r(include_str!("templates/segment-rule/fixture.json")),
            ),
            (
                "fixtures/describe.json",
                r(include_str!("templates/segment-rule/describe.json")),
            ),
        ],
        Kind::Channel => vec![
            (
                "plugin.toml",
                r(include_str!("templates/channel/plugin.toml")),
            ),
            (
                "src/lib.rs",
                r(include_str!("templates/channel/lib.rs.tmpl")),
            ),
            (
                "fixtures/config.json",
                r(include_str!("templates/channel/config.json")),
            ),
            (
                "fixtures/welcome.json",
                r(include_str!("templates/channel/fixture.json")),
            ),
        ],
    }
}

/// The connector's fixture: a webhook input carrying `body`, signed as the template checks
/// (`X-Signature: sha256=<hex HMAC-SHA256>` with [`FIXTURE_SECRET`]).
fn signed_webhook(body: &str) -> String {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(FIXTURE_SECRET.as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(body.as_bytes());
    include_str!("templates/connector/fixture.json")
        .replace("{{signature}}", &hex::encode(mac.finalize().into_bytes()))
        .replace("{{body}}", &serde_json::Value::from(body).to_string())
}

/// Every file of a new `kind` plugin called `name`.
pub fn files(kind: Kind, name: &str, sdk: &SdkSource) -> Vec<File> {
    let mut files = vec![
        ("Cargo.toml", render(CARGO_TOML, name, sdk)),
        (".gitignore", GITIGNORE.to_string()),
    ];
    files.extend(kind_files(kind, name, sdk));
    files
}

/// Creates `dir/name/` and prints what to do next.
pub fn run(kind: Kind, name: &str, dir: &Path, sdk_path: Option<&Path>) -> anyhow::Result<()> {
    let sdk = SdkSource::choose(sdk_path)?;
    let root = dir.join(name);
    anyhow::ensure!(
        !root.exists(),
        "{} already exists; pick another name or --dir",
        root.display()
    );
    for (path, text) in files(kind, name, &sdk) {
        let path = root.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    match &sdk {
        SdkSource::Path(_) => {
            if Path::new(CHECKOUT_LOCK).exists() {
                seed_lock_file(&root, &std::fs::read(CHECKOUT_LOCK)?);
            }
        }
        SdkSource::Embedded => {
            unpack_sdk(&root.join(SdkSource::vendored()))?;
            seed_lock_file(&root, embedded::LOCK);
        }
    }
    print_next_steps(kind, name, &root, &sdk);
    Ok(())
}

/// Starts the crate's Cargo.lock from the SDK's workspace lock, so it builds with the
/// dependency versions the SDK is tested with (cargo drops the entries it does not need).
fn seed_lock_file(root: &Path, lock: &[u8]) {
    // A missing lock file only means cargo resolves versions itself.
    let _ = std::fs::write(root.join("Cargo.lock"), lock);
}

fn print_next_steps(kind: Kind, name: &str, root: &Path, sdk: &SdkSource) {
    let sdk = match sdk {
        SdkSource::Path(path) => path.display().to_string(),
        SdkSource::Embedded => format!(
            "{} (version {}, sha256 {}, carried by this binary)",
            SdkSource::vendored(),
            embedded::VERSION,
            &embedded::SHA256[..12]
        ),
    };
    println!(
        "Created {} plugin `{name}` in {}",
        kind.as_str(),
        root.display()
    );
    println!("  plugin.toml   id, kind, capabilities, limits, config");
    println!("  src/lib.rs    the implementation and its unit tests");
    println!("  fixtures/     inputs `tessera plugin test` runs in the sandbox");
    println!("  tessera-sdk   from {sdk}");
    println!();
    println!("Next:");
    println!("  cd {}", root.display());
    println!("  tessera plugin build");
    println!("  tessera plugin test");
    println!("  tessera plugin push");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sdk() -> SdkSource {
        SdkSource::Path(PathBuf::from("/src/tessera/sdk"))
    }

    fn file<'a>(files: &'a [File], path: &str) -> &'a str {
        &files.iter().find(|(p, _)| *p == path).expect(path).1
    }

    #[test]
    fn every_kind_gets_a_manifest_of_its_kind_and_no_placeholders() {
        for kind in [Kind::Connector, Kind::SegmentRule, Kind::Channel] {
            let files = files(kind, "acme-shop", &sdk());
            for (path, text) in &files {
                assert!(!text.contains("{{"), "{path} keeps a placeholder");
            }
            let manifest = tessera::plugins::Manifest::parse(file(&files, "plugin.toml")).unwrap();
            assert_eq!(
                (manifest.id.as_str(), manifest.kind.to_string()),
                ("acme-shop", kind.as_str().to_string())
            );
            assert!(file(&files, "src/lib.rs").contains("pub struct AcmeShop;"));
            assert!(
                files
                    .iter()
                    .any(|(p, _)| p.starts_with("fixtures/") && *p != "fixtures/config.json")
            );
        }
    }

    #[test]
    fn the_crate_is_its_own_workspace_and_a_cdylib_on_the_sdk() {
        let embedded = files(Kind::Connector, "acme", &SdkSource::Embedded);
        let cargo: toml::Table = toml::from_str(file(&embedded, "Cargo.toml")).unwrap();
        assert!(cargo.contains_key("workspace"));
        assert_eq!(cargo["package"]["name"].as_str(), Some("acme"));
        assert_eq!(cargo["lib"]["crate-type"][0].as_str(), Some("cdylib"));
        assert_eq!(
            cargo["dependencies"]["tessera-sdk"]["path"].as_str(),
            Some(SdkSource::vendored().as_str())
        );
        let local = files(Kind::Channel, "acme", &sdk());
        let cargo: toml::Table = toml::from_str(file(&local, "Cargo.toml")).unwrap();
        assert_eq!(
            cargo["dependencies"]["tessera-sdk"]["path"].as_str(),
            Some("/src/tessera/sdk")
        );
    }

    #[test]
    fn the_connector_fixture_is_signed_with_the_fixture_secret() {
        let files = files(Kind::Connector, "acme", &sdk());
        let config: serde_json::Value =
            serde_json::from_str(file(&files, "fixtures/config.json")).unwrap();
        assert_eq!(config["secret"], FIXTURE_SECRET);
        let input: tessera::plugins::CallInput =
            serde_json::from_str(file(&files, "fixtures/order-created.json")).unwrap();
        let tessera::plugins::CallInput::Webhook { request } = input else {
            panic!("a webhook input expected")
        };
        use hmac::Mac;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"dev-secret").unwrap();
        mac.update(request.body.as_bytes());
        let want = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        assert!(request.headers.contains(&("x-signature".to_string(), want)));
    }

    #[test]
    fn fixtures_parse_as_call_inputs() {
        for kind in [Kind::SegmentRule, Kind::Channel] {
            for (path, text) in files(kind, "acme", &sdk()) {
                if path.starts_with("fixtures/") && path != "fixtures/config.json" {
                    serde_json::from_str::<tessera::plugins::CallInput>(&text).unwrap();
                }
            }
        }
    }

    #[test]
    fn type_names_are_camel_case() {
        assert_eq!(type_name("acme"), "Acme");
        assert_eq!(type_name("vip-rule-2"), "VipRule2");
    }

    /// The SDK the binary carries is the SDK of this checkout: same files, its manifest
    /// standing alone (no workspace inheritance), and its WIT.
    #[test]
    fn the_embedded_sdk_is_this_checkouts_sdk_standing_alone() {
        let paths: Vec<&str> = embedded::FILES.iter().map(|(p, _)| *p).collect();
        for want in [
            "Cargo.toml",
            "src/lib.rs",
            "src/bindings.rs",
            "wit/v0.1.0/types.wit",
            "wit/v0.2.0/types.wit",
        ] {
            assert!(paths.contains(&want), "{want} in {paths:?}");
        }
        for (path, bytes) in embedded::FILES {
            if *path != "Cargo.toml" {
                let on_disk = std::fs::read(Path::new(CHECKOUT_SDK).join(path)).unwrap();
                assert_eq!(&on_disk[..], *bytes, "{path}");
            }
        }
        let manifest = embedded::FILES
            .iter()
            .find(|(p, _)| *p == "Cargo.toml")
            .unwrap()
            .1;
        let manifest = std::str::from_utf8(manifest).unwrap();
        assert!(!manifest.contains("workspace"), "{manifest}");
        let cargo: toml::Table = toml::from_str(manifest).unwrap();
        assert_eq!(cargo["package"]["name"].as_str(), Some("tessera-sdk"));
        assert_eq!(
            cargo["package"]["version"].as_str(),
            Some(embedded::VERSION)
        );
        assert_eq!(embedded::VERSION, env!("CARGO_PKG_VERSION"));
        assert!(cargo["dependencies"]["wit-bindgen"]["version"].is_str());
        assert!(
            cargo["target"]["cfg(target_arch = \"wasm32\")"]["dependencies"]["wasi"].is_table()
                || cargo["target"]["cfg(target_arch = \"wasm32\")"]["dependencies"]["wasi"]
                    .is_str()
        );
        assert_eq!(embedded::SHA256.len(), 64);
        assert!(
            std::str::from_utf8(embedded::LOCK)
                .unwrap()
                .contains("name = \"wit-bindgen\"")
        );
    }

    #[test]
    fn the_embedded_sdk_is_unpacked_beside_the_crate_it_serves() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("acme");
        std::fs::create_dir(&root).unwrap();
        unpack_sdk(&root.join(SdkSource::vendored())).unwrap();
        let vendored = root.join(SdkSource::vendored());
        assert!(vendored.join("wit/v0.1.0/plugins.wit").exists());
        assert!(vendored.join("src/lib.rs").exists());
        assert!(vendored.join("Cargo.toml").exists());
    }

    #[test]
    fn an_existing_folder_is_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("acme")).unwrap();
        let error = run(Kind::Connector, "acme", dir.path(), None).unwrap_err();
        assert!(error.to_string().contains("already exists"), "{error}");
    }
}
