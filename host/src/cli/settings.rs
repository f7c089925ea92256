//! Where the host is and which admin key to use: flag, environment, then `~/.config/tessera/cli.toml`.

use std::path::PathBuf;

use anyhow::Context;
use serde::Deserialize;

/// The address used when nothing else names one (`tessera serve`'s default).
pub const DEFAULT_HOST: &str = "http://127.0.0.1:8080";

/// The environment variable holding the admin key (the one `tessera serve` reads too).
pub const ADMIN_KEY_ENV: &str = "TESSERA_ADMIN_KEY";

/// The resolved connection settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Base URL without a trailing slash, like `http://127.0.0.1:8080`.
    pub host: String,
    /// The admin key, when one is configured.
    pub admin_key: Option<String>,
}

/// `cli.toml`: both keys optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    host: Option<String>,
    admin_key: Option<String>,
}

/// The config file's path: `$XDG_CONFIG_HOME/tessera/cli.toml`, else `~/.config/tessera/cli.toml`.
pub fn config_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))?;
    Some(base.join("tessera").join("cli.toml"))
}

/// Resolves the settings; `host_flag` is `--host` or `TESSERA_HOST`.
pub fn resolve(host_flag: Option<String>) -> anyhow::Result<Settings> {
    let file = match config_path() {
        Some(path) if path.exists() => {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            toml::from_str(&text).with_context(|| {
                format!(
                    "{} is not valid (it takes `host` and `admin_key`)",
                    path.display()
                )
            })?
        }
        _ => FileSettings::default(),
    };
    let env_key = std::env::var(ADMIN_KEY_ENV).ok();
    Ok(pick(host_flag, env_key, file))
}

/// The first value given, flag or environment before file; empty values count as unset.
fn pick(host_flag: Option<String>, env_key: Option<String>, file: FileSettings) -> Settings {
    let given = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
    let host = given(host_flag)
        .or_else(|| given(file.host))
        .unwrap_or_else(|| DEFAULT_HOST.to_string());
    Settings {
        host: normalise_host(&host),
        admin_key: given(env_key).or_else(|| given(file.admin_key)),
    }
}

/// `host:port` becomes `http://host:port`; a trailing slash goes.
fn normalise_host(host: &str) -> String {
    let host = host.trim().trim_end_matches('/');
    if host.contains("://") {
        host.to_string()
    } else {
        format!("http://{host}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(host: Option<&str>, key: Option<&str>) -> FileSettings {
        FileSettings {
            host: host.map(str::to_string),
            admin_key: key.map(str::to_string),
        }
    }

    #[test]
    fn flag_and_environment_win_over_the_file() {
        let s = pick(
            Some("10.0.0.1:9000/".into()),
            Some("env-key".into()),
            file(Some("http://file:1"), Some("file-key")),
        );
        assert_eq!(s.host, "http://10.0.0.1:9000");
        assert_eq!(s.admin_key.as_deref(), Some("env-key"));
    }

    #[test]
    fn the_file_fills_in_and_the_default_comes_last() {
        let s = pick(None, Some(String::new()), file(None, Some("file-key")));
        assert_eq!(s.host, DEFAULT_HOST);
        assert_eq!(s.admin_key.as_deref(), Some("file-key"));
        let s = pick(None, None, file(Some("https://cx.example.com"), None));
        assert_eq!(s.host, "https://cx.example.com");
        assert_eq!(s.admin_key, None);
    }

    #[test]
    fn the_file_takes_only_known_keys() {
        assert!(toml::from_str::<FileSettings>("host = \"h\"\nadmin_key = \"k\"").is_ok());
        assert!(toml::from_str::<FileSettings>("hots = \"h\"").is_err());
    }
}
