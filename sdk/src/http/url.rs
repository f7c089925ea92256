//! Splits an `http(s)://` URL into the parts `wasi:http` wants: scheme, authority, path.

use std::fmt;

use super::HttpError;

/// The URL schemes the client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Plain `http`.
    Http,
    /// `https`.
    Https,
}

impl Scheme {
    /// `http` or `https`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
        }
    }

    /// The port used when the URL names none.
    pub fn default_port(&self) -> u16 {
        match self {
            Self::Http => 80,
            Self::Https => 443,
        }
    }
}

/// An absolute `http` or `https` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// The scheme.
    pub scheme: Scheme,
    /// `host` or `host:port` as written (IPv6 hosts keep their brackets).
    pub authority: String,
    /// The host name or address, lower case, without brackets.
    pub host: String,
    /// The port, when the URL names one.
    pub port: Option<u16>,
    /// The path and query, starting with `/`; the fragment is dropped.
    pub path_and_query: String,
}

fn invalid(url: &str, why: &str) -> HttpError {
    HttpError::InvalidRequest(format!("invalid URL `{url}`: {why}"))
}

impl Url {
    /// Parses `url`; only `http` and `https` URLs without user info are accepted.
    pub fn parse(url: &str) -> Result<Self, HttpError> {
        if url.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return Err(invalid(url, "it contains spaces or control characters"));
        }
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| invalid(url, "it has no scheme"))?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            other => {
                return Err(invalid(
                    url,
                    &format!("scheme `{other}` is not http or https"),
                ));
            }
        };
        let rest = rest.split('#').next().unwrap_or_default();
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        if authority.contains('@') {
            return Err(invalid(url, "user info is not supported"));
        }
        let (host, port) =
            split_host_port(authority).ok_or_else(|| invalid(url, "bad host or port"))?;
        if host.is_empty() {
            return Err(invalid(url, "it has no host"));
        }
        let path_and_query = match path {
            "" => "/".to_string(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.to_string(),
        };
        Ok(Self {
            scheme,
            authority: authority.to_string(),
            host: host.to_ascii_lowercase(),
            port,
            path_and_query,
        })
    }

    /// The port to connect to: the URL's own or the scheme's default.
    pub fn port_or_default(&self) -> u16 {
        self.port.unwrap_or(self.scheme.default_port())
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}://{}{}",
            self.scheme.as_str(),
            self.authority,
            self.path_and_query
        )
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn split_host_port(authority: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':')?)),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port = match port {
        None => None,
        Some(p) => Some(p.parse::<u16>().ok()?),
    };
    Some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_scheme_authority_and_path() {
        let url = Url::parse("https://Hooks.Example.com:8443/in?x=1#frag").unwrap();
        assert_eq!(url.scheme, Scheme::Https);
        assert_eq!(url.authority, "Hooks.Example.com:8443");
        assert_eq!(url.host, "hooks.example.com");
        assert_eq!(url.port, Some(8443));
        assert_eq!(url.path_and_query, "/in?x=1");
    }

    #[test]
    fn empty_path_becomes_root() {
        let url = Url::parse("http://127.0.0.1:9000").unwrap();
        assert_eq!(url.path_and_query, "/");
        assert_eq!(url.port_or_default(), 9000);
        assert_eq!(Url::parse("http://a.test?q").unwrap().path_and_query, "/?q");
    }

    #[test]
    fn ipv6_hosts_keep_their_port() {
        let url = Url::parse("http://[::1]:8080/x").unwrap();
        assert_eq!(url.host, "::1");
        assert_eq!(url.port, Some(8080));
    }

    #[test]
    fn rejects_other_schemes_and_junk() {
        for bad in [
            "mailto:ada@example.com",
            "ftp://example.com/",
            "https://",
            "https://user:pw@example.com/",
            "https://example.com:99999/",
            "https://exa mple.com/",
            "example.com/path",
        ] {
            assert!(Url::parse(bad).is_err(), "{bad} should be rejected");
        }
    }
}
