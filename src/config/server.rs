//! `[server]`: the listener, TLS files, connection and header limits, address lists.

use std::net::SocketAddr;
use std::time::Duration;

use ipnet::IpNet;

use super::{ConfigError, RawServer, invalid, parse_cidrs};
use crate::tls::TlsFiles;

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

/// `[server]`, validated: the address parsed, the TLS files present, the limits in range.
pub(super) fn validate_server(s: &RawServer) -> Result<ServerSettings, ConfigError> {
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
    Ok(ServerSettings {
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
        http2_keep_alive_interval: Some(s.http2_keep_alive_interval).filter(|d| !d.is_zero()),
        http2_keep_alive_timeout: s.http2_keep_alive_timeout,
        max_connections_per_ip: Some(s.max_connections_per_ip).filter(|&n| n > 0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load::raw;

    fn refused(toml: &str) -> String {
        validate_server(&raw(toml).server).unwrap_err().to_string()
    }

    #[test]
    fn defaults() {
        let s = validate_server(&RawServer::default()).unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
        assert!(s.tls.is_none());
        assert_eq!(s.max_connections, 4096);
        assert_eq!(s.header_read_timeout, Duration::from_secs(10));
        assert_eq!(s.max_header_bytes, 32 * 1024);
        assert_eq!(s.max_body_bytes, 10 * 1024 * 1024);
        assert!(s.trusted_proxies.is_empty() && s.allow_ips.is_empty() && s.deny_ips.is_empty());
        assert_eq!(s.shutdown_grace, Duration::from_secs(30));
        assert_eq!(s.http2_max_concurrent_streams, 256);
        assert_eq!(s.worker_threads, 0);
        assert_eq!(s.body_read_timeout, Some(Duration::from_secs(30)));
        assert_eq!(s.http2_idle_timeout, Duration::from_secs(60));
        assert_eq!(s.http2_keep_alive_interval, Some(Duration::from_secs(30)));
        assert_eq!(s.http2_keep_alive_timeout, Duration::from_secs(20));
        assert_eq!(s.max_connections_per_ip, Some(256));
    }

    #[test]
    fn each_bad_value_is_refused_by_its_key() {
        for (toml, key) in [
            ("listen = \"localhost\"", "server.listen"),
            ("listen = \"127.0.0.1\"", "server.listen"),
            ("max_connections = 0", "server.max_connections"),
            ("max_header_bytes = 8191", "server.max_header_bytes"),
            ("header_read_timeout = \"0s\"", "server.header_read_timeout"),
            ("http2_idle_timeout = \"0s\"", "server.http2_idle_timeout"),
            (
                "http2_keep_alive_timeout = \"0s\"",
                "server.http2_keep_alive_timeout",
            ),
            ("trusted_proxies = [\"proxy\"]", "server.trusted_proxies[0]"),
            (
                "allow_ips = [\"10.0.0.0/8\", \"10.0.0.0/40\"]",
                "server.allow_ips[1]",
            ),
            ("deny_ips = [\"::1/129\"]", "server.deny_ips[0]"),
            (
                "tls = { cert = \"/nonexistent/cert.pem\", key = \"/nonexistent/key.pem\" }",
                "server.tls.cert",
            ),
        ] {
            let e = refused(&format!("[server]\n{toml}\n"));
            assert!(e.starts_with(&format!("{key}: ")), "{toml}: {e}");
        }
        assert!(validate_server(&raw("[server]\nmax_header_bytes = 8192\n").server).is_ok());
    }

    #[test]
    fn tls_files_must_both_exist_and_zero_reload_means_only_on_sighup() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        std::fs::write(&cert, "not checked here").unwrap();
        let tls = |key: &str, reload: &str| {
            format!(
                "[server.tls]\ncert = {:?}\nkey = {key:?}\n{reload}\n",
                cert.display().to_string()
            )
        };
        let missing = dir.path().join("key.pem").display().to_string();
        let e = refused(&tls(&missing, ""));
        assert!(e.starts_with("server.tls.key: "), "{e}");
        let present = cert.display().to_string();
        let s = validate_server(&raw(&tls(&present, "")).server).unwrap();
        let files = s.tls.unwrap();
        assert_eq!(files.cert, cert);
        assert_eq!(files.reload_interval, Some(Duration::from_secs(10)));
        let s = validate_server(&raw(&tls(&present, "reload_interval = \"0s\"")).server).unwrap();
        assert_eq!(s.tls.unwrap().reload_interval, None);
    }
}
