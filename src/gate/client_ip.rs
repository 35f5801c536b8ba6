//! The client's address: the TCP peer, unless the peer is a trusted proxy, in which case
//! `X-Forwarded-For` is read from the right and the first address that is not a trusted proxy
//! wins. A peer outside `server.trusted_proxies` can never choose the address Warden believes.

use std::net::IpAddr;

use http::HeaderMap;
use ipnet::IpNet;

use crate::net::canonical;
pub use crate::net::is_trusted;

/// What Warden knows about the connection a request came on.
#[derive(Debug, Clone, Copy)]
pub struct Origin {
    /// The TCP peer.
    pub peer: IpAddr,
    /// Whether the peer is in `server.trusted_proxies`.
    pub peer_trusted: bool,
    /// Whether the client reached Warden over TLS.
    pub tls: bool,
}

/// Parses one `X-Forwarded-For` element: a bare IPv4/IPv6 address, `[v6]`, or either with a port.
fn parse_element(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    // `[v6]` or `[v6]:port`, nothing else after the bracket.
    if let Some(rest) = s.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        let port_ok = match after.strip_prefix(':') {
            Some(port) => !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()),
            None => after.is_empty(),
        };
        return port_ok
            .then(|| inside.parse::<std::net::Ipv6Addr>().ok())
            .flatten()
            .map(IpAddr::V6);
    }
    // a.b.c.d:port
    let (host, port) = s.rsplit_once(':')?;
    if port.bytes().all(|b| b.is_ascii_digit()) && !host.contains(':') {
        return host.parse().ok();
    }
    None
}

/// The client address Warden believes for a request from `peer`.
pub fn resolve(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let peer = canonical(peer);
    if trusted.is_empty() || !is_trusted(peer, trusted) {
        return peer;
    }
    let mut believed = peer;
    // Walk every X-Forwarded-For line, right to left: the rightmost entries were added by the
    // proxies nearest to us.
    let lines: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    for line in lines.iter().rev() {
        for element in line.rsplit(',') {
            if element.trim().is_empty() {
                continue;
            }
            match parse_element(element) {
                Some(ip) => {
                    let ip = canonical(ip);
                    if !is_trusted(ip, trusted) {
                        return ip;
                    }
                    believed = ip;
                }
                // Garbage from beyond the trusted chain: believe the last hop we trust.
                None => return believed,
            }
        }
    }
    believed
}

/// The address a per-host limit counts against (open connections, failed authentications): an
/// IPv4 address (IPv4-mapped IPv6 included) as it is, an IPv6 address by its /64, the smallest
/// network a single host is usually given.
pub fn host_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_it_claims() {
        let ip = resolve(
            "203.0.113.9".parse().unwrap(),
            &xff(&["1.2.3.4"]),
            &nets(&["10.0.0.0/8"]),
        );
        assert_eq!(ip.to_string(), "203.0.113.9");
    }

    #[test]
    fn trusted_peer_is_skipped_from_the_right() {
        let h = xff(&["6.6.6.6, 198.51.100.7", "10.0.0.2"]);
        let ip = resolve("10.0.0.1".parse().unwrap(), &h, &nets(&["10.0.0.0/8"]));
        assert_eq!(ip.to_string(), "198.51.100.7");
    }

    #[test]
    fn all_trusted_gives_the_leftmost() {
        let h = xff(&["10.0.0.3, 10.0.0.2"]);
        let ip = resolve("10.0.0.1".parse().unwrap(), &h, &nets(&["10.0.0.0/8"]));
        assert_eq!(ip.to_string(), "10.0.0.3");
    }

    #[test]
    fn garbage_stops_the_walk_at_the_last_trusted_hop() {
        let h = xff(&["1.1.1.1, bogus, 10.0.0.2"]);
        let ip = resolve("10.0.0.1".parse().unwrap(), &h, &nets(&["10.0.0.0/8"]));
        assert_eq!(ip.to_string(), "10.0.0.2");
    }

    #[test]
    fn ports_brackets_and_mapped_addresses_are_understood() {
        assert_eq!(
            parse_element("[2001:db8::1]:443"),
            Some("2001:db8::1".parse().unwrap())
        );
        assert_eq!(
            parse_element("192.0.2.1:8080"),
            Some("192.0.2.1".parse().unwrap())
        );
        assert_eq!(
            parse_element("2001:db8::1"),
            Some("2001:db8::1".parse().unwrap())
        );
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert!(is_trusted(mapped, &nets(&["10.0.0.0/8"])));
    }

    /// Found by `fuzzing::proptests::forwarded_for_follows_the_documented_walk`: text after
    /// the bracket was ignored, so garbage counted as an address.
    #[test]
    fn a_bracketed_element_is_ipv6_with_at_most_a_port() {
        for bad in [
            "[1.2.3.4]x",
            "[2001:db8::1]x",
            "[2001:db8::1]:4x",
            "[1.2.3.4]",
            "[::1]]",
        ] {
            assert_eq!(parse_element(bad), None, "{bad}");
        }
        for good in ["[2001:db8::1]", "[2001:db8::1]:443", " [::1]:80 "] {
            assert!(parse_element(good).is_some(), "{good}");
        }
        let h = xff(&["1.1.1.1, [1.2.3.4]x, 10.0.0.2"]);
        let ip = resolve("10.0.0.1".parse().unwrap(), &h, &nets(&["10.0.0.0/8"]));
        assert_eq!(ip.to_string(), "10.0.0.2");
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_any_forwarded_for(s in "\\PC{0,64}") {
            if let Ok(v) = HeaderValue::from_str(&s) {
                let mut h = HeaderMap::new();
                h.insert("x-forwarded-for", v);
                let _ = resolve("10.0.0.1".parse().unwrap(), &h, &nets(&["10.0.0.0/8"]));
            }
        }
    }
}
