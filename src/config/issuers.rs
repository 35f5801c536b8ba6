//! `[[issuers]]`: identity providers whose access tokens are accepted, validated into
//! [`IssuerSettings`] (the types are in `idp/settings.rs`).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http::Uri;

use super::{ConfigError, invalid};
use crate::idp::jwk::{Alg, KeySet};
use crate::idp::jwt::Times;
use crate::idp::settings::{IntrospectionSettings, IssuerSettings, KeySource, RawIssuer, Secret};

/// Validates every `[[issuers]]` table.
pub fn validate_issuers(raw: &[RawIssuer]) -> Result<Vec<IssuerSettings>, ConfigError> {
    let mut out: Vec<IssuerSettings> = Vec::with_capacity(raw.len());
    for (i, r) in raw.iter().enumerate() {
        let key = format!("issuers[{i}]");
        let s = validate_one(&key, r)?;
        if out.iter().any(|o| o.name == s.name) {
            return Err(invalid(
                format!("{key}.name"),
                format!("'{}' is declared twice", s.name),
            ));
        }
        if out.iter().any(|o| o.issuer == s.issuer) {
            return Err(invalid(
                format!("{key}.issuer"),
                format!("'{}' is declared twice", s.issuer),
            ));
        }
        if let Some(p) = &s.token_prefix {
            if let Some(o) = out.iter().find(|o| {
                o.token_prefix
                    .as_ref()
                    .is_some_and(|q| p.starts_with(q.as_str()) || q.starts_with(p.as_str()))
            }) {
                return Err(invalid(
                    format!("{key}.token_prefix"),
                    format!(
                        "'{p}' overlaps the token_prefix of issuer '{}': a token must name one issuer",
                        o.name
                    ),
                ));
            }
        } else if s.introspection.is_some() {
            if let Some(o) = out
                .iter()
                .find(|o| o.introspection.is_some() && o.token_prefix.is_none())
            {
                return Err(invalid(
                    format!("{key}.token_prefix"),
                    format!(
                        "issuer '{}' already takes opaque tokens without a prefix; give one of them a token_prefix",
                        o.name
                    ),
                ));
            }
        }
        out.push(s);
    }
    Ok(out)
}

fn validate_one(key: &str, r: &RawIssuer) -> Result<IssuerSettings, ConfigError> {
    if r.name.is_empty()
        || r.name.len() > 64
        || !r
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        return Err(invalid(
            format!("{key}.name"),
            format!("'{}' must be 1-64 of A-Z a-z 0-9 . _ -", r.name),
        ));
    }
    if r.issuer.is_empty() || r.issuer.len() > 1024 {
        return Err(invalid(
            format!("{key}.issuer"),
            "must be the exact iss of the issuer's tokens (1-1024 characters)",
        ));
    }
    let audiences = r.audience.to_vec();
    for a in &audiences {
        if !crate::scope::valid_audience(a) {
            return Err(invalid(
                format!("{key}.audience"),
                format!("'{a}' must be 1-256 visible ASCII characters without spaces or quotes"),
            ));
        }
    }
    let keys = match (r.jwks_uri.as_str(), r.keys.as_str()) {
        ("", "") => None,
        (uri, "") => Some(KeySource::Fetched(parse_url(
            &format!("{key}.jwks_uri"),
            uri,
            r.allow_http,
        )?)),
        ("", keys) => Some(KeySource::Static(Arc::new(static_keys(
            &format!("{key}.keys"),
            keys,
        )?))),
        _ => {
            return Err(invalid(
                format!("{key}.keys"),
                "set jwks_uri or keys, not both",
            ));
        }
    };
    if keys.is_some() && audiences.is_empty() {
        return Err(invalid(
            format!("{key}.audience"),
            "a JWT issuer needs the audience its tokens must carry (RFC 9068 §4): \
             without it, a token the issuer made for any other service would be accepted",
        ));
    }
    let mut algorithms = Vec::with_capacity(r.algorithms.len());
    for a in &r.algorithms {
        if a.eq_ignore_ascii_case("none") || a.to_ascii_uppercase().starts_with("HS") {
            return Err(invalid(
                format!("{key}.algorithms"),
                format!("'{a}' is never accepted: Warden holds only the issuer's public keys"),
            ));
        }
        let alg = Alg::parse(a).ok_or_else(|| {
            invalid(
                format!("{key}.algorithms"),
                format!("'{a}' is not one of EdDSA ES256 ES384 RS256 PS256"),
            )
        })?;
        if !algorithms.contains(&alg) {
            algorithms.push(alg);
        }
    }
    if keys.is_some() && algorithms.is_empty() {
        return Err(invalid(
            format!("{key}.algorithms"),
            "must name at least one algorithm",
        ));
    }
    if r.jwks_refetch_min_interval < Duration::from_secs(1) {
        return Err(invalid(
            format!("{key}.jwks_refetch_min_interval"),
            "must be at least 1s (it is what keeps unknown key ids from making a fetch each)",
        ));
    }
    if r.jwks_cache_ttl < r.jwks_refetch_min_interval {
        return Err(invalid(
            format!("{key}.jwks_cache_ttl"),
            "must be at least jwks_refetch_min_interval",
        ));
    }
    if r.leeway > Duration::from_secs(300) {
        return Err(invalid(format!("{key}.leeway"), "must be at most 5m"));
    }
    if r.client_id_claim.is_empty() {
        return Err(invalid(
            format!("{key}.client_id_claim"),
            "must name a claim, e.g. client_id or azp",
        ));
    }
    for (remote, local) in &r.clients {
        if remote.is_empty() || !crate::scope::valid_id(local) {
            return Err(invalid(
                format!("{key}.clients"),
                format!(
                    "'{remote}' = '{local}': the value must be a Warden client id (1-128 of A-Z a-z 0-9 . _ : -)"
                ),
            ));
        }
    }
    for (theirs, ours) in &r.scope_map {
        for s in ours {
            crate::scope::check(s).map_err(|e| {
                invalid(
                    format!("{key}.scope_map"),
                    format!("'{theirs}' = '{s}': {e}"),
                )
            })?;
        }
    }
    let introspection = validate_introspection(key, r)?;
    if keys.is_none() && introspection.is_none() {
        return Err(invalid(
            format!("{key}.jwks_uri"),
            "an issuer needs jwks_uri or keys (JWTs verified here), or introspection_endpoint",
        ));
    }
    let token_prefix = match r.token_prefix.as_str() {
        "" => None,
        _ if introspection.is_none() => {
            return Err(invalid(
                format!("{key}.token_prefix"),
                "routes opaque tokens to introspection: set introspection_endpoint too",
            ));
        }
        p if p.len() > 64
            || !p
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b)) =>
        {
            return Err(invalid(
                format!("{key}.token_prefix"),
                format!("'{p}' must be 1-64 characters a bearer token may start with"),
            ));
        }
        p if p.starts_with("wdn_") || "wdn_".starts_with(p) => {
            return Err(invalid(
                format!("{key}.token_prefix"),
                format!("'{p}' overlaps wdn_, the prefix of Warden's own tokens"),
            ));
        }
        p => Some(p.to_string()),
    };
    if r.cache_capacity == 0 {
        return Err(invalid(
            format!("{key}.cache_capacity"),
            "must be at least 1",
        ));
    }
    if r.fetch_timeout.is_zero() {
        return Err(invalid(
            format!("{key}.fetch_timeout"),
            "must be more than 0",
        ));
    }
    if r.max_response_bytes < 1024 {
        return Err(invalid(
            format!("{key}.max_response_bytes"),
            "must be at least 1024",
        ));
    }
    Ok(IssuerSettings {
        name: r.name.clone(),
        issuer: r.issuer.clone(),
        audiences,
        keys,
        algorithms,
        jwks_cache_ttl: r.jwks_cache_ttl,
        jwks_refetch_min_interval: r.jwks_refetch_min_interval,
        times: Times {
            leeway: r.leeway.as_secs() as i64,
            max_age: (!r.max_token_age.is_zero())
                .then(|| r.max_token_age.as_secs().min(i64::MAX as u64) as i64),
        },
        allow_typ_jwt: r.allow_typ_jwt,
        client_id_claim: r.client_id_claim.clone(),
        clients: r.clients.clone().into_iter().collect(),
        scope_map: (!r.scope_map.is_empty()).then(|| r.scope_map.clone().into_iter().collect()),
        account: if r.account.is_empty() {
            r.name.clone()
        } else {
            r.account.clone()
        },
        introspection,
        token_prefix,
        cache_capacity: r.cache_capacity,
        fetch_timeout: r.fetch_timeout,
        max_response_bytes: r.max_response_bytes,
    })
}

fn validate_introspection(
    key: &str,
    r: &RawIssuer,
) -> Result<Option<IntrospectionSettings>, ConfigError> {
    if r.introspection_endpoint.is_empty() {
        let stray = [
            (
                "introspection_client_id",
                r.introspection_client_id.is_empty(),
            ),
            (
                "introspection_client_secret_file",
                r.introspection_client_secret_file.is_empty(),
            ),
            (
                "introspection_client_secret_env",
                r.introspection_client_secret_env.is_empty(),
            ),
        ];
        if let Some((name, _)) = stray.iter().find(|(_, empty)| !empty) {
            return Err(invalid(
                format!("{key}.{name}"),
                "is set, but introspection_endpoint is not",
            ));
        }
        return Ok(None);
    }
    let endpoint = parse_url(
        &format!("{key}.introspection_endpoint"),
        &r.introspection_endpoint,
        r.allow_http,
    )?;
    if r.introspection_client_id.is_empty() {
        return Err(invalid(
            format!("{key}.introspection_client_id"),
            "the introspection endpoint needs Warden's client id there (RFC 7662 §2.1)",
        ));
    }
    let secret = match (
        r.introspection_client_secret_file.as_str(),
        r.introspection_client_secret_env.as_str(),
    ) {
        (file, "") if !file.is_empty() => {
            let text = std::fs::read_to_string(file).map_err(|e| {
                invalid(
                    format!("{key}.introspection_client_secret_file"),
                    format!("{file}: {e}"),
                )
            })?;
            text.trim_end_matches(['\r', '\n']).to_string()
        }
        ("", var) if !var.is_empty() => std::env::var(var).map_err(|_| {
            invalid(
                format!("{key}.introspection_client_secret_env"),
                format!("the environment variable {var} is not set"),
            )
        })?,
        _ => {
            return Err(invalid(
                format!("{key}.introspection_client_secret_file"),
                "set exactly one of introspection_client_secret_file and \
                 introspection_client_secret_env (the secret never goes in this file)",
            ));
        }
    };
    if secret.is_empty() {
        return Err(invalid(
            format!("{key}.introspection_client_secret_file"),
            "the secret is empty",
        ));
    }
    if r.introspection_max_in_flight == 0 {
        return Err(invalid(
            format!("{key}.introspection_max_in_flight"),
            "must be at least 1",
        ));
    }
    Ok(Some(IntrospectionSettings {
        endpoint,
        client_id: r.introspection_client_id.clone(),
        secret: Secret(secret),
        auth: r.introspection_auth,
        cache_ttl: r.introspection_cache_ttl,
        negative_ttl: r.negative_cache_ttl,
        max_in_flight: r.introspection_max_in_flight,
    }))
}

/// An https URL (http only with `allow_http`), with a host and no fragment or userinfo.
fn parse_url(key: &str, url: &str, allow_http: bool) -> Result<Uri, ConfigError> {
    let uri: Uri = url
        .parse()
        .map_err(|_| invalid(key, format!("'{url}' is not a URL")))?;
    match uri.scheme_str() {
        Some("https") => {}
        Some("http") if allow_http => {}
        Some("http") => {
            return Err(invalid(
                key,
                format!("'{url}' is not https; set allow_http = true only for a trusted network"),
            ));
        }
        _ => return Err(invalid(key, format!("'{url}' must be an https URL"))),
    }
    match uri.authority() {
        Some(a) if !a.as_str().contains('@') && !a.host().is_empty() => Ok(uri),
        _ => Err(invalid(
            key,
            format!("'{url}' must name a host (and no user info)"),
        )),
    }
}

/// `keys`: a JWKS document inline, or a file holding one.
fn static_keys(key: &str, value: &str) -> Result<KeySet, ConfigError> {
    let text = if value.trim_start().starts_with('{') {
        value.to_string()
    } else {
        std::fs::read_to_string(Path::new(value))
            .map_err(|e| invalid(key, format!("{value}: {e}")))?
    };
    let (set, skipped) =
        crate::idp::jwk::parse_set(text.as_bytes()).map_err(|e| invalid(key, e.to_string()))?;
    for why in &skipped {
        tracing::warn!(key, "key skipped: {why}");
    }
    if set.is_empty() {
        return Err(invalid(key, "holds no usable key"));
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::idp::settings::OneOrMany;

    fn jwt_issuer() -> RawIssuer {
        RawIssuer {
            name: "corp".into(),
            issuer: "https://idp.example/".into(),
            audience: OneOrMany::One("api".into()),
            jwks_uri: "https://idp.example/jwks".into(),
            ..RawIssuer::default()
        }
    }

    fn key_of(r: RawIssuer) -> String {
        match validate_issuers(&[r]) {
            Err(ConfigError::Invalid { key, .. }) => key,
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn a_jwt_issuer_gets_the_documented_defaults() {
        let s = validate_issuers(&[jwt_issuer()]).unwrap().remove(0);
        assert_eq!(s.algorithms, Alg::ALL);
        assert_eq!(s.jwks_cache_ttl, Duration::from_secs(600));
        assert_eq!(s.jwks_refetch_min_interval, Duration::from_secs(30));
        assert_eq!(s.times.leeway, 60);
        assert_eq!(s.times.max_age, None);
        assert_eq!(s.account, "corp");
        assert_eq!(s.client_id_claim, "client_id");
        assert!(!s.allow_typ_jwt && s.introspection.is_none() && s.token_prefix.is_none());
    }

    #[test]
    fn none_and_hmac_cannot_be_configured() {
        for alg in ["none", "HS256", "hs512"] {
            let r = RawIssuer {
                algorithms: vec!["RS256".into(), alg.into()],
                ..jwt_issuer()
            };
            assert_eq!(key_of(r), "issuers[0].algorithms");
        }
    }

    #[test]
    fn a_jwt_issuer_needs_an_audience_and_https() {
        let r = RawIssuer {
            audience: OneOrMany::default(),
            ..jwt_issuer()
        };
        assert_eq!(key_of(r), "issuers[0].audience");
        let r = RawIssuer {
            jwks_uri: "http://idp.example/jwks".into(),
            ..jwt_issuer()
        };
        assert_eq!(key_of(r), "issuers[0].jwks_uri");
        let r = RawIssuer {
            jwks_uri: "http://127.0.0.1:1/jwks".into(),
            allow_http: true,
            ..jwt_issuer()
        };
        assert!(validate_issuers(&[r]).is_ok());
    }

    #[test]
    fn introspection_secrets_never_come_from_the_file_itself() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, "s3cret\n").unwrap();
        let base = RawIssuer {
            name: "opaque".into(),
            issuer: "https://as.example/".into(),
            introspection_endpoint: "https://as.example/introspect".into(),
            introspection_client_id: "warden".into(),
            ..RawIssuer::default()
        };
        assert_eq!(
            key_of(base.clone()),
            "issuers[0].introspection_client_secret_file"
        );
        let ok = RawIssuer {
            introspection_client_secret_file: file.display().to_string(),
            ..base.clone()
        };
        let s = validate_issuers(&[ok]).unwrap().remove(0);
        let i = s.introspection.unwrap();
        assert_eq!(i.secret.0, "s3cret");
        assert_eq!(format!("{:?}", i.secret), "Secret(…)");
        assert_eq!(i.cache_ttl, Duration::from_secs(60));
        assert_eq!(i.negative_ttl, Duration::from_secs(5));
    }

    #[test]
    fn opaque_tokens_have_one_destination() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, "s").unwrap();
        let opaque = |name: &str, prefix: &str| RawIssuer {
            name: name.into(),
            issuer: format!("https://{name}.example/"),
            introspection_endpoint: format!("https://{name}.example/introspect"),
            introspection_client_id: "warden".into(),
            introspection_client_secret_file: file.display().to_string(),
            token_prefix: prefix.into(),
            ..RawIssuer::default()
        };
        assert!(validate_issuers(&[opaque("a", ""), opaque("b", "b_")]).is_ok());
        let two_defaults = validate_issuers(&[opaque("a", ""), opaque("b", "")]);
        assert!(
            matches!(two_defaults, Err(ConfigError::Invalid { key, .. }) if key == "issuers[1].token_prefix")
        );
        let overlap = validate_issuers(&[opaque("a", "tok_"), opaque("b", "tok_x")]);
        assert!(
            matches!(overlap, Err(ConfigError::Invalid { key, .. }) if key == "issuers[1].token_prefix")
        );
        for bad in ["wdn_", "wdn_x", "w", "a b"] {
            assert_eq!(key_of(opaque("a", bad)), "issuers[0].token_prefix", "{bad}");
        }
    }

    #[test]
    fn static_keys_are_read_once_and_must_hold_a_usable_key() {
        let r = RawIssuer {
            jwks_uri: String::new(),
            keys: r#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#.into(),
            ..jwt_issuer()
        };
        assert_eq!(key_of(r), "issuers[0].keys");
        let r = RawIssuer {
            jwks_uri: String::new(),
            keys: "/no/such/file.json".into(),
            ..jwt_issuer()
        };
        assert_eq!(key_of(r), "issuers[0].keys");
    }
}
