//! The body types Warden passes around: one boxed body for responses and upstream requests,
//! and the small constructors for bodies Warden writes itself.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full, combinators::BoxBody};

/// Any error a body can fail with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A boxed future, for the rarely taken paths of request handling: see `Warden::handle`.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// A streaming body: an upstream response, a client request on its way upstream, or bytes of ours.
pub type Body = BoxBody<Bytes, BoxError>;

/// A body holding `bytes` whole.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A body with no bytes.
pub fn empty() -> Body {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed()
}

/// A JSON answer Warden writes itself: `Content-Type: application/json` and
/// `Cache-Control: no-store` (every such answer is about credentials or the caller).
pub fn json(status: http::StatusCode, bytes: impl Into<Bytes>) -> http::Response<Body> {
    use http::HeaderValue;
    use http::header::{CACHE_CONTROL, CONTENT_TYPE};
    let mut resp = http::Response::new(full(bytes));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// [`json`] with `Pragma: no-cache` too, as RFC 6749 §5.1 asks of an answer holding a
/// credential.
pub fn json_credential(status: http::StatusCode, bytes: impl Into<Bytes>) -> http::Response<Body> {
    let mut resp = json(status, bytes);
    resp.headers_mut().insert(
        http::header::PRAGMA,
        http::HeaderValue::from_static("no-cache"),
    );
    resp
}
