//! What the verifier and the signer see of a message: a request, a response (with its
//! request, for `;req` components), and the `@authority` normal form.

use std::borrow::Cow;
use std::fmt;

use http::HeaderMap;

/// What the verifier (and signer) sees of a request. Build it with [`RequestView::new`].
///
/// `scheme` and `authority` must be the client's view (e.g. the configured public URL), never
/// taken from unauthenticated `X-Forwarded-*` headers (RFC 9421 §7.4.3).
#[derive(Clone, Copy)]
pub struct RequestView<'a> {
    /// The method exactly as received (case-sensitive).
    pub method: &'a str,
    /// `http` or `https`; lowercased when used.
    pub scheme: &'a str,
    /// External `host[:port]`; the host is lowercased and a default port dropped when used.
    pub authority: &'a str,
    /// Raw (undecoded) absolute path; empty means `/`.
    pub path: &'a str,
    /// Raw query without the `?`; `None` when the target has no `?`.
    pub query: Option<&'a str>,
    /// The request header section.
    pub headers: &'a HeaderMap,
    /// The request-target as on the HTTP/1.1 request line when it is not origin-form
    /// (absolute-form, authority-form for CONNECT, or `*`). Default `None`: origin-form,
    /// built from `path` and `query`.
    pub request_target: Option<&'a str>,
}

impl<'a> RequestView<'a> {
    /// A view of an origin-form request.
    pub fn new(
        method: &'a str,
        scheme: &'a str,
        authority: &'a str,
        path: &'a str,
        query: Option<&'a str>,
        headers: &'a HeaderMap,
    ) -> Self {
        RequestView {
            method,
            scheme,
            authority,
            path,
            query,
            headers,
            request_target: None,
        }
    }

    /// The same view with a non-origin-form request-target (see [`RequestView::request_target`]).
    pub fn with_request_target(self, request_target: &'a str) -> Self {
        RequestView {
            request_target: Some(request_target),
            ..self
        }
    }

    /// The path, `/` when empty (`@path`, RFC 9421 §2.2.6).
    pub(crate) fn path_or_root(&self) -> &'a str {
        if self.path.is_empty() { "/" } else { self.path }
    }

    /// The lowercased scheme (`@scheme`).
    pub(crate) fn normalized_scheme(&self) -> Cow<'a, str> {
        lowercase(self.scheme)
    }

    /// The normalised authority (`@authority`, RFC 9421 §2.2.3).
    pub(crate) fn normalized_authority(&self) -> Cow<'a, str> {
        normalize_authority(self.scheme, self.authority)
    }
}

// Header values can hold credentials, so Debug shows only their names.
impl fmt::Debug for RequestView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestView")
            .field("method", &self.method)
            .field("scheme", &self.scheme)
            .field("authority", &self.authority)
            .field("path", &self.path)
            .field("has_query", &self.query.is_some())
            .field("header_names", &self.headers.keys().collect::<Vec<_>>())
            .field("request_target", &self.request_target)
            .finish()
    }
}

/// Which kind of message a signature is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Request,
    /// A response: `@status` is allowed, request components need `;req` (RFC 9421 §2.4).
    Response,
}

/// What the verifier (and signer) sees of a response, and of the request it answers, which
/// `;req` components read.
#[derive(Clone, Copy)]
pub struct ResponseView<'a> {
    /// The status code (`@status`).
    pub status: u16,
    /// The response header section.
    pub headers: &'a HeaderMap,
    /// The related request; `None` when it is not known (then any `;req` component fails).
    pub request: Option<RequestView<'a>>,
}

impl fmt::Debug for ResponseView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseView")
            .field("status", &self.status)
            .field("header_names", &self.headers.keys().collect::<Vec<_>>())
            .field("request", &self.request)
            .finish()
    }
}

/// The message a signature base is built from.
#[derive(Debug, Clone, Copy)]
pub enum Message<'a> {
    Request(RequestView<'a>),
    Response(ResponseView<'a>),
}

impl Message<'_> {
    /// Which kind of message this is.
    pub fn target(&self) -> Target {
        match self {
            Message::Request(_) => Target::Request,
            Message::Response(_) => Target::Response,
        }
    }
}

/// Lowercases the host and drops the scheme's default port (`:443` for https, `:80` for http,
/// and an empty port), as `@authority` requires (RFC 9421 §2.2.3).
pub fn normalize_authority<'a>(scheme: &str, authority: &'a str) -> Cow<'a, str> {
    let host = match authority.rsplit_once(':') {
        // The part before the colon must not hold another colon unless it is a bracketed IPv6
        // literal, else the colon belongs to the address.
        Some((host, port))
            if port.bytes().all(|b| b.is_ascii_digit())
                && (!host.contains(':') || host.ends_with(']')) =>
        {
            let default = (scheme.eq_ignore_ascii_case("https") && port == "443")
                || (scheme.eq_ignore_ascii_case("http") && port == "80")
                || port.is_empty();
            if default { host } else { authority }
        }
        _ => authority,
    };
    lowercase(host)
}

fn lowercase(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(s.to_ascii_lowercase())
    } else {
        Cow::Borrowed(s)
    }
}
