//! `[forward_auth]` (the decision cache) and `endpoints.forward_auth` (the endpoint's path),
//! validated.

use std::time::Duration;

use ipnet::IpNet;

use super::ConfigError;
use crate::forward_auth::{ForwardAuthSettings, RawForwardAuth};
use crate::router::normalize_path;

/// The longest `forward_auth.cache_ttl` accepted.
const MAX_CACHE_TTL: Duration = Duration::from_secs(300);

/// Validates `[forward_auth]`.
pub(super) fn validate_forward_auth(
    raw: &RawForwardAuth,
) -> Result<ForwardAuthSettings, ConfigError> {
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
pub(super) fn validate_endpoint(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_needs_trusted_proxies_and_a_plain_path() {
        let nets: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        assert_eq!(validate_endpoint("", &[], &[]).unwrap(), None);
        assert!(validate_endpoint("/fa", &[], &[]).is_err());
        assert_eq!(
            validate_endpoint("/fa", &nets, &[]).unwrap().as_deref(),
            Some("/fa")
        );
        for bad in ["fa", "/fa/", "/f*", "/a/../b", "/%66a", "/{x}"] {
            assert!(validate_endpoint(bad, &nets, &[]).is_err(), "{bad}");
        }
        assert!(validate_endpoint("/v1/auth", &nets, &["/v1/auth"]).is_err());
    }
}
