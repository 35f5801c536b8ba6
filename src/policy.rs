//! The route-policy vocabulary: what a route asks of a request (its authentication, signature
//! and idempotency modes), the origin clients sign against, and whether an address lies in a
//! configured network. Plain types and pure functions; the gates enforce them, `config/`
//! builds them, and this module depends on neither.

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
