//! The listener side: accept loop with a connection limit, optional TLS (rustls, ALPN h2 and
//! http/1.1), HTTP/1.1 and HTTP/2 (h2c by prior knowledge on plaintext), header-read timeout,
//! header size limit, TCP_NODELAY, and graceful shutdown within a grace period.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::Sleep;

use crate::config::TlsFiles;
use crate::service::{Conn, Warden};

/// Builds the TLS acceptor from PEM files; the error names the file at fault.
pub fn tls_acceptor(files: &TlsFiles) -> Result<tokio_rustls::TlsAcceptor, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("server.tls.cert {}: {e}", files.cert.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "server.tls.cert {}: no certificate found",
            files.cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| format!("server.tls.key {}: {e}", files.key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("server.tls: certificate and key do not fit: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
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
    }
}

/// Serves `listener` until `shutdown` completes, then stops accepting, lets in-flight requests
/// finish for up to `server.shutdown_grace`, and returns.
pub async fn run(listener: TcpListener, warden: Arc<Warden>, shutdown: impl Future<Output = ()>) {
    let settings = warden.settings().server.clone();
    let permits = Arc::new(Semaphore::new(settings.max_connections));
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        // Re-armed for every request head: the coarse timer makes that a lock and a store.
        .timer(warden.timer().clone())
        .header_read_timeout(settings.header_read_timeout)
        .max_buf_size(settings.max_header_bytes)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(settings.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(settings.http2_max_concurrent_streams)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    let builder = Arc::new(builder);
    let sweeper = tokio::spawn(sweep_forever(warden.clone()));
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
        let _ = stream.set_nodelay(true);
        let tls = warden.tls_acceptor().cloned();
        let conn = Conn {
            peer,
            tls: tls.is_some(),
        };
        let w = warden.clone();
        let service = hyper::service::service_fn(move |req| {
            let w = w.clone();
            async move { Ok::<_, Infallible>(w.handle(req, conn).await) }
        });
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let handshake_timeout = settings.header_read_timeout;
        tokio::spawn(async move {
            let _permit = permit;
            match tls {
                None => {
                    let io = ProtocolDeadline::new(stream, handshake_timeout);
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
                    if let Err(e) = watcher.watch(conn.into_owned()).await {
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
                    let io = ProtocolDeadline::new(tls_stream, handshake_timeout);
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
                    if let Err(e) = watcher.watch(conn.into_owned()).await {
                        tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
                    }
                }
            }
        });
    }

    drop(listener);
    sweeper.abort();
    tracing::info!(
        grace_ms = settings.shutdown_grace.as_millis() as u64,
        "shutting down: draining connections"
    );
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(settings.shutdown_grace) => {
            tracing::warn!("grace period over with connections still open");
        }
    }
}

/// The HTTP/2 connection preface: the bytes that tell an h2 client from an HTTP/1.1 one.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Bounds by `server.header_read_timeout` the wait for a client's first bytes. The `auto`
/// builder reads until it can tell HTTP/1.1 from HTTP/2 with no timeout of its own, and hyper's
/// header timeout starts only after that, so without this a client that connects and sends
/// nothing (or part of the h2 preface) would hold a connection slot for ever.
struct ProtocolDeadline<S> {
    inner: S,
    /// `None` once the protocol is settled: from then on reads pass straight through.
    deadline: Option<Pin<Box<Sleep>>>,
    /// How many bytes so far match [`H2_PREFACE`].
    matched: usize,
}

impl<S> ProtocolDeadline<S> {
    fn new(inner: S, timeout: Duration) -> Self {
        Self {
            inner,
            deadline: Some(Box::pin(tokio::time::sleep(timeout))),
            matched: 0,
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
                if n == 0 || new[..n] != expected[..n] || n == expected.len() {
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
