//! Operator maxima and defaults, and how a manifest's asks become a [`SandboxSpec`].

use std::time::Duration;

use crate::runtime::{HostPattern, SandboxSpec, TCP_CONFIG_PREFIX};

use super::Manifest;

/// What the operator allows any plugin at most, and what a plugin gets when it asks nothing.
#[derive(Debug, Clone)]
pub struct OperatorLimits {
    /// Linear memory a plugin gets by default, MiB.
    pub default_memory_mb: u64,
    /// Most linear memory a plugin may ask for, MiB.
    pub max_memory_mb: u64,
    /// Default deadline of one call, ms.
    pub default_timeout_ms: u64,
    /// Longest deadline a plugin may ask for, ms.
    pub max_timeout_ms: u64,
    /// Default and maximum outbound HTTP response body, bytes.
    pub default_http_response_bytes: u64,
    /// Largest outbound HTTP response body a plugin may ask for, bytes.
    pub max_http_response_bytes: u64,
    /// Table elements per table.
    pub table_elements: usize,
    /// Calls of one plugin in flight at once when its manifest asks nothing: its share of
    /// the instance pool.
    pub default_concurrency: u32,
    /// The largest share a manifest may ask for.
    pub max_concurrency: u32,
    /// Environment variables of the host that no plugin may ever read, beyond every
    /// `TESSERA_*` name (`tessera serve --secret-env NAME`).
    pub secret_env: Vec<String>,
}

impl Default for OperatorLimits {
    fn default() -> Self {
        Self {
            default_memory_mb: 64,
            max_memory_mb: 256,
            default_timeout_ms: 5_000,
            max_timeout_ms: 30_000,
            default_http_response_bytes: 1 << 20,
            max_http_response_bytes: 16 << 20,
            table_elements: 100_000,
            default_concurrency: 0,
            max_concurrency: 0,
            secret_env: Vec::new(),
        }
        .sized_for_pool(crate::runtime::EngineLimits::default().max_instances)
    }
}

impl OperatorLimits {
    /// These limits with the concurrency shares of a pool of `max_instances`: a quarter of it
    /// by default, at most half, at least one call.
    pub fn sized_for_pool(self, max_instances: u32) -> Self {
        Self {
            default_concurrency: (max_instances / 4).max(1),
            max_concurrency: (max_instances / 2).max(1),
            ..self
        }
    }

    /// True for an environment variable that belongs to the host: `TESSERA_*` (in any case)
    /// and the names the operator marked secret. No plugin is ever granted one.
    pub fn is_host_secret(&self, name: &str) -> bool {
        name.to_ascii_uppercase().starts_with("TESSERA_")
            || self.secret_env.iter().any(|s| s == name)
    }

    /// The sandbox a version runs in: its manifest's asks clamped to these maxima.
    pub fn sandbox(&self, manifest: &Manifest, sha256: &str) -> SandboxSpec {
        let l = &manifest.limits;
        let caps = &manifest.capabilities;
        SandboxSpec {
            plugin: manifest.id.clone(),
            version: manifest.version.clone(),
            sha256: sha256.to_string(),
            kind: manifest.kind,
            contract: manifest.contract.clone(),
            memory_bytes: l
                .memory_mb
                .unwrap_or(self.default_memory_mb)
                .min(self.max_memory_mb)
                .checked_mul(1 << 20)
                .and_then(|b| usize::try_from(b).ok())
                .unwrap_or(usize::MAX),
            table_elements: self.table_elements,
            timeout: Duration::from_millis(
                l.timeout_ms
                    .unwrap_or(self.default_timeout_ms)
                    .min(self.max_timeout_ms),
            ),
            // The manifest was validated, so every entry parses.
            http_allow: caps
                .http
                .iter()
                .filter_map(|h| HostPattern::parse(h).ok())
                .collect(),
            http_response_bytes: l
                .http_response_bytes
                .unwrap_or(self.default_http_response_bytes)
                .min(self.max_http_response_bytes),
            tcp_allow: caps.tcp.iter().filter_map(|a| a.parse().ok()).collect(),
            tcp_config: caps
                .tcp
                .iter()
                .filter_map(|a| a.strip_prefix(TCP_CONFIG_PREFIX))
                .map(str::to_string)
                .collect(),
            fuel: l.fuel,
            max_concurrency: l
                .max_concurrency
                .unwrap_or(self.default_concurrency)
                .min(self.max_concurrency)
                .max(1),
            env: caps
                .env
                .iter()
                // Refused at upload; versions stored before that rule still never see them.
                .filter(|k| !self.is_host_secret(k))
                .filter_map(|k| std::env::var(k).ok().map(|v| (k.clone(), v)))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(limits: &str) -> Manifest {
        let text = format!(
            "id = \"p\"\nkind = \"connector\"\nversion = \"1.0.0\"\ncontract = \"0.1\"\n[limits]\n{limits}"
        );
        Manifest::parse(&text).expect("manifest")
    }

    #[test]
    fn the_concurrency_share_defaults_to_a_quarter_of_the_pool_and_is_clamped_to_half() {
        let limits = OperatorLimits::default().sized_for_pool(16);
        let share = |asks: &str| limits.sandbox(&manifest(asks), "00").max_concurrency;
        assert_eq!(share(""), 4);
        assert_eq!(share("max_concurrency = 2"), 2);
        assert_eq!(share("max_concurrency = 1000"), 8);
        let tiny = OperatorLimits::default().sized_for_pool(1);
        assert_eq!(tiny.sandbox(&manifest(""), "00").max_concurrency, 1);
        assert!(Manifest::parse("id = \"p\"\nkind = \"connector\"\nversion = \"1.0.0\"\ncontract = \"0.1\"\n[limits]\nmax_concurrency = 0").is_err());
    }
}
