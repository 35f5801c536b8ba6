//! Scopes: which scope strings are valid, and when one scope grants another. Pure functions over
//! strings, used by route requirements, token creation (no escalation) and OAuth `scope`
//! narrowing alike. It decides nothing about HTTP beyond building a route's refusal.
//!
//! The rules (also in the README):
//! - A scope is 1–256 bytes of visible ASCII without space, `"` or `\` (RFC 6749 §3.3).
//! - A *URI scope* is `scheme://path`: the scheme is a letter followed by letters, digits, `+`,
//!   `-` or `.`, and the path is one or more non-empty segments separated by `.` or `/`
//!   (at most 32). Any other scope (`read`, `write`) is *opaque*.
//! - Comparison is byte for byte: case-sensitive, schemes included (`Table://` is not
//!   `table://`), and separators must match (`table://a.b` is not `table://a/b`).
//! - In a URI scope, a segment that is exactly `*` stands for one segment, and a segment that
//!   is exactly `**` for **one or more** segments (with any separators between them). So
//!   `table://my.app.**` grants `table://my.app.x` and `table://my.app.x.y`, but neither
//!   `table://my.app` nor `table://my.apple`. A segment mixing `*` with text (`app*`) is invalid.
//! - Opaque scopes match only themselves; `*` has no meaning in them.
//! - A held scope *grants* a wanted scope when everything the wanted one stands for is also
//!   stood for by the held one. For plain scopes that is matching; a wanted scope may itself
//!   hold wildcards: `table://**` grants `table://my.*`, but `table://my.*` does not grant
//!   `table://my.**`, nor `table://*.x` grant `table://**`.

use http::HeaderValue;

use crate::cache::Identity;
use crate::problem::Problem;

/// The longest scope accepted, in bytes.
pub const MAX_SCOPE_BYTES: usize = 256;
/// The most path segments a URI scope may have.
pub const MAX_SEGMENTS: usize = 32;

/// Why a scope string is not a valid scope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error("a scope cannot be empty")]
    Empty,
    #[error("a scope is at most {MAX_SCOPE_BYTES} bytes")]
    TooLong,
    #[error("a scope is visible ASCII without spaces, quotes or backslashes")]
    Character,
    #[error("the scheme before :// must be a letter followed by letters, digits, + - or .")]
    Scheme,
    #[error("segments after scheme:// must be non-empty and separated by single . or /")]
    EmptySegment,
    #[error("a URI scope has at most {MAX_SEGMENTS} segments")]
    TooManySegments,
    #[error("a wildcard segment is exactly * or **; it cannot be mixed with text")]
    Wildcard,
}

/// Whether `b` may appear in an RFC 6749 §3.3 scope-token (NQCHAR: `%x21 / %x23-5B /
/// %x5D-7E`, visible ASCII but `"` and `\`). Audiences take the same characters.
pub fn is_token_char(b: u8) -> bool {
    b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b)
}

/// Whether `s` is a valid client or key identifier: 1–128 of `A-Za-z0-9._:-`.
pub fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
}

/// Whether `s` is a valid OAuth scope token (RFC 6749 §3.3).
pub fn valid_scope(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_char)
}

/// Whether `s` is a valid audience: 1-256 visible ASCII without space, `"` or `\`.
pub fn valid_audience(s: &str) -> bool {
    s.len() <= 256 && valid_scope(s)
}

/// Checks that `scope` is a valid scope (see the module rules).
pub fn check(scope: &str) -> Result<(), ScopeError> {
    if scope.is_empty() {
        return Err(ScopeError::Empty);
    }
    if scope.len() > MAX_SCOPE_BYTES {
        return Err(ScopeError::TooLong);
    }
    if !scope.bytes().all(is_token_char) {
        return Err(ScopeError::Character);
    }
    match split_uri(scope) {
        None => Ok(()),
        Some(Err(e)) => Err(e),
        Some(Ok((_, path))) => {
            let mut units = [EMPTY; MAX_SEGMENTS];
            units_of(path, &mut units).map(|_| ())
        }
    }
}

/// Whether holding `held` grants `wanted`. Invalid scopes grant nothing and are granted by
/// nothing. Never panics, allocates nothing.
pub fn grants(held: &str, wanted: &str) -> bool {
    if check(held).is_err() || check(wanted).is_err() {
        return false;
    }
    match (split_uri(held), split_uri(wanted)) {
        (None, None) => held == wanted,
        (Some(Ok((hs, hp))), Some(Ok((ws, wp)))) if hs == ws => {
            let mut h = [EMPTY; MAX_SEGMENTS];
            let mut w = [EMPTY; MAX_SEGMENTS];
            match (units_of(hp, &mut h), units_of(wp, &mut w)) {
                (Ok(n), Ok(m)) => covers(&h[..n], &w[..m]),
                _ => false,
            }
        }
        _ => false,
    }
}

/// Whether any of `held` grants `wanted`.
pub fn granted(wanted: &str, held: &[String]) -> bool {
    held.iter().any(|h| grants(h, wanted))
}

/// The first of `wanted` that none of `held` grants.
pub fn first_not_granted<'a>(wanted: &'a [String], held: &[String]) -> Option<&'a str> {
    wanted
        .iter()
        .find(|w| !granted(w, held))
        .map(String::as_str)
}

/// The scopes of a space-separated list (`table://a.b level://admin`), in order, without
/// empty entries.
pub fn split_list(text: &str) -> impl Iterator<Item = &str> {
    text.split(' ').filter(|s| !s.is_empty())
}

/// What a route demands of a credential beyond being valid: an audience and scopes
/// (`[[routes]] audience`, `scopes`). Built once from the configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requirement {
    /// Every one of these must be granted by a scope the credential holds.
    scopes: Vec<String>,
    /// The credential's audience must be exactly this.
    audience: Option<String>,
    /// `WWW-Authenticate` of the 403 for a missing scope (RFC 6750 §3.1).
    challenge: Option<HeaderValue>,
}

impl Requirement {
    /// A requirement of `scopes` (each already [`check`]ed) and `audience`; `realm` names the
    /// challenge's realm.
    pub fn new(realm: &str, scopes: Vec<String>, audience: Option<String>) -> Self {
        let challenge = (!scopes.is_empty()).then(|| insufficient_scope_challenge(realm, &scopes));
        Self {
            scopes,
            audience,
            challenge,
        }
    }

    /// Whether every credential this requirement admits is admitted by `other` too: the same
    /// audience when `other` names one, and a scope granting each of `other`'s.
    pub fn implies(&self, other: &Requirement) -> bool {
        other
            .audience
            .as_ref()
            .is_none_or(|want| self.audience.as_ref() == Some(want))
            && other.scopes.iter().all(|want| granted(want, &self.scopes))
    }

    /// Whether nothing is required beyond a valid credential.
    pub fn is_empty(&self) -> bool {
        self.scopes.is_empty() && self.audience.is_none()
    }

    /// The route's decision about a credential: audience first (a token for another service
    /// is refused whatever its scopes), then scopes.
    pub fn check(&self, identity: &Identity) -> Result<(), Problem> {
        if let Some(want) = &self.audience {
            if !identity.has_audience(want) {
                return Err(Problem::InvalidAudience);
            }
        }
        if let (Some(_), Some(challenge)) = (
            first_not_granted(&self.scopes, &identity.scopes),
            &self.challenge,
        ) {
            return Err(Problem::InsufficientScope {
                scope: self.scopes.join(" "),
                challenge: challenge.clone(),
            });
        }
        Ok(())
    }
}

/// `Bearer realm="…", error="insufficient_scope", scope="…"` naming every scope needed.
pub fn insufficient_scope_challenge(realm: &str, scopes: &[String]) -> HeaderValue {
    // Realms and scopes are validated to hold no quote or backslash.
    HeaderValue::from_str(&format!(
        "Bearer realm=\"{realm}\", error=\"insufficient_scope\", \
         error_description=\"the token does not hold the scope this request needs\", scope=\"{}\"",
        scopes.join(" ")
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("Bearer error=\"insufficient_scope\""))
}

// ------------------------------------------------------------------ matching

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seg<'a> {
    Lit(&'a str),
    /// `*`: one segment.
    One,
    /// `**`: one or more segments.
    Many,
}

/// A segment with the separator before it (0 for the first).
#[derive(Debug, Clone, Copy)]
struct Unit<'a> {
    sep: u8,
    seg: Seg<'a>,
}

const EMPTY: Unit<'static> = Unit {
    sep: 0,
    seg: Seg::Lit(""),
};

/// `Some((scheme, path))` for a URI scope (an error if its scheme is invalid), `None` for an
/// opaque one.
fn split_uri(s: &str) -> Option<Result<(&str, &str), ScopeError>> {
    let (scheme, path) = s.split_once("://")?;
    let mut bytes = scheme.bytes();
    let ok = bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
    Some(if ok {
        Ok((scheme, path))
    } else {
        Err(ScopeError::Scheme)
    })
}

/// Splits a URI scope's path into `out`; returns how many units.
fn units_of<'a>(path: &'a str, out: &mut [Unit<'a>; MAX_SEGMENTS]) -> Result<usize, ScopeError> {
    let mut n = 0;
    let mut sep = 0u8;
    let mut rest = path;
    loop {
        let end = rest.find(['.', '/']).unwrap_or(rest.len());
        let text = &rest[..end];
        let seg = match text {
            "" => return Err(ScopeError::EmptySegment),
            "*" => Seg::One,
            "**" => Seg::Many,
            t if t.contains('*') => return Err(ScopeError::Wildcard),
            t => Seg::Lit(t),
        };
        if n == MAX_SEGMENTS {
            return Err(ScopeError::TooManySegments);
        }
        out[n] = Unit { sep, seg };
        n += 1;
        if end == rest.len() {
            return Ok(n);
        }
        sep = rest.as_bytes()[end];
        rest = &rest[end + 1..];
    }
}

/// Whether the pattern `h` stands for everything `w` stands for. `dp[i][j]`: `h[i..]` covers
/// `w[j..]`; at most 33 × 33 cells, on the stack.
fn covers(h: &[Unit<'_>], w: &[Unit<'_>]) -> bool {
    let (n, m) = (h.len(), w.len());
    let mut dp = [[false; MAX_SEGMENTS + 1]; MAX_SEGMENTS + 1];
    dp[n][m] = true;
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            if h[i].sep != w[j].sep {
                continue;
            }
            dp[i][j] = match h[i].seg {
                Seg::Lit(a) => w[j].seg == Seg::Lit(a) && dp[i + 1][j + 1],
                // `*` cannot stand for all of a `**`, which may be several segments.
                Seg::One => w[j].seg != Seg::Many && dp[i + 1][j + 1],
                // One or more of w's units, whatever they are.
                Seg::Many => (j + 1..=m).any(|k| dp[i + 1][k]),
            };
        }
    }
    dp[0][0]
}

#[cfg(test)]
mod tests;
