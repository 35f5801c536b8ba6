//! The admin listener (`[admin]`): a second, plain HTTP/1.1 socket serving the metrics and the
//! health probes to the platform, so the public listener need not expose them. It answers only
//! those paths (anything else is a 404 problem+json), forwards nothing upstream, checks no
//! credential, and stops with the main listener ([`super::run_with_admin`]).

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use http::{Method, Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::body::Body;
use crate::config::AdminSettings;
use crate::problem::Problem;
use crate::service::Warden;

/// What an admin path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Metrics,
    Health,
    Ready,
}

/// The admin endpoint `path` names, compared exactly (no route patterns here).
fn endpoint(admin: &AdminSettings, path: &str) -> Option<Endpoint> {
    if path == admin.metrics {
        Some(Endpoint::Metrics)
    } else if path == admin.healthz {
        Some(Endpoint::Health)
    } else if path == admin.readyz {
        Some(Endpoint::Ready)
    } else {
        None
    }
}

/// Answers one request on the admin listener.
async fn answer(warden: &Warden, req: Request<Incoming>) -> Response<Body> {
    let admin = &warden.settings().admin;
    let Some(endpoint) = endpoint(admin, req.uri().path()) else {
        return Problem::RouteNotFound.into_response();
    };
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Problem::MethodNotAllowed {
            allow: "GET, HEAD".into(),
        }
        .into_response();
    }
    match endpoint {
        Endpoint::Metrics => warden.exposition(),
        Endpoint::Health => crate::service::health(),
        Endpoint::Ready => warden.ready().await,
    }
}

/// Serves the admin endpoints on `listener` until `shutdown` completes, then stops accepting
/// and lets open connections finish for up to `server.shutdown_grace`. Bounded like the main
/// listener: `admin.max_connections`, and the main listener's `server.header_read_timeout` and
/// `server.max_header_bytes`.
pub async fn run(listener: TcpListener, warden: Arc<Warden>, shutdown: impl Future<Output = ()>) {
    let server = warden.settings().server.clone();
    let permits = Arc::new(Semaphore::new(warden.settings().admin.max_connections));
    let (stop, _) = watch::channel(());
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(server.header_read_timeout)
        .max_buf_size(server.max_header_bytes)
        .keep_alive(true);
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(listen = %addr, "admin listener on http://{addr}");
    }
    tokio::pin!(shutdown);
    loop {
        let Some((permit, stream, _)) =
            super::next_connection(&listener, &permits, shutdown.as_mut(), "admin").await
        else {
            break;
        };
        let _ = stream.set_nodelay(true);
        let w = warden.clone();
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let w = w.clone();
            async move { Ok::<_, Infallible>(answer(&w, req).await) }
        });
        let conn = builder.serve_connection(TokioIo::new(stream), service);
        let mut stopping = stop.subscribe();
        tokio::spawn(async move {
            let _permit = permit;
            tokio::pin!(conn);
            let served = tokio::select! {
                r = conn.as_mut() => r,
                _ = stopping.changed() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = served {
                tracing::debug!(error = %e, "admin connection ended with an error");
            }
        });
    }
    drop(listener);
    let _ = stop.send(());
    tokio::select! {
        () = stop.closed() => {}
        () = tokio::time::sleep(server.shutdown_grace) => {
            tracing::warn!("grace period over with admin connections still open");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_configured_paths_name_an_admin_endpoint() {
        let admin = AdminSettings {
            metrics: "/m".into(),
            ..AdminSettings::default()
        };
        assert_eq!(endpoint(&admin, "/m"), Some(Endpoint::Metrics));
        assert_eq!(endpoint(&admin, "/healthz"), Some(Endpoint::Health));
        assert_eq!(endpoint(&admin, "/readyz"), Some(Endpoint::Ready));
        for other in ["/metrics", "/m/", "/M", "/%6d", "/", "/api/x"] {
            assert_eq!(endpoint(&admin, other), None, "{other}");
        }
    }
}
