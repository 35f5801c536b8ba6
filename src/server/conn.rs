//! One connection's lifetime on the main listener: its HTTP/2 streams and the idle close
//! (`server.http2_idle_timeout`), the deadline on protocol detection, and the count of
//! connections per peer address (`server.max_connections_per_ip`).

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http::Version;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;
use tokio::time::Sleep;

use crate::body::Watch;
use crate::coarse_timer::{Alarm, CoarseTimer};
use crate::gate::client_ip::host_key;

/// Drives `conn` to its end. It is shut down gracefully (`shut`: in-flight requests finish,
/// HTTP/2 says GOAWAY) when Warden stops, or when `idle` finds it an idle HTTP/2 connection; in
/// the latter case it is dropped if it has not closed `idle.grace` later (a client that never
/// acknowledges the GOAWAY).
pub(super) async fn serve<C, E>(
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
pub(super) struct Streams {
    timer: CoarseTimer,
    /// Whether the connection speaks HTTP/2 (its preface was read): only then is it watched.
    h2: AtomicBool,
    /// Streams open: from the request's arrival to the end (or drop) of its response body.
    open: AtomicUsize,
    /// When the last stream closed (or the connection opened), on the coarse clock.
    idle_since: AtomicU64,
}

impl Streams {
    pub(super) fn new(timer: CoarseTimer) -> Self {
        Self {
            h2: AtomicBool::new(false),
            open: AtomicUsize::new(0),
            idle_since: AtomicU64::new(timer.now_ms()),
            timer,
        }
    }

    /// Counts an HTTP/2 request as an open stream until the [`OpenStream`] is dropped. HTTP/1.1
    /// requests are not counted (their idle time is hyper's `header_read_timeout`).
    pub(super) fn open(self: &Arc<Self>, version: Version) -> Option<OpenStream> {
        if version != Version::HTTP_2 {
            return None;
        }
        self.open.fetch_add(1, Ordering::AcqRel);
        Some(OpenStream(Arc::clone(self)))
    }
}

/// An open HTTP/2 stream; see [`Streams::open`].
pub(super) struct OpenStream(Arc<Streams>);

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

/// Keeps a response's HTTP/2 stream counted as open until its body is done (dropped).
impl Watch for Option<OpenStream> {}

/// Decides when an HTTP/2 connection has been idle (no open stream) for
/// `server.http2_idle_timeout`. hyper's HTTP/2 server has no such timeout, and its keep-alive
/// PINGs, which every client answers, keep an idle connection open for ever.
pub(super) struct IdleClose {
    pub(super) streams: Arc<Streams>,
    pub(super) alarm: Alarm,
    pub(super) idle: Duration,
    /// How long a connection told to go away may take to close.
    pub(super) grace: Duration,
    pub(super) closing_since: Option<u64>,
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
pub(super) struct PerIp {
    max: Option<usize>,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// A connection counted against its address; dropping it uncounts it.
pub(super) struct IpSlot {
    table: Arc<PerIp>,
    key: IpAddr,
}

impl PerIp {
    pub(super) fn new(max: Option<usize>) -> Self {
        Self {
            max,
            open: Mutex::new(HashMap::new()),
        }
    }

    /// Counts a connection from `peer`; `Err` when its address is at the cap. `exempt` peers
    /// (trusted proxies) and all peers when there is no cap are not counted (`Ok(None)`).
    pub(super) fn admit(
        self: &Arc<Self>,
        peer: IpAddr,
        exempt: bool,
    ) -> Result<Option<IpSlot>, ()> {
        let Some(max) = self.max.filter(|_| !exempt) else {
            return Ok(None);
        };
        let key = host_key(peer);
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

/// The HTTP/2 connection preface: the bytes that tell an h2 client from an HTTP/1.1 one.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Bounds by `server.header_read_timeout` the wait for a client's first bytes. The `auto`
/// builder reads until it can tell HTTP/1.1 from HTTP/2 with no timeout of its own, and hyper's
/// header timeout starts only after that, so without this a client that connects and sends
/// nothing (or part of the h2 preface) would hold a connection slot for ever.
///
/// It also tells the connection's [`Streams`] when the client turned out to speak HTTP/2.
pub(super) struct ProtocolDeadline<S> {
    inner: S,
    /// `None` once the protocol is settled: from then on reads pass straight through.
    deadline: Option<Pin<Box<Sleep>>>,
    /// How many bytes so far match [`H2_PREFACE`].
    matched: usize,
    streams: Arc<Streams>,
}

impl<S> ProtocolDeadline<S> {
    pub(super) fn new(inner: S, timeout: Duration, streams: Arc<Streams>) -> Self {
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
        let key = |s: &str| host_key(s.parse().unwrap()).to_string();
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
