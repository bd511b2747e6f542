//! The `Origin` allowlist of WebSocket upgrades (`--allowed-origins`).
//!
//! A browser sends the page's origin with every WebSocket upgrade, so the list keeps pages
//! of other sites from opening sessions with a user's cookies or from the user's network
//! position. Clients that are not browsers send no `Origin` and may claim any, so the list
//! protects nothing against them; a request without `Origin` is let through.
//!
//! Origins compare case-insensitively, with the scheme's default port left out
//! (`https://a.example.com:443` is `https://a.example.com`).

use hyper::header::HeaderValue;

/// One allowlist entry: `*`, an exact origin (`https://app.example.com`,
/// `http://localhost:3000`), or any subdomain of a host (`https://*.example.com`, which
/// does not match `https://example.com` itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginPattern {
    Any,
    Exact(Origin),
    /// Scheme, `.` and the parent host (`.example.com`), and port.
    Subdomains(Origin),
}

/// An origin, lowercased, without its scheme's default port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    scheme: String,
    host: String,
    port: Option<u16>,
}

/// An allowlist entry that is not an origin pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{entry:?} is not `*`, an origin such as `https://app.example.com`, or `https://*.example.com`: {why}")]
pub struct OriginError {
    entry: String,
    why: &'static str,
}

impl OriginPattern {
    pub fn parse(entry: &str) -> Result<OriginPattern, OriginError> {
        let entry = entry.trim();
        if entry == "*" {
            return Ok(OriginPattern::Any);
        }
        let err = |why| OriginError { entry: entry.to_owned(), why };
        let origin = Origin::parse(entry).map_err(err)?;
        match origin.host.strip_prefix('*') {
            Some(parent) if parent.starts_with('.') && parent.len() > 1 && !parent.contains('*') => {
                Ok(OriginPattern::Subdomains(Origin { host: parent.to_owned(), ..origin }))
            }
            Some(_) => Err(err("a wildcard must be a whole leading label, as in `*.example.com`")),
            None if origin.host.contains('*') => Err(err("a wildcard must be a whole leading label")),
            None => Ok(OriginPattern::Exact(origin)),
        }
    }

    fn matches(&self, origin: &Origin) -> bool {
        match self {
            OriginPattern::Any => true,
            OriginPattern::Exact(o) => o == origin,
            OriginPattern::Subdomains(p) => {
                p.scheme == origin.scheme
                    && p.port == origin.port
                    && origin.host.len() > p.host.len()
                    && origin.host.ends_with(&p.host)
            }
        }
    }
}

impl Origin {
    /// `scheme://host[:port]`, nothing else (no path, no user info).
    fn parse(s: &str) -> Result<Origin, &'static str> {
        let (scheme, authority) = s.split_once("://").ok_or("no `scheme://`")?;
        let scheme = scheme.to_ascii_lowercase();
        let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
        if !scheme_ok {
            return Err("bad scheme");
        }
        if authority.is_empty() || authority.bytes().any(|b| b"/?#@ \\".contains(&b)) {
            return Err("an origin is a scheme and a host (and a port), without a path");
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !port.contains(']') => (host, Some(port.parse::<u16>().map_err(|_| "bad port")?)),
            _ => (authority, None),
        };
        if host.is_empty() {
            return Err("no host");
        }
        let default = match scheme.as_str() {
            "https" | "wss" => Some(443),
            "http" | "ws" => Some(80),
            _ => None,
        };
        let port = port.filter(|p| Some(*p) != default);
        Ok(Origin { scheme, host: host.to_ascii_lowercase(), port })
    }
}

/// The parsed allowlist; `None` allows any origin.
#[derive(Debug, Default)]
pub(crate) struct Origins(Option<Vec<OriginPattern>>);

impl Origins {
    /// Parses every entry. An entry that does not parse matches nothing (the binary refuses
    /// such a config first, in `GatewayConfig::validate`): a bad list refuses more, never
    /// less.
    pub(crate) fn new(entries: &[String]) -> Self {
        if entries.is_empty() {
            return Origins(None);
        }
        let patterns = entries
            .iter()
            .filter_map(|e| match OriginPattern::parse(e) {
                Ok(p) => Some(p),
                Err(e) => {
                    tracing::error!(error = %e, "allowed origin entry ignored");
                    None
                }
            })
            .collect();
        Origins(Some(patterns))
    }

    /// Whether an upgrade with this `Origin` header (if any) may proceed.
    pub(crate) fn allows(&self, origin: Option<&HeaderValue>) -> bool {
        let (Some(patterns), Some(origin)) = (&self.0, origin) else { return true };
        let Some(origin) = origin.to_str().ok().and_then(|o| Origin::parse(o).ok()) else {
            // `null` (a sandboxed or file: page) and garbage match only `*`.
            return patterns.contains(&OriginPattern::Any);
        };
        patterns.iter().any(|p| p.matches(&origin))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_match_exactly_by_subdomain_or_at_all() {
        let list = Origins::new(&[
            "https://app.example.com".into(),
            "http://localhost:3000".into(),
            "https://*.example.org".into(),
        ]);
        let cases: &[(Option<&str>, bool)] = &[
            (None, true),
            (Some("https://app.example.com"), true),
            (Some("HTTPS://App.Example.COM"), true),
            (Some("https://app.example.com:443"), true),
            (Some("https://app.example.com:8443"), false),
            (Some("http://app.example.com"), false),
            (Some("https://app.example.com.evil.net"), false),
            (Some("https://evil.com"), false),
            (Some("http://localhost:3000"), true),
            (Some("http://localhost"), false),
            (Some("https://a.example.org"), true),
            (Some("https://a.b.example.org"), true),
            (Some("https://example.org"), false),
            (Some("https://evilexample.org"), false),
            (Some("http://a.example.org"), false),
            (Some("null"), false),
            (Some("https://app.example.com/path"), false),
        ];
        for (origin, want) in cases {
            let header = origin.map(|o| HeaderValue::from_str(o).unwrap());
            assert_eq!(list.allows(header.as_ref()), *want, "{origin:?}");
        }
        let any = Origins::new(&["*".into()]);
        assert!(any.allows(Some(&HeaderValue::from_static("null"))));
        assert!(Origins::default().allows(Some(&HeaderValue::from_static("https://evil.com"))));
    }

    #[test]
    fn bad_patterns_are_refused_and_refuse_everything() {
        for bad in [
            "",
            "example.com",
            "https://",
            "https://a.com/path",
            "https://a.*.com",
            "https://*",
            "ftp//x",
            "https://a.com:99999",
            "https://*example.com",
        ] {
            assert!(OriginPattern::parse(bad).is_err(), "{bad:?} parsed");
        }
        let list = Origins::new(&["example.com".into()]);
        assert!(!list.allows(Some(&HeaderValue::from_static("https://example.com"))));
    }
}
