//! Routing: a request path and method become either one of Warden's own endpoints or a proxied
//! route with its policy. Routes are compiled once at start-up and matched in declaration order;
//! a path no route matches is denied.

use std::borrow::Cow;

use http::Method;

use crate::policy::Policy;

mod tokens;
pub use tokens::{Rest, TokensBase, TokensPath};

/// `[endpoints]`: the paths of Warden's own endpoints, validated by `config/endpoints.rs`.
#[derive(Debug, Clone)]
pub struct EndpointSettings {
    pub healthz: String,
    pub readyz: String,
    pub readyz_checks_upstream: bool,
    pub auth: String,
    pub oauth_token: String,
    pub oauth_revoke: String,
    pub oauth_introspect: String,
    /// `endpoints.tokens`, default `/ws/accounts/{account}/credentials/tokens`; `None`: off.
    pub tokens: Option<TokensBase>,
    /// `endpoints.webhooks`, default `/ws/accounts/{account}/webhooks`; `None`: off.
    pub webhooks: Option<TokensBase>,
    /// `endpoints.forward_auth`, default off (`None`).
    pub forward_auth: Option<String>,
    /// `endpoints.metrics`, default off (`None`).
    pub metrics: Option<String>,
}

/// A compiled `[[routes]]` entry.
#[derive(Debug, Clone)]
pub struct Route {
    /// `name`, default the path pattern; shown in logs.
    pub name: String,
    /// The position in `[[routes]]` (the metrics' handles of the route are kept by it).
    pub index: usize,
    pub pattern: PathPattern,
    /// Allowed methods; empty means any.
    pub methods: Vec<Method>,
    pub policy: Policy,
}

/// One segment of a path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// Text, percent-decoded, compared with a decoded request segment.
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
    /// `router.case_insensitive`: literal segments compare ASCII-case-insensitively.
    case_insensitive: bool,
}

impl PathPattern {
    /// Parses a pattern; the error says what is wrong with it. Literal segments are
    /// percent-decoded (`%40` and `@` are the same pattern) and compare case-sensitively until
    /// [`PathPattern::case_insensitive`] says otherwise. A trailing slash is not significant.
    pub fn parse(pattern: &str) -> Result<Self, String> {
        if !pattern.starts_with('/') {
            return Err(format!("pattern '{pattern}' must start with /"));
        }
        if pattern.contains('?') || pattern.contains('#') {
            return Err(format!("pattern '{pattern}' must not contain ? or #"));
        }
        // A pattern no accepted request could match is a mistake in the config.
        if let Err(refusal) = normalize_path(pattern) {
            return Err(format!(
                "pattern '{pattern}' could never match: requests are refused when they {}",
                refusal.rule()
            ));
        }
        let body = &pattern[1..];
        let body = if body.len() > 1 {
            body.strip_suffix('/').unwrap_or(body)
        } else {
            body
        };
        let parts: Vec<&str> = body.split('/').collect();
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
                p => Segment::Literal(
                    percent_encoding::percent_decode_str(p)
                        .decode_utf8()
                        .map_err(|_| format!("in '{pattern}', segment '{p}' is not UTF-8"))?
                        .into_owned(),
                ),
            };
            segments.push(seg);
        }
        Ok(Self {
            segments,
            case_insensitive: false,
        })
    }

    /// Sets whether literal segments compare ASCII-case-insensitively (`router.case_insensitive`).
    pub fn case_insensitive(mut self, yes: bool) -> Self {
        self.case_insensitive = yes;
        self
    }

    /// Whether every literal segment is ASCII (only ASCII letters are compared without case).
    pub fn is_ascii(&self) -> bool {
        self.segments.iter().all(|s| match s {
            Segment::Literal(l) => l.is_ascii(),
            Segment::One | Segment::Rest => true,
        })
    }

    /// Whether a decoded path segment is the literal `lit`.
    fn same(&self, segment: &str, lit: &str) -> bool {
        segment == lit || (self.case_insensitive && segment.eq_ignore_ascii_case(lit))
    }

    /// Whether `path` matches: the decoded path of [`normalize_path`], without query. One
    /// trailing slash is not significant (`/a/` is `/a`), as for most upstream routers, and a
    /// path ending in `name.ext` matches where one ending in `name` would.
    pub fn matches(&self, path: &str) -> bool {
        let Some(rest) = path.strip_prefix('/') else {
            return false;
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let mut parts = rest.split('/').peekable();
        for (i, seg) in self.segments.iter().enumerate() {
            match seg {
                Segment::Rest => return true,
                Segment::Literal(lit) => match parts.next() {
                    Some(p) if self.same(p, lit) => {}
                    // Rails' `(.:format)` and Spring's suffix match run the handler of `name`
                    // for a last segment `name.json`: so does the policy.
                    Some(p)
                        if parts.peek().is_none()
                            && self.segments[i + 1..].iter().all(|s| *s == Segment::Rest)
                            && !lit.is_empty()
                            && p.len() > lit.len() + 1
                            && p.as_bytes()[lit.len()] == b'.'
                            && p.get(..lit.len()).is_some_and(|stem| self.same(stem, lit)) => {}
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

/// Why a request path is refused (400 `invalid_path`, before routing, never forwarded). Each is
/// a spelling that some upstream reads as another path than Warden's router would, so that it
/// could reach a handler under the policy of another route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathRefusal {
    /// Not an absolute path (`*`, authority-form).
    NotAbsolute,
    /// `.` or `..`, also percent-encoded: upstreams resolve them.
    DotSegment,
    /// `//` inside the path: upstreams merge them.
    EmptySegment,
    /// `%2F` or `%5C`: upstreams that decode before splitting see another path.
    EncodedSeparator,
    /// `\`: some servers read it as `/`.
    Backslash,
    /// `;` (or `%3B`): Tomcat, Jetty and Spring drop `;params` from segments (`/..;/`).
    PathParameter,
    /// `%3F` or `%23`: a server that decodes and re-parses sees a query or fragment.
    EncodedDelimiter,
    /// `%` without two hex digits after it (IIS reads `%u002e`).
    MalformedEscape,
    /// `%25` followed by an escape: double-decoding servers see another character.
    DoubleEncoding,
    /// A control character (`%00`-`%1F`, `%7F`, U+0080-U+009F), e.g. `%00` truncating a path.
    ControlCharacter,
    /// Escapes that are not UTF-8, such as overlong `%C0%AE` (old decoders read `.`).
    NotUtf8,
    /// `İ ı ſ K`: their simple case mapping is an ASCII letter, so case-insensitive routers
    /// (ASP.NET's OrdinalIgnoreCase) match them to `i`, `s`, `k`.
    CaseFoldsToAscii,
    /// A segment ending in a dot: Windows/IIS drop it, and Spring's suffix matching ignores it.
    TrailingDot,
    /// A segment starting or ending with white space (U+00A0 too): some routers trim segments.
    EdgeSpace,
}

impl PathRefusal {
    /// What the path must not do, completing "requests are refused when they …".
    pub fn rule(self) -> &'static str {
        match self {
            PathRefusal::NotAbsolute => "do not start with /",
            PathRefusal::DotSegment => "hold . or .. segments (also percent-encoded)",
            PathRefusal::EmptySegment => "hold empty segments (//)",
            PathRefusal::EncodedSeparator => "hold an encoded slash or backslash (%2F, %5C)",
            PathRefusal::Backslash => "hold a backslash",
            PathRefusal::PathParameter => "hold ; (path parameters, also %3B)",
            PathRefusal::EncodedDelimiter => "hold an encoded ? or # (%3F, %23)",
            PathRefusal::MalformedEscape => "hold a % not followed by two hex digits",
            PathRefusal::DoubleEncoding => "are percent-encoded twice (%25 followed by an escape)",
            PathRefusal::ControlCharacter => {
                "hold a control character (%00-%1F, %7F, U+0080-U+009F)"
            }
            PathRefusal::NotUtf8 => "hold escapes that do not decode to UTF-8",
            PathRefusal::CaseFoldsToAscii => {
                "hold U+0130, U+0131, U+017F or U+212A (case-insensitive servers read them as i, s or k)"
            }
            PathRefusal::TrailingDot => "hold a segment ending in a dot",
            PathRefusal::EdgeSpace => "hold a segment starting or ending with white space",
        }
    }

    /// The `detail` of the 400 `invalid_path` problem.
    pub fn detail(self) -> &'static str {
        match self {
            PathRefusal::NotAbsolute => "send an absolute path starting with /",
            PathRefusal::DotSegment => {
                "send the path without . or .. segments (also when percent-encoded); resolve them first"
            }
            PathRefusal::EmptySegment => "send the path without empty segments (//)",
            PathRefusal::EncodedSeparator => {
                "send the path without encoded slashes or backslashes (%2F, %5C)"
            }
            PathRefusal::Backslash => "send the path without backslashes",
            PathRefusal::PathParameter => {
                "send the path without ; (path parameters such as ;jsessionid are refused, also as %3B)"
            }
            PathRefusal::EncodedDelimiter => "send the path without encoded ? or # (%3F, %23)",
            PathRefusal::MalformedEscape => {
                "every % in the path must start an escape of two hex digits (%XX)"
            }
            PathRefusal::DoubleEncoding => {
                "send the path percent-encoded once: %25 followed by an escape is refused"
            }
            PathRefusal::ControlCharacter => {
                "send the path without control characters (%00-%1F, %7F, U+0080-U+009F)"
            }
            PathRefusal::NotUtf8 => "percent-escapes in the path must decode to UTF-8",
            PathRefusal::CaseFoldsToAscii => {
                "send the path without U+0130, U+0131, U+017F or U+212A: case-insensitive servers read them as ASCII letters"
            }
            PathRefusal::TrailingDot => "send the path without segments that end in a dot",
            PathRefusal::EdgeSpace => {
                "send the path without white space at the start or end of a segment"
            }
        }
    }
}

/// A request path in the two forms Warden uses: `decoded` for routing, `forwarded` for the
/// upstream. Both borrow the request's path when it has nothing to normalise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalPath<'a> {
    /// Every escape decoded (UTF-8): what route patterns match.
    pub decoded: Cow<'a, str>,
    /// RFC 3986 §6.2.2 normal form: escapes of unreserved characters decoded, other escapes
    /// kept with upper-case hex, raw non-ASCII bytes percent-encoded. Case is kept.
    pub forwarded: Cow<'a, str>,
}

/// Checks a request path and computes its [`NormalPath`], or says why it is refused. Routing
/// on the decoded form and forwarding the normal form means a spelling (`/%61dmin`) reaches
/// the upstream under the policy of the path the upstream will read; every spelling that
/// upstreams read in different ways (dot-segments, `;`, double encoding, …) is refused.
pub fn normalize_path(path: &str) -> Result<NormalPath<'_>, PathRefusal> {
    if !path.starts_with('/') {
        return Err(PathRefusal::NotAbsolute);
    }
    let bytes = path.as_bytes();
    let (decoded, forwarded) = if !bytes.iter().any(|&b| b == b'%' || b >= 0x80) {
        (Cow::Borrowed(path), Cow::Borrowed(path))
    } else {
        let mut decoded = Vec::with_capacity(bytes.len());
        let mut forwarded = String::with_capacity(bytes.len() + 8);
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if b == b'%' {
                let (Some(hi), Some(lo)) = (
                    bytes.get(i + 1).copied().and_then(hex_value),
                    bytes.get(i + 2).copied().and_then(hex_value),
                ) else {
                    return Err(PathRefusal::MalformedEscape);
                };
                let c = hi << 4 | lo;
                match c {
                    b'/' | b'\\' => return Err(PathRefusal::EncodedSeparator),
                    b'?' | b'#' => return Err(PathRefusal::EncodedDelimiter),
                    _ => {}
                }
                if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~') {
                    forwarded.push(char::from(c));
                } else {
                    push_escape(&mut forwarded, c);
                }
                decoded.push(c);
                i += 3;
            } else {
                if b >= 0x80 {
                    push_escape(&mut forwarded, b);
                } else {
                    forwarded.push(char::from(b));
                }
                decoded.push(b);
                i += 1;
            }
        }
        let decoded = String::from_utf8(decoded).map_err(|_| PathRefusal::NotUtf8)?;
        let forwarded = if forwarded == path {
            Cow::Borrowed(path)
        } else {
            Cow::Owned(forwarded)
        };
        (Cow::Owned(decoded), forwarded)
    };
    check_decoded(&decoded)?;
    Ok(NormalPath { decoded, forwarded })
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn push_escape(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(char::from(HEX[usize::from(b >> 4)]));
    out.push(char::from(HEX[usize::from(b & 0xf)]));
}

/// The checks on the decoded path (see [`PathRefusal`]).
fn check_decoded(decoded: &str) -> Result<(), PathRefusal> {
    let mut chars = decoded.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => return Err(PathRefusal::Backslash),
            ';' => return Err(PathRefusal::PathParameter),
            // The only characters whose simple case mapping is ASCII (a unit test checks it).
            '\u{130}' | '\u{131}' | '\u{17f}' | '\u{212a}' => {
                return Err(PathRefusal::CaseFoldsToAscii);
            }
            '%' => {
                // Decoded once, this is still an escape: `%2e` or IIS's `%u002e`.
                let rest = chars.clone();
                let hex2 = rest.clone().take(2).filter(char::is_ascii_hexdigit).count() == 2;
                let mut u = rest;
                let iis = matches!(u.next(), Some('u' | 'U'))
                    && u.take(4).filter(char::is_ascii_hexdigit).count() == 4;
                if hex2 || iis {
                    return Err(PathRefusal::DoubleEncoding);
                }
            }
            c if c.is_control() => return Err(PathRefusal::ControlCharacter),
            _ => {}
        }
    }
    let mut segments = decoded[1..].split('/').peekable();
    while let Some(segment) = segments.next() {
        if segment.is_empty() {
            // A trailing slash (an empty last segment) is ordinary; `//` inside is not.
            if segments.peek().is_some() {
                return Err(PathRefusal::EmptySegment);
            }
        } else if segment == "." || segment == ".." {
            return Err(PathRefusal::DotSegment);
        } else if segment.ends_with('.') {
            return Err(PathRefusal::TrailingDot);
        } else if segment.starts_with(char::is_whitespace) || segment.ends_with(char::is_whitespace)
        {
            return Err(PathRefusal::EdgeSpace);
        }
    }
    Ok(())
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
    /// Anything under `endpoints.webhooks` (an account's webhook subscriptions).
    Webhooks,
    /// `endpoints.forward_auth`, or a path under it (Envoy `ext_authz` puts the original path
    /// there).
    ForwardAuth,
    /// `endpoints.metrics` (on the main listener).
    Metrics,
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
    tokens: Option<TokensBase>,
    /// The token API's paths as a pattern (`{base}/**`), compared as routes are.
    tokens_space: Option<PathPattern>,
    webhooks: Option<TokensBase>,
    /// The webhooks API's paths as a pattern (`{base}/**`).
    webhooks_space: Option<PathPattern>,
    /// `endpoints.forward_auth` and the paths under it (`{path}/**`).
    forward_auth: Option<(String, PathPattern)>,
    /// `endpoints.metrics` when served on the main listener.
    metrics: Option<String>,
    routes: Vec<Route>,
    /// `router.case_insensitive`: own endpoints are recognised in any ASCII case too.
    case_insensitive: bool,
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
            tokens_space: endpoints
                .tokens
                .as_ref()
                .and_then(|t| PathPattern::parse(&format!("{}/**", t.pattern())).ok()),
            tokens: endpoints.tokens.clone(),
            webhooks_space: endpoints
                .webhooks
                .as_ref()
                .and_then(|t| PathPattern::parse(&format!("{}/**", t.pattern())).ok()),
            webhooks: endpoints.webhooks.clone(),
            forward_auth: endpoints.forward_auth.as_ref().and_then(|p| {
                let under = PathPattern::parse(&format!("{}/**", p.trim_end_matches('/'))).ok()?;
                Some((p.clone(), under))
            }),
            metrics: endpoints.metrics.clone(),
            routes,
            case_insensitive: false,
        }
    }

    /// Recognises Warden's own endpoints without ASCII case (`router.case_insensitive`), as
    /// routes are: no spelling of them is forwarded to an upstream that ignores case.
    pub fn case_insensitive(mut self, yes: bool) -> Self {
        self.case_insensitive = yes;
        self.tokens_space = self.tokens_space.map(|p| p.case_insensitive(yes));
        self.webhooks_space = self.webhooks_space.map(|p| p.case_insensitive(yes));
        self.forward_auth = self
            .forward_auth
            .map(|(path, under)| (path, under.case_insensitive(yes)));
        self
    }

    /// Whether `path` names the own endpoint `own` as a route pattern would: one trailing
    /// slash or a format suffix (`.json`) aside, and without ASCII case when the router ignores it.
    fn is_own(&self, path: &str, own: &str) -> bool {
        let path = match path.strip_suffix('/') {
            Some(p) if !p.is_empty() => p,
            _ => path,
        };
        let same = |p: &str| p == own || (self.case_insensitive && p.eq_ignore_ascii_case(own));
        same(path)
            || (path.len() > own.len() + 1
                && path.as_bytes()[own.len()] == b'.'
                && !path[own.len()..].contains('/')
                && path.get(..own.len()).is_some_and(same))
    }

    /// Resolves a request by its decoded path ([`NormalPath::decoded`]). Warden's own endpoints
    /// win over routes, so they are never forwarded. A route that allows `GET` also takes
    /// `HEAD`, which upstreams answer with the GET handler. A request whose path matched a
    /// route for other methods goes on to a later route that lists its method, or to one for
    /// any method at least as strict; else it gets 405.
    pub fn resolve(&self, method: &Method, path: &str) -> Target<'_> {
        if self.is_own(path, &self.healthz) {
            return Target::Health;
        }
        if self.is_own(path, &self.readyz) {
            return Target::Ready;
        }
        if self.is_own(path, &self.auth) {
            return Target::Auth;
        }
        if self.is_own(path, &self.oauth_token) {
            return Target::OAuthToken;
        }
        if self.is_own(path, &self.oauth_revoke) {
            return Target::OAuthRevoke;
        }
        if self.is_own(path, &self.oauth_introspect) {
            return Target::OAuthIntrospect;
        }
        if let Some(metrics) = &self.metrics {
            if self.is_own(path, metrics) {
                return Target::Metrics;
            }
        }
        if let Some((own, under)) = &self.forward_auth {
            if self.is_own(path, own) || under.matches(path) {
                return Target::ForwardAuth;
            }
        }
        if self.tokens.as_ref().is_some_and(|t| t.claims(path))
            || self.tokens_space.as_ref().is_some_and(|p| p.matches(path))
        {
            return Target::Tokens;
        }
        if self.webhooks.as_ref().is_some_and(|t| t.claims(path))
            || self
                .webhooks_space
                .as_ref()
                .is_some_and(|p| p.matches(path))
        {
            return Target::Webhooks;
        }
        let mut allow: Vec<&Method> = Vec::new();
        // Routes whose path matched but whose methods did not.
        let mut passed: Vec<&Route> = Vec::new();
        for route in &self.routes {
            if !route.pattern.matches(path) {
                continue;
            }
            let listed = route.methods.contains(method)
                || (*method == Method::HEAD && route.methods.contains(&Method::GET));
            // Past a route that took this path for other methods, a route for any method takes
            // the request only if it is at least as strict: a catch-all must not hand PUT on a
            // protected path to an upstream handler that runs for any method.
            let fallback = route.methods.is_empty()
                && passed
                    .iter()
                    .all(|p| route.policy.at_least_as_strict_as(&p.policy));
            if listed || fallback {
                return Target::Proxy(route);
            }
            if !route.methods.is_empty() {
                passed.push(route);
                allow.extend(route.methods.iter());
            }
        }
        if !passed.is_empty() {
            let mut names: Vec<&str> = allow.iter().map(|m| m.as_str()).collect();
            names.sort_unstable();
            names.dedup();
            return Target::MethodNotAllowed(names.join(", "));
        }
        Target::NotFound
    }
}

#[cfg(test)]
mod tests;
