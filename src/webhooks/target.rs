//! Where a delivery may go. A URL registered through the API or the CLI must be `https` (unless
//! `webhook_delivery.allow_http`) and must not lead to an address inside the network Warden
//! runs in: loopback, private, link-local, CGNAT, multicast, unspecified, reserved, the cloud
//! metadata addresses, or an IPv6 form that embeds one of those (IPv4-mapped, NAT64, 6to4),
//! unless `webhook_delivery.allow_private_targets` (local development). The name is resolved
//! and every address checked when the URL is registered, and again at every attempt, where
//! Warden connects to an address it has just checked (never resolving twice), so a DNS answer
//! that changes in between (DNS rebinding) gains nothing.
//!
//! Operator subscriptions (`[[webhooks]]` in the config file) are the operator's own choice
//! and may point at private addresses; the scheme rule holds for them too.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The longest URL accepted.
pub const MAX_URL_LEN: usize = 2048;

/// A parsed delivery URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The URL as given.
    pub url: String,
    pub https: bool,
    /// The host without brackets, lower case.
    pub host: String,
    /// The host as an address, when it is one.
    pub ip: Option<IpAddr>,
    pub port: u16,
    /// `host[:port]` as sent in `Host`.
    pub authority: String,
    /// Path and query, at least `/`.
    pub path_and_query: String,
}

/// Parses a delivery URL: `https://host[:port]/path?query` (`http` when `allow_http`), with a
/// host and no user info.
pub fn parse(url: &str, allow_http: bool) -> Result<Target, String> {
    if url.len() > MAX_URL_LEN {
        return Err(format!("a URL is at most {MAX_URL_LEN} characters"));
    }
    let uri: http::Uri = url
        .parse()
        .map_err(|_| "not a URL like https://hooks.example.com/warden".to_owned())?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") if allow_http => false,
        Some("http") => {
            return Err(
                "http is refused: deliveries go over https (webhook_delivery.allow_http is for \
                 local development)"
                    .into(),
            );
        }
        _ => return Err("the URL must start with https://".into()),
    };
    let authority = uri
        .authority()
        .ok_or_else(|| "the URL has no host".to_owned())?;
    if authority.as_str().contains('@') {
        return Err("the URL must not carry a user name or password".into());
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    if host.is_empty() {
        return Err("the URL has no host".into());
    }
    let ip = host.parse::<IpAddr>().ok();
    if ip.is_none()
        && !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        return Err("the host must be a DNS name or an IP address".into());
    }
    let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
    if port == 0 {
        return Err("port 0 is not a port".into());
    }
    let path_and_query = uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "/".to_owned());
    Ok(Target {
        url: url.to_owned(),
        https,
        host,
        ip,
        port,
        authority: authority.as_str().to_owned(),
        path_and_query,
    })
}

/// Why `ip` may not be a delivery target, or `None` when it may.
pub fn forbidden(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        (0, ..) => "unspecified (0.0.0.0/8)",
        (127, ..) => "loopback",
        (10, ..) | (172, 16..=31, _) | (192, 168, _) => "private",
        (100, 64..=127, _) => "shared address space (CGNAT, 100.64.0.0/10)",
        (169, 254, _) => "link-local (and cloud metadata)",
        (192, 0, 0) => "IETF protocol assignments (192.0.0.0/24)",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation",
        (198, 18..=19, _) => "benchmarking (198.18.0.0/15)",
        (224..=239, ..) => "multicast",
        (240..=255, ..) => "reserved or broadcast",
        _ => return None,
    })
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    if ip.is_unspecified() {
        return Some("unspecified (::)");
    }
    if ip.is_loopback() {
        return Some("loopback");
    }
    let embedded = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    // ::ffff:a.b.c.d (mapped) and ::a.b.c.d (compatible, deprecated): the IPv4 address decides.
    if s[..5] == [0; 5] && (s[5] == 0xffff || s[5] == 0) {
        return forbidden_v4(embedded(s[6], s[7]));
    }
    // NAT64 (RFC 6052): the well-known prefix carries an IPv4 address; the local-use one
    // (64:ff9b:1::/48) leads into the local network.
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return forbidden_v4(embedded(s[6], s[7]));
    }
    if s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1 {
        return Some("local-use NAT64 (64:ff9b:1::/48)");
    }
    // 6to4 (2002::/16) embeds the IPv4 address of its relay.
    if s[0] == 0x2002 {
        return forbidden_v4(embedded(s[1], s[2]));
    }
    Some(match s[0] {
        0x2001 if s[1] == 0 => "Teredo (2001::/32)",
        0x2001 if s[1] == 0x0db8 => "documentation (2001:db8::/32)",
        0x0100 if s[1..4] == [0, 0, 0] => "discard (100::/64)",
        x if x & 0xfe00 == 0xfc00 => "unique local (fc00::/7, with cloud metadata fd00:ec2::254)",
        x if x & 0xffc0 == 0xfe80 => "link-local",
        x if x & 0xffc0 == 0xfec0 => "site-local",
        x if x & 0xff00 == 0xff00 => "multicast",
        _ => return None,
    })
}

/// Who decides which addresses a delivery may reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Public addresses only: subscriptions registered through the API or the CLI.
    Public,
    /// Any address: operator subscriptions, or `webhook_delivery.allow_private_targets`.
    Any,
}

/// Why an attempt has no address to go to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unreachable {
    /// The name does not resolve (or to nothing).
    Unresolved(String),
    /// Every address it resolves to is refused.
    Refused(String),
}

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unresolved(why) | Self::Refused(why) => f.write_str(why),
        }
    }
}

/// The addresses `target` leads to that `reach` allows, resolved now: the check at every
/// attempt, whose caller connects to one of these and to nothing else.
pub async fn addresses(target: &Target, reach: Reach) -> Result<Vec<SocketAddr>, Unreachable> {
    let found: Vec<SocketAddr> = match target.ip {
        Some(ip) => vec![SocketAddr::new(ip, target.port)],
        None => tokio::net::lookup_host((target.host.as_str(), target.port))
            .await
            .map_err(|e| Unreachable::Unresolved(format!("{} does not resolve: {e}", target.host)))?
            .collect(),
    };
    if found.is_empty() {
        return Err(Unreachable::Unresolved(format!(
            "{} resolves to no address",
            target.host
        )));
    }
    if reach == Reach::Any {
        return Ok(found);
    }
    let mut refused = None;
    let allowed: Vec<SocketAddr> = found
        .into_iter()
        .filter(|a| match forbidden(a.ip()) {
            Some(why) => {
                refused.get_or_insert((a.ip(), why));
                false
            }
            None => true,
        })
        .collect();
    match (allowed.is_empty(), refused) {
        (true, Some((ip, why))) => Err(Unreachable::Refused(format!(
            "{} leads to {ip}, a {why} address: deliveries go to public addresses only",
            target.host
        ))),
        _ => Ok(allowed),
    }
}

/// The check at registration: every address the name resolves to must be allowed (a name that
/// resolves to a public and a private address is refused).
pub async fn check_registration(target: &Target, reach: Reach) -> Result<(), String> {
    if reach == Reach::Any {
        return Ok(());
    }
    let found: Vec<IpAddr> = match target.ip {
        Some(ip) => vec![ip],
        None => tokio::net::lookup_host((target.host.as_str(), target.port))
            .await
            .map_err(|_| "the URL's host does not resolve".to_owned())?
            .map(|a| a.ip())
            .collect(),
    };
    if found.is_empty() {
        return Err("the URL's host resolves to no address".to_owned());
    }
    for ip in found {
        // The address itself is not echoed: it would tell a caller what names resolve to
        // inside Warden's network.
        if let Some(why) = forbidden(ip) {
            return Err(format!(
                "the URL's host leads to a {why} address: deliveries go to public addresses only"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no(ip: &str) -> bool {
        forbidden(ip.parse().unwrap()).is_some()
    }

    #[test]
    fn inner_addresses_are_refused_and_public_ones_allowed() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "127.255.0.9",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "100.100.100.200",
            "169.254.169.254",
            "169.254.0.1",
            "192.0.0.8",
            "198.18.0.1",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::1",
            "2002:7f00:1::1",
            "2002:a00:1::",
            "fc00::1",
            "fd00:ec2::254",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "2001::1",
            "2001:db8::1",
            "100::1",
        ] {
            assert!(no(ip), "{ip} must be refused");
        }
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "192.169.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert!(!no(ip), "{ip} is public");
        }
    }

    #[test]
    fn urls_need_https_a_host_and_no_user_info() {
        let t = parse("https://Hooks.Example.com/in?x=1", false).unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path_and_query.as_str(), t.https),
            ("hooks.example.com", 443, "/in?x=1", true)
        );
        assert_eq!(
            parse("https://a.example", false).unwrap().path_and_query,
            "/"
        );
        let t = parse("http://[::1]:8080/x", true).unwrap();
        assert_eq!((t.ip, t.port), (Some("::1".parse().unwrap()), 8080));
        assert!(
            parse("http://a.example/", false)
                .unwrap_err()
                .contains("allow_http")
        );
        assert!(parse("ftp://a.example/", true).is_err());
        assert!(parse("https://user:pw@a.example/", false).is_err());
        assert!(parse("/relative", false).is_err());
        assert!(parse("https://a_b.example/", false).is_err());
        assert!(parse(&format!("https://a.example/{}", "x".repeat(2048)), false).is_err());
        assert!(parse("https://a.example:0/", false).is_err());
    }

    #[tokio::test]
    async fn names_are_checked_by_what_they_resolve_to() {
        let local = parse("https://localhost:9/", false).unwrap();
        let e = check_registration(&local, Reach::Public).await.unwrap_err();
        assert!(e.contains("loopback"), "{e}");
        assert!(addresses(&local, Reach::Public).await.is_err());
        check_registration(&local, Reach::Any).await.unwrap();
        assert!(!addresses(&local, Reach::Any).await.unwrap().is_empty());
        let meta = parse("https://169.254.169.254/latest", false).unwrap();
        assert!(check_registration(&meta, Reach::Public).await.is_err());
        let public = parse("https://1.1.1.1/", false).unwrap();
        assert_eq!(
            addresses(&public, Reach::Public).await.unwrap(),
            ["1.1.1.1:443".parse::<SocketAddr>().unwrap()]
        );
    }
}
