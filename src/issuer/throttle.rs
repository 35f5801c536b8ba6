//! Throttling of failed client authentications, so that secrets cannot be guessed online, and
//! so that nobody can lock a client out from another address. It counts failures, decides who
//! must wait, and remembers where each client last succeeded; it checks no secret itself.
//!
//! Three counters live for `tokens.failed_auth_window` from their first failure:
//! - one client id from one address (`tokens.max_failed_auth`): the address must wait before
//!   trying that client again, the right secret included;
//! - one address, whatever the client id (`tokens.max_failed_auth_per_ip`);
//! - one client id, from anywhere (`tokens.max_failed_auth_per_client`): past it, the client id
//!   is refused only from addresses where it has not authenticated successfully within
//!   `tokens.known_address_ttl`, so a distributed guesser is braked while the client's own
//!   deployments keep getting tokens.
//!
//! Client ids are kept as their SHA-256 and IPv6 addresses by their /64, so an entry has a fixed
//! size whatever the caller sends, and one IPv6 host (which usually holds a whole /64) counts
//! once. An id that no client can have (not `scope::valid_id`) is counted per address only.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use moka::sync::Cache;

use crate::store::Hash;

/// The most counters (and, apart, the most remembered successes) kept; past it, the least
/// used are forgotten first. Entries are fixed-size: about 380 bytes each with the cache's own
/// bookkeeping (measured), so each table stays under about 40 MB however many are tried.
const CAPACITY: u64 = 100_000;

/// The thresholds, from `[tokens]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Failures of one client id from one address.
    pub per_pair: u32,
    /// Failures from one address, whatever the client id.
    pub per_address: u32,
    /// Failures of one client id from anywhere, before unknown addresses are refused.
    pub per_client: u32,
    /// How long a counter lives from its first failure.
    pub window: Duration,
    /// How long a successful authentication keeps its address known to its client.
    pub known_for: Duration,
}

/// What is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Pair(Hash, IpAddr),
    Address(IpAddr),
    Client(Hash),
}

/// One authentication attempt, as the limiter sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    /// SHA-256 of the client id; `None` when the id is not one a client could have.
    client: Option<Hash>,
    address: IpAddr,
}

impl Attempt {
    pub fn new(client_id: &str, ip: IpAddr) -> Self {
        Self {
            client: crate::scope::valid_id(client_id).then(|| crate::secret::hash(client_id)),
            address: crate::gate::client_ip::host_key(ip),
        }
    }

    /// Whether the id could name a client at all.
    pub fn has_valid_id(&self) -> bool {
        self.client.is_some()
    }
}

/// The failure counters and the known addresses.
pub struct FailureLimiter {
    counts: Cache<Key, Arc<AtomicU32>>,
    known: Option<Cache<Key, ()>>,
    limits: Limits,
}

impl FailureLimiter {
    pub fn new(limits: Limits) -> Self {
        let known = (!limits.known_for.is_zero()).then(|| {
            Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_live(limits.known_for)
                .build()
        });
        Self {
            counts: Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_live(limits.window)
                .build(),
            known,
            limits,
        }
    }

    /// What `Retry-After` says to a refused caller: the window (a counter may end sooner).
    pub fn retry_after(&self) -> u64 {
        self.limits.window.as_secs().max(1)
    }

    fn count(&self, key: &Key) -> u32 {
        self.counts
            .get(key)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    fn is_known(&self, key: &Key) -> bool {
        self.known.as_ref().is_some_and(|k| k.contains_key(key))
    }

    /// Whether the attempt must be refused before its secret is even looked at.
    pub fn refused(&self, a: &Attempt) -> bool {
        if self.count(&Key::Address(a.address)) >= self.limits.per_address {
            return true;
        }
        let Some(client) = a.client else {
            return false;
        };
        let pair = Key::Pair(client, a.address);
        self.count(&pair) >= self.limits.per_pair
            || (self.count(&Key::Client(client)) >= self.limits.per_client && !self.is_known(&pair))
    }

    /// Counts a failed attempt.
    pub fn failed(&self, a: &Attempt) {
        let bump = |key: Key| {
            self.counts
                .get_with(key, || Arc::new(AtomicU32::new(0)))
                .fetch_add(1, Ordering::Relaxed);
        };
        bump(Key::Address(a.address));
        if let Some(client) = a.client {
            bump(Key::Pair(client, a.address));
            bump(Key::Client(client));
        }
    }

    /// Remembers that the client authenticated from this address.
    pub fn succeeded(&self, a: &Attempt) {
        if let (Some(known), Some(client)) = (&self.known, a.client) {
            known.insert(Key::Pair(client, a.address), ());
        }
    }

    #[cfg(test)]
    fn entries(&self) -> u64 {
        self.counts.run_pending_tasks();
        self.counts.entry_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_pair: u32, per_address: u32, per_client: u32) -> FailureLimiter {
        FailureLimiter::new(Limits {
            per_pair,
            per_address,
            per_client,
            window: Duration::from_secs(300),
            known_for: Duration::from_secs(3600),
        })
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn failures_from_one_address_do_not_lock_the_client_out_of_another() {
        let l = limiter(10, 20, 100);
        let attacker = Attempt::new("demo-client", ip("203.0.113.66"));
        for _ in 0..10 {
            assert!(!l.refused(&attacker));
            l.failed(&attacker);
        }
        assert!(l.refused(&attacker), "the attacker's address waits");
        let victim = Attempt::new("demo-client", ip("198.51.100.7"));
        assert!(!l.refused(&victim), "the victim elsewhere does not");
        let other = Attempt::new("other-client", ip("203.0.113.66"));
        assert!(
            !l.refused(&other),
            "other clients at the address wait only past its own limit"
        );
    }

    #[test]
    fn an_address_is_limited_across_client_ids() {
        let l = limiter(10, 5, 100);
        for i in 0..5 {
            let a = Attempt::new(&format!("client-{i}"), ip("203.0.113.66"));
            assert!(!l.refused(&a));
            l.failed(&a);
        }
        assert!(l.refused(&Attempt::new("client-9", ip("203.0.113.66"))));
        assert!(!l.refused(&Attempt::new("client-9", ip("203.0.113.67"))));
    }

    #[test]
    fn the_client_wide_brake_spares_addresses_where_the_client_succeeded() {
        let l = limiter(10, 20, 30);
        let home = Attempt::new("demo-client", ip("198.51.100.7"));
        l.succeeded(&home);
        for i in 0..30 {
            let a = Attempt::new("demo-client", ip(&format!("203.0.113.{i}")));
            assert!(!l.refused(&a));
            l.failed(&a);
        }
        assert!(
            l.refused(&Attempt::new("demo-client", ip("192.0.2.1"))),
            "a new address waits"
        );
        assert!(!l.refused(&home), "a known one does not");
        assert!(!l.refused(&Attempt::new("other-client", ip("192.0.2.1"))));
    }

    #[test]
    fn one_ipv6_slash_64_counts_as_one_address() {
        let l = limiter(3, 20, 100);
        for i in 1..=3 {
            let a = Attempt::new("demo-client", ip(&format!("2001:db8:1:2::{i:x}")));
            l.failed(&a);
        }
        assert!(l.refused(&Attempt::new("demo-client", ip("2001:db8:1:2:ffff::1"))));
        assert!(!l.refused(&Attempt::new("demo-client", ip("2001:db8:1:3::1"))));
        // An IPv4-mapped address is its IPv4 address.
        let mapped = Attempt::new("demo-client", ip("::ffff:192.0.2.1"));
        assert_eq!(mapped, Attempt::new("demo-client", ip("192.0.2.1")));
    }

    #[test]
    fn keys_have_a_fixed_size_and_impossible_ids_count_per_address_only() {
        // Whatever the caller sends, a key is a hash and an address.
        assert!(
            std::mem::size_of::<Key>() <= 64,
            "{}",
            std::mem::size_of::<Key>()
        );
        let l = limiter(10, 1_000_000, 100);
        let long = "x".repeat(16 * 1024);
        for i in 0..200u32 {
            let junk = format!("{long}{i}");
            let a = Attempt::new(&junk, ip("203.0.113.66"));
            assert!(!a.has_valid_id());
            l.failed(&a);
            // Not an id at all: a secret pasted in the wrong field, or garbage.
            l.failed(&Attempt::new(&format!("wdn cs {i}"), ip("203.0.113.66")));
        }
        assert_eq!(l.entries(), 1, "one counter: the address");
        l.failed(&Attempt::new("demo-client", ip("203.0.113.66")));
        assert_eq!(
            l.entries(),
            3,
            "a valid id adds its pair and client counters"
        );
    }
}
