//! The configuration as written: one serde struct per TOML section, with its built-in
//! defaults. Every struct refuses unknown keys. The typed settings built from them live in the
//! section modules beside this one (`server.rs`, `routes.rs`, …).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::RawPostgres;
use crate::gate::signature::{NonceMode, NonceStoreMode};
use crate::policy::IdempotencyMode;
use crate::policy::{AuthMode, SignatureMode};
use crate::telemetry::LogFormat;

/// `store.durability`: the store's own type (`normal` survives `kill -9`, `full` also a
/// power loss).
pub use crate::store::Durability;

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
    /// Most lapsed nonce claims one sweep transaction deletes; default 1000.
    pub nonce_sweep_batch: u32,
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
            nonce_sweep_batch: 1000,
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

/// `[idempotency]`: idempotency keys on bearer routes and `/v1/auth` (see [`IdempotencySettings`](super::IdempotencySettings)).
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
