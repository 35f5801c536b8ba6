//! `[forward_auth]` (the decision cache) and `endpoints.forward_auth` (the endpoint's path),
//! as written and validated.

use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::config::ConfigError;
use crate::router::normalize_path;

/// `[forward_auth]` as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawForwardAuth {
    /// Most decisions kept; default 10000; 0 turns the cache off.
    pub cache_capacity: u64,
    /// Longest a decision is kept; default 5s. A revocation or client change ends it at once
    /// whatever this says; it bounds the memory of decisions nobody asks for again.
    #[serde(with = "humantime_serde")]
    pub cache_ttl: Duration,
}

impl Default for RawForwardAuth {
    fn default() -> Self {
        Self {
            cache_capacity: 10_000,
            cache_ttl: Duration::from_secs(5),
        }
    }
}

/// `[forward_auth]`, validated.
#[derive(Debug, Clone)]
pub struct ForwardAuthSettings {
    /// `forward_auth.cache_capacity`, default 10000 (0: no cache).
    pub cache_capacity: u64,
    /// `forward_auth.cache_ttl`, default 5s.
    pub cache_ttl: Duration,
}

/// The longest `forward_auth.cache_ttl` accepted.
const MAX_CACHE_TTL: Duration = Duration::from_secs(300);

/// Validates `[forward_auth]`.
pub fn validate(raw: &RawForwardAuth) -> Result<ForwardAuthSettings, ConfigError> {
    if raw.cache_ttl > MAX_CACHE_TTL {
        return Err(ConfigError::Invalid {
            key: "forward_auth.cache_ttl".into(),
            detail: "must be at most 5m".into(),
        });
    }
    Ok(ForwardAuthSettings {
        cache_capacity: raw.cache_capacity,
        cache_ttl: raw.cache_ttl,
    })
}

/// Validates `endpoints.forward_auth`: "" is off; else a literal path, not another endpoint's,
/// and only with `server.trusted_proxies` (nobody else is believed).
pub fn validate_endpoint(
    path: &str,
    trusted_proxies: &[IpNet],
    own: &[&str],
) -> Result<Option<String>, ConfigError> {
    let bad = |detail: String| ConfigError::Invalid {
        key: "endpoints.forward_auth".into(),
        detail,
    };
    if path.is_empty() {
        return Ok(None);
    }
    if !path.starts_with('/') || path.len() < 2 || path.ends_with('/') {
        return Err(bad(format!(
            "'{path}' must start with / and not end with /"
        )));
    }
    if path.contains(['{', '}', '*', '%', '?', '#']) || normalize_path(path).is_err() {
        return Err(bad(format!(
            "'{path}' must be a plain path: no wildcards, escapes, query or dot-segments"
        )));
    }
    if own.iter().any(|o| o.trim_end_matches('/') == path) {
        return Err(bad(format!("'{path}' is already used by another endpoint")));
    }
    if trusted_proxies.is_empty() {
        return Err(bad(
            "needs server.trusted_proxies: the original request is believed only from them".into(),
        ));
    }
    Ok(Some(path.to_owned()))
}
