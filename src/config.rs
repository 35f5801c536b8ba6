//! Configuration: built-in defaults, then the TOML file, then `WARDEN_…` environment variables
//! (`__` between levels), read into a raw serde shape and validated into typed [`Settings`].
//! Nothing here is parsed again per request; a bad value stops Warden before it binds.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use http::{Method, Uri};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

mod postgres;
pub use self::postgres::RawPostgres;

use crate::gate::idempotency::IdempotencyMode;
use crate::router::{AuthMode, PathPattern, Policy, Route, SignatureMode};

/// Why the configuration was refused. Each message names the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path} not found")]
    Missing { path: PathBuf },
    #[error("{key}: {detail}{source_name}")]
    Load {
        key: String,
        detail: String,
        source_name: String,
    },
    #[error("{key}: {detail}")]
    Invalid { key: String, detail: String },
}

fn invalid(key: impl Into<String>, detail: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        detail: detail.into(),
    }
}

// ------------------------------------------------------------------ raw shape

/// The configuration as written. Every struct refuses unknown keys.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub server: RawServer,
    pub upstream: RawUpstream,
    pub log: RawLog,
    pub endpoints: RawEndpoints,
    pub store: RawStore,
    pub tokens: RawTokens,
    pub signatures: RawSignatures,
    pub digest: RawDigest,
    pub idempotency: RawIdempotency,
    pub router: RawRouter,
    pub routes: Vec<RawRoute>,
    pub clients: Vec<RawClient>,
    pub webhook_delivery: crate::webhooks::config::RawWebhookDelivery,
    pub webhooks: Vec<crate::webhooks::config::RawWebhook>,
    /// `[[issuers]]`: identity providers whose access tokens are accepted (see `idp.rs`).
    pub issuers: Vec<crate::idp::settings::RawIssuer>,
    /// `[forward_auth]`: the decision cache of `endpoints.forward_auth`.
    pub forward_auth: crate::forward_auth::RawForwardAuth,
}

/// `[router]`: how request paths are compared with route patterns.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRouter {
    /// `router.case_insensitive`, default true: literal segments of route patterns compare
    /// ASCII-case-insensitively, so `/API/Admin` gets the policy of `/api/admin/**` (Express
    /// and ASP.NET Core route without case). false: byte for byte, for case-sensitive upstreams.
    pub case_insensitive: bool,
}

impl Default for RawRouter {
    fn default() -> Self {
        Self {
            case_insensitive: true,
        }
    }
}

/// `[signatures]`: the RFC 9421 policy. Defaults are the strict ones: a client that registered
/// a key must sign on bearer routes and on `/v1/auth`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSignatures {
    /// Routes that do not set `signature`; default `auto`.
    pub policy: SignatureMode,
    /// `POST`/`DELETE /v1/auth`; default `auto`.
    pub auth_endpoint: SignatureMode,
    /// The URL clients call (behind a load balancer); default "" = the request's own.
    pub public_url: String,
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    #[serde(with = "humantime_serde")]
    pub clock_skew: Duration,
    pub nonce: NonceMode,
    pub nonce_cache_capacity: u64,
    /// Most live nonces of one client; 0 (the default): a quarter of `nonce_cache_capacity`.
    pub nonce_cache_per_client: u64,
    /// Where nonces are claimed besides memory; default `auto`.
    pub nonce_store: NonceStoreMode,
    pub cover_if_present: Vec<String>,
    pub cover_always: Vec<String>,
    pub key_cache_capacity: u64,
    pub verify_batch_max: usize,
    /// The private key Warden signs responses of `sign_responses` routes with; "" = none.
    pub response_key_file: String,
    pub response_key_alg: String,
    pub response_key_id: String,
    pub response_max_bytes: u64,
}

impl Default for RawSignatures {
    fn default() -> Self {
        Self {
            policy: SignatureMode::Auto,
            auth_endpoint: SignatureMode::Auto,
            public_url: String::new(),
            max_age: Duration::from_secs(300),
            clock_skew: Duration::from_secs(30),
            nonce: NonceMode::Optional,
            nonce_cache_capacity: 200_000,
            nonce_cache_per_client: 0,
            nonce_store: NonceStoreMode::Auto,
            cover_if_present: [
                "authorization",
                "x-client-id",
                "x-idempotency-key",
                "idempotency-key",
            ]
            .map(String::from)
            .to_vec(),
            cover_always: Vec::new(),
            key_cache_capacity: 100_000,
            verify_batch_max: 64,
            response_key_file: String::new(),
            response_key_alg: "ed25519".into(),
            response_key_id: "warden".into(),
            response_max_bytes: 1 << 20,
        }
    }
}

/// Whether a signature may, must or must not carry a `nonce` (replay-checked when present).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NonceMode {
    /// Nonces are not looked at.
    Off,
    /// A nonce, when present, is refused if seen before within the signature window.
    Optional,
    /// Every signature must carry a nonce, refused if seen before.
    Required,
}

/// Where signature nonces are claimed (`signatures.nonce_store`): memory only (one process),
/// or also the store, so that every Warden on it refuses a nonce used at any of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NonceStoreMode {
    /// The store when it is PostgreSQL (replicas), memory with SQLite.
    #[default]
    Auto,
    /// This process's memory only.
    Memory,
    /// The store too: one write per signed request that carries a nonce.
    Store,
}

/// `[digest]`: RFC 9530 `Content-Digest` checks beyond those a signature requires.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawDigest {
    /// Check a `Content-Digest` that no verified signature covers (any proxied route); default true.
    pub verify_unsigned: bool,
}

impl Default for RawDigest {
    fn default() -> Self {
        Self {
            verify_unsigned: true,
        }
    }
}

/// `[idempotency]`: idempotency keys on bearer routes and `/v1/auth` (see [`IdempotencySettings`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawIdempotency {
    pub headers: Vec<String>,
    pub require_methods: Vec<String>,
    pub auth_endpoint: IdempotencyMode,
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    #[serde(with = "humantime_serde")]
    pub token_ttl: Duration,
    #[serde(with = "humantime_serde")]
    pub lease_margin: Duration,
    pub max_request_bytes: usize,
    pub max_response_bytes: usize,
    pub store_server_errors: bool,
    pub sweep_batch: u32,
    #[serde(with = "humantime_serde")]
    pub request_read_timeout: Duration,
    pub buffer_budget_bytes: usize,
}

impl Default for RawIdempotency {
    fn default() -> Self {
        Self {
            headers: vec!["idempotency-key".into(), "x-idempotency-key".into()],
            require_methods: vec!["POST".into()],
            auth_endpoint: IdempotencyMode::Auto,
            ttl: Duration::from_secs(24 * 3600),
            token_ttl: Duration::from_secs(600),
            lease_margin: Duration::from_secs(30),
            max_request_bytes: 1024 * 1024,
            max_response_bytes: 1024 * 1024,
            store_server_errors: false,
            sweep_batch: 1000,
            request_read_timeout: Duration::from_secs(30),
            buffer_budget_bytes: 64 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawStore {
    pub url: String,
    pub durability: Durability,
    #[serde(with = "humantime_serde")]
    pub sweep_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub token_retention: Duration,
    /// The secret that seals stored responses; "" (the default): `<database name>.seal-key`
    /// beside the database, made on first start (see `store::seal_key`).
    pub seal_key_file: String,
    /// `[store.postgres]`: used when `url` is `postgres://…`.
    pub postgres: RawPostgres,
}

impl Default for RawStore {
    fn default() -> Self {
        Self {
            url: "sqlite://data/warden.db".into(),
            durability: Durability::Normal,
            sweep_interval: Duration::from_secs(60),
            token_retention: Duration::from_secs(7 * 24 * 3600),
            seal_key_file: String::new(),
            postgres: RawPostgres::default(),
        }
    }
}

/// How hard the embedded store syncs: `normal` survives a crash of Warden (`kill -9`);
/// `full` also survives a power loss, at the cost of an fsync per write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    Normal,
    Full,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTokens {
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

impl Default for RawTokens {
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

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClient {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub account: Option<String>,
    pub secret_sha256: String,
    #[serde(default)]
    pub trusted_ips: Vec<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub keys: Vec<RawClientKey>,
    #[serde(default)]
    pub signature: SignatureMode,
}

fn yes() -> bool {
    true
}

/// `[[clients.keys]]`: one key, of one algorithm. A public key is given inline (`public_key`)
/// or in a file (`public_key_file`); an `hmac-sha256` secret only through `secret_file` or
/// `secret_env`, read at start and held in memory, never in the config nor the store.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClientKey {
    pub id: String,
    #[serde(default = "ed25519")]
    pub alg: String,
    #[serde(default)]
    pub public_key: Option<String>,
    #[serde(default)]
    pub public_key_file: Option<PathBuf>,
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    #[serde(default)]
    pub secret_env: Option<String>,
}

fn ed25519() -> String {
    "ed25519".into()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawServer {
    pub listen: String,
    pub tls: Option<RawTls>,
    pub max_connections: usize,
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_body_bytes: u64,
    pub trusted_proxies: Vec<String>,
    pub allow_ips: Vec<String>,
    pub deny_ips: Vec<String>,
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    pub http2_max_concurrent_streams: u32,
    pub worker_threads: usize,
    #[serde(with = "humantime_serde")]
    pub body_read_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub http2_idle_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub http2_keep_alive_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub http2_keep_alive_timeout: Duration,
    pub max_connections_per_ip: usize,
}

impl Default for RawServer {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            tls: None,
            max_connections: 4096,
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 32 * 1024,
            max_body_bytes: 10 * 1024 * 1024,
            trusted_proxies: Vec::new(),
            allow_ips: Vec::new(),
            deny_ips: Vec::new(),
            shutdown_grace: Duration::from_secs(30),
            http2_max_concurrent_streams: 256,
            worker_threads: 0,
            body_read_timeout: Duration::from_secs(30),
            http2_idle_timeout: Duration::from_secs(60),
            http2_keep_alive_interval: Duration::from_secs(30),
            http2_keep_alive_timeout: Duration::from_secs(20),
            max_connections_per_ip: 256,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    #[serde(default = "tls_reload_interval", with = "humantime_serde")]
    pub reload_interval: Duration,
}

fn tls_reload_interval() -> Duration {
    Duration::from_secs(10)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawUpstream {
    pub url: String,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub pool_idle_timeout: Duration,
    pub pool_max_idle_per_host: usize,
    pub preserve_host: bool,
    #[serde(with = "humantime_serde")]
    pub body_idle_timeout: Duration,
}

impl Default for RawUpstream {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:3000".into(),
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(60),
            pool_idle_timeout: Duration::from_secs(90),
            pool_max_idle_per_host: 256,
            preserve_host: false,
            body_idle_timeout: Duration::from_secs(300),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLog {
    pub format: LogFormat,
    pub level: String,
    pub access: bool,
}

impl Default for RawLog {
    fn default() -> Self {
        Self {
            format: LogFormat::Plain,
            level: "info".into(),
            access: true,
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Plain,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawEndpoints {
    pub healthz: String,
    pub readyz: String,
    pub readyz_checks_upstream: bool,
    pub auth: String,
    pub oauth_token: String,
    pub oauth_revoke: String,
    pub oauth_introspect: String,
    /// Token management; must hold one `{account}` segment; "" turns it off.
    pub tokens: String,
    /// Webhook subscriptions of an account; one `{account}` segment; "" turns it off.
    pub webhooks: String,
    /// The forward-auth decision endpoint (nginx `auth_request`, Envoy `ext_authz`, Traefik,
    /// Caddy); default "" (off). Needs `server.trusted_proxies`.
    pub forward_auth: String,
    /// Prometheus metrics; default "" (off).
    pub metrics: String,
}

impl Default for RawEndpoints {
    fn default() -> Self {
        Self {
            healthz: "/healthz".into(),
            readyz: "/readyz".into(),
            readyz_checks_upstream: true,
            auth: "/v1/auth".into(),
            oauth_token: "/v1/oauth/token".into(),
            oauth_revoke: "/v1/oauth/revoke".into(),
            oauth_introspect: "/v1/oauth/introspect".into(),
            tokens: "/ws/accounts/{account}/credentials/tokens".into(),
            webhooks: "/ws/accounts/{account}/webhooks".into(),
            forward_auth: String::new(),
            metrics: String::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub path: String,
    #[serde(default)]
    pub methods: Vec<String>,
    pub auth: AuthMode,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub signature: Option<SignatureMode>,
    #[serde(default)]
    pub public_url: Option<String>,
    #[serde(default)]
    pub signature_cover: Vec<String>,
    #[serde(default)]
    pub idempotency: Option<IdempotencyMode>,
    /// Scopes a credential must be granted, all of them (bearer routes only).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// The audience a credential must have been issued for (bearer routes only).
    #[serde(default)]
    pub audience: Option<String>,
    /// Whether Warden signs this route's responses (`signatures.response_key_file`).
    #[serde(default)]
    pub sign_responses: bool,
    /// `[routes.checks]`: `enforce` (default) or `report` per check (bearer routes only).
    #[serde(default)]
    pub checks: crate::checks::Checks,
}

// ------------------------------------------------------------------ typed settings

/// Validated settings: every string that matters on the request path is parsed here, once.
#[derive(Debug, Clone)]
pub struct Settings {
    pub server: ServerSettings,
    pub upstream: UpstreamSettings,
    pub log: RawLog,
    pub endpoints: EndpointSettings,
    pub store: RawStore,
    pub tokens: RawTokens,
    pub signatures: SignatureSettings,
    pub digest: RawDigest,
    pub idempotency: IdempotencySettings,
    pub clients: Vec<ClientSettings>,
    pub router: RawRouter,
    pub routes: Vec<Route>,
    /// `[webhook_delivery]` and `[[webhooks]]`.
    pub webhooks: crate::webhooks::config::WebhookSettings,
    /// `[[issuers]]`, validated; default none.
    pub issuers: Vec<crate::idp::settings::IssuerSettings>,
    /// `[forward_auth]`, validated.
    pub forward_auth: crate::forward_auth::ForwardAuthSettings,
}

/// `[idempotency]`, validated.
#[derive(Debug, Clone)]
pub struct IdempotencySettings {
    /// `idempotency.headers`, default `idempotency-key`, `x-idempotency-key`: the fields a key
    /// is read from (all present must agree); the first is named in `idempotency_key_missing`.
    pub headers: Vec<http::HeaderName>,
    /// `idempotency.require_methods`, default `["POST"]`: methods that must carry a key on
    /// `idempotency = "auto"` routes when the request is signed.
    pub require_methods: Vec<Method>,
    /// `idempotency.auth_endpoint`, default `auto`: keys on `POST /v1/auth`.
    pub auth_endpoint: IdempotencyMode,
    /// `idempotency.ttl`, default 24h: how long a proxied request's record answers retries.
    pub ttl: Duration,
    /// `idempotency.token_ttl`, default 10m: the same for `/v1/auth` (its record holds a token,
    /// sealed with a key derived from the client's secret).
    pub token_ttl: Duration,
    /// `idempotency.lease_margin`, default 30s: a reservation lasts `upstream.timeout` plus
    /// this before a crashed holder's key is taken over; a response still streaming half this
    /// margin after `upstream.timeout` is not recorded.
    pub lease_margin: Duration,
    /// `idempotency.max_request_bytes`, default 1 MiB: a keyed body without a checked
    /// `Content-Digest` is read whole to fingerprint it; larger ones get 413.
    pub max_request_bytes: usize,
    /// `idempotency.max_response_bytes`, default 1 MiB: larger responses stream on but are not
    /// kept; retries get 422 `idempotency_response_not_replayable`.
    pub max_response_bytes: usize,
    /// `idempotency.store_server_errors`, default false: 5xx responses free the key (retries
    /// run again) instead of being replayed.
    pub store_server_errors: bool,
    /// `idempotency.sweep_batch`, default 1000: the oldest records looked at (the expired
    /// ones among them deleted) per store transaction.
    pub sweep_batch: u32,
    /// `idempotency.request_read_timeout`, default 30s: a keyed body read whole for its
    /// fingerprint must have arrived within this time (408 `body_timeout`).
    pub request_read_timeout: Duration,
    /// `idempotency.buffer_budget_bytes`, default 64 MiB: the most bytes of keyed bodies held
    /// in memory for their fingerprint at once, all requests together; past it, 503
    /// `server_busy` with `Retry-After`.
    pub buffer_budget_bytes: usize,
}

/// The external origin clients sign against (`signatures.public_url`, or a route's
/// `public_url`): `@scheme`, `@authority` and a path prefix for `@path` / `@target-uri`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicUrl {
    /// `http` or `https`.
    pub scheme: String,
    /// `host[:port]` as configured.
    pub authority: String,
    /// A path the load balancer strips before Warden sees the request ("" for none).
    pub prefix: String,
}

/// `[signatures]`, validated.
#[derive(Debug, Clone)]
pub struct SignatureSettings {
    /// `signatures.policy`, default `auto`: the mode of routes that set no `signature`.
    pub policy: SignatureMode,
    /// `signatures.auth_endpoint`, default `auto`: the mode of `/v1/auth`.
    pub auth_endpoint: SignatureMode,
    /// `signatures.public_url`, default none (the request's own scheme and `Host`).
    pub public_url: Option<PublicUrl>,
    /// `signatures.max_age`, default 5m: oldest `created` accepted.
    pub max_age: Duration,
    /// `signatures.clock_skew`, default 30s: tolerance for `created` in the future and
    /// `expires` in the past.
    pub clock_skew: Duration,
    /// `signatures.nonce`, default `optional`.
    pub nonce: NonceMode,
    /// `signatures.nonce_cache_capacity`, default 200000 nonces remembered.
    pub nonce_cache_capacity: u64,
    /// `signatures.nonce_cache_per_client`, default a quarter of the capacity: most live
    /// nonces of one client.
    pub nonce_cache_per_client: u64,
    /// `signatures.nonce_store`, default `auto`: where nonces are claimed besides memory.
    pub nonce_store: NonceStoreMode,
    /// `signatures.cover_if_present`, default `authorization`, `x-client-id`,
    /// `x-idempotency-key`, `idempotency-key`: fields a signature must cover when the request has them.
    pub cover_if_present: Vec<http::HeaderName>,
    /// `signatures.cover_always`, default none: components every signature must cover.
    pub cover_always: Vec<String>,
    /// `signatures.key_cache_capacity`, default 100000 clients' parsed keys kept in memory.
    pub key_cache_capacity: u64,
    /// `signatures.verify_batch_max`, default 64: most signatures verified together (1 = each
    /// on its own).
    pub verify_batch_max: usize,
    /// `signatures.response_key_*`: the key of signed responses; `None` without a key file.
    pub response: Option<crate::response_signing::ResponseSigning>,
}

/// A client declared in config, validated.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    pub id: String,
    pub name: String,
    pub account: String,
    pub secret_sha256: [u8; 32],
    pub trusted_ips: Vec<IpNet>,
    pub scopes: Vec<String>,
    pub enabled: bool,
    pub keys: Vec<ClientKey>,
    /// `clients[].signature`, default `auto` (sign when a key is registered): how this client's
    /// signatures are required on routes whose mode is `auto`.
    pub signature: SignatureMode,
}

/// A signing key registered to a client (RFC 9421 `keyid`), parsed. An HMAC secret lives
/// only here (in memory); the store keeps the public bytes of the others.
#[derive(Debug, Clone)]
pub struct ClientKey {
    pub id: String,
    pub key: crate::httpsig::VerificationKey,
}

#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// `server.listen`, default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// `server.tls`: PEM certificate chain and private key; plaintext when absent.
    pub tls: Option<TlsFiles>,
    /// `server.max_connections`, default 4096: accepting pauses at the limit.
    pub max_connections: usize,
    /// `server.header_read_timeout`, default 10s (slowloris guard; also bounds the TLS handshake).
    pub header_read_timeout: Duration,
    /// `server.max_header_bytes`, default 32 KiB (431 past it).
    pub max_header_bytes: usize,
    /// `server.max_body_bytes`, default 10 MiB (413 past it).
    pub max_body_bytes: u64,
    /// `server.trusted_proxies`, default none: peers whose `X-Forwarded-*` are believed.
    pub trusted_proxies: Vec<IpNet>,
    /// `server.allow_ips`, default none (= every address): when set, only these networks may call.
    pub allow_ips: Vec<IpNet>,
    /// `server.deny_ips`, default none: networks refused whatever else allows them.
    pub deny_ips: Vec<IpNet>,
    /// `server.shutdown_grace`, default 30s.
    pub shutdown_grace: Duration,
    /// `server.http2_max_concurrent_streams`, default 256.
    pub http2_max_concurrent_streams: u32,
    /// `server.worker_threads`, default 0 (= `TOKIO_WORKER_THREADS` or one per CPU).
    pub worker_threads: usize,
    /// `server.body_read_timeout`, default 30s: the longest wait for the next frame of a
    /// request body (408 `body_timeout`, or the upstream connection cut); `None` ("0s"): none.
    pub body_read_timeout: Option<Duration>,
    /// `server.http2_idle_timeout`, default 60s: an HTTP/2 connection with no open stream for
    /// this long is closed (GOAWAY).
    pub http2_idle_timeout: Duration,
    /// `server.http2_keep_alive_interval`, default 30s: PING an HTTP/2 connection this often;
    /// `None` ("0s"): never.
    pub http2_keep_alive_interval: Option<Duration>,
    /// `server.http2_keep_alive_timeout`, default 20s: close an HTTP/2 connection whose PING is
    /// not acknowledged within this time.
    pub http2_keep_alive_timeout: Duration,
    /// `server.max_connections_per_ip`, default 256: most connections open at once from one
    /// peer address (an IPv6 peer counts by its /64), peers in `trusted_proxies` exempt;
    /// `None` (0): no cap.
    pub max_connections_per_ip: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// `server.tls.reload_interval`, default 10s: how often the files are read again and, when
    /// their contents changed, loaded for new handshakes (SIGHUP does it at once); `None`
    /// ("0s"): only on SIGHUP.
    pub reload_interval: Option<Duration>,
}

#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    /// `upstream.url`, default `http://127.0.0.1:3000`: scheme, authority and an optional base path.
    pub scheme: http::uri::Scheme,
    pub authority: http::uri::Authority,
    /// Base path without a trailing slash ("" for none).
    pub base_path: String,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    pub pool_idle_timeout: Duration,
    pub pool_max_idle_per_host: usize,
    pub preserve_host: bool,
    /// `upstream.body_idle_timeout`, default 5m: the longest wait for the next frame of an
    /// upstream response body once its head has arrived; past it the body is cut (the client
    /// sees it end with an error) and the upstream connection closed. `None` ("0s"): no limit.
    pub body_idle_timeout: Option<Duration>,
}

#[derive(Debug, Clone)]
pub struct EndpointSettings {
    pub healthz: String,
    pub readyz: String,
    pub readyz_checks_upstream: bool,
    pub auth: String,
    pub oauth_token: String,
    pub oauth_revoke: String,
    pub oauth_introspect: String,
    /// `endpoints.tokens`, default `/ws/accounts/{account}/credentials/tokens`; `None`: off.
    pub tokens: Option<crate::issuer::tokens_api::TokensBase>,
    /// `endpoints.webhooks`, default `/ws/accounts/{account}/webhooks`; `None`: off.
    pub webhooks: Option<crate::issuer::tokens_api::TokensBase>,
    /// `endpoints.forward_auth`, default off (`None`).
    pub forward_auth: Option<String>,
    /// `endpoints.metrics`, default off (`None`).
    pub metrics: Option<String>,
}

/// The `WARDEN_<SECTION>__<KEY>` variables. Only names with a `__` are keys: every key lives in
/// a section, and names without one are someone else's. Kubernetes sets `WARDEN_PORT`,
/// `WARDEN_SERVICE_HOST`, `WARDEN_PORT_8080_TCP…` for a Service named `warden` (service links),
/// and `warden dev-proxy` reads `WARDEN_DEV_KEY`; none of them may stop the sidecar from starting.
fn environment() -> Env {
    Env::prefixed("WARDEN_")
        .filter(|key| key.as_str().contains("__"))
        .split("__")
}

impl Settings {
    /// Loads defaults → `path` → environment, and validates. The file must exist.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        if !path.is_file() {
            return Err(ConfigError::Missing {
                path: path.to_path_buf(),
            });
        }
        let figment = Figment::from(Serialized::defaults(RawConfig::default()))
            .merge(Toml::file_exact(path))
            .merge(environment());
        Self::from_figment(figment)
    }

    /// Validates a configuration given as TOML text (no environment); for tests and tools.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let figment =
            Figment::from(Serialized::defaults(RawConfig::default())).merge(Toml::string(text));
        Self::from_figment(figment)
    }

    fn from_figment(figment: Figment) -> Result<Self, ConfigError> {
        let raw: RawConfig = figment.extract().map_err(|e| {
            let e = e
                .into_iter()
                .next()
                .unwrap_or_else(|| figment::Error::from("invalid"));
            ConfigError::Load {
                key: e.path.join(".").to_ascii_lowercase(),
                detail: e.kind.to_string(),
                source_name: e
                    .metadata
                    .as_ref()
                    .map(|m| match &m.source {
                        Some(src) => format!(" (in {src})"),
                        None => format!(" (from {})", m.name),
                    })
                    .unwrap_or_default(),
            }
        })?;
        Self::validate(raw)
    }

    /// Turns the raw shape into typed settings, naming the key of the first bad value.
    pub fn validate(raw: RawConfig) -> Result<Self, ConfigError> {
        let s = &raw.server;
        let listen: SocketAddr = s.listen.parse().map_err(|_| {
            invalid(
                "server.listen",
                format!("'{}' is not an address like 127.0.0.1:8080", s.listen),
            )
        })?;
        let tls = match &s.tls {
            None => None,
            Some(t) => {
                for (key, p) in [("server.tls.cert", &t.cert), ("server.tls.key", &t.key)] {
                    if !p.is_file() {
                        return Err(invalid(
                            key,
                            format!("{} is not a readable file", p.display()),
                        ));
                    }
                }
                Some(TlsFiles {
                    cert: t.cert.clone(),
                    key: t.key.clone(),
                    reload_interval: Some(t.reload_interval).filter(|d| !d.is_zero()),
                })
            }
        };
        if s.max_connections == 0 {
            return Err(invalid("server.max_connections", "must be at least 1"));
        }
        if s.max_header_bytes < 8192 {
            return Err(invalid(
                "server.max_header_bytes",
                "must be at least 8192 (hyper's minimum buffer)",
            ));
        }
        if s.header_read_timeout.is_zero() {
            return Err(invalid("server.header_read_timeout", "must be more than 0"));
        }
        if s.http2_idle_timeout.is_zero() {
            return Err(invalid("server.http2_idle_timeout", "must be more than 0"));
        }
        if s.http2_keep_alive_timeout.is_zero() {
            return Err(invalid(
                "server.http2_keep_alive_timeout",
                "must be more than 0",
            ));
        }
        let trusted_proxies = parse_cidrs("server.trusted_proxies", &s.trusted_proxies)?;
        let allow_ips = parse_cidrs("server.allow_ips", &s.allow_ips)?;
        let deny_ips = parse_cidrs("server.deny_ips", &s.deny_ips)?;
        let signatures = validate_signatures(&raw.signatures)?;

        let u = &raw.upstream;
        let uri: Uri = u.url.parse().map_err(|_| {
            invalid(
                "upstream.url",
                format!("'{}' is not a URL like http://127.0.0.1:3000", u.url),
            )
        })?;
        let scheme = uri.scheme().cloned().ok_or_else(|| {
            invalid(
                "upstream.url",
                format!("'{}' has no scheme (http or https)", u.url),
            )
        })?;
        if scheme != http::uri::Scheme::HTTP && scheme != http::uri::Scheme::HTTPS {
            return Err(invalid(
                "upstream.url",
                format!("scheme '{scheme}' is not http or https"),
            ));
        }
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| invalid("upstream.url", format!("'{}' has no host", u.url)))?;
        if uri.query().is_some() {
            return Err(invalid("upstream.url", "must not carry a query"));
        }
        let base_path = uri.path().trim_end_matches('/').to_string();
        if u.timeout.is_zero() || u.connect_timeout.is_zero() {
            return Err(invalid("upstream.timeout", "timeouts must be more than 0"));
        }

        let e = &raw.endpoints;
        let own = [
            ("endpoints.healthz", &e.healthz),
            ("endpoints.readyz", &e.readyz),
            ("endpoints.auth", &e.auth),
            ("endpoints.oauth_token", &e.oauth_token),
            ("endpoints.oauth_revoke", &e.oauth_revoke),
            ("endpoints.oauth_introspect", &e.oauth_introspect),
        ];
        for (i, (key, p)) in own.iter().enumerate() {
            if !p.starts_with('/') {
                return Err(invalid(*key, format!("'{p}' must start with /")));
            }
            if own[..i].iter().any(|(_, q)| q == p) {
                return Err(invalid(
                    *key,
                    format!("'{p}' is already used by another endpoint"),
                ));
            }
        }
        let own_paths: Vec<&str> = own.iter().map(|(_, p)| p.as_str()).collect();
        let metrics = match e.metrics.as_str() {
            "" => None,
            p if !p.starts_with('/') => {
                return Err(invalid(
                    "endpoints.metrics",
                    format!("'{p}' must start with /"),
                ));
            }
            p if own_paths.contains(&p) => {
                return Err(invalid(
                    "endpoints.metrics",
                    format!("'{p}' is already used by another endpoint"),
                ));
            }
            p => Some(p.to_owned()),
        };
        let forward_auth =
            crate::forward_auth::validate_endpoint(&e.forward_auth, &trusted_proxies, &own_paths)?;

        let level = raw.log.level.clone();
        if tracing_subscriber::EnvFilter::try_new(&level).is_err() {
            return Err(invalid(
                "log.level",
                format!("'{level}' is not a level or filter like info or warden=debug"),
            ));
        }

        let mut routes = Vec::with_capacity(raw.routes.len());
        for (i, r) in raw.routes.iter().enumerate() {
            let key = format!("routes[{i}]");
            let pattern = PathPattern::parse(&r.path)
                .map_err(|detail| invalid(format!("{key}.path"), detail))?
                .case_insensitive(raw.router.case_insensitive);
            if raw.router.case_insensitive && !pattern.is_ascii() {
                // Case-insensitive upstreams fold non-ASCII letters too, in ways that differ.
                return Err(invalid(
                    format!("{key}.path"),
                    "non-ASCII text in a pattern needs router.case_insensitive = false",
                ));
            }
            let mut methods = Vec::with_capacity(r.methods.len());
            for m in &r.methods {
                let upper = m.to_ascii_uppercase();
                let method = Method::from_bytes(upper.as_bytes()).map_err(|_| {
                    invalid(
                        format!("{key}.methods"),
                        format!("'{m}' is not an HTTP method"),
                    )
                })?;
                methods.push(method);
            }
            let signature = r.signature.unwrap_or(signatures.policy);
            if r.auth == AuthMode::None
                && (r.signature.is_some_and(|m| m != SignatureMode::Off)
                    || !r.signature_cover.is_empty())
            {
                return Err(invalid(
                    format!("{key}.signature"),
                    "signatures need a caller identity: set auth = \"bearer\" on this route",
                ));
            }
            // Records are kept per client; a public route has none to keep them under.
            let idempotency = match (r.auth, r.idempotency) {
                (AuthMode::None, Some(IdempotencyMode::Required | IdempotencyMode::Optional)) => {
                    return Err(invalid(
                        format!("{key}.idempotency"),
                        "idempotency keys are kept per client: set auth = \"bearer\" on this route",
                    ));
                }
                (AuthMode::None, _) => IdempotencyMode::Off,
                (_, mode) => mode.unwrap_or_default(),
            };
            let public_url = r
                .public_url
                .as_deref()
                .map(|u| parse_public_url(&format!("{key}.public_url"), u))
                .transpose()?;
            let cover = validate_components(&format!("{key}.signature_cover"), &r.signature_cover)?;
            let require = validate_requirement(&key, r, &raw.tokens.realm)?;
            if r.auth == AuthMode::None && r.checks.any_report() {
                return Err(invalid(
                    format!("{key}.checks"),
                    "a public route runs no checks to report on: set auth = \"bearer\"",
                ));
            }
            if r.sign_responses && raw.signatures.response_key_file.trim().is_empty() {
                return Err(invalid(
                    format!("{key}.sign_responses"),
                    "needs a key: set signatures.response_key_file (warden keygen --out FILE)",
                ));
            }
            routes.push(Route {
                name: r.name.clone().unwrap_or_else(|| r.path.clone()),
                index: i,
                pattern,
                methods,
                policy: Policy {
                    auth: r.auth,
                    // Public routes have no client whose key could verify a signature.
                    signature: if r.auth == AuthMode::None {
                        SignatureMode::Off
                    } else {
                        signature
                    },
                    public_url,
                    cover,
                    idempotency,
                    require,
                    sign_responses: r.sign_responses,
                    checks: r.checks,
                },
            });
        }

        Ok(Settings {
            server: ServerSettings {
                listen,
                tls,
                max_connections: s.max_connections,
                header_read_timeout: s.header_read_timeout,
                max_header_bytes: s.max_header_bytes,
                max_body_bytes: s.max_body_bytes,
                trusted_proxies,
                allow_ips,
                deny_ips,
                shutdown_grace: s.shutdown_grace,
                http2_max_concurrent_streams: s.http2_max_concurrent_streams,
                worker_threads: s.worker_threads,
                body_read_timeout: Some(s.body_read_timeout).filter(|d| !d.is_zero()),
                http2_idle_timeout: s.http2_idle_timeout,
                http2_keep_alive_interval: Some(s.http2_keep_alive_interval)
                    .filter(|d| !d.is_zero()),
                http2_keep_alive_timeout: s.http2_keep_alive_timeout,
                max_connections_per_ip: Some(s.max_connections_per_ip).filter(|&n| n > 0),
            },
            upstream: UpstreamSettings {
                scheme,
                authority,
                base_path,
                connect_timeout: u.connect_timeout,
                timeout: u.timeout,
                pool_idle_timeout: u.pool_idle_timeout,
                pool_max_idle_per_host: u.pool_max_idle_per_host,
                preserve_host: u.preserve_host,
                body_idle_timeout: Some(u.body_idle_timeout).filter(|d| !d.is_zero()),
            },
            log: raw.log.clone(),
            endpoints: EndpointSettings {
                healthz: e.healthz.clone(),
                readyz: e.readyz.clone(),
                readyz_checks_upstream: e.readyz_checks_upstream,
                auth: e.auth.clone(),
                oauth_token: e.oauth_token.clone(),
                oauth_revoke: e.oauth_revoke.clone(),
                oauth_introspect: e.oauth_introspect.clone(),
                tokens: match e.tokens.as_str() {
                    "" => None,
                    base => Some(
                        crate::issuer::tokens_api::TokensBase::parse(base)
                            .map_err(|detail| invalid("endpoints.tokens", detail))?,
                    ),
                },
                webhooks: match e.webhooks.as_str() {
                    "" => None,
                    base if base == e.tokens => {
                        return Err(invalid(
                            "endpoints.webhooks",
                            "must differ from endpoints.tokens",
                        ));
                    }
                    base => Some(
                        crate::issuer::tokens_api::TokensBase::parse(base)
                            .map_err(|detail| invalid("endpoints.webhooks", detail))?,
                    ),
                },
                forward_auth,
                metrics,
            },
            store: validate_store(&raw.store)?,
            tokens: validate_tokens(&raw.tokens)?,
            signatures,
            digest: raw.digest.clone(),
            idempotency: validate_idempotency(&raw.idempotency, u.timeout)?,
            clients: validate_clients(&raw.clients)?,
            router: raw.router.clone(),
            routes,
            webhooks: crate::webhooks::config::validate(&raw.webhook_delivery, &raw.webhooks)?,
            issuers: crate::idp::settings::validate(&raw.issuers)?,
            forward_auth: crate::forward_auth::validate(&raw.forward_auth)?,
        })
    }
}

/// A route's `scopes` and `audience`, which only a bearer route can check.
fn validate_requirement(
    key: &str,
    r: &RawRoute,
    realm: &str,
) -> Result<crate::scope::Requirement, ConfigError> {
    if r.auth == AuthMode::None && (!r.scopes.is_empty() || r.audience.is_some()) {
        return Err(invalid(
            format!("{key}.scopes"),
            "scopes and audience need a caller identity: set auth = \"bearer\" on this route",
        ));
    }
    for (j, s) in r.scopes.iter().enumerate() {
        crate::scope::check(s)
            .map_err(|e| invalid(format!("{key}.scopes[{j}]"), format!("'{s}': {e}")))?;
    }
    if let Some(a) = &r.audience {
        if !valid_audience(a) {
            return Err(invalid(
                format!("{key}.audience"),
                format!("'{a}' must be 1-256 visible ASCII characters without spaces or quotes"),
            ));
        }
    }
    Ok(crate::scope::Requirement::new(
        realm,
        r.scopes.clone(),
        r.audience.clone(),
    ))
}

/// Whether `s` is a valid audience: 1-256 visible ASCII without space, `"` or `\`.
pub fn valid_audience(s: &str) -> bool {
    s.len() <= 256 && valid_scope(s)
}

fn validate_idempotency(
    r: &RawIdempotency,
    upstream_timeout: Duration,
) -> Result<IdempotencySettings, ConfigError> {
    if r.headers.is_empty() {
        return Err(invalid(
            "idempotency.headers",
            "must name at least one header",
        ));
    }
    let mut headers = Vec::with_capacity(r.headers.len());
    for (i, name) in r.headers.iter().enumerate() {
        let lower = name.to_ascii_lowercase();
        let header = http::HeaderName::from_bytes(lower.as_bytes()).map_err(|_| {
            invalid(
                format!("idempotency.headers[{i}]"),
                format!("'{name}' is not a header name"),
            )
        })?;
        headers.push(header);
    }
    let mut require_methods = Vec::with_capacity(r.require_methods.len());
    for m in &r.require_methods {
        let method = Method::from_bytes(m.to_ascii_uppercase().as_bytes()).map_err(|_| {
            invalid(
                "idempotency.require_methods",
                format!("'{m}' is not an HTTP method"),
            )
        })?;
        require_methods.push(method);
    }
    if r.lease_margin < Duration::from_secs(4) {
        return Err(invalid("idempotency.lease_margin", "must be at least 4s"));
    }
    if r.ttl <= upstream_timeout + r.lease_margin {
        return Err(invalid(
            "idempotency.ttl",
            "must be longer than upstream.timeout + idempotency.lease_margin (a record must outlive its lease)",
        ));
    }
    if r.token_ttl <= r.lease_margin {
        return Err(invalid(
            "idempotency.token_ttl",
            "must be longer than idempotency.lease_margin",
        ));
    }
    if r.sweep_batch == 0 {
        return Err(invalid("idempotency.sweep_batch", "must be at least 1"));
    }
    if r.request_read_timeout.is_zero() {
        return Err(invalid(
            "idempotency.request_read_timeout",
            "must be more than 0",
        ));
    }
    if r.buffer_budget_bytes < r.max_request_bytes {
        return Err(invalid(
            "idempotency.buffer_budget_bytes",
            "must be at least idempotency.max_request_bytes (one keyed body must fit)",
        ));
    }
    Ok(IdempotencySettings {
        headers,
        require_methods,
        auth_endpoint: r.auth_endpoint,
        ttl: r.ttl,
        token_ttl: r.token_ttl,
        lease_margin: r.lease_margin,
        max_request_bytes: r.max_request_bytes,
        max_response_bytes: r.max_response_bytes,
        store_server_errors: r.store_server_errors,
        sweep_batch: r.sweep_batch,
        request_read_timeout: r.request_read_timeout,
        buffer_budget_bytes: r.buffer_budget_bytes,
    })
}

fn validate_store(s: &RawStore) -> Result<RawStore, ConfigError> {
    if s.url.trim().is_empty() {
        return Err(invalid(
            "store.url",
            "must name a database, e.g. sqlite://data/warden.db",
        ));
    }
    let postgres = crate::store::postgres::is_postgres_url(&s.url);
    if !s.url.starts_with("sqlite:") && s.url.contains("://") && !postgres {
        return Err(invalid(
            "store.url",
            "only sqlite:// and postgres:// stores are supported by this build",
        ));
    }
    if postgres {
        s.postgres.validate()?;
        if s.seal_key_file.trim().is_empty() {
            return Err(invalid(
                "store.seal_key_file",
                "must name a key file when store.url is postgres://: every replica must seal \
                 with the same key (e.g. a Kubernetes Secret made with `openssl rand -hex 32`)",
            ));
        }
    }
    if s.sweep_interval.is_zero() {
        return Err(invalid("store.sweep_interval", "must be more than 0"));
    }
    Ok(s.clone())
}

fn validate_tokens(t: &RawTokens) -> Result<RawTokens, ConfigError> {
    if t.access_ttl.is_zero() {
        return Err(invalid("tokens.access_ttl", "must be more than 0"));
    }
    if t.max_ttl < t.access_ttl {
        return Err(invalid(
            "tokens.max_ttl",
            "must be at least tokens.access_ttl",
        ));
    }
    if t.cache_capacity == 0 {
        return Err(invalid("tokens.cache_capacity", "must be at least 1"));
    }
    if t.realm.is_empty() || t.realm.contains('"') || !t.realm.is_ascii() {
        return Err(invalid(
            "tokens.realm",
            "must be non-empty ASCII without quotes",
        ));
    }
    if t.request_read_timeout.is_zero() {
        return Err(invalid(
            "tokens.request_read_timeout",
            "must be more than 0",
        ));
    }
    if t.max_failed_auth == 0 {
        return Err(invalid("tokens.max_failed_auth", "must be at least 1"));
    }
    if t.max_failed_auth_per_ip == 0 {
        return Err(invalid(
            "tokens.max_failed_auth_per_ip",
            "must be at least 1",
        ));
    }
    if t.max_failed_auth_per_client == 0 {
        return Err(invalid(
            "tokens.max_failed_auth_per_client",
            "must be at least 1",
        ));
    }
    if t.known_address_ttl > Duration::from_secs(365 * 24 * 3600) {
        return Err(invalid("tokens.known_address_ttl", "must be at most 365d"));
    }
    crate::scope::check(&t.admin_scope)
        .map_err(|e| invalid("tokens.admin_scope", format!("'{}': {e}", t.admin_scope)))?;
    if t.max_name_length == 0 || t.max_name_length > 4096 {
        return Err(invalid("tokens.max_name_length", "must be 1 to 4096"));
    }
    Ok(t.clone())
}

/// Whether `s` is a valid client or key identifier: 1–128 of `A-Za-z0-9._:-`.
pub fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
}

/// Whether `s` is a valid OAuth scope token (RFC 6749 §3.3).
pub fn valid_scope(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
}

fn validate_clients(clients: &[RawClient]) -> Result<Vec<ClientSettings>, ConfigError> {
    let mut out: Vec<ClientSettings> = Vec::with_capacity(clients.len());
    for (i, c) in clients.iter().enumerate() {
        let key = format!("clients[{i}]");
        if !valid_id(&c.id) {
            return Err(invalid(
                format!("{key}.id"),
                format!("'{}' must be 1-128 of A-Z a-z 0-9 . _ : -", c.id),
            ));
        }
        if out.iter().any(|o| o.id == c.id) {
            return Err(invalid(
                format!("{key}.id"),
                format!("'{}' is declared twice", c.id),
            ));
        }
        let secret_sha256 = crate::secret::parse_sha256_hex(&c.secret_sha256).ok_or_else(|| {
            invalid(
                format!("{key}.secret_sha256"),
                "must be 64 hex digits (sha-256 of the secret)",
            )
        })?;
        let trusted_ips = parse_cidrs(&format!("{key}.trusted_ips"), &c.trusted_ips)?;
        for (j, s) in c.scopes.iter().enumerate() {
            crate::scope::check(s)
                .map_err(|e| invalid(format!("{key}.scopes[{j}]"), format!("'{s}': {e}")))?;
        }
        let mut keys = Vec::with_capacity(c.keys.len());
        for (j, k) in c.keys.iter().enumerate() {
            let kk = format!("{key}.keys[{j}]");
            if !valid_id(&k.id) {
                return Err(invalid(
                    format!("{kk}.id"),
                    format!("'{}' is not a valid key id", k.id),
                ));
            }
            if c.keys[..j].iter().any(|o| o.id == k.id) {
                return Err(invalid(
                    format!("{kk}.id"),
                    format!("'{}' is declared twice", k.id),
                ));
            }
            keys.push(ClientKey {
                id: k.id.clone(),
                key: load_client_key(&kk, k)?,
            });
        }
        out.push(ClientSettings {
            id: c.id.clone(),
            name: c.name.clone().unwrap_or_else(|| c.id.clone()),
            account: c.account.clone().unwrap_or_else(|| c.id.clone()),
            secret_sha256,
            trusted_ips,
            scopes: c.scopes.clone(),
            enabled: c.enabled,
            keys,
            signature: c.signature,
        });
        if c.signature == SignatureMode::Required && c.keys.is_empty() {
            return Err(invalid(
                format!("{key}.signature"),
                "\"required\" needs at least one [[clients.keys]] entry",
            ));
        }
    }
    Ok(out)
}

/// The key of one `[[clients.keys]]` entry: its algorithm, and exactly one source of the
/// key that suits it (a public key inline or in a file; an HMAC secret in a file or an env var).
fn load_client_key(
    kk: &str,
    k: &RawClientKey,
) -> Result<crate::httpsig::VerificationKey, ConfigError> {
    use crate::httpsig::Algorithm;
    let alg = Algorithm::from_name(&k.alg).ok_or_else(|| {
        invalid(
            format!("{kk}.alg"),
            format!("'{}' is not one of {}", k.alg, Algorithm::names()),
        )
    })?;
    let public = k.public_key.is_some() || k.public_key_file.is_some();
    let secret = k.secret_file.is_some() || k.secret_env.is_some();
    let read = |field: &str, path: &Path| {
        std::fs::read_to_string(path)
            .map_err(|e| invalid(format!("{kk}.{field}"), format!("{}: {e}", path.display())))
    };
    let (field, text) = if alg.is_symmetric() {
        if public {
            return Err(invalid(
                kk,
                "an hmac-sha256 key is a shared secret: never write it in the config; \
                 give it in secret_file or secret_env",
            ));
        }
        match (&k.secret_file, &k.secret_env) {
            (Some(path), None) => ("secret_file", read("secret_file", path)?),
            (None, Some(var)) => (
                "secret_env",
                std::env::var(var).map_err(|_| {
                    invalid(
                        format!("{kk}.secret_env"),
                        format!("${var} is not set (or not UTF-8)"),
                    )
                })?,
            ),
            _ => {
                return Err(invalid(
                    kk,
                    "give the secret in exactly one of secret_file and secret_env",
                ));
            }
        }
    } else {
        if secret {
            return Err(invalid(
                kk,
                format!("{alg} takes a public key (public_key or public_key_file), not a secret"),
            ));
        }
        match (&k.public_key, &k.public_key_file) {
            (Some(text), None) => ("public_key", text.clone()),
            (None, Some(path)) => ("public_key_file", read("public_key_file", path)?),
            _ => {
                return Err(invalid(
                    kk,
                    "give exactly one of public_key and public_key_file",
                ));
            }
        }
    };
    crate::httpsig::parse_verification_key(alg, &text)
        .map_err(|e| invalid(format!("{kk}.{field}"), e.to_string()))
}

fn validate_signatures(s: &RawSignatures) -> Result<SignatureSettings, ConfigError> {
    let public_url = match s.public_url.trim() {
        "" => None,
        u => Some(parse_public_url("signatures.public_url", u)?),
    };
    if s.max_age.is_zero() {
        return Err(invalid("signatures.max_age", "must be more than 0"));
    }
    if s.nonce_cache_capacity == 0 {
        return Err(invalid(
            "signatures.nonce_cache_capacity",
            "must be at least 1",
        ));
    }
    if s.nonce_cache_per_client > s.nonce_cache_capacity {
        return Err(invalid(
            "signatures.nonce_cache_per_client",
            "must not exceed signatures.nonce_cache_capacity (0: a quarter of it)",
        ));
    }
    let nonce_cache_per_client = match s.nonce_cache_per_client {
        0 => (s.nonce_cache_capacity / 4).max(1),
        n => n,
    };
    if s.verify_batch_max == 0 || s.verify_batch_max > 1024 {
        return Err(invalid(
            "signatures.verify_batch_max",
            "must be between 1 and 1024",
        ));
    }
    if s.key_cache_capacity == 0 {
        return Err(invalid(
            "signatures.key_cache_capacity",
            "must be at least 1",
        ));
    }
    let mut cover_if_present = Vec::with_capacity(s.cover_if_present.len());
    for (i, name) in s.cover_if_present.iter().enumerate() {
        let header = http::HeaderName::from_bytes(name.as_bytes())
            .ok()
            .filter(|h| h.as_str() == name)
            .ok_or_else(|| {
                invalid(
                    format!("signatures.cover_if_present[{i}]"),
                    format!("'{name}' is not a lowercase header name"),
                )
            })?;
        cover_if_present.push(header);
    }
    Ok(SignatureSettings {
        policy: s.policy,
        auth_endpoint: s.auth_endpoint,
        public_url,
        max_age: s.max_age,
        clock_skew: s.clock_skew,
        nonce: s.nonce,
        nonce_cache_capacity: s.nonce_cache_capacity,
        nonce_cache_per_client,
        nonce_store: s.nonce_store,
        cover_if_present,
        cover_always: validate_components("signatures.cover_always", &s.cover_always)?,
        key_cache_capacity: s.key_cache_capacity,
        verify_batch_max: s.verify_batch_max,
        response: match s.response_key_file.trim() {
            "" => None,
            file => Some(
                crate::response_signing::ResponseSigning::load(
                    file.into(),
                    &s.response_key_alg,
                    &s.response_key_id,
                    s.response_max_bytes,
                )
                .map_err(|(key, detail)| invalid(key, detail))?,
            ),
        },
    })
}

/// Component names a signature must cover: lowercase header names or request-derived
/// components (`@query`, `@scheme`, …).
fn validate_components(key: &str, names: &[String]) -> Result<Vec<String>, ConfigError> {
    const DERIVED: [&str; 7] = [
        "@method",
        "@target-uri",
        "@authority",
        "@scheme",
        "@request-target",
        "@path",
        "@query",
    ];
    for (i, name) in names.iter().enumerate() {
        let ok = if name.starts_with('@') {
            DERIVED.contains(&name.as_str())
        } else {
            http::HeaderName::from_bytes(name.as_bytes()).is_ok_and(|h| h.as_str() == name)
        };
        if !ok {
            return Err(invalid(
                format!("{key}[{i}]"),
                format!(
                    "'{name}' is not a lowercase header name or one of {}",
                    DERIVED.join(" ")
                ),
            ));
        }
    }
    Ok(names.to_vec())
}

/// Parses a public URL: `http(s)://host[:port][/prefix]`, no query.
fn parse_public_url(key: &str, url: &str) -> Result<PublicUrl, ConfigError> {
    let uri: Uri = url.parse().map_err(|_| {
        invalid(
            key,
            format!("'{url}' is not a URL like https://api.example.com"),
        )
    })?;
    let scheme = match uri.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("https") => "https",
        Some(s) if s.eq_ignore_ascii_case("http") => "http",
        _ => {
            return Err(invalid(
                key,
                format!("'{url}' must start with https:// or http://"),
            ));
        }
    };
    let authority = uri
        .authority()
        .filter(|a| !a.host().is_empty() && !a.as_str().contains('@'))
        .ok_or_else(|| invalid(key, format!("'{url}' has no host")))?;
    if uri.query().is_some() {
        return Err(invalid(key, "must not carry a query"));
    }
    Ok(PublicUrl {
        scheme: scheme.to_owned(),
        authority: authority.as_str().to_owned(),
        prefix: uri.path().trim_end_matches('/').to_owned(),
    })
}

/// Parses CIDRs (a bare address means a single host), naming `key[i]` on failure.
pub fn parse_cidrs(key: &str, items: &[String]) -> Result<Vec<IpNet>, ConfigError> {
    items
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let t = s.trim();
            t.parse::<IpNet>()
                .or_else(|_| t.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    invalid(
                        format!("{key}[{i}]"),
                        format!("'{s}' is not a CIDR like 10.0.0.0/8"),
                    )
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(toml: &str) -> String {
        Settings::from_toml(toml).unwrap_err().to_string()
    }

    #[test]
    fn defaults_alone_are_valid_and_deny_everything() {
        let s = Settings::from_toml("").unwrap();
        assert_eq!(s.server.listen.to_string(), "127.0.0.1:8080");
        assert!(s.routes.is_empty());
    }

    #[test]
    fn unknown_key_is_named() {
        let e = err("[server]\nlisten = \"127.0.0.1:1\"\nlisten_port = 3\n");
        assert!(e.contains("listen_port"), "{e}");
    }

    #[test]
    fn bad_address_is_named() {
        assert!(err("[server]\nlisten = \"nope\"\n").starts_with("server.listen:"));
    }

    #[test]
    fn bad_cidr_is_named_with_its_index() {
        let e = err("[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"10.0.0.0/99\"]\n");
        assert!(e.starts_with("server.trusted_proxies[1]:"), "{e}");
    }

    #[test]
    fn bare_address_is_a_host_cidr() {
        let s =
            Settings::from_toml("[server]\ntrusted_proxies = [\"10.1.2.3\", \"::1\"]\n").unwrap();
        assert_eq!(s.server.trusted_proxies[0].to_string(), "10.1.2.3/32");
        assert_eq!(s.server.trusted_proxies[1].to_string(), "::1/128");
    }

    #[test]
    fn upstream_without_scheme_is_refused() {
        assert!(err("[upstream]\nurl = \"127.0.0.1:3000\"\n").starts_with("upstream.url:"));
    }

    #[test]
    fn bad_duration_names_the_key() {
        let e = err("[upstream]\ntimeout = \"soon\"\n");
        assert!(e.contains("upstream.timeout"), "{e}");
    }

    #[test]
    fn route_errors_name_the_route() {
        let e = err(
            "[[routes]]\npath = \"/a\"\nauth = \"none\"\n[[routes]]\npath = \"x\"\nauth = \"none\"\n",
        );
        assert!(e.starts_with("routes[1].path:"), "{e}");
        let e = err("[[routes]]\npath = \"/a\"\nauth = \"magic\"\n");
        assert!(e.contains("auth"), "{e}");
    }

    #[test]
    fn routes_ignore_ascii_case_unless_told_otherwise() {
        let route = "[[routes]]\npath = \"/api/admin/**\"\nauth = \"none\"\n";
        let s = Settings::from_toml(route).unwrap();
        assert!(s.router.case_insensitive);
        assert!(s.routes[0].pattern.matches("/API/Admin/x"));
        let s =
            Settings::from_toml(&format!("[router]\ncase_insensitive = false\n{route}")).unwrap();
        assert!(!s.routes[0].pattern.matches("/API/Admin/x"));
        assert!(s.routes[0].pattern.matches("/api/admin/x"));
        let e = err("[[routes]]\npath = \"/café\"\nauth = \"none\"\n");
        assert!(
            e.starts_with("routes[0].path:") && e.contains("case_insensitive"),
            "{e}"
        );
        Settings::from_toml(
            "[router]\ncase_insensitive = false\n[[routes]]\npath = \"/café\"\nauth = \"none\"\n",
        )
        .unwrap();
        let e = err("[[routes]]\npath = \"/public/..;/x\"\nauth = \"none\"\n");
        assert!(
            e.starts_with("routes[0].path:") && e.contains("never match"),
            "{e}"
        );
    }

    #[test]
    fn route_scopes_and_token_api_keys_are_validated() {
        let e = err("[[routes]]\npath = \"/a\"\nauth = \"none\"\nscopes = [\"x://a\"]\n");
        assert!(e.starts_with("routes[0].scopes:"), "{e}");
        let e = err(
            "[[routes]]\npath = \"/a\"\nauth = \"bearer\"\nscopes = [\"x://a\", \"x://a..b\"]\n",
        );
        assert!(e.starts_with("routes[0].scopes[1]:"), "{e}");
        let e = err("[[routes]]\npath = \"/a\"\nauth = \"bearer\"\naudience = \"a b\"\n");
        assert!(e.starts_with("routes[0].audience:"), "{e}");
        assert!(err("[tokens]\nadmin_scope = \"\"\n").starts_with("tokens.admin_scope:"));
        assert!(err("[tokens]\nmax_name_length = 0\n").starts_with("tokens.max_name_length:"));
        let e = err("[endpoints]\ntokens = \"/ws/tokens\"\n");
        assert!(e.starts_with("endpoints.tokens:"), "{e}");
        let s = Settings::from_toml("[endpoints]\ntokens = \"\"\n").unwrap();
        assert!(s.endpoints.tokens.is_none());
    }

    #[test]
    fn signature_settings_default_to_auto_and_are_validated() {
        let s = Settings::from_toml("[[routes]]\npath = \"/a\"\nauth = \"bearer\"\n").unwrap();
        assert_eq!(s.routes[0].policy.signature, SignatureMode::Auto);
        assert_eq!(s.signatures.max_age, Duration::from_secs(300));
        assert_eq!(s.signatures.cover_if_present.len(), 4);
        let e = err("[[routes]]\npath = \"/a\"\nauth = \"none\"\nsignature = \"required\"\n");
        assert!(e.starts_with("routes[0].signature:"), "{e}");
        let e = err("[signatures]\ncover_always = [\"Content-Type\"]\n");
        assert!(e.starts_with("signatures.cover_always[0]:"), "{e}");
        let e = err("[signatures]\ncover_always = [\"@status\"]\n");
        assert!(e.starts_with("signatures.cover_always[0]:"), "{e}");
        let e = err("[signatures]\nnonce = \"sometimes\"\n");
        assert!(e.contains("signatures.nonce"), "{e}");
        assert_eq!(s.signatures.nonce_cache_per_client, 50_000, "a quarter");
        let s = Settings::from_toml("[signatures]\nnonce_cache_capacity = 3\n").unwrap();
        assert_eq!(s.signatures.nonce_cache_per_client, 1);
        let e = err("[signatures]\nnonce_cache_capacity = 9\nnonce_cache_per_client = 10\n");
        assert!(e.starts_with("signatures.nonce_cache_per_client:"), "{e}");
    }

    #[test]
    fn public_urls_are_parsed_once_with_their_prefix() {
        let s = Settings::from_toml(
            "[signatures]\npublic_url = \"https://API.example.com:8443/payments/\"\n\
             [[routes]]\npath = \"/a\"\nauth = \"bearer\"\npublic_url = \"http://b.example\"\n",
        )
        .unwrap();
        let global = s.signatures.public_url.unwrap();
        assert_eq!(
            (
                global.scheme.as_str(),
                global.authority.as_str(),
                global.prefix.as_str()
            ),
            ("https", "API.example.com:8443", "/payments")
        );
        assert_eq!(s.routes[0].policy.public_url.as_ref().unwrap().prefix, "");
        for bad in [
            "api.example.com",
            "ftp://a.example",
            "https://a.example/?q=1",
            "https://",
        ] {
            let e = err(&format!("[signatures]\npublic_url = {bad:?}\n"));
            assert!(e.starts_with("signatures.public_url:"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_client_required_to_sign_needs_a_key_and_address_lists_are_cidrs() {
        let e = err(
            "[[clients]]\nid = \"c\"\nsignature = \"required\"\nsecret_sha256 = \"\
             0000000000000000000000000000000000000000000000000000000000000000\"\n",
        );
        assert!(e.starts_with("clients[0].signature:"), "{e}");
        let e = err("[server]\ndeny_ips = [\"10.0.0.0/33\"]\n");
        assert!(e.starts_with("server.deny_ips[0]:"), "{e}");
        let s = Settings::from_toml("[server]\nallow_ips = [\"10.0.0.0/8\", \"2001:db8::/32\"]\n")
            .unwrap();
        assert_eq!(s.server.allow_ips.len(), 2);
    }

    #[test]
    fn connection_and_body_limits_have_defaults_and_zero_turns_the_optional_ones_off() {
        let s = Settings::from_toml("").unwrap();
        assert_eq!(s.server.body_read_timeout, Some(Duration::from_secs(30)));
        assert_eq!(s.server.http2_idle_timeout, Duration::from_secs(60));
        assert_eq!(
            s.server.http2_keep_alive_interval,
            Some(Duration::from_secs(30))
        );
        assert_eq!(s.server.max_connections_per_ip, Some(256));
        assert_eq!(s.idempotency.buffer_budget_bytes, 64 << 20);
        let s = Settings::from_toml(
            "[server]
body_read_timeout = \"0s\"
http2_keep_alive_interval = \"0s\"
\
             max_connections_per_ip = 0
",
        )
        .unwrap();
        assert_eq!(s.server.body_read_timeout, None);
        assert_eq!(s.server.http2_keep_alive_interval, None);
        assert_eq!(s.server.max_connections_per_ip, None);
        let e = err("[server]
http2_idle_timeout = \"0s\"
");
        assert!(e.starts_with("server.http2_idle_timeout:"), "{e}");
        let e = err("[idempotency]
max_request_bytes = 2000
buffer_budget_bytes = 1000
");
        assert!(e.starts_with("idempotency.buffer_budget_bytes:"), "{e}");
        let e = err("[idempotency]
request_read_timeout = \"0s\"
");
        assert!(e.starts_with("idempotency.request_read_timeout:"), "{e}");
    }

    #[test]
    fn client_keys_take_one_source_that_suits_their_algorithm() {
        const P256: &str = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEqIVYZVLCrPZHGHjP17CTW0/+D9Lf\nw0EkjqF7xB4FivAxzic30tMM4GF+hR6Dxh71Z50VGGdldkkDXZCnTNnoXQ==\n-----END PUBLIC KEY-----\n";
        const SECRET: &str = "uzvJfB4u3N0Jy4T7NZ75MDVcr8zSTInedJtkgcu46YW4XByzNJjxBdtjUkdJPBtbmHhIDi6pcl8jsasjlTMtDQ==";
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
        let pem = dir.path().join("p256.pem");
        std::fs::write(&pem, P256).unwrap();
        let client = |key: &str| {
            format!(
                "[[clients]]\nid = \"c\"\nsecret_sha256 = \"{}\"\n[[clients.keys]]\nid = \"k\"\n{key}\n",
                "0".repeat(64)
            )
        };
        let ok = |key: &str| {
            Settings::from_toml(&client(key))
                .unwrap_or_else(|e| panic!("{key}: {e}"))
                .clients[0]
                .keys[0]
                .key
                .alg()
        };
        use crate::httpsig::Algorithm;
        let path = |p: &Path| format!("{:?}", p.display().to_string());
        assert_eq!(
            ok(&format!(
                "alg = \"hmac-sha256\"\nsecret_file = {}",
                path(&secret)
            )),
            Algorithm::HmacSha256
        );
        assert_eq!(
            ok(&format!(
                "alg = \"ecdsa-p256-sha256\"\npublic_key_file = {}",
                path(&pem)
            )),
            Algorithm::EcdsaP256Sha256
        );
        assert_eq!(
            ok(&format!(
                "alg = \"ecdsa-p256-sha256\"\npublic_key = '''{P256}'''"
            )),
            Algorithm::EcdsaP256Sha256
        );
        let cases = [
            (
                "alg = \"hs256\"\npublic_key = \"x\"".to_owned(),
                "clients[0].keys[0].alg:",
                "rsa-pss-sha512",
            ),
            (
                format!("alg = \"hmac-sha256\"\npublic_key = \"{SECRET}\""),
                "clients[0].keys[0]:",
                "never write it in the config",
            ),
            (
                "alg = \"hmac-sha256\"\nsecret_env = \"WARDEN_TEST_SURELY_UNSET_VARIABLE\"".into(),
                "clients[0].keys[0].secret_env:",
                "is not set",
            ),
            // A variable that is set but holds no base64 secret: it was read.
            (
                "alg = \"hmac-sha256\"\nsecret_env = \"PATH\"".into(),
                "clients[0].keys[0].secret_env:",
                "base64",
            ),
            (
                "alg = \"hmac-sha256\"".into(),
                "clients[0].keys[0]:",
                "exactly one of secret_file and secret_env",
            ),
            (
                "alg = \"ed25519\"\nsecret_env = \"PATH\"".into(),
                "clients[0].keys[0]:",
                "takes a public key",
            ),
            (
                "alg = \"ed25519\"".into(),
                "clients[0].keys[0]:",
                "exactly one of public_key",
            ),
            (
                "alg = \"ecdsa-p256-sha256\"\npublic_key_file = \"/nonexistent/key.pem\"".into(),
                "clients[0].keys[0].public_key_file:",
                "/nonexistent/key.pem",
            ),
            (
                format!("alg = \"ecdsa-p384-sha384\"\npublic_key = '''{P256}'''"),
                "clients[0].keys[0].public_key:",
                "p-256",
            ),
        ];
        for (key, starts, contains) in cases {
            let e = err(&client(&key));
            assert!(e.starts_with(starts) && e.contains(contains), "{key}: {e}");
            assert!(!e.contains(&SECRET[..12]), "{e}");
        }
    }

    #[test]
    fn the_upstream_body_idle_timeout_defaults_to_five_minutes_and_zero_turns_it_off() {
        let s = Settings::from_toml("").unwrap();
        assert_eq!(s.upstream.body_idle_timeout, Some(Duration::from_secs(300)));
        let s = Settings::from_toml("[upstream]\nbody_idle_timeout = \"0s\"\n").unwrap();
        assert_eq!(s.upstream.body_idle_timeout, None);
    }
}
