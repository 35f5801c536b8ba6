//! The issuer: Warden's own credentials. Authenticates clients (with failure rate limits),
//! mints access tokens and API keys, revokes them, and answers "who is this bearer?" for the
//! proxy through the token cache. The HTTP shapes of its endpoints live in `issuer/`.

pub mod auth;
mod bearer;
mod client_auth;
mod clients;
pub mod form;
mod issuance;
pub mod oauth;
mod scopes;
mod sweep;
pub mod throttle;
pub mod tokens_api;

pub use self::clients::{ClientKey, ClientSettings};
use self::issuance::new_token;
pub use self::scopes::{effective_scopes, narrow_scopes};
pub use self::sweep::feed_retention;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::HeaderValue;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::cache::TokenCache;
use crate::clock::Clock;
use crate::store::feed::Follower;
use crate::store::{Store, StoreError, TokenRecord};
use throttle::FailureLimiter;

/// `[tokens]`: Warden's own credentials (lifetimes, the cache, the authentication brakes, the
/// tokens API), as written and as used (`config/tokens.rs` checks it).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenSettings {
    pub realm: String,
    #[serde(with = "humantime_serde")]
    pub access_ttl: Duration,
    #[serde(with = "humantime_serde")]
    pub max_ttl: Duration,
    pub cache_capacity: u64,
    #[serde(with = "humantime_serde")]
    pub cache_ttl: Duration,
    #[serde(with = "humantime_serde")]
    pub negative_cache_ttl: Duration,
    pub forward_authorization: bool,
    #[serde(with = "humantime_serde")]
    pub secret_rotation_overlap: Duration,
    /// Failed authentications of one client id from one address within the window, after
    /// which that address waits (429); default 10. IPv6 addresses count by their /64.
    pub max_failed_auth: u32,
    /// Failed authentications from one address, whatever the client id; default 20.
    pub max_failed_auth_per_ip: u32,
    /// Failed authentications of one client id from anywhere, after which it is refused from
    /// addresses it has not authenticated from within `known_address_ttl`; default 100.
    pub max_failed_auth_per_client: u32,
    #[serde(with = "humantime_serde")]
    pub failed_auth_window: Duration,
    /// How long a successful client authentication exempts its address from the client-wide
    /// brake (`max_failed_auth_per_client`); default 24h, 0 = never.
    #[serde(with = "humantime_serde")]
    pub known_address_ttl: Duration,
    pub max_request_bytes: usize,
    /// How long the whole body of a request to Warden's own endpoints (`/v1/auth`,
    /// `/v1/oauth/*`, the tokens API) may take to arrive; default 10s (408 after it).
    #[serde(with = "humantime_serde")]
    pub request_read_timeout: Duration,
    /// The scope a credential must hold to manage its account's tokens; default `level://admin`.
    pub admin_scope: String,
    /// Longest token name (and disable reason) in characters; default 128.
    pub max_name_length: usize,
    /// How often, at most, a request reads the store's change marker to learn of changes made
    /// by other processes; default 1ms (0: on every request). Changes made through this
    /// instance take effect at once regardless.
    #[serde(with = "humantime_serde")]
    pub change_check_interval: Duration,
}

impl Default for TokenSettings {
    fn default() -> Self {
        Self {
            realm: "warden".into(),
            access_ttl: Duration::from_secs(3600),
            max_ttl: Duration::from_secs(3600),
            cache_capacity: 100_000,
            cache_ttl: Duration::from_secs(300),
            negative_cache_ttl: Duration::from_secs(5),
            forward_authorization: false,
            secret_rotation_overlap: Duration::from_secs(24 * 3600),
            max_failed_auth: 10,
            max_failed_auth_per_ip: 20,
            max_failed_auth_per_client: 100,
            failed_auth_window: Duration::from_secs(300),
            known_address_ttl: Duration::from_secs(24 * 3600),
            max_request_bytes: 16 * 1024,
            request_read_timeout: Duration::from_secs(10),
            admin_scope: "level://admin".into(),
            max_name_length: 128,
            change_check_interval: Duration::from_millis(1),
        }
    }
}

/// Why a client could not authenticate. The variants stay internal detail: callers answer
/// `invalid_client` for all but `RateLimited`, `IpNotAllowed` (only ever after the right
/// secret) and `Store`.
#[derive(Debug)]
pub enum ClientAuthError {
    UnknownClient,
    WrongSecret,
    Disabled,
    IpNotAllowed,
    RateLimited { retry_after: u64 },
    Store(StoreError),
}

/// Why an administrative operation (CLI) failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    Invalid(String),
    #[error("no such {0}")]
    NotFound(String),
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// Why a bearer credential was refused.
#[derive(Debug)]
pub enum BearerError {
    /// Unknown, revoked, disabled, expired, or its client is disabled.
    Invalid,
    Store(StoreError),
}

/// A freshly issued credential: its record and its value, which is shown this once.
pub struct Issued {
    pub record: TokenRecord,
    pub value: String,
}

/// The issuer and its caches, shared by all connections.
pub struct Issuer {
    store: Arc<dyn Store>,
    cache: Arc<TokenCache>,
    clock: Clock,
    cfg: TokenSettings,
    failures: FailureLimiter,
    failed_auth_total: AtomicU64,
    challenge: HeaderValue,
    invalid_challenge: HeaderValue,
    /// The process's one follower of the change feed; the token cache is a subscriber.
    feed: Arc<Follower>,
    /// The client ids the config file declares, once [`Issuer::apply_config_clients`] ran.
    declared: std::sync::Mutex<Option<Vec<String>>>,
}

impl Issuer {
    pub fn new(store: Arc<dyn Store>, cfg: TokenSettings, clock: Clock) -> Self {
        let realm = cfg.realm.clone();
        let challenge = HeaderValue::from_str(&format!("Bearer realm=\"{realm}\""))
            .unwrap_or_else(|_| HeaderValue::from_static("Bearer"));
        let invalid_challenge = HeaderValue::from_str(&format!(
            "Bearer realm=\"{realm}\", error=\"invalid_token\", error_description=\"the access token is unknown, expired, revoked or disabled\""
        ))
        .unwrap_or_else(|_| HeaderValue::from_static("Bearer error=\"invalid_token\""));
        let cache = Arc::new(TokenCache::new(
            cfg.cache_capacity,
            cfg.cache_ttl,
            cfg.negative_cache_ttl,
        ));
        let feed = Arc::new(Follower::new(store.clone(), cfg.change_check_interval));
        feed.subscribe(cache.clone());
        Self {
            cache,
            feed,
            failures: FailureLimiter::new(throttle::Limits {
                per_pair: cfg.max_failed_auth,
                per_address: cfg.max_failed_auth_per_ip,
                per_client: cfg.max_failed_auth_per_client,
                window: cfg.failed_auth_window,
                known_for: cfg.known_address_ttl,
            }),
            store,
            clock,
            cfg,
            failed_auth_total: AtomicU64::new(0),
            challenge,
            invalid_challenge,
            declared: std::sync::Mutex::new(None),
        }
    }

    /// Starts following the change feed from now: earlier changes concern nothing cached.
    pub async fn start_feed(&self) -> Result<(), StoreError> {
        self.feed.start().await
    }

    /// The process's one follower of the store's change feed (`tokens.change_check_interval`),
    /// for the other caches to subscribe to.
    pub fn feed(&self) -> &Arc<Follower> {
        &self.feed
    }

    /// Drops cached decisions about tokens and clients changed by any writer since the last
    /// look (through the feed, for every subscriber).
    async fn catch_up(&self) -> Result<(), StoreError> {
        self.feed.catch_up().await
    }

    /// The token cache's hit and miss counters (for the metrics).
    pub fn token_cache_lookups(&self) -> &crate::cache::Lookups {
        self.cache.lookups()
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    pub fn settings(&self) -> &TokenSettings {
        &self.cfg
    }

    /// `WWW-Authenticate` for a request with no credential (RFC 6750 §3.1: no error code).
    pub fn challenge(&self) -> HeaderValue {
        self.challenge.clone()
    }

    /// `WWW-Authenticate` for an unusable credential.
    pub fn invalid_challenge(&self) -> HeaderValue {
        self.invalid_challenge.clone()
    }

    /// Failed client authentications since start.
    pub fn failed_auth_total(&self) -> u64 {
        self.failed_auth_total.load(Ordering::Relaxed)
    }
}

/// CIDRs as stored (validated before storing); anything unparsable is skipped.
pub fn parse_nets(items: &[String]) -> Vec<IpNet> {
    items.iter().filter_map(|s| s.parse().ok()).collect()
}

#[cfg(test)]
mod tests;
