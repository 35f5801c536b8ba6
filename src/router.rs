//! Routing: a request path and method become either one of Warden's own endpoints or a proxied
//! route with its policy. Routes are compiled once at start-up and matched in declaration order;
//! a path no route matches is denied.

use http::Method;
use serde::{Deserialize, Serialize};

use crate::config::{EndpointSettings, PublicUrl};
use crate::gate::idempotency::IdempotencyMode;

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
}

impl Policy {
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
        }
    }
}

/// A compiled `[[routes]]` entry.
#[derive(Debug, Clone)]
pub struct Route {
    /// `name`, default the path pattern; shown in logs.
    pub name: String,
    pub pattern: PathPattern,
    /// Allowed methods; empty means any.
    pub methods: Vec<Method>,
    pub policy: Policy,
}

/// One segment of a path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    /// `*` or `{name}`: exactly one non-empty segment.
    One,
    /// `**`: zero or more trailing segments; only last.
    Rest,
}

/// A path pattern: `/v1/orders`, `/v1/orders/{id}`, `/v1/*/items`, `/static/**`, `/**`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    segments: Vec<Segment>,
}

impl PathPattern {
    /// Parses a pattern; the error says what is wrong with it.
    pub fn parse(pattern: &str) -> Result<Self, String> {
        if !pattern.starts_with('/') {
            return Err(format!("pattern '{pattern}' must start with /"));
        }
        if pattern.contains('?') || pattern.contains('#') {
            return Err(format!("pattern '{pattern}' must not contain ? or #"));
        }
        let parts: Vec<&str> = pattern[1..].split('/').collect();
        let mut segments = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            let seg = match *part {
                "**" if last => Segment::Rest,
                "**" => return Err(format!("in '{pattern}', ** may only be the last segment")),
                "*" => Segment::One,
                p if p.starts_with('{') && p.ends_with('}') && p.len() > 2 => Segment::One,
                p if p.contains('*') || p.contains('{') || p.contains('}') => {
                    return Err(format!(
                        "in '{pattern}', segment '{p}' mixes text with a wildcard"
                    ));
                }
                p => Segment::Literal(p.to_string()),
            };
            segments.push(seg);
        }
        Ok(Self { segments })
    }

    /// Whether `path` (without query) matches. Segments compare byte for byte, undecoded.
    pub fn matches(&self, path: &str) -> bool {
        let Some(rest) = path.strip_prefix('/') else {
            return false;
        };
        let mut parts = rest.split('/');
        for seg in &self.segments {
            match seg {
                Segment::Rest => return true,
                Segment::Literal(lit) => match parts.next() {
                    Some(p) if p == lit => {}
                    _ => return false,
                },
                Segment::One => match parts.next() {
                    Some(p) if !p.is_empty() => {}
                    _ => return false,
                },
            }
        }
        parts.next().is_none()
    }
}

/// Whether a request path is in the one form every upstream reads the same way: absolute, no
/// dot-segments (`.`/`..`, also percent-encoded), no encoded slash or backslash, no empty
/// segment. Anything else could match one route here and mean another path upstream (where
/// `/public/../admin` becomes `/admin`), so it is refused rather than normalised.
pub fn path_is_canonical(path: &str) -> bool {
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    let bytes = path.as_bytes();
    if bytes.contains(&b'\\') {
        return false;
    }
    let encoded_separator = bytes.windows(3).any(|w| {
        w[0] == b'%'
            && matches!(
                [w[1], w[2].to_ascii_lowercase()],
                [b'2', b'f'] | [b'5', b'c'] | [b'0', b'0']
            )
    });
    if encoded_separator {
        return false;
    }
    let mut segments = rest.split('/').peekable();
    while let Some(segment) = segments.next() {
        // A trailing slash (an empty last segment) is ordinary; `//` inside is not.
        if segment.is_empty() && segments.peek().is_some() || is_dot_segment(segment) {
            return false;
        }
    }
    true
}

/// `.` or `..`, with any dot possibly written `%2e`.
fn is_dot_segment(segment: &str) -> bool {
    let mut s = segment.as_bytes();
    let mut dots = 0;
    while !s.is_empty() {
        if s[0] == b'.' {
            s = &s[1..];
        } else if s.len() >= 3 && s[0] == b'%' && s[1] == b'2' && s[2].eq_ignore_ascii_case(&b'e') {
            s = &s[3..];
        } else {
            return false;
        }
        dots += 1;
        if dots > 2 {
            return false;
        }
    }
    dots > 0
}

/// Where a request goes.
#[derive(Debug)]
pub enum Target<'a> {
    Health,
    Ready,
    /// `POST`/`DELETE /v1/auth`.
    Auth,
    /// `/v1/oauth/token`.
    OAuthToken,
    /// `/v1/oauth/revoke` (RFC 7009).
    OAuthRevoke,
    /// `/v1/oauth/introspect` (RFC 7662).
    OAuthIntrospect,
    /// Anything under `endpoints.tokens` (token management).
    Tokens,
    Proxy(&'a Route),
    /// The path matched routes, but none for this method; carries the `Allow` value.
    MethodNotAllowed(String),
    NotFound,
}

/// The compiled routing table.
#[derive(Debug, Clone)]
pub struct Router {
    healthz: String,
    readyz: String,
    auth: String,
    oauth_token: String,
    oauth_revoke: String,
    oauth_introspect: String,
    tokens: Option<crate::issuer::tokens_api::TokensBase>,
    routes: Vec<Route>,
}

impl Router {
    pub fn new(endpoints: &EndpointSettings, routes: Vec<Route>) -> Self {
        Self {
            healthz: endpoints.healthz.clone(),
            readyz: endpoints.readyz.clone(),
            auth: endpoints.auth.clone(),
            oauth_token: endpoints.oauth_token.clone(),
            oauth_revoke: endpoints.oauth_revoke.clone(),
            oauth_introspect: endpoints.oauth_introspect.clone(),
            tokens: endpoints.tokens.clone(),
            routes,
        }
    }

    /// Resolves a request. Warden's own endpoints win over routes, so they are never forwarded.
    pub fn resolve(&self, method: &Method, path: &str) -> Target<'_> {
        if path == self.healthz {
            return Target::Health;
        }
        if path == self.readyz {
            return Target::Ready;
        }
        if path == self.auth {
            return Target::Auth;
        }
        if path == self.oauth_token {
            return Target::OAuthToken;
        }
        if path == self.oauth_revoke {
            return Target::OAuthRevoke;
        }
        if path == self.oauth_introspect {
            return Target::OAuthIntrospect;
        }
        if self.tokens.as_ref().is_some_and(|t| t.claims(path)) {
            return Target::Tokens;
        }
        let mut allow: Vec<&Method> = Vec::new();
        let mut path_matched = false;
        for route in &self.routes {
            if !route.pattern.matches(path) {
                continue;
            }
            if route.methods.is_empty() || route.methods.contains(method) {
                return Target::Proxy(route);
            }
            path_matched = true;
            allow.extend(route.methods.iter());
        }
        if path_matched {
            let mut names: Vec<&str> = allow.iter().map(|m| m.as_str()).collect();
            names.sort_unstable();
            names.dedup();
            return Target::MethodNotAllowed(names.join(", "));
        }
        Target::NotFound
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, path: &str) -> bool {
        PathPattern::parse(p).unwrap().matches(path)
    }

    #[test]
    fn literal_patterns_match_exactly() {
        assert!(m("/v1/orders", "/v1/orders"));
        assert!(!m("/v1/orders", "/v1/orders/"));
        assert!(!m("/v1/orders", "/v1/orders/1"));
        assert!(!m("/v1/orders", "/v1/ordersX"));
        assert!(m("/", "/"));
        assert!(!m("/", "/a"));
    }

    #[test]
    fn single_wildcards_take_one_non_empty_segment() {
        assert!(m("/v1/orders/{id}", "/v1/orders/42"));
        assert!(!m("/v1/orders/{id}", "/v1/orders/"));
        assert!(!m("/v1/orders/{id}", "/v1/orders/42/items"));
        assert!(m("/v1/*/items", "/v1/a/items"));
    }

    #[test]
    fn double_wildcard_takes_the_rest() {
        assert!(m("/**", "/"));
        assert!(m("/**", "/anything/at/all"));
        assert!(m("/static/**", "/static"));
        assert!(m("/static/**", "/static/a/b"));
        assert!(!m("/static/**", "/staticx"));
    }

    #[test]
    fn only_canonical_paths_are_accepted() {
        for ok in [
            "/",
            "/a",
            "/a/",
            "/a/b.c",
            "/a/..b",
            "/a/.well-known",
            "/a%20b",
        ] {
            assert!(path_is_canonical(ok), "{ok}");
        }
        for bad in [
            "",
            "a",
            "/a/../b",
            "/..",
            "/a/.",
            "/a/./b",
            "/a/%2e%2E/b",
            "/a/.%2e",
            "//a",
            "/a//b",
            "/a%2fb",
            "/a%5Cb",
            "/a\\b",
            "/a%00",
        ] {
            assert!(!path_is_canonical(bad), "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn canonical_check_never_panics(s in "\\PC{0,40}") {
            let _ = path_is_canonical(&s);
        }
    }

    #[test]
    fn bad_patterns_are_refused() {
        assert!(PathPattern::parse("v1").is_err());
        assert!(PathPattern::parse("/**/x").is_err());
        assert!(PathPattern::parse("/a*").is_err());
        assert!(PathPattern::parse("/a?b").is_err());
    }

    #[test]
    fn own_endpoints_win_and_methods_narrow_routes() {
        let route = |p: &str, methods: &[Method]| Route {
            name: p.into(),
            pattern: PathPattern::parse(p).unwrap(),
            methods: methods.to_vec(),
            policy: Policy::new(AuthMode::None),
        };
        let endpoints = crate::Settings::from_toml("").unwrap().endpoints;
        let r = Router::new(
            &endpoints,
            vec![
                route("/a", &[Method::GET]),
                route("/a", &[Method::PUT]),
                route("/**", &[Method::POST]),
            ],
        );
        assert!(matches!(
            r.resolve(&Method::GET, "/healthz"),
            Target::Health
        ));
        assert!(
            matches!(r.resolve(&Method::GET, "/a"), Target::Proxy(rt) if rt.methods == [Method::GET])
        );
        match r.resolve(&Method::DELETE, "/a") {
            Target::MethodNotAllowed(allow) => assert_eq!(allow, "GET, POST, PUT"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(r.resolve(&Method::POST, "/zzz"), Target::Proxy(_)));
        assert!(matches!(
            r.resolve(&Method::POST, "/v1/oauth/token"),
            Target::OAuthToken
        ));
        let empty = Router::new(&endpoints, vec![]);
        assert!(matches!(
            empty.resolve(&Method::GET, "/a"),
            Target::NotFound
        ));
    }

    #[test]
    fn a_route_mode_other_than_auto_wins_and_auto_defers_to_the_client() {
        use SignatureMode::*;
        assert_eq!(Auto.effective(Auto, true), Required);
        assert_eq!(Auto.effective(Auto, false), Optional);
        assert_eq!(Auto.effective(Optional, true), Optional);
        assert_eq!(Auto.effective(Required, true), Required);
        assert_eq!(Auto.effective(Off, true), Off);
        assert_eq!(Off.effective(Required, true), Off);
        assert_eq!(Optional.effective(Required, true), Optional);
        assert_eq!(Required.effective(Auto, false), Required);
    }
}
