//! `plugin.toml`: parsed strictly (unknown keys are errors), then validated into a [`Manifest`].

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::runtime::{HostPattern, PluginKind, TCP_CONFIG_PREFIX};

/// Contract versions (major.minor of `tessera:cx`) this host serves.
pub const SUPPORTED_CONTRACTS: &[&str] = crate::runtime::contract::SUPPORTED;

/// Longest `[poll] interval_secs`: a week.
pub const MAX_POLL_INTERVAL_SECS: u64 = 7 * 24 * 3600;
/// Largest `limits.memory_mb` a manifest may name (the operator's maximum still applies).
pub const MAX_MEMORY_MB: u64 = 64 * 1024;
/// Largest `limits.timeout_ms`: an hour (the operator's maximum still applies).
pub const MAX_TIMEOUT_MS: u64 = 3_600_000;
/// Largest `limits.http_response_bytes`: 1 GiB (the operator's maximum still applies).
pub const MAX_HTTP_RESPONSE_BYTES: u64 = 1 << 30;
/// Largest `limits.fuel`: 10^15 instructions, hours of CPU.
pub const MAX_FUEL: u64 = 1_000_000_000_000_000;
/// Largest `limits.max_concurrency` a manifest may ask for (the operator's share clamps it).
pub const MAX_CONCURRENCY: u64 = 100_000;

/// A validated plugin manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Stable id of the plugin: one slot per id.
    pub id: String,
    /// Which world the component implements.
    pub kind: PluginKind,
    /// The plugin's own semver version.
    pub version: String,
    /// The `tessera:cx` contract version, `major.minor`. The component's exports must name
    /// the same version (checked when it is prepared).
    pub contract: String,
    /// One line for operators.
    #[serde(default)]
    pub description: String,
    /// What the plugin asks to reach.
    #[serde(default)]
    pub capabilities: Capabilities,
    /// Limits it asks for; the host clamps them to the operator's maxima.
    #[serde(default)]
    pub limits: Limits,
    /// What its configuration must contain.
    #[serde(default)]
    pub config: ConfigSpec,
    /// For a pull connector: how often the host calls its `poll`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll: Option<PollSpec>,
    /// For a channel: what it carries, which says where a message's recipient comes from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<ChannelSpec>,
}

/// The channel section of a channel plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelSpec {
    /// What the channel carries: `email`, `sms`, `whatsapp`, `webhook` or `other`.
    pub medium: Medium,
}

/// What a channel carries. It names the message's `channel` field, and where the host finds
/// the recipient when a send names none: an email channel sends to the contact's email, SMS
/// and WhatsApp to their phone; a webhook (or other) channel has its own destination in its
/// config, so its messages' `to` is empty unless the send gives one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Medium {
    /// Email: the contact's `email`.
    Email,
    /// SMS: the contact's `phone`.
    Sms,
    /// WhatsApp: the contact's `phone`.
    Whatsapp,
    /// An HTTP endpoint the channel's config names.
    Webhook,
    /// Anything else; the recipient is given by the send or the channel's config.
    Other,
}

impl Medium {
    /// `email`: how messages and manifests name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Medium::Email => "email",
            Medium::Sms => "sms",
            Medium::Whatsapp => "whatsapp",
            Medium::Webhook => "webhook",
            Medium::Other => "other",
        }
    }

    /// The identity kind (and trait name) whose value is the recipient, if any.
    pub fn address_kind(self) -> Option<&'static str> {
        match self {
            Medium::Email => Some("email"),
            Medium::Sms | Medium::Whatsapp => Some("phone"),
            Medium::Webhook | Medium::Other => None,
        }
    }
}

/// The capabilities section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Capabilities {
    /// Hosts for outbound HTTP: `host`, `host:port`, `*.suffix`.
    #[serde(default)]
    pub http: Vec<String>,
    /// Raw TCP: `ip:port` addresses, or `config:<key>` for the server (`ip:port` or
    /// `host:port`, resolved by the host per call) the operator sets in config key `<key>`.
    #[serde(default)]
    pub tcp: Vec<String>,
    /// Environment variables it may read (values come from the host's environment).
    #[serde(default)]
    pub env: Vec<String>,
    /// Filesystem access; not granted by this host.
    #[serde(default)]
    pub files: bool,
}

/// The limits section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Linear memory, MiB.
    pub memory_mb: Option<u64>,
    /// Deadline of one call, milliseconds.
    pub timeout_ms: Option<u64>,
    /// Largest outbound HTTP response body, bytes.
    pub http_response_bytes: Option<u64>,
    /// Instructions (fuel units) one call may run. Setting it turns fuel metering on for this
    /// plugin: its calls report the instructions they ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
    /// Calls in flight at once, across all versions: the plugin's share of the instance
    /// pool (clamped to the operator's maximum). Further calls wait briefly, then are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
}

/// The config section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigSpec {
    /// Keys the operator must set before the plugin can go live.
    #[serde(default)]
    pub required: Vec<String>,
    /// Keys whose values are never shown by the API.
    #[serde(default)]
    pub secrets: Vec<String>,
    /// A JSON-Schema-like description: `properties.<key>.type` is checked when config is set.
    #[serde(default)]
    pub schema: Option<toml::Table>,
}

/// The poll section: present on connectors the host should poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollSpec {
    /// Seconds between the end of one poll round and the start of the next (at least 1).
    pub interval_secs: u64,
}

/// A manifest that cannot be used, with the reason.
#[derive(Debug, thiserror::Error)]
#[error("invalid plugin manifest: {0}")]
pub struct ManifestError(pub String);

impl Manifest {
    /// Parses and validates `plugin.toml` text.
    pub fn parse(text: &str) -> Result<Self, ManifestError> {
        let manifest: Manifest =
            toml::from_str(text).map_err(|e| ManifestError(e.message().to_string()))?;
        manifest.validate()?;
        Ok(manifest)
    }

    fn validate(&self) -> Result<(), ManifestError> {
        let bad = |m: String| Err(ManifestError(m));
        if !valid_id(&self.id) {
            return bad(format!(
                "id `{}` must be 1-64 characters of a-z, 0-9 and -",
                self.id
            ));
        }
        if semver::Version::parse(&self.version).is_err() {
            return bad(format!(
                "version `{}` is not semver (like 1.2.3)",
                self.version
            ));
        }
        if !SUPPORTED_CONTRACTS.contains(&self.contract.as_str()) {
            return bad(format!(
                "contract `{}` is not served by this host (it serves {})",
                self.contract,
                SUPPORTED_CONTRACTS.join(", ")
            ));
        }
        if self.capabilities.files {
            return bad("capabilities.files: this host grants no filesystem access".into());
        }
        for entry in &self.capabilities.http {
            HostPattern::parse(entry)
                .map_err(|e| ManifestError(format!("capabilities.http: {e}")))?;
        }
        for entry in &self.capabilities.tcp {
            match entry.strip_prefix(TCP_CONFIG_PREFIX) {
                Some(key) if !key.is_empty() => {}
                _ => {
                    entry.parse::<SocketAddr>().map_err(|_| {
                        ManifestError(format!(
                            "capabilities.tcp: `{entry}` is neither ip:port nor \
                             {TCP_CONFIG_PREFIX}<key> (the server in that config key)"
                        ))
                    })?;
                }
            }
        }
        let l = &self.limits;
        let bounds = [
            ("limits.memory_mb", l.memory_mb, MAX_MEMORY_MB),
            ("limits.timeout_ms", l.timeout_ms, MAX_TIMEOUT_MS),
            (
                "limits.http_response_bytes",
                l.http_response_bytes,
                MAX_HTTP_RESPONSE_BYTES,
            ),
            ("limits.fuel", l.fuel, MAX_FUEL),
            (
                "limits.max_concurrency",
                l.max_concurrency.map(u64::from),
                MAX_CONCURRENCY,
            ),
            (
                "poll.interval_secs",
                self.poll.map(|p| p.interval_secs),
                MAX_POLL_INTERVAL_SECS,
            ),
        ];
        for (field, value, max) in bounds {
            if let Some(v) = value
                && !(1..=max).contains(&v)
            {
                return bad(format!("{field} must be within 1..={max}, not {v}"));
            }
        }
        if self.channel.is_some() && self.kind != PluginKind::Channel {
            return bad(format!(
                "[channel] is for channels; this is a {} plugin",
                self.kind
            ));
        }
        if self.poll.is_some() && self.kind != PluginKind::Connector {
            return bad(format!(
                "[poll] is for connectors; this is a {} plugin",
                self.kind
            ));
        }
        for key in self.config.secrets.iter().chain(&self.config.required) {
            if key.is_empty() {
                return bad("config keys must not be empty".into());
            }
        }
        Ok(())
    }

    /// Checks an operator-set config against this manifest: required keys and declared types.
    pub fn check_config(
        &self,
        config: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<(), ConfigError> {
        let missing: Vec<String> = self
            .config
            .required
            .iter()
            .filter(|k| config.get(k.as_str()).is_none_or(|v| v.is_null()))
            .cloned()
            .collect();
        if !missing.is_empty() {
            return Err(ConfigError::Missing(missing));
        }
        let Some(props) = self
            .config
            .schema
            .as_ref()
            .and_then(|s| s.get("properties"))
            .and_then(|p| p.as_table())
        else {
            return Ok(());
        };
        for (key, value) in config {
            let Some(want) = props
                .get(key)
                .and_then(|p| p.get("type"))
                .and_then(|t| t.as_str())
            else {
                continue;
            };
            let ok = match want {
                "string" => value.is_string(),
                "integer" => value.is_i64() || value.is_u64(),
                "number" => value.is_number(),
                "boolean" => value.is_boolean(),
                "array" => value.is_array(),
                "object" => value.is_object(),
                _ => true,
            };
            if !ok {
                return Err(ConfigError::WrongType {
                    key: key.clone(),
                    want: want.to_string(),
                });
            }
        }
        Ok(())
    }
}

/// An operator-set config that does not fit the manifest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Required keys without a value.
    #[error("config is missing required key(s): {}", .0.join(", "))]
    Missing(Vec<String>),
    /// A key whose value is not of the type the manifest's schema declares.
    #[error("config key `{key}` must be of type {want}")]
    WrongType {
        /// The key.
        key: String,
        /// The declared type.
        want: String,
    },
}

/// True for a valid plugin id.
pub fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
id = "webhook-channel"
kind = "channel"
version = "0.1.0"
contract = "0.1"
description = "POSTs messages"
[capabilities]
http = ["hooks.example.com", "*.example.org"]
[limits]
memory_mb = 32
[config]
required = ["secret"]
secrets = ["secret"]
[config.schema.properties.secret]
type = "string"
"#;

    #[test]
    fn a_complete_manifest_parses() {
        let m = Manifest::parse(GOOD).unwrap();
        assert_eq!(m.kind, PluginKind::Channel);
        assert_eq!(m.limits.memory_mb, Some(32));
        let mut cfg = serde_json::Map::new();
        assert!(
            m.check_config(&cfg)
                .unwrap_err()
                .to_string()
                .contains("secret")
        );
        cfg.insert("secret".into(), 5.into());
        assert!(
            m.check_config(&cfg)
                .unwrap_err()
                .to_string()
                .contains("type string")
        );
        cfg.insert("secret".into(), "s3cr3t".into());
        m.check_config(&cfg).unwrap();
    }

    #[test]
    fn a_channel_section_names_the_medium_of_channels_only() {
        let with = |text: &str, section: &str| format!("{text}[channel]\n{section}\n");
        let m = Manifest::parse(&with(GOOD, "medium = \"email\"")).unwrap();
        let spec = m.channel.expect("channel section");
        assert_eq!(spec.medium, Medium::Email);
        assert_eq!(spec.medium.address_kind(), Some("email"));
        assert_eq!(Medium::Whatsapp.address_kind(), Some("phone"));
        assert_eq!(Medium::Webhook.address_kind(), None);
        assert_eq!(Manifest::parse(GOOD).unwrap().channel, None);
        let connector = GOOD.replace("\"channel\"", "\"connector\"");
        for (text, why) in [
            (with(&connector, "medium = \"email\""), "for channels"),
            (with(GOOD, "medium = \"pigeon\""), "unknown variant"),
            (with(GOOD, ""), "missing field `medium`"),
        ] {
            let e = Manifest::parse(&text).unwrap_err().to_string();
            assert!(e.contains(why), "{why} in {e}");
        }
    }

    #[test]
    fn a_poll_section_is_for_connectors_with_an_interval() {
        let connector = GOOD.replace("\"channel\"", "\"connector\"");
        let with_poll = |text: &str, poll: &str| format!("{text}[poll]\n{poll}\n");
        let m = Manifest::parse(&with_poll(&connector, "interval_secs = 60")).unwrap();
        assert_eq!(m.poll, Some(PollSpec { interval_secs: 60 }));
        assert_eq!(Manifest::parse(&connector).unwrap().poll, None);
        let cases = [
            (with_poll(GOOD, "interval_secs = 60"), "for connectors"),
            (
                with_poll(&connector, "interval_secs = 0"),
                "within 1..=604800",
            ),
            (
                with_poll(&connector, "interval_secs = 18446744073709551615"),
                "within 1..=604800",
            ),
            (
                with_poll(&connector, "interval_secs = 604801"),
                "not 604801",
            ),
            (with_poll(&connector, "interval_secs = -5"), "invalid value"),
            (with_poll(&connector, ""), "missing field `interval_secs`"),
            (
                with_poll(&connector, "interval_secs = 5\njitter = true"),
                "unknown field",
            ),
        ];
        for (text, want) in cases {
            let err = Manifest::parse(&text).unwrap_err().to_string();
            assert!(err.contains(want), "{err} should mention {want}");
        }
    }

    #[test]
    fn every_number_is_bounded() {
        let with = |limits: &str| GOOD.replace("memory_mb = 32\n", limits);
        for (field, bad) in [
            ("memory_mb", "0"),
            ("memory_mb", "65537"),
            ("timeout_ms", "0"),
            ("timeout_ms", "18446744073709551615"),
            ("http_response_bytes", "0"),
            ("http_response_bytes", "1073741825"),
            ("fuel", "0"),
            ("fuel", "18446744073709551615"),
        ] {
            let text = with(&format!("{field} = {bad}\n"));
            let err = Manifest::parse(&text).unwrap_err().to_string();
            assert!(
                err.contains(&format!("limits.{field} must be within 1..=")),
                "{field} = {bad}: {err}"
            );
        }
        Manifest::parse(&with("timeout_ms = 3600000\nfuel = 1000000\n")).unwrap();
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        let cases = [
            (GOOD.replace("description", "descripton"), "unknown field"),
            (GOOD.replace("\"channel\"", "\"mailer\""), "unknown variant"),
            (GOOD.replace("0.1.0", "one"), "semver"),
            (GOOD.replace("\"0.1\"", "\"9.0\""), "not served"),
            (
                GOOD.replace("webhook-channel", "Webhook Channel"),
                "must be 1-64",
            ),
            (
                GOOD.replace("hooks.example.com", "http://x"),
                "capabilities.http",
            ),
        ];
        for (text, want) in cases {
            let err = Manifest::parse(&text).unwrap_err().to_string();
            assert!(err.contains(want), "{err} should mention {want}");
        }
    }

    #[test]
    fn a_tcp_grant_is_an_address_or_a_config_key() {
        let with = |tcp: &str| GOOD.replace("[limits]", &format!("tcp = [{tcp}]\n[limits]"));
        let m = Manifest::parse(&with(r#""10.0.0.1:25", "config:server""#)).unwrap();
        assert_eq!(m.capabilities.tcp, ["10.0.0.1:25", "config:server"]);
        for bad in [r#""mail.example.com:25""#, r#""config:""#, r#""10.0.0.1""#] {
            let err = Manifest::parse(&with(bad)).unwrap_err().to_string();
            assert!(
                err.contains("neither ip:port nor config:<key>"),
                "{bad}: {err}"
            );
        }
    }
}
