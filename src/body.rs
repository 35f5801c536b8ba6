//! The body types Warden passes around: one boxed body for responses and upstream requests,
//! the small constructors for bodies Warden writes itself, and the errors a client's request
//! body fails with (mapped to refusals by `problem::from_body_error`).

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

/// `hint` with `held` more bytes: the frames a body read ahead and serves before the rest
/// (`gate::digest`'s first frame, a response `gate::idempotency` could not gather whole).
pub fn hint_plus(mut hint: http_body::SizeHint, held: u64) -> http_body::SizeHint {
    // Upper first: `set_lower` panics on a lower bound above the upper one.
    if let Some(upper) = hint.upper() {
        hint.set_upper(upper.saturating_add(held));
    }
    hint.set_lower(hint.lower().saturating_add(held));
    hint
}

/// What a [`Watched`] body does around its inner body's frames. Warden's pass-through bodies
/// differ only here: the request body's size limit and stall deadline
/// (`forward::limit_body`), the upstream body's stall deadline (`upstream.body_idle_timeout`),
/// and the response body that keeps its HTTP/2 stream counted as open (`server.rs`).
pub trait Watch {
    /// The inner body has no frame for now: `Ready(e)` ends the body with `e`.
    fn waiting(&mut self, _cx: &mut std::task::Context<'_>) -> std::task::Poll<BoxError> {
        std::task::Poll::Pending
    }

    /// A frame arrived; an `Err` replaces it.
    fn frame(&mut self, _frame: &http_body::Frame<Bytes>) -> Result<(), BoxError> {
        Ok(())
    }
}

/// `inner`, passed through frame by frame under `watch`; its end and size are `inner`'s.
pub struct Watched<W> {
    inner: Body,
    watch: W,
}

impl<W: Watch> Watched<W> {
    pub fn new(inner: Body, watch: W) -> Self {
        Self { inner, watch }
    }
}

impl<W: Watch + Unpin> http_body::Body for Watched<W> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        use std::task::Poll;
        let this = self.get_mut();
        match std::pin::Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Pending => this.watch.waiting(cx).map(|e| Some(Err(e))),
            Poll::Ready(Some(Ok(frame))) => {
                Poll::Ready(Some(this.watch.frame(&frame).map(|()| frame)))
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The error a request body raises when it grows past `server.max_body_bytes`.
#[derive(Debug, thiserror::Error)]
#[error("request body larger than {limit} bytes")]
pub struct BodyTooLarge {
    pub limit: u64,
}

/// The error a request body raises when its next frame keeps Warden waiting longer than
/// `server.body_read_timeout`.
#[derive(Debug, thiserror::Error)]
#[error("request body stalled for {after:?}")]
pub struct BodyStalled {
    pub after: std::time::Duration,
}

/// The error a request body raises, in place of its end, when it does not match its
/// `Content-Digest`.
#[derive(Debug, thiserror::Error)]
#[error("request body does not match its content-digest ({algorithm})")]
pub struct DigestMismatch {
    pub algorithm: crate::digest::Algorithm,
}
