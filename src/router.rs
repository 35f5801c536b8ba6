//! Routing: a request path and method become either one of Warden's own endpoints or a proxied
//! route with its policy. Routes are compiled once at start-up and matched in declaration order;
//! a path no route matches is denied.

use http::Method;
use serde::{Deserialize, Serialize};

use crate::config::EndpointSettings;

/// How a proxied route authenticates callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Public: forwarded as it is, with no credential check.
    None,
    /// A bearer token or API key issued by Warden (`Authorization: Bearer`).
    Bearer,
}

/// What a request on a route must prove before it is forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub auth: AuthMode,
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
            policy: Policy {
                auth: AuthMode::None,
            },
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
}
