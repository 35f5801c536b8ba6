//! The original request a proxy asks about, read from the check request by the proxy's
//! convention (Envoy's path prefix, nginx's `X-Original-*`, Traefik's and Caddy's
//! `X-Forwarded-*`; see the module doc of `forward_auth`).

use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};

use crate::problem::ForwardAuthRefusal;

/// nginx `auth_request`: the original method and URI, set by `proxy_set_header`.
pub const X_ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
pub const X_ORIGINAL_URI: HeaderName = HeaderName::from_static("x-original-uri");
/// Traefik `forwardAuth` and Caddy `forward_auth`.
pub const X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
pub const X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");

/// How the asking proxy described the original request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Convention {
    /// Envoy `ext_authz`: the check request's method and the path under the endpoint.
    PathPrefix,
    /// nginx: `X-Original-Method` / `X-Original-URI`.
    Original,
    /// Traefik, Caddy: `X-Forwarded-Method` / `X-Forwarded-Uri`.
    Forwarded,
}

/// The request the proxy asks about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginalRequest {
    pub method: Method,
    /// Origin form: path and query only.
    pub uri: Uri,
    pub convention: Convention,
}

/// Reads the original request from a check request to `endpoint` (see the module doc).
pub fn original(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    endpoint: &str,
) -> Result<OriginalRequest, ForwardAuthRefusal> {
    let path = uri.path();
    if let Some(rest) = path.strip_prefix(endpoint) {
        if rest.starts_with('/') {
            let target = match uri.query() {
                Some(q) => format!("{rest}?{q}"),
                None => rest.to_owned(),
            };
            return Ok(OriginalRequest {
                method: method.clone(),
                uri: origin_form(&target)?,
                convention: Convention::PathPrefix,
            });
        }
        if !rest.is_empty() {
            return Err(ForwardAuthRefusal::OriginalInvalid);
        }
    } else {
        // The router sent it here by its decoded or case-folded path: only the literal
        // spelling is read, so the original's path is cut where the proxy put it.
        return Err(ForwardAuthRefusal::OriginalInvalid);
    }
    let one = |name: &HeaderName| -> Result<Option<&HeaderValue>, ForwardAuthRefusal> {
        let mut all = headers.get_all(name).iter();
        let first = all.next();
        if all.next().is_some() {
            return Err(ForwardAuthRefusal::OriginalAmbiguous);
        }
        Ok(first)
    };
    let original = (one(&X_ORIGINAL_METHOD)?, one(&X_ORIGINAL_URI)?);
    let forwarded = (one(&X_FORWARDED_METHOD)?, one(&X_FORWARDED_URI)?);
    let any = |pair: &(Option<_>, Option<_>)| pair.0.is_some() || pair.1.is_some();
    let (pair, convention) = match (any(&original), any(&forwarded)) {
        (true, true) => return Err(ForwardAuthRefusal::OriginalAmbiguous),
        (true, false) => (original, Convention::Original),
        (false, true) => (forwarded, Convention::Forwarded),
        (false, false) => return Err(ForwardAuthRefusal::OriginalMissing),
    };
    let (Some(m), Some(u)) = pair else {
        return Err(ForwardAuthRefusal::OriginalMissing);
    };
    let method =
        Method::from_bytes(m.as_bytes()).map_err(|_| ForwardAuthRefusal::OriginalInvalid)?;
    let target = u
        .to_str()
        .map_err(|_| ForwardAuthRefusal::OriginalInvalid)?;
    Ok(OriginalRequest {
        method,
        uri: origin_form(target)?,
        convention,
    })
}

/// An origin-form request target (`/path?query`), nothing else: no scheme or authority, no
/// fragment, no white space.
fn origin_form(target: &str) -> Result<Uri, ForwardAuthRefusal> {
    if !target.starts_with('/') || target.starts_with("//") || target.contains('#') {
        return Err(ForwardAuthRefusal::OriginalInvalid);
    }
    let uri: Uri = target
        .parse()
        .map_err(|_| ForwardAuthRefusal::OriginalInvalid)?;
    if uri.scheme().is_some() || uri.authority().is_some() {
        return Err(ForwardAuthRefusal::OriginalInvalid);
    }
    Ok(uri)
}
