//! `[[issuers]]`: the identity providers whose access tokens Warden accepts besides its own, as
//! written (`RawIssuer`, refusing unknown keys) and validated ([`IssuerSettings`]). Static key
//! sets and introspection secrets are read here, once, so a bad one stops Warden before it binds.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http::Uri;
use serde::{Deserialize, Serialize};

use super::jwk::{Alg, KeySet};
use super::jwt::Times;
use crate::config::ConfigError;

/// A string or a list of strings (`audience = "a"` or `audience = ["a", "b"]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl Default for OneOrMany {
    fn default() -> Self {
        OneOrMany::Many(Vec::new())
    }
}

impl OneOrMany {
    fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// How Warden authenticates to an introspection endpoint (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// HTTP Basic with the form-encoded id and secret (the default).
    #[default]
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the form body.
    ClientSecretPost,
}

/// One `[[issuers]]` table as written. See config/reference.toml for every key and default.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawIssuer {
    /// Required: Warden's name for the issuer (client ids of its tokens end in `@name`).
    pub name: String,
    /// Required: the exact `iss` of its tokens.
    pub issuer: String,
    /// The audiences Warden accepts; a token must carry one of them in `aud`. Required for JWT
    /// issuers; for introspection, checked when set.
    pub audience: OneOrMany,
    /// Where the issuer publishes its JWKS (https unless `allow_http`).
    pub jwks_uri: String,
    /// A JWKS document, inline (starting with `{`) or as a file path, instead of `jwks_uri`.
    pub keys: String,
    /// Default: EdDSA, ES256, ES384, RS256, PS256. `none` and HS* are never accepted.
    pub algorithms: Vec<String>,
    /// Default 10m: how long a fetched JWKS is used before it is fetched again.
    #[serde(with = "humantime_serde")]
    pub jwks_cache_ttl: Duration,
    /// Default 30s: the least time between two fetches of the JWKS (on an unknown `kid`, or
    /// after a failed fetch).
    #[serde(with = "humantime_serde")]
    pub jwks_refetch_min_interval: Duration,
    /// Default 60s: clock skew tolerated on `exp`, `nbf` and `iat`.
    #[serde(with = "humantime_serde")]
    pub leeway: Duration,
    /// Default 0s (off): tokens whose `iat` is older are refused (and `iat` becomes required).
    #[serde(with = "humantime_serde")]
    pub max_token_age: Duration,
    /// Default false: only `typ: at+jwt` (RFC 9068). true: `JWT` or no `typ` pass as well.
    pub allow_typ_jwt: bool,
    /// Default `client_id` (RFC 9068): the claim naming the client (`azp`, `cid`, `appid` …).
    pub client_id_claim: String,
    /// Remote client id → Warden client id: such tokens act as that Warden client (its
    /// signing keys, trusted IPs, account, and scopes as a ceiling). Default none.
    pub clients: BTreeMap<String, String>,
    /// The issuer's scopes → Warden scopes. Default none: scopes are taken as they are. When
    /// set, only the scopes it lists are kept.
    pub scope_map: BTreeMap<String, Vec<String>>,
    /// The account of its tokens' identities; default the issuer's `name`.
    pub account: String,
    /// RFC 7662 endpoint for opaque tokens (https unless `allow_http`).
    pub introspection_endpoint: String,
    /// Warden's client id at the introspection endpoint.
    pub introspection_client_id: String,
    /// A file holding Warden's client secret at the introspection endpoint.
    pub introspection_client_secret_file: String,
    /// Or an environment variable holding it.
    pub introspection_client_secret_env: String,
    /// Default `client_secret_basic`; or `client_secret_post`.
    pub introspection_auth: ClientAuth,
    /// Default 60s: the longest an `active` answer is used (never past the token's `exp`).
    #[serde(with = "humantime_serde")]
    pub introspection_cache_ttl: Duration,
    /// Default 5s: how long an `active: false` answer is used.
    #[serde(with = "humantime_serde")]
    pub negative_cache_ttl: Duration,
    /// Default 64: most introspection calls under way at once (503 past it).
    pub introspection_max_in_flight: usize,
    /// Opaque tokens starting with this go to this issuer's endpoint. Default none: the one
    /// introspection issuer without a prefix takes opaque tokens no prefix claims.
    pub token_prefix: String,
    /// Default 10000: tokens whose verification or introspection is remembered.
    pub cache_capacity: u64,
    /// Default 5s: the longest a JWKS fetch or an introspection call may take.
    #[serde(with = "humantime_serde")]
    pub fetch_timeout: Duration,
    /// Default 256 KiB: the largest JWKS or introspection response read.
    pub max_response_bytes: usize,
    /// Default false: http:// URLs for `jwks_uri` and `introspection_endpoint` are refused.
    pub allow_http: bool,
}

impl Default for RawIssuer {
    fn default() -> Self {
        Self {
            name: String::new(),
            issuer: String::new(),
            audience: OneOrMany::default(),
            jwks_uri: String::new(),
            keys: String::new(),
            algorithms: Alg::ALL.iter().map(|a| a.name().to_string()).collect(),
            jwks_cache_ttl: Duration::from_secs(600),
            jwks_refetch_min_interval: Duration::from_secs(30),
            leeway: Duration::from_secs(60),
            max_token_age: Duration::ZERO,
            allow_typ_jwt: false,
            client_id_claim: "client_id".into(),
            clients: BTreeMap::new(),
            scope_map: BTreeMap::new(),
            account: String::new(),
            introspection_endpoint: String::new(),
            introspection_client_id: String::new(),
            introspection_client_secret_file: String::new(),
            introspection_client_secret_env: String::new(),
            introspection_auth: ClientAuth::default(),
            introspection_cache_ttl: Duration::from_secs(60),
            negative_cache_ttl: Duration::from_secs(5),
            introspection_max_in_flight: 64,
            token_prefix: String::new(),
            cache_capacity: 10_000,
            fetch_timeout: Duration::from_secs(5),
            max_response_bytes: 256 * 1024,
            allow_http: false,
        }
    }
}

/// A secret read from a file or the environment; never printed.
#[derive(Clone)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// Where an issuer's keys come from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// `jwks_uri`, fetched and cached.
    Fetched(Uri),
    /// `keys`, read at start.
    Static(Arc<KeySet>),
}

/// The introspection side of an issuer.
#[derive(Debug, Clone)]
pub struct IntrospectionSettings {
    pub endpoint: Uri,
    pub client_id: String,
    pub secret: Secret,
    pub auth: ClientAuth,
    pub cache_ttl: Duration,
    pub negative_ttl: Duration,
    pub max_in_flight: usize,
}

/// One `[[issuers]]` table, validated.
#[derive(Debug, Clone)]
pub struct IssuerSettings {
    pub name: String,
    pub issuer: String,
    pub audiences: Vec<String>,
    /// `None`: the issuer's JWTs are introspected, not verified here.
    pub keys: Option<KeySource>,
    pub algorithms: Vec<Alg>,
    pub jwks_cache_ttl: Duration,
    pub jwks_refetch_min_interval: Duration,
    pub times: Times,
    pub allow_typ_jwt: bool,
    pub client_id_claim: String,
    pub clients: HashMap<String, String>,
    pub scope_map: Option<HashMap<String, Vec<String>>>,
    pub account: String,
    pub introspection: Option<IntrospectionSettings>,
    pub token_prefix: Option<String>,
    pub cache_capacity: u64,
    pub fetch_timeout: Duration,
    pub max_response_bytes: usize,
}

fn invalid(key: impl Into<String>, detail: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        detail: detail.into(),
    }
}

/// Validates every `[[issuers]]` table.
pub fn validate(raw: &[RawIssuer]) -> Result<Vec<IssuerSettings>, ConfigError> {
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
        super::jwk::parse_set(text.as_bytes()).map_err(|e| invalid(key, e.to_string()))?;
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
        match validate(&[r]) {
            Err(ConfigError::Invalid { key, .. }) => key,
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn a_jwt_issuer_gets_the_documented_defaults() {
        let s = validate(&[jwt_issuer()]).unwrap().remove(0);
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
        assert!(validate(&[r]).is_ok());
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
        let s = validate(&[ok]).unwrap().remove(0);
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
        assert!(validate(&[opaque("a", ""), opaque("b", "b_")]).is_ok());
        let two_defaults = validate(&[opaque("a", ""), opaque("b", "")]);
        assert!(
            matches!(two_defaults, Err(ConfigError::Invalid { key, .. }) if key == "issuers[1].token_prefix")
        );
        let overlap = validate(&[opaque("a", "tok_"), opaque("b", "tok_x")]);
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
