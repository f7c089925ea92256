//! The operator's configuration of the channel, read and checked into typed settings.

use std::net::SocketAddr;
use std::time::Duration;

use tessera_sdk::config;

use crate::mime::Mailbox;

/// One delivery attempt's timeout unless config `timeout_ms` says otherwise; below the
/// manifest's call limit, so a stalled server is a retryable timeout, not a killed call.
const DEFAULT_TIMEOUT_MS: u64 = 8000;

/// Why the settings cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// A key is missing or malformed: the operator must fix it.
    Invalid(String),
    /// `server` is a name the host could not resolve for this call (DNS may recover).
    Unresolved(String),
}

impl ConfigError {
    /// The reason, for the operator.
    pub fn message(&self) -> &str {
        match self {
            Self::Invalid(why) | Self::Unresolved(why) => why,
        }
    }
}

/// What the channel needs to deliver.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The server's address; the host grants this one only.
    pub server: SocketAddr,
    /// `From` when a message names no sender.
    pub from: Option<Mailbox>,
    /// The name given in EHLO; the sender's domain when unset.
    pub helo_name: Option<String>,
    /// Connect, read and write timeout of one attempt.
    pub timeout: Duration,
}

impl Settings {
    /// Reads the settings from the plugin's config; the error names the bad key.
    pub fn from_config() -> Result<Self, ConfigError> {
        let server = config::require("server").map_err(ConfigError::Invalid)?;
        let server = server.trim().parse::<SocketAddr>().map_err(|_| {
            if looks_like_host_port(&server) {
                // The host hands a name over only when it could not resolve it.
                ConfigError::Unresolved(format!(
                    "config key `server`: the host could not resolve `{server}`"
                ))
            } else {
                ConfigError::Invalid(format!(
                    "config key `server` must be ip:port or host:port, not `{server}`"
                ))
            }
        })?;
        let from = config::get("from")
            .filter(|f| !f.trim().is_empty())
            .map(|f| Mailbox::parse(&f, "config key `from`").map_err(|e| ConfigError::Invalid(e.0)))
            .transpose()?;
        let helo_name = config::get("helo_name").filter(|n| !n.trim().is_empty());
        if let Some(name) = &helo_name
            && !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.[]:".contains(&b))
        {
            return Err(ConfigError::Invalid(format!(
                "config key `helo_name`: `{name}` is not a host name"
            )));
        }
        let timeout_ms = config::parse::<u64>("timeout_ms")
            .map_err(ConfigError::Invalid)?
            .unwrap_or(DEFAULT_TIMEOUT_MS);
        if timeout_ms == 0 {
            return Err(ConfigError::Invalid(
                "config key `timeout_ms` must be above 0".into(),
            ));
        }
        Ok(Self {
            server,
            from,
            helo_name,
            timeout: Duration::from_millis(timeout_ms),
        })
    }
}

/// `name:port` with a plausible host name and a numeric port.
fn looks_like_host_port(value: &str) -> bool {
    value.trim().rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            && port.parse::<u16>().is_ok()
    })
}
