//! The request's shape, checked before anything else looks at it: the head's size, the path,
//! the method, method overrides and the authority.

use http::{Request, header};
use hyper::body::Incoming;

use crate::forward;
use crate::problem::Problem;
use crate::router::{NormalPath, normalize_path};

/// Refuses requests that an upstream could read differently from Warden (path, method,
/// authority), and returns the path to route by. (Framing is hyper's: it refuses duplicate
/// Content-Length and drops Content-Length beside Transfer-Encoding, RFC 9112 §6.1.)
/// `server.max_header_bytes`, counted as the request head's size on the wire (request line,
/// and each field as `name: value` and its CRLF), whatever the protocol. hyper's own limits are
/// set above it (`server::hyper_header_limit`) so that a head past it reaches this check and
/// gets a problem+json 431 instead of hyper's bare one.
pub(super) fn head_fits<B>(req: &Request<B>, limit: usize) -> Result<(), Problem> {
    let uri = req.uri();
    let target = uri.path_and_query().map_or(1, |pq| pq.as_str().len())
        + uri.authority().map_or(0, |a| a.as_str().len())
        + uri.scheme_str().map_or(0, |s| s.len() + 3);
    // "METHOD target HTTP/1.1\r\n"
    let mut size = req.method().as_str().len() + target + 12;
    for (name, value) in req.headers() {
        size += name.as_str().len() + value.len() + 4;
        if size > limit {
            return Err(Problem::HeadersTooLarge { limit });
        }
    }
    if size > limit {
        return Err(Problem::HeadersTooLarge { limit });
    }
    Ok(())
}

pub(super) fn request_shape(req: &Request<Incoming>) -> Result<NormalPath<'_>, Problem> {
    let path = normalize_path(req.uri().path()).map_err(|refusal| Problem::InvalidPath {
        detail: refusal.detail(),
    })?;
    // Werkzeug upper-cases the method and ASP.NET compares it without case; others do not.
    if req
        .method()
        .as_str()
        .bytes()
        .any(|b| b.is_ascii_lowercase())
    {
        return Err(Problem::MethodNotUpperCase);
    }
    if let Some(name) = forward::method_override(req.headers(), req.uri().query()) {
        return Err(Problem::MethodOverride { name });
    }
    if !host_agrees(req.uri(), req.headers()) {
        return Err(Problem::HostMismatch);
    }
    Ok(path)
}

/// At most one `Host`, equal (without case, default port aside) to the target's authority when
/// the target has one: HTTP/2's `:authority`, or an HTTP/1.1 absolute-form target. Warden
/// signs with one and forwards the other, so they must name the same host.
fn host_agrees(uri: &http::Uri, headers: &http::HeaderMap) -> bool {
    let mut hosts = headers.get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return false;
    }
    let (Some(authority), Some(host)) = (uri.authority(), host) else {
        return true;
    };
    if authority.as_str().contains('@') {
        return false; // userinfo: RFC 9113 §8.3.1 forbids it in :authority
    }
    let default_port = match uri.scheme_str() {
        Some("https") => ":443",
        _ => ":80",
    };
    let bare = |s: &[u8]| -> Vec<u8> {
        let s = s.strip_suffix(default_port.as_bytes()).unwrap_or(s);
        s.to_ascii_lowercase()
    };
    bare(authority.as_str().as_bytes()) == bare(host.as_bytes())
}
