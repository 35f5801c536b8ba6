//! Warden's own keep-alive pool of HTTP/1.1 connections to the upstream, over hyper's
//! low-level `client::conn::http1`.
//!
//! Why not hyper-util's `legacy::Client`: for every HTTP/1 request it spawns a task that waits
//! for the connection to become idle again before returning it to the pool, and it keys its pool
//! by scheme and authority with a SipHash map, although Warden has exactly one upstream. Here a
//! connection goes back to the pool the moment its response body ends (or is dropped at its
//! end), from the task that streamed it; nothing is spawned per request. Measured in
//! `docs/benchmarks.md`.
//!
//! The rules:
//! - the pool is a LIFO stack (the most recently used connection is the warmest), capped at
//!   `upstream.pool_max_idle_per_host`; a connection idle longer than
//!   `upstream.pool_idle_timeout` is dropped when it is found;
//! - a connection is reused only after its previous exchange finished cleanly: the response body
//!   reached its end, and so had the request body (hyper had been handed its last frame). A
//!   response dropped half-read, a failed exchange, a protocol switch or a timeout drops the
//!   connection (hyper closes it), and so does a response that ended while its request body was
//!   still on its way: an upstream may answer before it has read an upload (and then read and
//!   discard the rest), and until that upload ends the connection cannot carry another
//!   request, so pooling it would make the next request wait for a stranger's upload;
//! - a request hyper hands back unsent (the pooled connection had just been closed by the
//!   upstream) is sent once more on a new connection. A request that was sent is resent only
//!   if it is safe (GET, HEAD, OPTIONS, TRACE) and bodiless, the connection had been idle for
//!   at least 100 ms, and it closed before any response arrived (Go's `net/http` rule, plus the
//!   idle condition); anything else that may have reached the upstream is never sent twice.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use tower_service::Service;

use super::Connector;
use crate::body::{Body, BoxError};

/// How long a pooled connection must have been idle before a safe bodiless request sent on it
/// is kept for a second attempt. Upstreams close idle connections after their keep-alive
/// timeout (seconds, typically); a connection used a moment ago is not at that risk.
const RESEND_AFTER_IDLE: Duration = Duration::from_millis(100);

/// One idle connection and when it became idle.
struct Idle {
    tx: http1::SendRequest<Outgoing>,
    since: Instant,
}

/// The pool. Cheap to share: `Arc<UpstreamPool>`.
pub struct UpstreamPool {
    connector: Connector,
    /// Where new connections go (scheme and authority; the path is not used).
    target: Uri,
    idle: Mutex<Vec<Idle>>,
    max_idle: usize,
    idle_timeout: Duration,
}

impl UpstreamPool {
    pub fn new(connector: Connector, target: Uri, max_idle: usize, idle_timeout: Duration) -> Self {
        Self {
            connector,
            target,
            idle: Mutex::new(Vec::new()),
            max_idle,
            idle_timeout,
        }
    }

    /// How many idle connections wait in the pool now (for the metrics, at scrape time).
    pub fn idle_count(&self) -> usize {
        self.idle.lock().map_or(0, |idle| idle.len())
    }

    /// Sends `req` (origin-form URI, `Host` set) and returns the response, whose body hands
    /// the connection back to the pool when it ends.
    pub async fn send(self: &Arc<Self>, req: Request<Body>) -> Result<Response<Body>, BoxError> {
        let req = req.map(Outgoing::new);
        let Some((mut tx, idle_for)) = self.take_idle() else {
            let send = Box::pin(self.send_on_new(req));
            return send.await;
        };
        // A pooled connection may be closed by the upstream at any moment, most often when
        // its keep-alive timeout ends a connection that sat idle. If that happens before the
        // request leaves, hyper hands the request back; if it happens after, a bodiless safe
        // request that went out on a connection idle for a while is sent once more. (Keeping
        // that copy costs about 0.3 µs, so a connection in steady use does without.)
        let replay = if idle_for >= RESEND_AFTER_IDLE {
            replayable(&req)
        } else {
            None
        };
        let mut req = req;
        // Not ready means closed: the request never left, and goes on a new connection as is.
        if std::future::poll_fn(|cx| tx.poll_ready(cx)).await.is_ok() {
            let sent = req.body().sent.clone();
            match tx.try_send_request(req).await {
                Ok(resp) => return Ok(self.wrap(resp, tx, sent)),
                Err(mut e) => match (e.take_message(), replay) {
                    (Some(unsent), _) => req = unsent,
                    (None, Some(again)) if closed_early(e.error()) => req = again,
                    (None, _) => return Err(e.into_error().into()),
                },
            }
        }
        tracing::debug!("pooled upstream connection was closed; sending on a new one");
        let send = Box::pin(self.send_on_new(req));
        send.await
    }

    /// Sends on a new connection. Boxed by its callers: connecting is rare and its future
    /// large, and the pooled path's future should not carry it.
    async fn send_on_new(
        self: &Arc<Self>,
        req: Request<Outgoing>,
    ) -> Result<Response<Body>, BoxError> {
        let mut tx = self.connect().await?;
        std::future::poll_fn(|cx| tx.poll_ready(cx)).await?;
        let sent = req.body().sent.clone();
        let resp = tx.send_request(req).await?;
        Ok(self.wrap(resp, tx, sent))
    }

    fn wrap(
        self: &Arc<Self>,
        resp: Response<Incoming>,
        tx: http1::SendRequest<Outgoing>,
        request_sent: Option<Arc<AtomicBool>>,
    ) -> Response<Body> {
        // After a protocol switch the connection belongs to the tunnel, never to the pool.
        let slot = (resp.status() != http::StatusCode::SWITCHING_PROTOCOLS)
            .then(|| (tx, Arc::clone(self)));
        resp.map(|inner| {
            http_body_util::BodyExt::boxed(PooledBody {
                inner,
                slot,
                request_sent,
            })
        })
    }

    /// The most recently parked connection that is still usable.
    fn take_idle(&self) -> Option<(http1::SendRequest<Outgoing>, Duration)> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let mut now = None;
        while let Some(c) = idle.pop() {
            if c.tx.is_closed() {
                continue;
            }
            let now = *now.get_or_insert_with(Instant::now);
            let idle_for = now.saturating_duration_since(c.since);
            if idle_for > self.idle_timeout {
                // Everything below it is older still.
                idle.clear();
                return None;
            }
            return Some((c.tx, idle_for));
        }
        None
    }

    fn put_back(&self, tx: http1::SendRequest<Outgoing>) {
        if tx.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < self.max_idle {
            idle.push(Idle {
                tx,
                since: Instant::now(),
            });
        }
    }

    /// Opens a connection (TCP, TLS for https) and drives it on its own task.
    async fn connect(&self) -> Result<http1::SendRequest<Outgoing>, BoxError> {
        let mut connector = self.connector.clone();
        std::future::poll_fn(|cx| connector.poll_ready(cx)).await?;
        let io = connector.call(self.target.clone()).await?;
        let (tx, conn) = http1::Builder::new().handshake(io).await?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "upstream connection ended");
            }
        });
        Ok(tx)
    }
}

/// A copy of `req` to send again if the pooled connection it went out on turns out to have
/// been closed: only for the safe methods (RFC 9110 §9.2.1) and only without a body, as Go's
/// `net/http` does. Anything else that may have reached the upstream is never sent twice.
fn replayable(req: &Request<Outgoing>) -> Option<Request<Outgoing>> {
    let safe = matches!(
        *req.method(),
        http::Method::GET | http::Method::HEAD | http::Method::OPTIONS | http::Method::TRACE
    );
    if !safe || !http_body::Body::is_end_stream(req.body()) {
        return None;
    }
    let mut copy = Request::new(Outgoing::new(crate::body::empty()));
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    Some(copy)
}

/// Whether an exchange failed because the connection closed before any response arrived.
fn closed_early(e: &hyper::Error) -> bool {
    if e.is_incomplete_message() || e.is_canceled() || e.is_closed() {
        return true;
    }
    let mut source = std::error::Error::source(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::ConnectionAborted
            );
        }
        source = err.source();
    }
    false
}

/// A request body on its way upstream, which records when hyper has been handed its end.
pub(super) struct Outgoing {
    inner: Body,
    /// Set once the whole body has been handed to hyper; `None` for a body that had nothing
    /// to send from the start (most requests: no allocation for them).
    sent: Option<Arc<AtomicBool>>,
}

impl Outgoing {
    fn new(inner: Body) -> Self {
        let sent =
            (!http_body::Body::is_end_stream(&inner)).then(|| Arc::new(AtomicBool::new(false)));
        Self { inner, sent }
    }

    fn mark_sent(&self) {
        if let Some(sent) = &self.sent {
            sent.store(true, Ordering::Release);
        }
    }
}

impl http_body::Body for Outgoing {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled = std::pin::Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => this.mark_sent(),
            Poll::Ready(Some(Ok(_))) if this.inner.is_end_stream() => this.mark_sent(),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        // hyper asks this before polling, and after each frame: a `true` is the end it acts on.
        let end = self.inner.is_end_stream();
        if end {
            self.mark_sent();
        }
        end
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that returns its connection to the pool once it has been read to the end,
/// if the request body had been sent whole by then.
struct PooledBody {
    inner: Incoming,
    slot: Option<(http1::SendRequest<Outgoing>, Arc<UpstreamPool>)>,
    /// The request's [`Outgoing::sent`].
    request_sent: Option<Arc<AtomicBool>>,
}

impl PooledBody {
    fn release(&mut self) {
        let Some((tx, pool)) = self.slot.take() else {
            return;
        };
        let sent = (self.request_sent.as_ref()).is_none_or(|s| s.load(Ordering::Acquire));
        if sent {
            pool.put_back(tx);
        } else {
            // Still busy with the upload; dropping `tx` closes it once the upload ends.
            tracing::debug!("upstream answered before the request body was sent; not pooled");
        }
    }
}

impl http_body::Body for PooledBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match std::pin::Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(None) => {
                this.release();
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                // The connection is broken; never reuse it.
                this.slot = None;
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(Some(Ok(frame))) => {
                if this.inner.is_end_stream() {
                    this.release();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        // A body nobody needed to read (HEAD, 204, 304, an empty 200) still frees its
        // connection; one dropped half-read does not (the rest of it is still on the wire).
        if http_body::Body::is_end_stream(&self.inner) {
            self.release();
        }
    }
}
