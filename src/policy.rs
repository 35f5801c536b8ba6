//! The route-policy vocabulary (DESIGN.md §3): what a request on a route must prove (its
//! authentication, signature and idempotency modes, the scopes it needs, which checks enforce)
//! and the public origin clients sign against. Plain types and pure decisions: `config/` builds
//! them, the router attaches them to routes, and the gates enforce them.

use http::Method;
use serde::{Deserialize, Serialize};

/// How a proxied route authenticates callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Public: forwarded as it is, with no credential check.
    None,
    /// A bearer token or API key issued by Warden (`Authorization: Bearer`).
    Bearer,
}

/// Whether requests must carry an RFC 9421 signature (route `signature`, `signatures.policy`,
/// `signatures.auth_endpoint`, client `signature`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignatureMode {
    /// Required when the caller's client has registered a signing key; a signature that is
    /// present is checked either way. The default.
    #[default]
    Auto,
    /// Every request must be signed by a key of the caller's client.
    Required,
    /// A signature is checked when present, and not required.
    Optional,
    /// Signatures are not looked at.
    Off,
}

impl SignatureMode {
    /// The mode a request gets: a route (or endpoint) mode other than `auto` decides; under
    /// `auto` the client's own mode does, and `auto` there means "required once it has a key".
    pub fn effective(self, client: SignatureMode, client_has_keys: bool) -> SignatureMode {
        match (self, client) {
            (SignatureMode::Auto, SignatureMode::Auto) if client_has_keys => {
                SignatureMode::Required
            }
            (SignatureMode::Auto, SignatureMode::Auto) => SignatureMode::Optional,
            (SignatureMode::Auto, client) => client,
            (route, _) => route,
        }
    }
}

/// What a request on a route must prove before it is forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub auth: AuthMode,
    /// `signature`, default `signatures.policy`; always `off` on public routes.
    pub signature: SignatureMode,
    /// `public_url`, default `signatures.public_url`.
    pub public_url: Option<PublicUrl>,
    /// `signature_cover`: components this route's signatures must cover on top of the global ones.
    pub cover: Vec<String>,
    /// `idempotency`, default `auto`; always `off` on public routes.
    pub idempotency: IdempotencyMode,
    /// `scopes` and `audience`: what a credential must be granted (bearer routes only).
    pub require: crate::scope::Requirement,
    /// `sign_responses`, default false: Warden signs this route's responses.
    pub sign_responses: bool,
    /// `[routes.checks]`: each check enforces (the default) or only reports.
    pub checks: crate::checks::Checks,
}

impl Policy {
    /// Whether every request this policy admits, `other` admits too: public is the weakest; a
    /// bearer policy needs scopes and an audience that imply `other`'s, a signature mode at
    /// least as strict (off < optional < auto < required) and every component it covers; and
    /// it signs its responses if `other` does.
    pub fn at_least_as_strict_as(&self, other: &Policy) -> bool {
        if other.sign_responses && !self.sign_responses {
            return false;
        }
        let rank = |m: SignatureMode| match m {
            SignatureMode::Off => 0,
            SignatureMode::Optional => 1,
            SignatureMode::Auto => 2,
            SignatureMode::Required => 3,
        };
        match (other.auth, self.auth) {
            (AuthMode::None, _) => true,
            (AuthMode::Bearer, AuthMode::None) => false,
            (AuthMode::Bearer, AuthMode::Bearer) => {
                self.require.implies(&other.require)
                    && rank(self.signature) >= rank(other.signature)
                    && other.cover.iter().all(|c| self.cover.contains(c))
                    && self.checks.at_least_as_strict_as(&other.checks)
            }
        }
    }

    /// A policy with no signature requirements.
    pub fn new(auth: AuthMode) -> Self {
        Self {
            auth,
            signature: SignatureMode::Off,
            public_url: None,
            cover: Vec::new(),
            idempotency: match auth {
                AuthMode::None => IdempotencyMode::Off,
                AuthMode::Bearer => IdempotencyMode::Auto,
            },
            require: crate::scope::Requirement::default(),
            sign_responses: false,
            checks: crate::checks::Checks::default(),
        }
    }
}

/// Whether a route's requests need an idempotency key (route `idempotency`,
/// `idempotency.auth_endpoint`). Safe methods (GET, HEAD, OPTIONS, TRACE) never use keys.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdempotencyMode {
    /// The default: a key is required on `idempotency.require_methods` (default POST) when the
    /// request is signed, and honoured when present otherwise. Public routes: off.
    #[default]
    Auto,
    /// Every unsafe method must carry a key (400 `idempotency_key_missing`).
    Required,
    /// A key is honoured when present.
    Optional,
    /// Keys are not looked at (and are forwarded as they are).
    Off,
}

/// What one request must do about keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    Required,
    Optional,
    Off,
}

impl IdempotencyMode {
    /// What a request with `method` needs under this mode; `signed` says whether it carries a
    /// signature (checked before this runs).
    pub fn need(self, method: &Method, signed: bool, require_methods: &[Method]) -> Need {
        if is_safe(method) {
            return Need::Off;
        }
        match self {
            IdempotencyMode::Auto if signed && require_methods.contains(method) => Need::Required,
            IdempotencyMode::Auto | IdempotencyMode::Optional => Need::Optional,
            IdempotencyMode::Required => Need::Required,
            IdempotencyMode::Off => Need::Off,
        }
    }
}

/// Whether `method` is safe (RFC 9110 §9.2.1): GET, HEAD, OPTIONS, TRACE.
fn is_safe(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// The external origin clients sign against (`signatures.public_url`, or a route's
/// `public_url`): `@scheme`, `@authority` and a path prefix for `@path` / `@target-uri`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicUrl {
    /// `http` or `https`.
    pub scheme: String,
    /// `host[:port]` as configured.
    pub authority: String,
    /// A path the load balancer strips before Warden sees the request ("" for none).
    pub prefix: String,
}
