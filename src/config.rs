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
    pub routes: Vec<RawRoute>,
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
}

impl Default for RawEndpoints {
    fn default() -> Self {
        Self {
            healthz: "/healthz".into(),
            readyz: "/readyz".into(),
            readyz_checks_upstream: true,
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
    pub routes: Vec<Route>,
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
            let e = e.into_iter().next().unwrap_or_else(|| figment::Error::from("invalid"));
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
                        return Err(invalid(key, format!("{} is not a readable file", p.display())));
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
            invalid("upstream.url", format!("'{}' has no scheme (http or https)", u.url))
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
        for (key, p) in [("endpoints.healthz", &e.healthz), ("endpoints.readyz", &e.readyz)] {
            if !p.starts_with('/') {
                return Err(invalid(key, format!("'{p}' must start with /")));
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
                    invalid(format!("{key}.methods"), format!("'{m}' is not an HTTP method"))
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
            },
            routes,
        })
    }
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
                .map_err(|_| invalid(format!("{key}[{i}]"), format!("'{s}' is not a CIDR like 10.0.0.0/8")))
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
        let s = Settings::from_toml("[server]\ntrusted_proxies = [\"10.1.2.3\", \"::1\"]\n").unwrap();
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
        let e = err("[[routes]]\npath = \"/a\"\nauth = \"none\"\n[[routes]]\npath = \"x\"\nauth = \"none\"\n");
        assert!(e.starts_with("routes[1].path:"), "{e}");
        let e = err("[[routes]]\npath = \"/a\"\nauth = \"magic\"\n");
        assert!(e.contains("auth"), "{e}");
    }
}
