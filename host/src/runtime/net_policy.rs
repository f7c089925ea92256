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

/// Why a destination was refused: an internal address the operator did not list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{addr} is a {reason} address; a plugin reaches it only when the operator lists it with \
     --allow-address"
)]
pub struct AddressRefused {
    /// The refused address.
    pub addr: SocketAddr,
    /// What kind of internal address it is.
    pub reason: &'static str,
}

/// Why an address is internal, for error messages; `None` for a public address.
///
/// Anything that is, embeds, translates to or routes to a non-public address counts: the
/// IANA special-purpose registries of both families, the IPv6 spellings of IPv4 addresses,
/// and every IPv6 address outside global unicast (`2000::/3`).
pub fn internal_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_reason(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            // `::ffff:a.b.c.d` is the IPv4 address itself on a dual-stack socket.
            Some(v4) => v4_reason(v4),
            None => v6_reason(v6),
        },
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
    } else if matches!(o[..3], [192, 0, 2] | [198, 51, 100] | [203, 0, 113]) {
        Some("documentation")
    } else if o[..3] == [192, 88, 99] {
        Some("6to4 relay anycast (deprecated)")
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
    } else if s[..6] == [0; 6] {
        // `::a.b.c.d`, deprecated; some stacks still route it to the IPv4 address.
        Some("IPv4-compatible (::/96)")
    } else if s[..6] == [0, 0, 0, 0, 0xffff, 0] {
        Some("IPv4-translated (SIIT, ::ffff:0:0/96)")
    } else if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] || (s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1)
    {
        // A NAT64 gateway turns it into any IPv4 address, internal ones included.
        Some("NAT64 (64:ff9b::/96, 64:ff9b:1::/48)")
    } else if s[..4] == [0x100, 0, 0, 0] {
        Some("discard-only (100::/64)")
    } else if s[0] == 0xfd00 && s[1] == 0x0ec2 {
        Some("metadata")
    } else if (s[0] & 0xfe00) == 0xfc00 {
        Some("unique local (private)")
    } else if (s[0] & 0xffc0) == 0xfe80 {
        Some("link-local")
    } else if (s[0] & 0xffc0) == 0xfec0 {
        Some("site-local (deprecated)")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if s[0] == 0x2002 {
        // 6to4 embeds an IPv4 address and goes through relays the host does not choose;
        // it is refused whatever it embeds (a public service has a native address).
        Some("6to4 (2002::/16)")
    } else if s[0] == 0x2001 && s[1] == 0 {
        // Teredo embeds a server and an (inverted) client IPv4 address.
        Some("Teredo (2001::/32)")
    } else if (s[0] == 0x2001 && s[1] == 0x0db8) || (s[0] == 0x3fff && s[1] < 0x1000) {
        Some("documentation (2001:db8::/32, 3fff::/20)")
    } else if s[0] == 0x2001 && s[1] < 0x0200 {
        // Benchmarking, ORCHID and other protocol assignments.
        Some("IETF protocol assignments (2001::/23)")
    } else if (s[0] & 0xe000) != 0x2000 {
        // Every unicast address in use is in 2000::/3; the rest (SRv6 5f00::/16 among
        // them) is reserved or special.
        Some("reserved (outside 2000::/3)")
    } else {
        None
    }
}

/// The verdict on one resolved address: allowed, or refused with the reason.
pub fn check_address(addr: SocketAddr, grants: &AddressGrants) -> Result<(), AddressRefused> {
    if grants.allows(addr) {
        return Ok(());
    }
    match internal_reason(addr.ip()) {
        Some(reason) => Err(AddressRefused { addr, reason }),
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

    /// Every IPv6 form that is, embeds or leads to an internal address, with the reason.
    #[test]
    fn ipv6_forms_of_internal_addresses_are_refused() {
        let none = AddressGrants::default();
        for (ip, reason) in [
            ("::1", "loopback"),
            ("::", "unspecified"),
            ("::127.0.0.1", "IPv4-compatible"),
            ("::169.254.169.254", "IPv4-compatible"),
            ("::8.8.8.8", "IPv4-compatible"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:169.254.169.254", "metadata"),
            ("::ffff:10.0.0.1", "private"),
            ("::ffff:0:127.0.0.1", "SIIT"),
            ("::ffff:0:8.8.8.8", "SIIT"),
            ("64:ff9b::7f00:1", "NAT64"),
            ("64:ff9b::a9fe:a9fe", "NAT64"),
            ("64:ff9b:1::7f00:1", "NAT64"),
            ("100::1", "discard-only"),
            ("100::ffff:ffff:ffff:ffff", "discard-only"),
            ("fd00:ec2::254", "metadata"),
            ("fd12:3456::1", "unique local"),
            ("fc00::1", "unique local"),
            ("fe80::1", "link-local"),
            ("febf::1", "link-local"),
            ("fec0::1", "site-local"),
            ("feff::1", "site-local"),
            ("ff02::1", "multicast"),
            ("2002:7f00:1::1", "6to4"),
            ("2002:a9fe:a9fe::1", "6to4"),
            ("2002:808:808::1", "6to4"),
            ("2001:0:4136:e378:8000:63bf:80ff:fffe", "Teredo"),
            ("2001::1", "Teredo"),
            ("2001:db8::1", "documentation"),
            ("2001:db8:ffff::1", "documentation"),
            ("3fff::1", "documentation"),
            ("3fff:fff::1", "documentation"),
            ("2001:2::1", "IETF protocol assignments"),
            ("2001:20::1", "IETF protocol assignments"),
            ("5f00::1", "reserved"),
            ("4000::1", "reserved"),
            ("1::1", "reserved"),
            ("e000::1", "reserved"),
        ] {
            let addr = SocketAddr::new(ip.parse().unwrap(), 80);
            let refused = check_address(addr, &none).expect_err(ip);
            assert!(
                refused.reason.contains(reason),
                "{ip}: `{}` should say {reason}",
                refused.reason
            );
        }
    }

    #[test]
    fn public_addresses_of_both_families_pass() {
        let none = AddressGrants::default();
        for ip in [
            "93.184.216.34",
            "8.8.8.8",
            "1.1.1.1",
            "192.0.3.1",
            "2606:4700:4700::1111",
            "2a00:1450:4001:81b::200e",
            "2001:200::1",
            "::ffff:8.8.8.8",
            "3ffe::1",
        ] {
            let addr = SocketAddr::new(ip.parse().unwrap(), 443);
            assert_eq!(check_address(addr, &none), Ok(()), "{ip}");
        }
    }

    #[test]
    fn documentation_and_relay_ipv4_ranges_are_refused() {
        let none = AddressGrants::default();
        for ip in ["192.0.2.1", "198.51.100.7", "203.0.113.9", "192.88.99.1"] {
            let addr = SocketAddr::new(ip.parse().unwrap(), 80);
            assert!(check_address(addr, &none).is_err(), "{ip}");
        }
    }

    #[test]
    fn an_operator_grant_opens_one_ipv6_form_only() {
        let grants = AddressGrants::parse(&["[fd00::5]:9000"]).unwrap();
        assert_eq!(
            check_address("[fd00::5]:9000".parse().unwrap(), &grants),
            Ok(())
        );
        assert!(check_address("[fd00::5]:9001".parse().unwrap(), &grants).is_err());
        assert!(check_address("[fd00::6]:9000".parse().unwrap(), &grants).is_err());
    }
}
