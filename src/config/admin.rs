//! `[admin]`: the admin listener, a second plain-HTTP socket for the platform (metrics scrapes,
//! health probes), so that none of it has to be reachable on the public listener. Off unless
//! `admin.listen` is set. What it serves is `admin.rs`'s.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::values::distinct_paths;
use super::{ConfigError, invalid};

/// `[admin]` as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAdmin {
    /// Address of the admin listener, e.g. `127.0.0.1:9901`; default "" (off).
    pub listen: String,
    /// Path of the Prometheus metrics on the admin listener; default `/metrics`.
    pub metrics: String,
    /// Path of the liveness probe on the admin listener; default `/healthz`.
    pub healthz: String,
    /// Path of the readiness probe on the admin listener; default `/readyz`.
    pub readyz: String,
    /// Connections the admin listener holds open at once; default 16. Further ones wait in
    /// the kernel's backlog.
    pub max_connections: usize,
}

impl Default for RawAdmin {
    fn default() -> Self {
        Self {
            listen: String::new(),
            metrics: "/metrics".into(),
            healthz: "/healthz".into(),
            readyz: "/readyz".into(),
            max_connections: 16,
        }
    }
}

/// `[admin]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSettings {
    /// `admin.listen`; `None`: no admin listener (the default).
    pub listen: Option<SocketAddr>,
    /// `admin.metrics`, default `/metrics`.
    pub metrics: String,
    /// `admin.healthz`, default `/healthz`.
    pub healthz: String,
    /// `admin.readyz`, default `/readyz`.
    pub readyz: String,
    /// `admin.max_connections`, default 16.
    pub max_connections: usize,
}

impl Default for AdminSettings {
    fn default() -> Self {
        Self {
            listen: None,
            metrics: "/metrics".into(),
            healthz: "/healthz".into(),
            readyz: "/readyz".into(),
            max_connections: 16,
        }
    }
}

impl RawAdmin {
    /// Validates `[admin]`. `server_listen`: the main listener's address, which the admin one
    /// must not share; `endpoints_metrics`: `endpoints.metrics` as written, which must stay
    /// off when the admin listener is on (the metrics then stay off the public listener).
    pub(super) fn validate(
        &self,
        server_listen: SocketAddr,
        endpoints_metrics: &str,
    ) -> Result<AdminSettings, ConfigError> {
        let listen = match self.listen.as_str() {
            "" => None,
            text => Some(text.parse::<SocketAddr>().map_err(|_| {
                invalid(
                    "admin.listen",
                    format!("'{text}' is not an address like 127.0.0.1:9901"),
                )
            })?),
        };
        if let Some(addr) = listen {
            if addr.port() != 0 && addr == server_listen {
                return Err(invalid(
                    "admin.listen",
                    format!(
                        "'{addr}' is server.listen's address; give the admin listener its own port"
                    ),
                ));
            }
            if !endpoints_metrics.is_empty() {
                return Err(invalid(
                    "endpoints.metrics",
                    format!(
                        "'{endpoints_metrics}' would serve the metrics on the public listener too; \
                         with admin.listen set they are on the admin listener (admin.metrics): \
                         remove endpoints.metrics"
                    ),
                ));
            }
        }
        let paths = [
            ("admin.metrics", &self.metrics),
            ("admin.healthz", &self.healthz),
            ("admin.readyz", &self.readyz),
        ];
        distinct_paths(&paths, "admin endpoint")?;
        if self.max_connections == 0 {
            return Err(invalid("admin.max_connections", "must be at least 1"));
        }
        Ok(AdminSettings {
            listen,
            metrics: self.metrics.clone(),
            healthz: self.healthz.clone(),
            readyz: self.readyz.clone(),
            max_connections: self.max_connections,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVER: &str = "127.0.0.1:8080";

    fn check(raw: RawAdmin, metrics: &str) -> Result<AdminSettings, String> {
        raw.validate(SERVER.parse().unwrap(), metrics)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_admin_listener_is_off_by_default() {
        let s = check(RawAdmin::default(), "/metrics").unwrap();
        assert_eq!(s, AdminSettings::default());
        assert!(s.listen.is_none());
    }

    #[test]
    fn an_admin_listener_with_endpoints_metrics_on_is_refused_naming_both_keys() {
        let raw = RawAdmin {
            listen: "127.0.0.1:9901".into(),
            ..RawAdmin::default()
        };
        let e = check(raw.clone(), "/metrics").unwrap_err();
        assert!(
            e.starts_with("endpoints.metrics:") && e.contains("admin.listen"),
            "{e}"
        );
        assert_eq!(
            check(raw, "").unwrap().listen,
            Some("127.0.0.1:9901".parse().unwrap())
        );
    }

    #[test]
    fn bad_admin_values_name_their_key() {
        let bad = |raw: RawAdmin, key: &str| {
            let e = check(raw, "").unwrap_err();
            assert!(e.starts_with(key), "{e}");
        };
        let on = RawAdmin {
            listen: "127.0.0.1:9901".into(),
            ..RawAdmin::default()
        };
        bad(
            RawAdmin {
                listen: "localhost".into(),
                ..on.clone()
            },
            "admin.listen",
        );
        bad(
            RawAdmin {
                listen: SERVER.into(),
                ..on.clone()
            },
            "admin.listen",
        );
        bad(
            RawAdmin {
                metrics: "metrics".into(),
                ..on.clone()
            },
            "admin.metrics",
        );
        bad(
            RawAdmin {
                readyz: "/healthz".into(),
                ..on.clone()
            },
            "admin.readyz",
        );
        bad(
            RawAdmin {
                max_connections: 0,
                ..on
            },
            "admin.max_connections",
        );
    }
}
