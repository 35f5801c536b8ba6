//! The listener side: accept loop with a connection limit (and one per address), optional TLS
//! (the acceptor is `tls.rs`'s), HTTP/1.1 and HTTP/2 (h2c by prior knowledge on plaintext),
//! header-read timeout, idle HTTP/2 connections closed, header size limit, TCP_NODELAY, and
//! graceful shutdown within a grace period.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv6Addr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Version;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::time::Sleep;

use crate::body::{Body, BoxError};
use crate::coarse_timer::{Alarm, CoarseTimer};
use crate::gate::client_ip;
use crate::service::{Conn, Warden};

/// hyper's own head limits (HTTP/1.1 read buffer, HTTP/2 header list): half again
/// `server.max_header_bytes`, so that a head a little past Warden's limit reaches the service,
/// which refuses it with a problem+json 431 (`headers_too_large`). Past this one hyper answers
/// 431 itself, with an empty body, before any service sees the request (HTTP/2: the stream is
/// refused).
fn hyper_header_limit(max_header_bytes: usize) -> usize {
    max_header_bytes.saturating_add(max_header_bytes / 2)
}

/// Runs the store's housekeeping every `store.sweep_interval`, off the request path.
async fn sweep_forever(warden: Arc<Warden>) {
    let store = &warden.settings().store;
    let mut tick = tokio::time::interval(store.sweep_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = warden.issuer().sweep(store.token_retention).await {
            tracing::warn!(error = %e, "store sweep failed");
        }
        match warden.idempotency().sweep().await {
            Ok(0) => {}
            Ok(swept) => tracing::debug!(swept, "expired idempotency records deleted"),
            Err(e) => tracing::warn!(error = %e, "idempotency sweep failed"),
        }
        let now = warden.issuer().clock().now();
        match warden.signatures().sweep_nonces(now).await {
            Ok(0) => {}
            Ok(swept) => tracing::debug!(swept, "lapsed signature nonces deleted"),
            Err(e) => tracing::warn!(error = %e, "nonce sweep failed"),
        }
        match warden.webhooks().sweep().await {
            Ok(0) => {}
            Ok(swept) => tracing::debug!(swept, "old webhook deliveries and events deleted"),
            Err(e) => tracing::warn!(error = %e, "webhook sweep failed"),
        }
    }
}

/// Serves `listener` until `shutdown` completes, then stops accepting, lets in-flight requests
/// finish for up to `server.shutdown_grace`, and returns. Serves no admin listener: see
/// [`run_with_admin`].
pub async fn run(listener: TcpListener, warden: Arc<Warden>, shutdown: impl Future<Output = ()>) {
    run_with_admin(listener, None, warden, shutdown).await;
}

/// [`run`], and the admin listener (`[admin]`, see [`crate::admin`]) on `admin` when given:
/// it stops accepting when `shutdown` completes, as the main listener does, and drains within
/// the same grace period.
pub async fn run_with_admin(
    listener: TcpListener,
    admin: Option<TcpListener>,
    warden: Arc<Warden>,
    shutdown: impl Future<Output = ()>,
) {
    let (admin_stop, admin_stopped) = tokio::sync::oneshot::channel::<()>();
    let admin = admin.map(|admin| {
        tokio::spawn(crate::admin::run(admin, warden.clone(), async move {
            let _ = admin_stopped.await;
        }))
    });
    let settings = warden.settings().server.clone();
    let permits = Arc::new(Semaphore::new(settings.max_connections));
    let per_ip = Arc::new(PerIp::new(settings.max_connections_per_ip));
    // Graceful shutdown as hyper-util's `GracefulShutdown` does it (a watch channel whose
    // receivers are the open connections), done here because a connection is also shut down
    // gracefully when it has been idle too long, which that helper cannot do.
    let (stop, _) = watch::channel(());
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        // Re-armed for every request head: the coarse timer makes that a lock and a store.
        .timer(warden.timer().clone())
        .header_read_timeout(settings.header_read_timeout)
        .max_buf_size(hyper_header_limit(settings.max_header_bytes))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(
            u32::try_from(hyper_header_limit(settings.max_header_bytes)).unwrap_or(u32::MAX),
        )
        .max_concurrent_streams(settings.http2_max_concurrent_streams)
        .keep_alive_interval(settings.http2_keep_alive_interval)
        .keep_alive_timeout(settings.http2_keep_alive_timeout);
    let builder = Arc::new(builder);
    let sweeper = tokio::spawn(sweep_forever(warden.clone()));
    let tls_watch = match (warden.tls(), settings.tls.as_ref()) {
        (Some(tls), Some(files)) => files
            .reload_interval
            .map(|every| tokio::spawn(Arc::clone(tls).watch(every))),
        _ => None,
    };
    let deliveries = match warden.webhooks().start(settings.shutdown_grace) {
        Ok(running) => Some(running),
        Err(e) => {
            tracing::error!(error = %e, "webhook deliveries cannot start");
            None
        }
    };
    tokio::pin!(shutdown);

    loop {
        // Waiting for a permit before accepting leaves excess connections in the kernel backlog.
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Proxies and load balancers carry many clients each: only `max_connections` holds them.
        let exempt = client_ip::is_trusted(peer.ip(), &settings.trusted_proxies);
        let ip_slot = match per_ip.admit(peer.ip(), exempt) {
            Ok(slot) => slot,
            Err(()) => {
                tracing::debug!(peer = %peer, "connection refused: server.max_connections_per_ip");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let tls = warden.tls().map(|t| t.acceptor());
        let conn = Conn {
            peer,
            tls: tls.is_some(),
        };
        let timer = warden.timer();
        let streams = Arc::new(Streams::new(timer.clone()));
        let w = warden.clone();
        let in_service = streams.clone();
        let service = hyper::service::service_fn(move |req: http::Request<_>| {
            let w = w.clone();
            let open = in_service.open(req.version());
            async move {
                let resp = w.handle(req, conn).await;
                Ok::<_, Infallible>(resp.map(|inner| ConnBody { inner, _open: open }))
            }
        });
        let builder = builder.clone();
        let stopping = stop.subscribe();
        let idle = IdleClose {
            streams: streams.clone(),
            alarm: timer.alarm(),
            idle: settings.http2_idle_timeout,
            grace: settings.header_read_timeout,
            closing_since: None,
        };
        let handshake_timeout = settings.header_read_timeout;
        let counted = warden.metrics().map(|m| m.connection_opened());
        tokio::spawn(async move {
            let _permit = permit;
            let _ip_slot = ip_slot;
            let _counted = counted;
            match tls {
                None => {
                    let io = ProtocolDeadline::new(stream, handshake_timeout, streams);
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
                    let conn = conn.into_owned();
                    let served = serve(conn, |c| c.graceful_shutdown(), stopping, idle);
                    if let Err(e) = served.await {
                        tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
                    }
                }
                Some(acceptor) => {
                    let tls_stream = match tokio::time::timeout(
                        handshake_timeout,
                        acceptor.accept(stream),
                    )
                    .await
                    {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::debug!(peer = %peer, error = %e, "tls handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(peer = %peer, "tls handshake timed out");
                            return;
                        }
                    };
                    let io = ProtocolDeadline::new(tls_stream, handshake_timeout, streams);
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
                    let conn = conn.into_owned();
                    let served = serve(conn, |c| c.graceful_shutdown(), stopping, idle);
                    if let Err(e) = served.await {
                        tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
                    }
                }
            }
        });
    }

    drop(listener);
    let _ = admin_stop.send(());
    sweeper.abort();
    if let Some(w) = tls_watch {
        w.abort();
    }
    tracing::info!(
        grace_ms = settings.shutdown_grace.as_millis() as u64,
        "shutting down: draining connections"
    );
    let _ = stop.send(());
    let drained = async {
        tokio::select! {
            () = stop.closed() => tracing::info!("all connections closed"),
            () = tokio::time::sleep(settings.shutdown_grace) => {
                tracing::warn!("grace period over with connections still open");
            }
        }
    };
    // Webhook attempts in flight finish within the same grace; any cut short goes out again
    // (from this process's next start, or another's) once its lease ends.
    let delivered = async {
        if let Some(d) = deliveries {
            d.stop().await;
        }
    };
    let admin_drained = async {
        if let Some(admin) = admin {
            let _ = admin.await;
        }
    };
    tokio::join!(drained, delivered, admin_drained);
}

/// Drives `conn` to its end. It is shut down gracefully (`shut`: in-flight requests finish,
/// HTTP/2 says GOAWAY) when Warden stops, or when `idle` finds it an idle HTTP/2 connection; in
/// the latter case it is dropped if it has not closed `idle.grace` later (a client that never
/// acknowledges the GOAWAY).
async fn serve<C, E>(
    conn: C,
    shut: impl Fn(Pin<&mut C>),
    mut stopping: watch::Receiver<()>,
    mut idle: IdleClose,
) -> Result<(), E>
where
    C: Future<Output = Result<(), E>>,
{
    let mut conn = std::pin::pin!(conn);
    let mut stop = std::pin::pin!(stopping.changed());
    let mut closing = false;
    std::future::poll_fn(|cx| {
        // The connection first: a stream it opens in this poll counts before idleness is judged.
        if let Poll::Ready(r) = conn.as_mut().poll(cx) {
            return Poll::Ready(r);
        }
        if closing {
            // Only an idle close arms this: Warden's own shutdown has `shutdown_grace`.
            return match idle.poll_overdue(cx) {
                Poll::Ready(()) => Poll::Ready(Ok(())),
                Poll::Pending => Poll::Pending,
            };
        }
        // A dropped sender (Warden stopped serving) stops the connection too.
        if stop.as_mut().poll(cx).is_ready() {
            closing = true;
            idle.closing_since = None;
        } else if idle.poll_idle(cx).is_ready() {
            tracing::debug!("closing an idle HTTP/2 connection");
            closing = true;
            idle.closing_since = Some(idle.alarm.now_ms());
        } else {
            return Poll::Pending;
        }
        shut(conn.as_mut());
        match conn.as_mut().poll(cx) {
            Poll::Ready(r) => Poll::Ready(r),
            Poll::Pending if idle.closing_since.is_some() => match idle.poll_overdue(cx) {
                Poll::Ready(()) => Poll::Ready(Ok(())),
                Poll::Pending => Poll::Pending,
            },
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

/// What a connection knows of its HTTP/2 streams, shared by its service and [`IdleClose`].
struct Streams {
    timer: CoarseTimer,
    /// Whether the connection speaks HTTP/2 (its preface was read): only then is it watched.
    h2: AtomicBool,
    /// Streams open: from the request's arrival to the end (or drop) of its response body.
    open: AtomicUsize,
    /// When the last stream closed (or the connection opened), on the coarse clock.
    idle_since: AtomicU64,
}

impl Streams {
    fn new(timer: CoarseTimer) -> Self {
        Self {
            h2: AtomicBool::new(false),
            open: AtomicUsize::new(0),
            idle_since: AtomicU64::new(timer.now_ms()),
            timer,
        }
    }

    /// Counts an HTTP/2 request as an open stream until the [`OpenStream`] is dropped. HTTP/1.1
    /// requests are not counted (their idle time is hyper's `header_read_timeout`).
    fn open(self: &Arc<Self>, version: Version) -> Option<OpenStream> {
        if version != Version::HTTP_2 {
            return None;
        }
        self.open.fetch_add(1, Ordering::AcqRel);
        Some(OpenStream(Arc::clone(self)))
    }
}

/// An open HTTP/2 stream; see [`Streams::open`].
struct OpenStream(Arc<Streams>);

impl Drop for OpenStream {
    fn drop(&mut self) {
        let streams = &self.0;
        // Before the count: whoever sees the count at 0 sees this time too.
        streams
            .idle_since
            .store(streams.timer.now_ms(), Ordering::Release);
        streams.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its HTTP/2 stream counted as open until it is done.
struct ConnBody {
    inner: Body,
    _open: Option<OpenStream>,
}

impl http_body::Body for ConnBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Decides when an HTTP/2 connection has been idle (no open stream) for
/// `server.http2_idle_timeout`. hyper's HTTP/2 server has no such timeout, and its keep-alive
/// PINGs, which every client answers, keep an idle connection open for ever.
struct IdleClose {
    streams: Arc<Streams>,
    alarm: Alarm,
    idle: Duration,
    /// How long a connection told to go away may take to close.
    grace: Duration,
    closing_since: Option<u64>,
}

impl IdleClose {
    /// `Ready` when the connection speaks HTTP/2 and has had no open stream for `idle`. Costs
    /// atomic loads a poll, and the timer's lock about once an `idle` (while streams are open,
    /// the alarm looks again every `idle`).
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if !self.streams.h2.load(Ordering::Relaxed) {
            return Poll::Pending;
        }
        let at = if self.streams.open.load(Ordering::Acquire) == 0 {
            let since = self.streams.idle_since.load(Ordering::Acquire);
            self.alarm.ms_after(since, self.idle)
        } else {
            // Not idle: look again in a while.
            self.alarm.ms_after(self.alarm.now_ms(), self.idle)
        };
        if self.alarm.poll_at(at, cx).is_pending() {
            return Poll::Pending;
        }
        // Due: still idle (a stream may have opened since `at` was computed)?
        if self.streams.open.load(Ordering::Acquire) == 0 {
            Poll::Ready(())
        } else {
            self.poll_idle(cx)
        }
    }

    /// `Ready` once the connection has taken longer than `grace` to close.
    fn poll_overdue(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(since) = self.closing_since else {
            return Poll::Pending;
        };
        let at = self.alarm.ms_after(since, self.grace);
        self.alarm.poll_at(at, cx)
    }
}

/// Connections open per peer address, for `server.max_connections_per_ip`.
struct PerIp {
    max: Option<usize>,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// A connection counted against its address; dropping it uncounts it.
struct IpSlot {
    table: Arc<PerIp>,
    key: IpAddr,
}

impl PerIp {
    fn new(max: Option<usize>) -> Self {
        Self {
            max,
            open: Mutex::new(HashMap::new()),
        }
    }

    /// Counts a connection from `peer`; `Err` when its address is at the cap. `exempt` peers
    /// (trusted proxies) and all peers when there is no cap are not counted (`Ok(None)`).
    fn admit(self: &Arc<Self>, peer: IpAddr, exempt: bool) -> Result<Option<IpSlot>, ()> {
        let Some(max) = self.max.filter(|_| !exempt) else {
            return Ok(None);
        };
        let key = ip_key(peer);
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(key).or_insert(0);
        if *n >= max {
            return Err(());
        }
        *n += 1;
        Ok(Some(IpSlot {
            table: Arc::clone(self),
            key,
        }))
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut open = self.table.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// The address a connection counts against: an IPv4 address (IPv4-mapped IPv6 included) as
/// it is, an IPv6 address by its /64, the smallest network a single host is usually given.
fn ip_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// The HTTP/2 connection preface: the bytes that tell an h2 client from an HTTP/1.1 one.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Bounds by `server.header_read_timeout` the wait for a client's first bytes. The `auto`
/// builder reads until it can tell HTTP/1.1 from HTTP/2 with no timeout of its own, and hyper's
/// header timeout starts only after that, so without this a client that connects and sends
/// nothing (or part of the h2 preface) would hold a connection slot for ever.
///
/// It also tells the connection's [`Streams`] when the client turned out to speak HTTP/2.
struct ProtocolDeadline<S> {
    inner: S,
    /// `None` once the protocol is settled: from then on reads pass straight through.
    deadline: Option<Pin<Box<Sleep>>>,
    /// How many bytes so far match [`H2_PREFACE`].
    matched: usize,
    streams: Arc<Streams>,
}

impl<S> ProtocolDeadline<S> {
    fn new(inner: S, timeout: Duration, streams: Arc<Streams>) -> Self {
        Self {
            inner,
            deadline: Some(Box::pin(tokio::time::sleep(timeout))),
            matched: 0,
            streams,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ProtocolDeadline<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let Some(deadline) = this.deadline.as_mut() else {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        };
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let new = &buf.filled()[before..];
                let expected = &H2_PREFACE[this.matched..];
                let n = new.len().min(expected.len());
                // Settled on EOF, on a byte that is not the preface, or on the whole preface.
                if n > 0 && new[..n] == expected[..n] && n == expected.len() {
                    this.streams.h2.store(true, Ordering::Relaxed);
                    this.deadline = None;
                } else if n == 0 || new[..n] != expected[..n] {
                    this.deadline = None;
                } else {
                    this.matched += n;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => match deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no request within server.header_read_timeout",
                ))),
                Poll::Pending => Poll::Pending,
            },
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ProtocolDeadline<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_counts_as_itself_and_an_ipv6_one_by_its_64() {
        let key = |s: &str| ip_key(s.parse().unwrap()).to_string();
        assert_eq!(key("192.0.2.7"), "192.0.2.7");
        assert_eq!(key("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(key("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::");
        assert_eq!(key("2001:db8:1:2:ffff::1"), "2001:db8:1:2::");
        assert_ne!(key("2001:db8:1:3::1"), key("2001:db8:1:2::1"));
    }

    #[test]
    fn the_per_address_cap_counts_open_connections_and_exempts_proxies() {
        let table = Arc::new(PerIp::new(Some(2)));
        let ip: IpAddr = "2001:db8::1".parse().unwrap();
        let neighbour: IpAddr = "2001:db8::2".parse().unwrap();
        let a = table.admit(ip, false).unwrap();
        let _b = table.admit(neighbour, false).unwrap();
        assert!(table.admit(ip, false).is_err(), "the same /64");
        assert!(matches!(table.admit(ip, true), Ok(None)), "exempt");
        drop(a);
        assert!(table.admit(ip, false).unwrap().is_some());
        let off = Arc::new(PerIp::new(None));
        assert!(matches!(off.admit(ip, false), Ok(None)));
    }
}
