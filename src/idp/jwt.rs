//! JWT access tokens (RFC 7519 with the RFC 9068 profile, RFC 8725 practices): splitting a
//! compact JWS, reading its header and claims, and the checks that need neither the network nor
//! the issuer's keys. Which issuer and which key decide is `idp.rs`'s and `keys.rs`'s.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::Refusal;
use super::jwk::Alg;

/// A compact JWS whose header is JSON naming an algorithm; nothing about it is trusted yet.
#[derive(Debug)]
pub struct Compact<'a> {
    pub header: Header,
    /// `BASE64URL(header) . BASE64URL(payload)`: the bytes the signature covers.
    pub signing_input: &'a [u8],
    pub signature: Vec<u8>,
    pub claims: Claims,
}

/// The JOSE header members Warden reads. `jku`, `x5u`, `jwk` and `x5c` are never followed or
/// used: keys come from the issuer's configuration only (RFC 8725 §3.10).
#[derive(Debug, Deserialize)]
pub struct Header {
    pub alg: String,
    #[serde(default)]
    pub kid: Option<String>,
    #[serde(default)]
    pub typ: Option<String>,
    /// Extensions the token says must be understood (RFC 7515 §4.1.11); Warden understands none.
    #[serde(default)]
    pub crit: Option<Value>,
}

/// Splits `token` as a compact JWS (three base64url parts, the first a JSON object with an
/// `alg`). `None`: not a JWT at all (an opaque token, which may contain dots too). `Err`: a JWT
/// that is malformed.
pub fn split(token: &str) -> Option<Result<Compact<'_>, Refusal>> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let header_bytes = URL_SAFE_NO_PAD.decode(h).ok()?;
    let header: Value = serde_json::from_slice(&header_bytes).ok()?;
    if !header.get("alg").is_some_and(Value::is_string) {
        return None;
    }
    Some(parse(h, p, s, &header_bytes, token))
}

fn parse<'a>(
    h: &str,
    p: &str,
    s: &str,
    header_bytes: &[u8],
    token: &'a str,
) -> Result<Compact<'a>, Refusal> {
    // A duplicate member is an error here (serde refuses one), not "the last one wins".
    let header: Header = serde_json::from_slice(header_bytes).map_err(|_| Refusal::Malformed)?;
    let payload = URL_SAFE_NO_PAD.decode(p).map_err(|_| Refusal::Malformed)?;
    let claims: Map<String, Value> =
        serde_json::from_slice(&payload).map_err(|_| Refusal::Malformed)?;
    let signature = URL_SAFE_NO_PAD.decode(s).map_err(|_| Refusal::Malformed)?;
    Ok(Compact {
        header,
        signing_input: &token.as_bytes()[..h.len() + 1 + p.len()],
        signature,
        claims: Claims(claims),
    })
}

impl Compact<'_> {
    /// The header's algorithm, if it is one Warden verifies and `allowed` lists. `none`, the
    /// HMAC family and anything else are refused before any key is looked at.
    pub fn alg(&self, allowed: &[Alg]) -> Result<Alg, Refusal> {
        Alg::parse(&self.header.alg)
            .filter(|a| allowed.contains(a))
            .ok_or(Refusal::AlgorithmNotAllowed)
    }

    /// Refuses tokens that declare critical extensions, and checks `typ` (RFC 9068 §2.1:
    /// `at+jwt`, or `application/at+jwt`, compared without case). With `allow_jwt`, `JWT` or
    /// no `typ` pass as well (what most identity providers send); any other type (an ID token,
    /// a logout token, a DPoP proof) never does.
    pub fn check_header(&self, allow_jwt: bool) -> Result<(), Refusal> {
        if self.header.crit.is_some() {
            return Err(Refusal::Malformed);
        }
        let typ = self.header.typ.as_deref().map(|t| {
            let t = t.to_ascii_lowercase();
            t.strip_prefix("application/")
                .map(str::to_owned)
                .unwrap_or(t)
        });
        match typ.as_deref() {
            Some("at+jwt") => Ok(()),
            None | Some("jwt") if allow_jwt => Ok(()),
            _ => Err(Refusal::WrongType),
        }
    }
}

/// A claims set or an introspection response: a JSON object read member by member.
#[derive(Debug, Default)]
pub struct Claims(pub Map<String, Value>);

impl Claims {
    /// A string member; `Err` if present with another type.
    pub fn str(&self, name: &str) -> Result<Option<&str>, Refusal> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(Refusal::Malformed),
        }
    }

    /// A NumericDate (RFC 7519 §2: seconds, possibly fractional), floored to whole seconds.
    pub fn date(&self, name: &str) -> Result<Option<i64>, Refusal> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => {
                if let Some(i) = n.as_i64() {
                    return Ok(Some(i));
                }
                match n.as_f64() {
                    // Far beyond any real date, but far from i64's edges too.
                    Some(f) if f.is_finite() && f.abs() < 1e15 => Ok(Some(f.floor() as i64)),
                    _ => Err(Refusal::Malformed),
                }
            }
            Some(_) => Err(Refusal::Malformed),
        }
    }

    /// A member that is a string or an array of strings (`aud`, RFC 7519 §4.1.3); with `split`,
    /// a string is a space-separated list (`scope`, RFC 8693 §4.2).
    pub fn list(&self, name: &str, split: bool) -> Result<Vec<&str>, Refusal> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::String(s)) if split => Ok(s.split(' ').filter(|s| !s.is_empty()).collect()),
            Some(Value::String(s)) => Ok(vec![s.as_str()]),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().ok_or(Refusal::Malformed))
                .collect(),
            Some(_) => Err(Refusal::Malformed),
        }
    }
}

/// The time rules of an issuer.
#[derive(Debug, Clone, Copy)]
pub struct Times {
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
    pub leeway: i64,
    /// The oldest `iat` accepted, in seconds before now (`max_token_age`); requires `iat`.
    pub max_age: Option<i64>,
}

impl Times {
    /// Checks `exp` (required when `exp_required`), `nbf`, `iat` at `now` (unix seconds).
    /// Returns the instant the token stops being accepted: `exp` + leeway, or the end of its
    /// `max_age`, whichever is first (`None`: no end known).
    pub fn check(
        &self,
        claims: &Claims,
        now: i64,
        exp_required: bool,
    ) -> Result<Option<i64>, Refusal> {
        let exp = claims.date("exp")?;
        let nbf = claims.date("nbf")?;
        let iat = claims.date("iat")?;
        let mut until = match exp {
            None if exp_required => return Err(Refusal::NoExpiry),
            None => None,
            Some(exp) => {
                let end = exp.saturating_add(self.leeway);
                if now >= end {
                    return Err(Refusal::Expired);
                }
                Some(end)
            }
        };
        if nbf.is_some_and(|nbf| nbf > now.saturating_add(self.leeway)) {
            return Err(Refusal::NotYetValid);
        }
        if iat.is_some_and(|iat| iat > now.saturating_add(self.leeway)) {
            return Err(Refusal::IssuedInFuture);
        }
        if let Some(max_age) = self.max_age {
            let Some(iat) = iat else {
                return Err(Refusal::TooOld);
            };
            let end = iat.saturating_add(max_age).saturating_add(self.leeway);
            if now >= end {
                return Err(Refusal::TooOld);
            }
            until = Some(until.map_or(end, |u| u.min(end)));
        }
        Ok(until)
    }
}

#[cfg(test)]
mod tests;
