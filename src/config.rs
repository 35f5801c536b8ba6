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

use crate::router::{AuthMode, PathPattern, Policy, Route};

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
    pub routes: Vec<RawRoute>,
    pub clients: Vec<RawClient>,
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
}

impl Default for RawStore {
    fn default() -> Self {
        Self {
            url: "sqlite://data/warden.db".into(),
            durability: Durability::Normal,
            sweep_interval: Duration::from_secs(60),
            token_retention: Duration::from_secs(7 * 24 * 3600),
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
    pub max_failed_auth: u32,
    #[serde(with = "humantime_serde")]
    pub failed_auth_window: Duration,
    pub max_request_bytes: usize,
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
            failed_auth_window: Duration::from_secs(300),
            max_request_bytes: 16 * 1024,
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
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClientKey {
    pub id: String,
    #[serde(default = "ed25519")]
    pub alg: String,
    pub public_key: String,
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
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    pub http2_max_concurrent_streams: u32,
    pub worker_threads: usize,
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
            shutdown_grace: Duration::from_secs(30),
            http2_max_concurrent_streams: 256,
            worker_threads: 0,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub cert: PathBuf,
    pub key: PathBuf,
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
    pub clients: Vec<ClientSettings>,
    pub routes: Vec<Route>,
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
}

/// A signing key registered to a client (RFC 9421 `keyid`).
#[derive(Debug, Clone)]
pub struct ClientKey {
    pub id: String,
    pub alg: String,
    pub public_key: [u8; 32],
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
    /// `server.shutdown_grace`, default 30s.
    pub shutdown_grace: Duration,
    /// `server.http2_max_concurrent_streams`, default 256.
    pub http2_max_concurrent_streams: u32,
    /// `server.worker_threads`, default 0 (= `TOKIO_WORKER_THREADS` or one per CPU).
    pub worker_threads: usize,
}

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
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
            // WARDEN_CONFIG names the file itself; it is not a key.
            .merge(Env::prefixed("WARDEN_").ignore(&["config"]).split("__"));
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
        let trusted_proxies = parse_cidrs("server.trusted_proxies", &s.trusted_proxies)?;

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
                .map_err(|detail| invalid(format!("{key}.path"), detail))?;
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
            routes.push(Route {
                name: r.name.clone().unwrap_or_else(|| r.path.clone()),
                pattern,
                methods,
                policy: Policy { auth: r.auth },
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
                shutdown_grace: s.shutdown_grace,
                http2_max_concurrent_streams: s.http2_max_concurrent_streams,
                worker_threads: s.worker_threads,
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
            },
            store: validate_store(&raw.store)?,
            tokens: validate_tokens(&raw.tokens)?,
            clients: validate_clients(&raw.clients)?,
            routes,
        })
    }
}

fn validate_store(s: &RawStore) -> Result<RawStore, ConfigError> {
    if s.url.trim().is_empty() {
        return Err(invalid("store.url", "must name a database, e.g. sqlite://data/warden.db"));
    }
    if !(s.url.starts_with("sqlite:") || !s.url.contains("://")) {
        return Err(invalid("store.url", "only sqlite:// stores are supported by this build"));
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
    if t.max_failed_auth == 0 {
        return Err(invalid("tokens.max_failed_auth", "must be at least 1"));
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
            if !valid_scope(s) {
                return Err(invalid(
                    format!("{key}.scopes[{j}]"),
                    format!("'{s}' is not a scope token"),
                ));
            }
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
            if k.alg != "ed25519" {
                return Err(invalid(
                    format!("{kk}.alg"),
                    format!("'{}' is not supported (ed25519)", k.alg),
                ));
            }
            let public_key = crate::httpsig::parse_public_key(&k.public_key)
                .map_err(|e| invalid(format!("{kk}.public_key"), e.to_string()))?;
            keys.push(ClientKey {
                id: k.id.clone(),
                alg: k.alg.clone(),
                public_key: public_key.to_bytes(),
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
        });
    }
    Ok(out)
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
}
