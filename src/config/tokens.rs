//! `[tokens]`: issued tokens, their caches, and the brakes on failed authentication.

use std::time::Duration;

use super::{ConfigError, invalid};
use crate::issuer::TokenSettings;

pub(super) fn validate_tokens(t: &TokenSettings) -> Result<TokenSettings, ConfigError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load::raw;

    #[test]
    fn defaults() {
        let t = validate_tokens(&TokenSettings::default()).unwrap();
        assert_eq!(t.realm, "warden");
        assert_eq!(t.access_ttl, Duration::from_secs(3600));
        assert_eq!(t.max_ttl, Duration::from_secs(3600));
        assert_eq!(t.cache_capacity, 100_000);
        assert_eq!(t.cache_ttl, Duration::from_secs(300));
        assert_eq!(t.negative_cache_ttl, Duration::from_secs(5));
        assert!(!t.forward_authorization);
        assert_eq!(t.secret_rotation_overlap, Duration::from_secs(24 * 3600));
        assert_eq!(
            (
                t.max_failed_auth,
                t.max_failed_auth_per_ip,
                t.max_failed_auth_per_client
            ),
            (10, 20, 100)
        );
        assert_eq!(t.failed_auth_window, Duration::from_secs(300));
        assert_eq!(t.known_address_ttl, Duration::from_secs(24 * 3600));
        assert_eq!(t.max_request_bytes, 16 * 1024);
        assert_eq!(t.request_read_timeout, Duration::from_secs(10));
        assert_eq!(t.admin_scope, "level://admin");
        assert_eq!(t.max_name_length, 128);
        assert_eq!(t.change_check_interval, Duration::from_millis(1));
    }

    #[test]
    fn each_bad_value_is_refused_by_its_key() {
        for (toml, key) in [
            ("access_ttl = \"0s\"", "tokens.access_ttl"),
            ("access_ttl = \"2h\"", "tokens.max_ttl"),
            ("cache_capacity = 0", "tokens.cache_capacity"),
            ("realm = \"\"", "tokens.realm"),
            ("realm = 'a\"b'", "tokens.realm"),
            ("realm = \"wärden\"", "tokens.realm"),
            (
                "request_read_timeout = \"0s\"",
                "tokens.request_read_timeout",
            ),
            ("max_failed_auth = 0", "tokens.max_failed_auth"),
            (
                "max_failed_auth_per_ip = 0",
                "tokens.max_failed_auth_per_ip",
            ),
            (
                "max_failed_auth_per_client = 0",
                "tokens.max_failed_auth_per_client",
            ),
            ("known_address_ttl = \"366d\"", "tokens.known_address_ttl"),
            ("admin_scope = \"level://a..b\"", "tokens.admin_scope"),
            ("max_name_length = 4097", "tokens.max_name_length"),
        ] {
            let e = validate_tokens(&raw(&format!("[tokens]\n{toml}\n")).tokens)
                .unwrap_err()
                .to_string();
            assert!(e.starts_with(&format!("{key}: ")), "{toml}: {e}");
        }
        let t = validate_tokens(
            &raw("[tokens]\nmax_name_length = 4096\nknown_address_ttl = \"0s\"\n").tokens,
        )
        .unwrap();
        assert_eq!(t.max_name_length, 4096);
    }
}
