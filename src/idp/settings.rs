//! `[[issuers]]`: the identity providers whose access tokens Warden accepts besides its own, as
//! written (`RawIssuer`, refusing unknown keys) and validated ([`IssuerSettings`], by
//! `config/issuers.rs`, which reads static key sets and introspection secrets once, so a bad one
//! stops Warden before it binds).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use http::Uri;
use serde::{Deserialize, Serialize};

use super::jwk::{Alg, KeySet};
use super::jwt::Times;

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
    /// The strings, whether one or many were written.
    pub fn to_vec(&self) -> Vec<String> {
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
