//! The TCP addresses one call may connect to: the manifest's fixed `ip:port` grants, plus
//! the server named in each config key a `config:<key>` grant points at, resolved by the
//! host (guests have no name lookup) and handed to the guest as an `ip:port` in its config.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::net_policy::{AddressRefused, check_address};
use super::outbound::OutboundNet;

/// The prefix of a `capabilities.tcp` entry that names a config key instead of an address.
pub const CONFIG_PREFIX: &str = "config:";

/// Longest a call waits for one config key's name to resolve.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);

/// What one call is granted.
#[derive(Debug, Default)]
pub struct TcpGrant {
    /// Addresses the call may connect to.
    pub addrs: Vec<SocketAddr>,
    /// The config the guest sees when a name in it was replaced by its address.
    pub config: Option<Arc<Value>>,
    /// The config servers the operator's policy refused, by config key.
    pub refused: Vec<(String, AddressRefused)>,
}

/// The grant of one call. `fixed` are the manifest's addresses (checked when the version
/// was prepared); for each of `keys`, the config value `ip:port` or `host:port` is the
/// server: a name is resolved and the guest's config shows the first address the
/// operator's policy allows (else the first address, which the socket check then refuses).
/// A name that does not resolve is left as it is and grants nothing; the guest sees a name
/// it cannot connect to and says so.
pub async fn for_call(
    fixed: &[SocketAddr],
    keys: &[String],
    config: &Arc<Value>,
    net: &OutboundNet,
) -> TcpGrant {
    let mut grant = TcpGrant {
        addrs: fixed.to_vec(),
        ..TcpGrant::default()
    };
    for key in keys {
        let Some(value) = config.get(key).and_then(Value::as_str) else {
            continue;
        };
        let value = value.trim();
        let allowed = |addr: &SocketAddr| check_address(*addr, &net.grants).is_ok();
        if let Ok(addr) = value.parse::<SocketAddr>() {
            grant.admit(key, addr, net);
            continue;
        }
        let Some((host, port)) = split_host_port(value) else {
            continue;
        };
        let resolved = match tokio::time::timeout(RESOLVE_TIMEOUT, net.resolve(host, port)).await {
            Ok(Ok(addrs)) if !addrs.is_empty() => addrs,
            Ok(Ok(_)) => {
                tracing::warn!(key, name = host, "a TCP grant's name resolved to nothing");
                continue;
            }
            Ok(Err(e)) => {
                tracing::warn!(key, name = host, "a TCP grant's name did not resolve: {e}");
                continue;
            }
            Err(_) => {
                tracing::warn!(key, name = host, "a TCP grant's name timed out resolving");
                continue;
            }
        };
        let chosen = resolved
            .iter()
            .copied()
            .find(allowed)
            .unwrap_or(resolved[0]);
        grant.admit(key, chosen, net);
        let mut shown = grant.config.as_deref().unwrap_or(config).clone();
        if let Some(map) = shown.as_object_mut() {
            map.insert(key.clone(), Value::String(chosen.to_string()));
        }
        grant.config = Some(Arc::new(shown));
    }
    grant
}

impl TcpGrant {
    /// Grants `addr` (the server in config `key`) if the operator's policy allows it.
    fn admit(&mut self, key: &str, addr: SocketAddr, net: &OutboundNet) {
        match check_address(addr, &net.grants) {
            Ok(()) => self.addrs.push(addr),
            Err(refused) => self.refused.push((key.to_string(), refused)),
        }
    }
}

/// `host:port` with a non-empty host and a numeric port; `[v6]:port` parses as an address
/// before this is asked.
fn split_host_port(value: &str) -> Option<(&str, u16)> {
    let (host, port) = value.rsplit_once(':')?;
    let port = port.parse().ok()?;
    (!host.is_empty() && !host.contains(':')).then_some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::AddressGrants;
    use serde_json::json;

    fn net(granted: &[&str]) -> OutboundNet {
        OutboundNet::new(AddressGrants::parse(granted).unwrap()).with_resolver(|host, port| {
            let answer = match host {
                "mail.example.com" => vec![
                    SocketAddr::from(([127, 0, 0, 1], port)),
                    SocketAddr::from(([127, 0, 0, 2], port)),
                ],
                "public.example.com" => vec![SocketAddr::from(([93, 184, 216, 34], port))],
                _ => vec![],
            };
            Box::pin(async move { Ok(answer) })
        })
    }

    fn keys() -> Vec<String> {
        vec!["server".to_string()]
    }

    #[tokio::test]
    async fn an_address_in_config_is_granted_when_the_operator_allows_it() {
        let config = Arc::new(json!({"server": "127.0.0.1:2525", "from": "a@b.c"}));
        let grant = for_call(&[], &keys(), &config, &net(&["127.0.0.1:2525"])).await;
        assert_eq!(grant.addrs, vec!["127.0.0.1:2525".parse().unwrap()]);
        assert!(grant.config.is_none(), "the guest sees the config as set");

        let refused = for_call(&[], &keys(), &config, &net(&[])).await;
        assert!(
            refused.addrs.is_empty(),
            "loopback needs the operator's grant"
        );
    }

    #[tokio::test]
    async fn a_name_is_resolved_and_the_guest_sees_the_allowed_address() {
        let config = Arc::new(json!({"server": "mail.example.com:25"}));
        let grant = for_call(&[], &keys(), &config, &net(&["127.0.0.2:25"])).await;
        assert_eq!(grant.addrs, vec!["127.0.0.2:25".parse().unwrap()]);
        assert_eq!(grant.config.unwrap()["server"], "127.0.0.2:25");

        let public = Arc::new(json!({"server": "public.example.com:587"}));
        let grant = for_call(&[], &keys(), &public, &net(&[])).await;
        assert_eq!(grant.addrs, vec!["93.184.216.34:587".parse().unwrap()]);
    }

    #[tokio::test]
    async fn a_refused_or_unknown_server_grants_nothing() {
        let fixed: Vec<SocketAddr> = vec!["10.0.0.1:5432".parse().unwrap()];
        let internal = Arc::new(json!({"server": "mail.example.com:25"}));
        let grant = for_call(&fixed, &keys(), &internal, &net(&[])).await;
        assert_eq!(grant.addrs, fixed, "only the manifest's fixed grant");
        assert_eq!(
            grant.config.unwrap()["server"],
            "127.0.0.1:25",
            "the guest sees the address it will be refused"
        );
        for value in [json!("nowhere.example.com:25"), json!("no-port"), json!(25)] {
            let config = Arc::new(json!({ "server": value }));
            let grant = for_call(&[], &keys(), &config, &net(&["127.0.0.1"])).await;
            assert!(grant.addrs.is_empty() && grant.config.is_none(), "{value}");
        }
    }
}
