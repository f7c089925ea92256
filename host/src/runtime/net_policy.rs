//! Which network destinations a plugin may reach: host allowlists and address checks.
//!
//! A name on the plugin's allowlist is necessary but not sufficient: the host resolves it and
//! refuses loopback, private, link-local, shared, multicast and cloud-metadata addresses unless
//! the operator listed that exact address. This closes SSRF through DNS names that point inward.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// One entry of a plugin's `capabilities.http` list: `host`, `host:port` or `*.suffix[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    host: String,
    wildcard: bool,
    port: Option<u16>,
}

impl HostPattern {
    /// Parses an allowlist entry; names are compared case-insensitively.
    pub fn parse(entry: &str) -> Result<Self, String> {
        let entry = entry.trim().to_ascii_lowercase();
        if entry.is_empty() || entry.contains('/') || entry.contains("://") {
            return Err(format!("`{entry}` is not a host or host:port"));
        }
        let (host, port) = split_host_port(&entry)?;
        let (host, wildcard) = match host.strip_prefix("*.") {
            Some(rest) if !rest.is_empty() && !rest.contains('*') => (rest.to_string(), true),
            Some(_) => {
                return Err(format!(
                    "`{entry}`: a wildcard needs a suffix like *.example.com"
                ));
            }
            None if host.contains('*') => return Err(format!("`{entry}`: `*` only as `*.suffix`")),
            None => (host, false),
        };
        Ok(Self {
            host,
            wildcard,
            port,
        })
    }

    /// True when `host` (lower case, no brackets) on `port` matches this entry.
    pub fn matches(&self, host: &str, port: u16) -> bool {
        if self.port.is_some_and(|p| p != port) {
            return false;
        }
        if self.wildcard {
            host.len() > self.host.len() + 1
                && host.ends_with(&self.host)
                && host.as_bytes()[host.len() - self.host.len() - 1] == b'.'
        } else {
            host == self.host
        }
    }
}

fn split_host_port(entry: &str) -> Result<(String, Option<u16>), String> {
    if let Some(rest) = entry.strip_prefix('[') {
        let (ip, tail) = rest
            .split_once(']')
            .ok_or_else(|| format!("`{entry}`: unclosed ["))?;
        let port = match tail.strip_prefix(':') {
            Some(p) => Some(p.parse().map_err(|_| format!("`{entry}`: bad port"))?),
            None if tail.is_empty() => None,
            None => return Err(format!("`{entry}`: junk after ]")),
        };
        return Ok((ip.to_string(), port));
    }
    match entry.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => {
            let port = port.parse().map_err(|_| format!("`{entry}`: bad port"))?;
            Ok((host.to_string(), Some(port)))
        }
        _ => Ok((entry.to_string(), None)),
    }
}

/// Addresses the operator allowed even though they are internal (e.g. a local test sink).
#[derive(Debug, Clone, Default)]
pub struct AddressGrants {
    entries: Vec<(IpAddr, Option<u16>)>,
}

impl AddressGrants {
    /// Parses `ip` or `ip:port` / `[ipv6]:port` entries.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, String> {
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.as_ref().trim();
            if let Ok(sa) = entry.parse::<SocketAddr>() {
                out.push((sa.ip(), Some(sa.port())));
            } else if let Ok(ip) = entry.parse::<IpAddr>() {
                out.push((ip, None));
            } else {
                return Err(format!("`{entry}` is not an IP address or IP:port"));
            }
        }
        Ok(Self { entries: out })
    }

    /// True when the operator listed this exact address (and port, if the entry had one).
    pub fn allows(&self, addr: SocketAddr) -> bool {
        self.entries
            .iter()
            .any(|(ip, port)| *ip == addr.ip() && port.is_none_or(|p| p == addr.port()))
    }
}

/// Why an address is internal, for error messages; `None` for a public address.
pub fn internal_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_reason(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return v4_reason(v4);
            }
            v6_reason(v6)
        }
    }
}

fn v4_reason(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_private() {
        Some("private")
    } else if o[0] == 169 && o[1] == 254 {
        // 169.254.169.254 is the cloud metadata service, inside link-local.
        Some("link-local or metadata")
    } else if ip.is_unspecified() || o[0] == 0 {
        Some("unspecified")
    } else if o[0] == 100 && (64..128).contains(&o[1]) {
        Some("shared (carrier-grade NAT)")
    } else if ip.is_multicast() || ip.is_broadcast() || o[0] >= 240 {
        Some("multicast or reserved")
    } else if o[0] == 192 && o[1] == 0 && o[2] == 0 {
        Some("IETF protocol assignments")
    } else if o[0] == 198 && (o[1] == 18 || o[1] == 19) {
        Some("benchmarking")
    } else {
        None
    }
}

fn v6_reason(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() {
        Some("unspecified")
    } else if (s[0] & 0xfe00) == 0xfc00 {
        Some("unique local (private)")
    } else if (s[0] & 0xffc0) == 0xfe80 {
        Some("link-local")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if s[0] == 0xfd00 && s[1] == 0x0ec2 {
        Some("metadata")
    } else if s[0] == 0x64 && s[1] == 0xff9b {
        // NAT64 can wrap any IPv4 address, internal ones included.
        Some("NAT64")
    } else {
        None
    }
}

/// The verdict on one resolved address: allowed, or refused with the reason.
pub fn check_address(addr: SocketAddr, grants: &AddressGrants) -> Result<(), String> {
    if grants.allows(addr) {
        return Ok(());
    }
    match internal_reason(addr.ip()) {
        Some(reason) => Err(format!(
            "{addr} is a {reason} address; only an address the operator lists is reachable"
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_matches_subdomains_only() {
        let p = HostPattern::parse("*.Example.com").unwrap();
        assert!(p.matches("api.example.com", 443));
        assert!(p.matches("a.b.example.com", 80));
        assert!(!p.matches("example.com", 443));
        assert!(!p.matches("badexample.com", 443));
    }

    #[test]
    fn port_pins_the_entry() {
        let p = HostPattern::parse("hooks.example.com:8443").unwrap();
        assert!(p.matches("hooks.example.com", 8443));
        assert!(!p.matches("hooks.example.com", 443));
        let v6 = HostPattern::parse("[::1]:9000").unwrap();
        assert!(v6.matches("::1", 9000));
    }

    #[test]
    fn bad_entries_are_refused() {
        for bad in [
            "",
            "http://x.com",
            "*",
            "a*.com",
            "x.com:port",
            "*.",
            "x.com/path",
        ] {
            assert!(HostPattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn internal_addresses_are_refused_unless_granted() {
        let none = AddressGrants::default();
        for a in [
            "127.0.0.1:80",
            "10.1.2.3:80",
            "192.168.1.1:80",
            "172.16.0.1:80",
            "169.254.169.254:80",
            "100.64.0.1:80",
            "0.0.0.0:80",
            "[::1]:80",
            "[fe80::1]:80",
            "[fd00::1]:80",
            "[::ffff:127.0.0.1]:80",
            "[fd00:ec2::254]:80",
        ] {
            assert!(check_address(a.parse().unwrap(), &none).is_err(), "{a}");
        }
        assert!(check_address("93.184.216.34:443".parse().unwrap(), &none).is_ok());
        let grants = AddressGrants::parse(&["127.0.0.1:9000"]).unwrap();
        assert!(check_address("127.0.0.1:9000".parse().unwrap(), &grants).is_ok());
        assert!(check_address("127.0.0.1:9001".parse().unwrap(), &grants).is_err());
    }
}
