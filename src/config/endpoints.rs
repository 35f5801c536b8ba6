//! `[endpoints]`: the paths of Warden's own endpoints (health, auth, OAuth, tokens,
//! webhooks, forward-auth, metrics).

use ipnet::IpNet;

use super::values::distinct_paths;
use super::{ConfigError, RawEndpoints, invalid};
use crate::router::EndpointSettings;

/// `[endpoints]`, validated: absolute paths, none used twice. `trusted_proxies` is
/// `server.trusted_proxies`, which `endpoints.forward_auth` needs.
pub(super) fn validate_endpoints(
    e: &RawEndpoints,
    trusted_proxies: &[IpNet],
) -> Result<EndpointSettings, ConfigError> {
    let own = [
        ("endpoints.healthz", &e.healthz),
        ("endpoints.readyz", &e.readyz),
        ("endpoints.auth", &e.auth),
        ("endpoints.oauth_token", &e.oauth_token),
        ("endpoints.oauth_revoke", &e.oauth_revoke),
        ("endpoints.oauth_introspect", &e.oauth_introspect),
    ];
    distinct_paths(&own, "endpoint")?;
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
        super::forward_auth::validate_endpoint(&e.forward_auth, trusted_proxies, &own_paths)?;
    Ok(EndpointSettings {
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
                crate::router::TokensBase::parse(base)
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
                crate::router::TokensBase::parse(base)
                    .map_err(|detail| invalid("endpoints.webhooks", detail))?,
            ),
        },
        forward_auth,
        metrics,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load::raw;

    fn refused(toml: &str, trusted: &[IpNet]) -> String {
        validate_endpoints(&raw(toml).endpoints, trusted)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn defaults() {
        let e = validate_endpoints(&RawEndpoints::default(), &[]).unwrap();
        assert_eq!(e.healthz, "/healthz");
        assert_eq!(e.readyz, "/readyz");
        assert!(e.readyz_checks_upstream);
        assert_eq!(e.auth, "/v1/auth");
        assert_eq!(e.oauth_token, "/v1/oauth/token");
        assert_eq!(e.oauth_revoke, "/v1/oauth/revoke");
        assert_eq!(e.oauth_introspect, "/v1/oauth/introspect");
        assert!(e.tokens.is_some() && e.webhooks.is_some());
        assert_eq!(e.forward_auth, None);
        assert_eq!(e.metrics, None);
    }

    #[test]
    fn each_bad_value_is_refused_by_its_key() {
        for (toml, key, why) in [
            (
                "healthz = \"healthz\"",
                "endpoints.healthz",
                "must start with /",
            ),
            ("readyz = \"/healthz\"", "endpoints.readyz", "already used"),
            (
                "oauth_introspect = \"/v1/auth\"",
                "endpoints.oauth_introspect",
                "already used",
            ),
            (
                "metrics = \"metrics\"",
                "endpoints.metrics",
                "must start with /",
            ),
            ("metrics = \"/readyz\"", "endpoints.metrics", "already used"),
            ("tokens = \"/ws/tokens\"", "endpoints.tokens", ""),
            ("webhooks = \"/ws/webhooks\"", "endpoints.webhooks", ""),
            (
                "tokens = \"/a/{account}/t\"\nwebhooks = \"/a/{account}/t\"",
                "endpoints.webhooks",
                "must differ",
            ),
            (
                "forward_auth = \"/auth\"",
                "endpoints.forward_auth",
                "trusted_proxies",
            ),
        ] {
            let e = refused(&format!("[endpoints]\n{toml}\n"), &[]);
            assert!(
                e.starts_with(&format!("{key}: ")) && e.contains(why),
                "{toml}: {e}"
            );
        }
    }

    #[test]
    fn empty_turns_the_optional_ones_off_and_forward_auth_needs_trusted_proxies() {
        let e = validate_endpoints(
            &raw("[endpoints]\ntokens = \"\"\nwebhooks = \"\"\nmetrics = \"/metrics\"\n").endpoints,
            &[],
        )
        .unwrap();
        assert!(e.tokens.is_none() && e.webhooks.is_none());
        assert_eq!(e.metrics.as_deref(), Some("/metrics"));
        let trusted: [IpNet; 1] = ["10.0.0.0/8".parse().unwrap()];
        let e = validate_endpoints(
            &raw("[endpoints]\nforward_auth = \"/auth\"\n").endpoints,
            &trusted,
        )
        .unwrap();
        assert_eq!(e.forward_auth.as_deref(), Some("/auth"));
        let e = refused("[endpoints]\nforward_auth = \"/healthz\"\n", &trusted);
        assert!(
            e.starts_with("endpoints.forward_auth: ") && e.contains("already used"),
            "{e}"
        );
    }
}
