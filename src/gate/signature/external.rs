//! The scheme, authority and path a signature covers: what the client addressed, from the
//! configured public URL or the request, believing `X-Forwarded-Proto` / `-Host` only from a
//! trusted proxy.

use std::borrow::Cow;

use http::header::{self, HeaderName};

use super::RequestParts;
use crate::policy::PublicUrl;

const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// The scheme, authority and path the client addressed, which its signature covers.
pub struct External<'a> {
    pub scheme: &'a str,
    pub authority: &'a str,
    pub path: Cow<'a, str>,
}

impl<'a> External<'a> {
    /// From the configured public URL when there is one; else the request's own scheme (TLS
    /// or not) and `Host` / `:authority`, overridden by `X-Forwarded-Proto` / `-Host` only when
    /// the peer is a trusted proxy. Never from what an untrusted hop says (RFC 9421 §7.4.3).
    pub fn of(req: &RequestParts<'a>, public_url: Option<&'a PublicUrl>) -> Self {
        let path = req.uri.path();
        if let Some(url) = public_url {
            return Self {
                scheme: &url.scheme,
                authority: &url.authority,
                path: if url.prefix.is_empty() {
                    Cow::Borrowed(path)
                } else {
                    Cow::Owned(format!("{}{path}", url.prefix))
                },
            };
        }
        let forwarded = |name: &HeaderName| {
            // The rightmost value was set by the proxy nearest to Warden, the trusted one.
            req.headers
                .get_all(name)
                .iter()
                .next_back()
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.rsplit(',').next())
                .map(str::trim)
                .filter(|v| !v.is_empty())
        };
        let trusted = req.origin.peer_trusted;
        let scheme = trusted
            .then(|| forwarded(&X_FORWARDED_PROTO))
            .flatten()
            .and_then(|p| {
                if p.eq_ignore_ascii_case("https") {
                    Some("https")
                } else if p.eq_ignore_ascii_case("http") {
                    Some("http")
                } else {
                    None
                }
            })
            .unwrap_or(if req.origin.tls { "https" } else { "http" });
        let authority = trusted
            .then(|| forwarded(&X_FORWARDED_HOST))
            .flatten()
            .or_else(|| req.uri.authority().map(|a| a.as_str()))
            .or_else(|| req.headers.get(header::HOST).and_then(|h| h.to_str().ok()))
            .unwrap_or("");
        Self {
            scheme,
            authority,
            path: Cow::Borrowed(path),
        }
    }
}
