//! The listener side: accept loop with a connection limit (and one per address), optional TLS
//! (the acceptor is `tls.rs`'s), HTTP/1.1 and HTTP/2 (h2c by prior knowledge on plaintext),
//! header-read timeout, idle HTTP/2 connections closed, header size limit, TCP_NODELAY, and
//! graceful shutdown within a grace period. The admin listener, accepted and drained the same
//! way, is `server/admin.rs`.

mod admin;
mod conn;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use self::conn::{IdleClose, PerIp, ProtocolDeadline, Streams, serve};
use crate::body::Watched;
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

/// [`run`], and the admin listener (`[admin]`, see `server/admin.rs`) on `admin` when given:
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
        tokio::spawn(admin::run(admin, warden.clone(), async move {
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
        let Some((permit, stream, peer)) =
            next_connection(&listener, &permits, shutdown.as_mut(), "main").await
        else {
            break;
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
                Ok::<_, Infallible>(resp.map(|inner| Watched::new(inner, open)))
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

/// The next connection on `listener`, once a slot of `permits` is free: waiting for a permit
/// before accepting leaves excess connections in the kernel backlog. `None` once `shutdown`
/// completes. A failed accept (EMFILE and friends) is logged and retried after a pause instead
/// of spinning. `listener_name` names the listener in that log (`main`, `admin`).
async fn next_connection(
    listener: &TcpListener,
    permits: &Arc<Semaphore>,
    mut shutdown: Pin<&mut impl Future<Output = ()>>,
    listener_name: &'static str,
) -> Option<(OwnedSemaphorePermit, TcpStream, SocketAddr)> {
    let permit = tokio::select! {
        p = permits.clone().acquire_owned() => p.ok()?,
        () = &mut shutdown => return None,
    };
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, peer)) => return Some((permit, stream, peer)),
                Err(e) => {
                    tracing::warn!(listener = listener_name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
            () = &mut shutdown => return None,
        }
    }
}
