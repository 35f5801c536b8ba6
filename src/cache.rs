//! The token cache: credential hash → what Warden decided about it, bounded in size, with
//! entries that never outlive their token and a short life for negative answers. Invalidation
//! bumps a generation so a store lookup that raced a revocation cannot re-insert stale data.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use http::HeaderValue;
use ipnet::IpNet;
use moka::sync::Cache;
use prometheus_client::metrics::counter::Counter;

use crate::store::{Hash, TokenKind};

/// Who a valid credential identifies, as the proxy needs it on every request.
#[derive(Debug)]
pub struct Identity {
    pub token_id: String,
    pub kind: TokenKind,
    pub client_id: String,
    pub account: String,
    pub user: Option<String>,
    pub audience: Option<String>,
    /// What the credential may do now: its own scopes as far as its client still grants them.
    pub scopes: Vec<String>,
    /// Where the token may be used from; empty: anywhere.
    pub trusted_ips: Vec<IpNet>,
    /// Where its client may call from now; empty: anywhere. Checked besides `trusted_ips`.
    pub client_trusted_ips: Vec<IpNet>,
    /// Unix seconds; `None` for long-lived credentials.
    pub expires_at: Option<i64>,
    /// Pre-built identity header values, so the hot path copies instead of formatting.
    pub client_id_header: HeaderValue,
    pub token_id_header: HeaderValue,
    pub scopes_header: HeaderValue,
    pub audience_header: Option<HeaderValue>,
    /// Set for a token of another issuer (`[[issuers]]`, see `idp.rs`); `None` for Warden's own.
    pub remote: Option<Arc<Remote>>,
}

/// What an identity from another issuer's token carries beyond Warden's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    /// The issuer's `name`.
    pub issuer: String,
    /// Every audience of the token (`Identity::audience` is the first).
    pub audiences: Vec<String>,
    /// Where its idempotency records are kept (`gate::idempotency::namespace`).
    pub namespace: String,
}

impl Identity {
    /// Whether the credential was issued for `audience`: its audience, or for a token of another
    /// issuer, any of its audiences.
    pub fn has_audience(&self, audience: &str) -> bool {
        self.audience.as_deref() == Some(audience)
            || self
                .remote
                .as_ref()
                .is_some_and(|r| r.audiences.iter().any(|a| a == audience))
    }

    /// Whether `ip` may use this credential: both the token's and its client's networks.
    pub fn allows_ip(&self, ip: IpAddr) -> bool {
        let within = |nets: &[IpNet]| nets.is_empty() || crate::net::is_trusted(ip, nets);
        within(&self.trusted_ips) && within(&self.client_trusted_ips)
    }
}

/// A cached decision.
#[derive(Debug, Clone)]
pub enum Cached {
    Valid(Arc<Identity>),
    /// Unknown, revoked, disabled or expired: the answer is 401 until the entry ages out.
    Invalid,
}

struct Entry {
    value: Cached,
    ttl: Duration,
}

impl Clone for Entry {
    fn clone(&self) -> Self {
        Self {
            value: self.value.clone(),
            ttl: self.ttl,
        }
    }
}

struct PerEntry;

impl moka::Expiry<Hash, Entry> for PerEntry {
    fn expire_after_create(&self, _key: &Hash, value: &Entry, _now: Instant) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// The hit and miss counters of a cache. They count once the metrics have attached them
/// (`Metrics::count_lookups`); before that, and without metrics, a lookup costs a load and a
/// branch.
#[derive(Debug, Default)]
pub struct Lookups(OnceLock<[Counter; 2]>);

impl Lookups {
    /// Makes the lookups count into `hit` and `miss` (the first call wins).
    pub fn attach(&self, hit: Counter, miss: Counter) {
        let _ = self.0.set([hit, miss]);
    }

    /// A lookup the cache answered.
    pub fn hit(&self) {
        if let Some([hit, _]) = self.0.get() {
            hit.inc();
        }
    }

    /// A lookup the cache could not answer.
    pub fn miss(&self) {
        if let Some([_, miss]) = self.0.get() {
            miss.inc();
        }
    }
}

/// The bounded credential cache.
pub struct TokenCache {
    inner: Cache<Hash, Entry>,
    generation: AtomicU64,
    max_ttl: Duration,
    negative_ttl: Duration,
    /// `warden_cache_lookups_total{cache="token"}`, once metrics attach it.
    lookups: Lookups,
}

impl TokenCache {
    /// `capacity` entries at most; valid entries live at most `max_ttl` (and never past their
    /// token's expiry), invalid ones `negative_ttl`.
    pub fn new(capacity: u64, max_ttl: Duration, negative_ttl: Duration) -> Self {
        Self {
            inner: Cache::builder()
                .max_capacity(capacity)
                .expire_after(PerEntry)
                .build(),
            generation: AtomicU64::new(0),
            max_ttl,
            negative_ttl,
            lookups: Lookups::default(),
        }
    }

    /// Its hit and miss counters (a cached refusal is a hit too).
    pub fn lookups(&self) -> &Lookups {
        &self.lookups
    }

    /// The cached decision for a credential hash, if any.
    pub fn get(&self, hash: &Hash) -> Option<Cached> {
        let found = self.inner.get(hash).map(|e| e.value);
        match found {
            Some(_) => self.lookups.hit(),
            None => self.lookups.miss(),
        }
        found
    }

    /// The generation to pass to [`TokenCache::insert`] after a store lookup.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Caches a decision made from a store lookup that began at generation `seen`; dropped if
    /// anything was invalidated since. `now` is unix seconds.
    pub fn insert(&self, hash: Hash, value: Cached, seen: u64, now: i64) {
        let ttl = match &value {
            Cached::Invalid => self.negative_ttl,
            Cached::Valid(id) => match id.expires_at {
                Some(end) if end <= now => return,
                Some(end) => self.max_ttl.min(Duration::from_secs((end - now) as u64)),
                None => self.max_ttl,
            },
        };
        if ttl.is_zero() {
            return;
        }
        if self.generation.load(Ordering::Acquire) != seen {
            return;
        }
        self.inner.insert(hash, Entry { value, ttl });
    }

    /// Forgets one credential (revoked, disabled, renamed…).
    pub fn invalidate(&self, hash: &Hash) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.inner.invalidate(hash);
    }

    /// Forgets everything (a client was disabled or changed).
    pub fn invalidate_all(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.inner.invalidate_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(expires_at: Option<i64>) -> Arc<Identity> {
        Arc::new(Identity {
            token_id: "t".into(),
            kind: TokenKind::Access,
            client_id: "c".into(),
            account: "a".into(),
            user: None,
            audience: None,
            scopes: vec![],
            trusted_ips: vec![],
            client_trusted_ips: vec![],
            expires_at,
            client_id_header: HeaderValue::from_static("c"),
            token_id_header: HeaderValue::from_static("t"),
            scopes_header: HeaderValue::from_static(""),
            audience_header: None,
            remote: None,
        })
    }

    #[test]
    fn an_insert_that_raced_an_invalidation_is_dropped() {
        let c = TokenCache::new(10, Duration::from_secs(60), Duration::from_secs(1));
        let seen = c.generation();
        c.invalidate(&[1; 32]);
        c.insert([1; 32], Cached::Valid(identity(None)), seen, 0);
        assert!(c.get(&[1; 32]).is_none());
        c.insert([1; 32], Cached::Valid(identity(None)), c.generation(), 0);
        assert!(c.get(&[1; 32]).is_some());
    }

    #[test]
    fn expired_tokens_are_never_cached() {
        let c = TokenCache::new(10, Duration::from_secs(60), Duration::from_secs(1));
        c.insert(
            [2; 32],
            Cached::Valid(identity(Some(100))),
            c.generation(),
            100,
        );
        assert!(c.get(&[2; 32]).is_none());
    }

    #[test]
    fn entries_do_not_outlive_their_token() {
        let c = TokenCache::new(10, Duration::from_secs(60), Duration::from_secs(1));
        c.insert(
            [3; 32],
            Cached::Valid(identity(Some(1001))),
            c.generation(),
            1000,
        );
        assert!(c.get(&[3; 32]).is_some());
        std::thread::sleep(Duration::from_millis(1100));
        assert!(c.get(&[3; 32]).is_none());
    }
}
