//! The client's IP address: the TCP peer's, or, when the peer is a trusted proxy
//! (`--trusted-proxies`), the one the proxies name in `Forwarded` (RFC 7239) or, without
//! that header, in `X-Forwarded-For`.
//!
//! Each proxy appends the address it received the request from, so the list is read from
//! the right: every address that is itself a trusted proxy is skipped, and the first one
//! that is not is the client. An entry that is not an address (`unknown`, an obfuscated
//! name, garbage) stops the walk at the proxy that wrote it. A client can put anything it
//! likes at the left of the list, and none of it is read unless every proxy to its right
//! is trusted.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hyper::header::{self, HeaderMap};

/// An IP network, written `10.0.0.0/8`, `2001:db8::/32`, or a bare address (a network of
/// one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// The network address, host bits cleared.
    addr: IpAddr,
    prefix: u8,
}

/// A trusted-proxy entry that is not an IP address or CIDR.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{entry:?} is not an IP address or CIDR: {why}")]
pub struct CidrError {
    entry: String,
    why: &'static str,
}

impl Cidr {
    pub fn parse(entry: &str) -> Result<Cidr, CidrError> {
        let err = |why| CidrError { entry: entry.to_owned(), why };
        let (ip, prefix) = match entry.trim().split_once('/') {
            Some((ip, prefix)) => (ip, Some(prefix)),
            None => (entry.trim(), None),
        };
        let addr: IpAddr = ip.parse().map_err(|_| err("bad address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(|| err("bad prefix length"))?,
        };
        Ok(Cidr { addr: network(addr, prefix), prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.addr.is_ipv4() && network(ip, self.prefix) == self.addr
    }
}

/// `ip` with every bit past `prefix` cleared.
fn network(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask))
        }
        IpAddr::V6(v6) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
        }
    }
}

/// The key the per-IP limits count under: an IPv4 address, or an IPv6 address's /64 (one
/// host usually holds a whole /64, so counting single IPv6 addresses would limit nothing).
pub(crate) fn limit_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        v4 @ IpAddr::V4(_) => v4,
        v6 => network(v6, 64),
    }
}

/// The peers whose forwarding headers are believed.
#[derive(Debug, Default)]
pub(crate) struct TrustedProxies(Vec<Cidr>);

impl TrustedProxies {
    /// Parses every entry; one that does not parse is left out (the binary refuses such a
    /// config before it starts, in `GatewayConfig::validate`), which trusts less, not more.
    pub(crate) fn new(entries: &[String]) -> Self {
        TrustedProxies(
            entries
                .iter()
                .filter_map(|e| match Cidr::parse(e) {
                    Ok(c) => Some(c),
                    Err(e) => {
                        tracing::error!(error = %e, "trusted proxy entry ignored");
                        None
                    }
                })
                .collect(),
        )
    }

    fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|c| c.contains(ip))
    }

    /// The address of the client behind a request that arrived from `peer` with `headers`.
    pub(crate) fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = peer.to_canonical();
        if !self.contains(client) {
            return client;
        }
        for hop in forwarded_for(headers).into_iter().rev() {
            let Some(ip) = hop else { break };
            client = ip;
            if !self.contains(ip) {
                break;
            }
        }
        client
    }
}

/// The addresses a request was forwarded for, left (first proxy's client) to right (the
/// last proxy's peer); `None` for an entry that is not an address. `Forwarded` wins over
/// `X-Forwarded-For` when both are present.
fn forwarded_for(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let forwarded = headers.get_all(header::FORWARDED);
    if forwarded.iter().next().is_some() {
        return forwarded
            .iter()
            .flat_map(|v| v.to_str().unwrap_or("?").split(','))
            .map(|element| {
                element
                    .split(';')
                    .filter_map(|pair| pair.split_once('='))
                    .find(|(name, _)| name.trim().eq_ignore_ascii_case("for"))
                    .and_then(|(_, node)| parse_node(node))
            })
            .collect();
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("?").split(','))
        .map(parse_node)
        .collect()
}

/// One hop: `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`, `[2001:db8::1]:4711`, each
/// possibly in double quotes (RFC 7239 quotes any value with a `:` or `[`).
fn parse_node(node: &str) -> Option<IpAddr> {
    let node = node.trim();
    let node = node.strip_prefix('"').and_then(|n| n.strip_suffix('"')).unwrap_or(node);
    let ip = if let Some(rest) = node.strip_prefix('[') {
        IpAddr::V6(rest.split_once(']')?.0.parse().ok()?)
    } else if node.bytes().filter(|b| *b == b':').count() == 1 {
        IpAddr::V4(node.split_once(':')?.0.parse().ok()?)
    } else {
        node.parse().ok()?
    };
    Some(ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidrs_parse_and_contain_what_they_should() {
        let cases: &[(&str, &str, bool)] = &[
            ("10.0.0.0/8", "10.200.3.4", true),
            ("10.0.0.0/8", "11.0.0.1", false),
            ("10.1.2.3/8", "10.9.9.9", true),
            ("192.168.1.7", "192.168.1.7", true),
            ("192.168.1.7", "192.168.1.8", false),
            ("0.0.0.0/0", "203.0.113.9", true),
            ("0.0.0.0/0", "2001:db8::1", false),
            ("::1", "::1", true),
            ("2001:db8::/32", "2001:db8:ffff::1", true),
            ("2001:db8::/32", "2001:db9::1", false),
            ("::/0", "2001:db8::1", true),
            ("127.0.0.0/8", "::ffff:127.0.0.1", true),
        ];
        for (cidr, addr, want) in cases {
            assert_eq!(Cidr::parse(cidr).unwrap().contains(ip(addr)), *want, "{cidr} contains {addr}");
        }
        for bad in ["", "10.0.0.0/33", "::/129", "10.0.0/8", "example.com", "10.0.0.0/x", "1.2.3.4/-1"] {
            assert!(Cidr::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn forwarded_addresses_are_believed_only_from_trusted_proxies() {
        let trusted = TrustedProxies::new(&["127.0.0.1".into(), "10.0.0.0/8".into()]);
        type Headers = &'static [(&'static str, &'static str)];
        let cases: &[(&str, Headers, &str)] = &[
            ("no header", &[], "127.0.0.1"),
            ("one hop", &[("x-forwarded-for", "203.0.113.7")], "203.0.113.7"),
            (
                "a client-written entry on the left is skipped",
                &[("x-forwarded-for", "1.1.1.1, 203.0.113.7")],
                "203.0.113.7",
            ),
            ("trusted hops are skipped", &[("x-forwarded-for", "203.0.113.7, 10.1.1.1, 10.2.2.2")], "203.0.113.7"),
            ("every hop trusted: the leftmost", &[("x-forwarded-for", "10.1.1.1, 10.2.2.2")], "10.1.1.1"),
            (
                "garbage stops at the proxy that wrote it",
                &[("x-forwarded-for", "203.0.113.7, junk, 10.2.2.2")],
                "10.2.2.2",
            ),
            (
                "two header lines in order",
                &[("x-forwarded-for", "203.0.113.7"), ("x-forwarded-for", "10.3.3.3")],
                "203.0.113.7",
            ),
            ("a port", &[("x-forwarded-for", "203.0.113.7:5555")], "203.0.113.7"),
            ("ipv6", &[("x-forwarded-for", "2001:db8::7")], "2001:db8::7"),
            ("forwarded", &[("forwarded", "for=203.0.113.7;proto=https")], "203.0.113.7"),
            (
                "forwarded, quoted v6 with a port",
                &[("forwarded", r#"For="[2001:db8:cafe::17]:4711""#)],
                "2001:db8:cafe::17",
            ),
            (
                "forwarded wins over x-forwarded-for",
                &[("forwarded", "for=198.51.100.1"), ("x-forwarded-for", "203.0.113.7")],
                "198.51.100.1",
            ),
            ("forwarded unknown", &[("forwarded", "for=unknown")], "127.0.0.1"),
            ("forwarded without for", &[("forwarded", "proto=https")], "127.0.0.1"),
            ("forwarded, two elements", &[("forwarded", "for=203.0.113.7, for=10.9.9.9;by=10.0.0.1")], "203.0.113.7"),
        ];
        for (what, headers, want) in cases {
            let mut map = HeaderMap::new();
            for (name, value) in *headers {
                map.append(*name, value.parse().unwrap());
            }
            assert_eq!(trusted.client_ip(ip("127.0.0.1"), &map), ip(want), "{what}");
        }
        let mut map = HeaderMap::new();
        map.insert("x-forwarded-for", "203.0.113.7".parse().unwrap());
        assert_eq!(trusted.client_ip(ip("198.51.100.9"), &map), ip("198.51.100.9"), "an untrusted peer");
        assert_eq!(TrustedProxies::default().client_ip(ip("127.0.0.1"), &map), ip("127.0.0.1"), "nobody trusted");
    }

    #[test]
    fn ipv6_clients_count_by_their_64() {
        assert_eq!(limit_key(ip("2001:db8:1:2:3:4:5:6")), ip("2001:db8:1:2::"));
        assert_eq!(limit_key(ip("203.0.113.7")), ip("203.0.113.7"));
        assert_eq!(limit_key(ip("::ffff:203.0.113.7")), ip("203.0.113.7"));
    }
}
