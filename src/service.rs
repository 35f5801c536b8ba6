//! The request handler: route, run the route's checks, answer Warden's own endpoints or forward,
//! and write one access event. It never fails: every outcome is already a response.
//!
//! The order of a request, read top to bottom in [`Warden::handle`]: the request's shape
//! (`service/shape.rs`), the network policy, then the route: Warden's own endpoints
//! (`service/own.rs`, forward auth in `service/forward_auth.rs`) or a proxied route's checks and
//! the upstream (`service/proxied.rs`). Start-up (the store, the shared state) is
//! `service/start.rs`.

mod forward_auth;
mod own;
mod proxied;
mod shape;
mod start;

pub(crate) use self::own::health;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use http::{Request, Response};
use hyper::body::Incoming;

use self::own::blocked;
use self::shape::{head_fits, request_shape};
use crate::body::Body;
use crate::cache::Identity;
use crate::checks::Check;
use crate::coarse_timer::CoarseTimer;
use crate::config::Settings;
use crate::forward::Forwarder;
use crate::gate::allowlist::Allowlist;
use crate::gate::client_ip;
use crate::gate::client_ip::Origin;
use crate::gate::idempotency::Idempotency;
use crate::gate::signature::SignatureGate;
use crate::issuer::Issuer;
use crate::metrics::{Metrics, RouteRef};
use crate::problem::Problem;
use crate::router::{Router, Target};
use crate::store::StoreError;
use crate::webhooks::Webhooks;

/// The connection a request arrived on.
#[derive(Debug, Clone, Copy)]
pub struct Conn {
    pub peer: SocketAddr,
    pub tls: bool,
}

/// Errors building a [`Warden`] from settings.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Tls(String),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("store.seal_key_file: {0}")]
    SealKey(String),
    #[error("webhooks: {0}")]
    Webhooks(String),
}

/// Everything a request needs, built once at start-up and shared by all connections.
pub struct Warden {
    settings: Settings,
    router: Router,
    forwarder: Forwarder,
    /// The per-request deadlines (header read, upstream): see [`CoarseTimer`].
    timer: CoarseTimer,
    issuer: Issuer,
    idempotency: Idempotency,
    allowlist: Allowlist,
    signatures: SignatureGate,
    /// `[[issuers]]`: tokens of other issuers on proxied routes; `None` without any.
    idp: Option<crate::idp::Idp>,
    tls: Option<Arc<crate::tls::TlsReloader>>,
    webhooks: Webhooks,
    /// `endpoints.forward_auth` and its decision cache; `None` when off.
    forward_auth: Option<crate::forward_auth::ForwardAuth>,
    /// The Prometheus families, when `endpoints.metrics` is set; nothing is recorded without.
    metrics: Option<Arc<Metrics>>,
}

/// What a proxied request's access event tells beyond its route.
struct Note {
    /// The client its credential proved, if it did.
    client_id: Option<Arc<Identity>>,
    /// The check that refused it.
    refused_by: Option<Check>,
    /// The codes of the checks that failed in report mode.
    would_deny: Vec<&'static str>,
    /// The request's span (see [`Warden::handle`]), for the fields known only later.
    span: tracing::Span,
}

impl Default for Note {
    fn default() -> Self {
        Self {
            client_id: None,
            refused_by: None,
            would_deny: Vec::new(),
            span: tracing::Span::none(),
        }
    }
}

impl Warden {
    /// Webhook subscriptions and their delivery.
    pub fn webhooks(&self) -> &Webhooks {
        &self.webhooks
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn issuer(&self) -> &Issuer {
        &self.issuer
    }

    /// The signature check and its key and nonce caches.
    pub fn signatures(&self) -> &SignatureGate {
        &self.signatures
    }

    /// The configured issuers (`[[issuers]]`), if any.
    pub fn idp(&self) -> Option<&crate::idp::Idp> {
        self.idp.as_ref()
    }

    /// The forward-auth endpoint's state, when `endpoints.forward_auth` is on.
    pub fn forward_auth(&self) -> Option<&crate::forward_auth::ForwardAuth> {
        self.forward_auth.as_ref()
    }

    /// The Prometheus families, when `endpoints.metrics` is set.
    pub fn metrics(&self) -> Option<&Arc<Metrics>> {
        self.metrics.as_ref()
    }

    /// The routing table.
    pub fn router(&self) -> &Router {
        &self.router
    }

    /// Idempotency keys: reservations, replays and their housekeeping.
    pub fn idempotency(&self) -> &Idempotency {
        &self.idempotency
    }

    /// The timer of the per-request deadlines.
    pub fn timer(&self) -> &CoarseTimer {
        &self.timer
    }

    /// The TLS certificate in use and its reloading; `None` on plaintext.
    pub fn tls(&self) -> Option<&Arc<crate::tls::TlsReloader>> {
        self.tls.as_ref()
    }

    /// Handles one request from `conn`.
    ///
    /// Future size matters here: hyper moves the service future on every request, and an async
    /// fn's future is as large as everything it may hold across an await. So the proxy path is
    /// awaited in one place, and every other branch is boxed in a statement of its own (a
    /// `Box::pin(f).await` in one expression still reserves room for `f`). Before this the
    /// future was 17 KB and copying it showed in profiles.
    ///
    /// Everything it does runs in the span `request`, whose `route`, `client_id` (once a
    /// credential proved it) and `check` (the check that refused the request) are filled in as
    /// they become known, so every event on the way (a check's, the upstream's) carries them.
    ///
    /// Not an `async fn`: one would hold `req` and `conn` beside the future it awaits.
    pub fn handle(
        &self,
        req: Request<Incoming>,
        conn: Conn,
    ) -> impl Future<Output = Response<Body>> + '_ {
        use tracing::Instrument as _;
        let span = tracing::info_span!(
            "request",
            route = tracing::field::Empty,
            client_id = tracing::field::Empty,
            check = tracing::field::Empty,
        );
        self.handle_in(req, conn).instrument(span)
    }

    /// [`Warden::handle`] inside its span.
    async fn handle_in(&self, req: Request<Incoming>, conn: Conn) -> Response<Body> {
        let start = Instant::now();
        let trusted = &self.settings.server.trusted_proxies;
        let client_ip = client_ip::resolve(conn.peer.ip(), req.headers(), trusted);
        let origin = Origin {
            peer: conn.peer.ip(),
            peer_trusted: client_ip::is_trusted(conn.peer.ip(), trusted),
            tls: conn.tls,
        };
        let method = req.method().clone();
        // Kept for the access event; a Uri clone shares its bytes.
        let uri = self.settings.log.access.then(|| req.uri().clone());

        // Routed by the decoded path; the upstream gets its normal form (forward.rs).
        let target = head_fits(&req, self.settings.server.max_header_bytes)
            .and_then(|()| request_shape(&req))
            .map(|path| self.router.resolve(&method, &path.decoded));
        // The request's span (entered by `handle`), taken here rather than passed: a
        // parameter would stay in this future's state for its whole life.
        let mut note = Note {
            span: tracing::Span::current(),
            ..Note::default()
        };
        let (route_ref, resp) = match target {
            // A path, method or authority that could mean something else upstream is refused
            // before anything else looks at it.
            Err(problem) => (RouteRef::Own("-"), problem.into_response()),
            Ok(target)
                if !matches!(target, Target::Health | Target::Ready)
                    && !self.allowlist.permits(client_ip) =>
            {
                // The network policy comes first: nothing is looked up or read for a refused
                // address. Health probes come from the platform, not from clients, and reveal
                // nothing.
                tracing::info!(client_ip = %client_ip, "address refused by server.allow_ips/deny_ips");
                (RouteRef::Own("-"), blocked(&target))
            }
            Ok(target) => match target {
                Target::Health => (RouteRef::Own("healthz"), health()),
                Target::Metrics => (RouteRef::Own("metrics"), self.exposition()),
                Target::NotFound => (RouteRef::Own("-"), Problem::RouteNotFound.into_response()),
                Target::MethodNotAllowed(allow) => (
                    RouteRef::Own("-"),
                    Problem::MethodNotAllowed { allow }.into_response(),
                ),
                Target::Proxy(route) => {
                    note.span.record("route", route.name.as_str());
                    let resp = self
                        .route(req, route, &origin, client_ip, &method, &mut note)
                        .await;
                    (RouteRef::Route(route.index), resp)
                }
                own => {
                    let (name, fut) = self.own_endpoint(own, req, &origin, client_ip);
                    note.span.record("route", name);
                    (RouteRef::Own(name), fut.await)
                }
            },
        };

        if let Some(metrics) = &self.metrics {
            metrics.request(route_ref, resp.status().as_u16(), start.elapsed());
        }
        if let Some(uri) = uri {
            let route_name = match route_ref {
                RouteRef::Own(name) => name,
                RouteRef::Route(i) => self.settings.routes.get(i).map_or("-", |r| &r.name),
            };
            access_event(&method, &uri, &resp, start, client_ip, route_name, &note);
        }
        resp
    }
}

fn access_event(
    method: &http::Method,
    uri: &http::Uri,
    resp: &Response<Body>,
    start: Instant,
    client_ip: IpAddr,
    route: &str,
    note: &Note,
) {
    tracing::info!(
        target: "warden::access",
        method = %method,
        path = uri.path(),
        status = resp.status().as_u16(),
        latency_us = start.elapsed().as_micros() as u64,
        client_ip = %client_ip,
        route,
        client_id = note.client_id.as_ref().map_or("-", |id| id.client_id.as_str()),
        refused_by = note.refused_by.map_or("-", Check::name),
        would_deny = ?note.would_deny,
        "request"
    );
}

#[cfg(test)]
mod tests {
    use http::Method;

    use super::*;
    use crate::policy::Need;

    /// The size of the future `f` would return, without calling it.
    fn future_size<A, F: std::future::Future>(_f: impl FnOnce(A) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// hyper moves the service future on every request, and each await moves the callee's
    /// future into the caller's: the proxy path's futures must stay small (see `handle`).
    #[test]
    fn request_futures_stay_small() {
        type Args = (Arc<Warden>, Request<Incoming>, Conn);
        let handle = future_size(|(w, req, conn): Args| async move { w.handle(req, conn).await });
        let proxy = future_size(|(w, req, conn): Args| async move {
            let origin = Origin {
                peer: conn.peer.ip(),
                peer_trusted: false,
                tls: false,
            };
            w.proxy(req, &origin, None, None, Need::Off, None).await
        });
        let route = future_size(|(w, req, conn): Args| async move {
            let origin = Origin {
                peer: conn.peer.ip(),
                peer_trusted: false,
                tls: false,
            };
            let r = w.router.resolve(&Method::GET, "/");
            let Target::Proxy(route) = r else {
                return health();
            };
            let mut note = Note::default();
            w.route(req, route, &origin, conn.peer.ip(), &Method::GET, &mut note)
                .await
        });
        let forward = future_size(
            |(w, req, conn): (Arc<Warden>, Request<Body>, Conn)| async move {
                let origin = Origin {
                    peer: conn.peer.ip(),
                    peer_trusted: false,
                    tls: false,
                };
                w.forwarder.forward(req, &origin, None, None).await
            },
        );
        let caller = future_size(|(w, req, conn): Args| async move {
            w.issuer.caller(req.headers(), conn.peer.ip()).await
        });
        let route_caller = future_size(|(w, req, conn): Args| async move {
            crate::idp::caller(&w.issuer, w.idp.as_ref(), req.headers(), conn.peer.ip()).await
        });
        eprintln!(
            "handle {handle} B, route {route}, proxy {proxy} B, forward {forward}, caller {caller}, \
             route caller {route_caller}"
        );
        // 5.5 KB and 3.7 KB now; 17 KB and 7.7 KB before the side paths were boxed.
        assert!(
            handle <= 6 * 1024,
            "Warden::handle's future is {handle} bytes"
        );
        assert!(proxy <= 4 * 1024, "Warden::proxy's future is {proxy} bytes");
        assert!(route <= handle && forward <= proxy && caller <= 1024);
        assert!(
            route_caller <= caller + 256,
            "idp::caller's future is {route_caller} bytes"
        );
    }
}
