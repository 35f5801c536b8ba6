//! The global network policy, `server.allow_ips` and `server.deny_ips`: the first check of every
//! request but health probes, before any credential lookup or body read. The per-client and
//! per-token lists are the bearer check's and the issuer's.

use std::net::IpAddr;

use ipnet::IpNet;

use super::client_ip::is_trusted;

/// Which addresses may call at all. IPv4 and IPv6 CIDRs; an IPv4-mapped IPv6 address counts as
/// the IPv4 address it carries.
#[derive(Debug, Clone, Default)]
pub struct Allowlist {
    allow: Vec<IpNet>,
    deny: Vec<IpNet>,
}

impl Allowlist {
    /// `allow` empty means every address not denied; `deny` wins over `allow`.
    pub fn new(allow: Vec<IpNet>, deny: Vec<IpNet>) -> Self {
        Self { allow, deny }
    }

    /// Whether `ip` may call.
    pub fn permits(&self, ip: IpAddr) -> bool {
        !is_trusted(ip, &self.deny) && (self.allow.is_empty() || is_trusted(ip, &self.allow))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_empty_policy_lets_everyone_call() {
        assert!(Allowlist::default().permits(ip("203.0.113.1")));
        assert!(Allowlist::default().permits(ip("2001:db8::1")));
    }

    #[test]
    fn deny_wins_over_allow() {
        let list = Allowlist::new(nets(&["10.0.0.0/8"]), nets(&["10.6.6.0/24"]));
        assert!(list.permits(ip("10.1.2.3")));
        assert!(!list.permits(ip("10.6.6.6")));
        assert!(!list.permits(ip("192.0.2.1")));
    }

    #[test]
    fn ipv6_networks_and_mapped_addresses_are_understood() {
        let list = Allowlist::new(
            nets(&["2001:db8::/32", "192.0.2.0/24"]),
            nets(&["2001:db8:bad::/48"]),
        );
        assert!(list.permits(ip("2001:db8:1::5")));
        assert!(!list.permits(ip("2001:db8:bad::5")));
        assert!(list.permits(ip("::ffff:192.0.2.9")));
        assert!(!list.permits(ip("::1")));
    }
}
