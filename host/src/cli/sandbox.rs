//! Components in the host's own sandbox, outside any host: `build`'s world check, `test`'s
//! runs of the self-test and fixtures, and local `replay`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use serde_json::{Map, Value};
use tessera::plugins::{CallInput, CallReport, LocalSandbox, PluginError};
use tessera::runtime::{LoadError, SandboxedPlugin};

use super::build::{self, Component, PluginCrate};

/// The fixture holding the config of sandbox runs; not an input.
const CONFIG_FIXTURE: &str = "config.json";

/// Where compiled code is cached between runs: `$XDG_CACHE_HOME/tessera/compiled`, else
/// `~/.cache/tessera/compiled`, else the temp folder.
fn cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("tessera").join("compiled")
}

/// A local sandbox: the host's engine settings, the manifest's limits, an in-memory kv.
pub struct Local(LocalSandbox);

impl Local {
    /// Opens the sandbox with its compiled-code cache.
    pub fn open() -> anyhow::Result<Self> {
        let dir = cache_dir();
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self(
            LocalSandbox::new(&dir).context("starting the local sandbox")?,
        ))
    }

    /// Compiles a built component and checks it implements its manifest's world.
    pub fn load(&self, component: &Component) -> anyhow::Result<Arc<SandboxedPlugin>> {
        self.load_parts(&component.manifest_text, &component.bytes)
    }

    /// [`Local::load`] from a manifest's text and a component's bytes.
    pub fn load_parts(&self, manifest: &str, wasm: &[u8]) -> anyhow::Result<Arc<SandboxedPlugin>> {
        self.0.load(manifest, wasm).map_err(|e| {
            let hint = match &e {
                PluginError::Load {
                    source: LoadError::WorldMismatch { .. },
                    ..
                } => {
                    "\nhint: `kind` in plugin.toml must match the export macro in src/lib.rs \
                     (export_connector!, export_segment_rule!, export_channel!)"
                }
                PluginError::Load {
                    source: LoadError::UnsatisfiedImport(_),
                    ..
                } => "\nhint: plugins may import only what tessera-sdk offers (config, kv, log, http)",
                _ => "",
            };
            anyhow::anyhow!("the sandbox refused the component: {e}{hint}")
        })
    }

    /// Runs one input with `config`.
    pub async fn run(
        &self,
        plugin: &SandboxedPlugin,
        config: Map<String, Value>,
        input: &CallInput,
    ) -> CallReport {
        self.0.run(plugin, config, input).await
    }
}

/// A config object from a JSON file.
pub fn read_config(path: &Path) -> anyhow::Result<Map<String, Value>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    match serde_json::from_str(&text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => anyhow::bail!("{} must hold a JSON object", path.display()),
        Err(e) => anyhow::bail!("{} is not valid JSON: {e}", path.display()),
    }
}

/// The inputs `test` runs: the self-test, then every `fixtures/*.json` but config.json, by name.
fn inputs(fixtures: &Path) -> anyhow::Result<Vec<(String, CallInput)>> {
    let mut paths: Vec<PathBuf> = match std::fs::read_dir(fixtures) {
        Ok(entries) => entries.flatten().map(|e| e.path()).collect(),
        Err(_) => Vec::new(),
    };
    paths.retain(|p| {
        p.extension().is_some_and(|e| e == "json")
            && p.file_name().is_some_and(|n| n != CONFIG_FIXTURE)
    });
    paths.sort();
    let mut inputs = vec![("self-test".to_string(), CallInput::SelfTest)];
    for path in paths {
        let text = std::fs::read_to_string(&path)?;
        let input = serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not a call input like {{\"call\": \"webhook\", \"request\": {{...}}}}",
                path.display()
            )
        })?;
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        inputs.push((name.into_owned(), input));
    }
    Ok(inputs)
}

/// One call report (as JSON: the local sandbox's and the host's look alike) as the lines
/// `test` and `replay` print: status and cost, then the output.
pub fn format_report(label: &str, report: &Value) -> String {
    let outcome = &report["outcome"];
    let status = if report["ok"].as_bool() == Some(true) {
        "ok"
    } else if outcome.get("err").is_some() {
        "error"
    } else {
        "failed"
    };
    let millis = report["micros"].as_u64().unwrap_or(0) as f64 / 1000.0;
    let mib = report["peak_memory_bytes"].as_u64().unwrap_or(0) as f64 / (1024.0 * 1024.0);
    let fuel = report["fuel"]
        .as_u64()
        .map_or_else(String::new, |f| format!("   fuel {f}"));
    let mut output = outcome.to_string();
    if output.len() > 400 {
        let cut = (0..=400)
            .rev()
            .find(|&i| output.is_char_boundary(i))
            .unwrap_or(0);
        output.truncate(cut);
        output.push_str(" ...");
    }
    format!(
        "  {label:<28} {status:<7} {millis:>9.2} ms   peak memory {mib:.2} MiB{fuel}\n      {output}"
    )
}

/// Runs one input and gives its report as JSON.
pub async fn run_to_json(
    local: &Local,
    plugin: &SandboxedPlugin,
    config: Map<String, Value>,
    input: &CallInput,
) -> Value {
    let report = local.run(plugin, config, input).await;
    serde_json::to_value(&report).unwrap_or_default()
}

/// What a limit is set to, for the run's header line.
fn limit(value: Option<u64>, unit: &str) -> String {
    value.map_or_else(|| "host default".to_string(), |v| format!("{v} {unit}"))
}

/// `tessera plugin test`.
pub async fn test(dir: &Path) -> anyhow::Result<()> {
    let krate = PluginCrate::locate(dir)?;
    build::cargo(dir, &["test"])?;
    let component = build::build(dir)?;
    let fixtures = krate.dir.join("fixtures");
    let config_path = fixtures.join(CONFIG_FIXTURE);
    let (config, config_source) = if config_path.exists() {
        (read_config(&config_path)?, "fixtures/config.json")
    } else {
        (Map::new(), "none (add fixtures/config.json)")
    };
    let inputs = inputs(&fixtures)?;
    let local = Local::open()?;
    let plugin = local.load(&component)?;
    let m = &component.manifest;
    println!();
    println!("Sandbox runs of {} {} ({})", m.id, m.version, m.kind);
    println!(
        "  memory {}, deadline {}, config {config_source}",
        limit(m.limits.memory_mb, "MiB"),
        limit(m.limits.timeout_ms, "ms")
    );
    let mut failed = 0;
    for (label, input) in &inputs {
        let report = run_to_json(&local, &plugin, config.clone(), input).await;
        failed += usize::from(report["ok"].as_bool() != Some(true));
        println!("{}", format_report(label, &report));
    }
    anyhow::ensure!(
        failed == 0,
        "{failed} of {} sandbox runs did not succeed",
        inputs.len()
    );
    println!("All {} sandbox runs succeeded.", inputs.len());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn inputs_are_the_self_test_then_fixtures_by_name_without_the_config() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
        write("b.json", r#"{"call":"poll"}"#);
        write("a.json", r#"{"call":"self-test"}"#);
        write(CONFIG_FIXTURE, r#"{"secret":"s"}"#);
        write("notes.txt", "not an input");
        let names: Vec<String> = inputs(dir.path())
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, ["self-test", "a.json", "b.json"]);
        write("c.json", r#"{"call":"dance"}"#);
        let error = format!("{:#}", inputs(dir.path()).unwrap_err());
        assert!(error.contains("c.json is not a call input"), "{error}");
        assert_eq!(inputs(&dir.path().join("missing")).unwrap().len(), 1);
    }

    #[test]
    fn reports_show_status_cost_and_output() {
        let report = json!({
            "ok": false,
            "outcome": {"err": {"unauthorized": "missing X-Signature header"}},
            "micros": 1500,
            "peak_memory_bytes": 2 * 1024 * 1024,
            "fuel": 1234,
        });
        let text = format_report("order.json", &report);
        assert!(text.contains("order.json"), "{text}");
        assert!(text.contains("error"), "{text}");
        assert!(text.contains("1.50 ms"), "{text}");
        assert!(text.contains("peak memory 2.00 MiB   fuel 1234"), "{text}");
        assert!(text.contains("missing X-Signature header"), "{text}");
    }

    #[test]
    fn config_files_must_hold_an_object() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, "[1]").unwrap();
        assert!(
            read_config(&path)
                .unwrap_err()
                .to_string()
                .contains("JSON object")
        );
        std::fs::write(&path, r#"{"secret":"s"}"#).unwrap();
        assert_eq!(read_config(&path).unwrap()["secret"], "s");
    }
}
