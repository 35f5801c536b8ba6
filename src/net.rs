//! Network membership: whether an address lies in configured networks (`trusted_proxies`,
//! address lists, a client's or a token's `trusted_ips`), IPv4-mapped IPv6 compared as IPv4.
//! Pure; it decides nothing about which networks to trust.

use std::net::IpAddr;

use ipnet::IpNet;

/// Whether `ip` lies in one of `nets`.
pub fn is_trusted(ip: IpAddr, nets: &[IpNet]) -> bool {
    let ip = canonical(ip);
    nets.iter().any(|n| n.contains(&ip))
}

/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) compares as the IPv4 address it carries.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}
