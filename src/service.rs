//! The request handler: route, run the route's checks, answer Warden's own endpoints or forward,
//! and write one access event. It never fails: every outcome is already a response.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;

use crate::body::{Body, full};
use crate::config::Settings;
use crate::forward::{self, Forwarder, Origin};
use crate::gate::client_ip;
use crate::problem::Problem;
use crate::router::{AuthMode, Router, Target};

/// The connection a request arrived on.
#[derive(Debug, Clone, Copy)]
pub struct Conn {
    pub peer: SocketAddr,
    pub tls: bool,
}

/// Errors building a [`Warden`] from settings.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("tls: {0}")]
    Tls(String),
}

/// Everything a request needs, built once at start-up and shared by all connections.
pub struct Warden {
    settings: Settings,
    router: Router,
    forwarder: Forwarder,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl Warden {
    /// Builds the shared state. Fails (before anything binds) on unusable TLS material.
    pub fn new(settings: Settings) -> Result<Arc<Self>, StartError> {
        let tls = match &settings.server.tls {
            Some(files) => Some(crate::server::tls_acceptor(files).map_err(StartError::Tls)?),
            None => None,
        };
        let router = Router::new(
            settings.endpoints.healthz.clone(),
            settings.endpoints.readyz.clone(),
            settings.routes.clone(),
        );
        let forwarder = Forwarder::new(settings.upstream.clone());
        Ok(Arc::new(Self {
            settings,
            router,
            forwarder,
            tls,
        }))
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub(crate) fn tls_acceptor(&self) -> Option<&tokio_rustls::TlsAcceptor> {
        self.tls.as_ref()
    }

    /// Handles one request from `conn`.
    pub async fn handle(&self, req: Request<Incoming>, conn: Conn) -> Response<Body> {
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

        let (route_name, resp) = match self.router.resolve(&method, req.uri().path()) {
            Target::Health => ("healthz", health()),
            Target::Ready => ("readyz", self.ready().await),
            Target::NotFound => ("-", Problem::RouteNotFound.into_response()),
            Target::MethodNotAllowed(allow) => {
                ("-", Problem::MethodNotAllowed { allow }.into_response())
            }
            Target::Proxy(route) => {
                let resp = match route.policy.auth {
                    AuthMode::None => self.proxy(req, &origin).await,
                };
                (route.name.as_str(), resp)
            }
        };

        if let Some(uri) = uri {
            access_event(&method, &uri, &resp, start, client_ip, route_name);
        }
        resp
    }

    /// Forwards a request that passed its checks.
    async fn proxy(&self, mut req: Request<Incoming>, origin: &Origin) -> Response<Body> {
        let limit = self.settings.server.max_body_bytes;
        if let Some(len) = declared_length(req.headers()) {
            if len > limit {
                return Problem::PayloadTooLarge { limit }.into_response();
            }
        }
        let upgrade = if forward::is_upgrade(req.headers()) {
            Some(hyper::upgrade::on(&mut req))
        } else {
            None
        };
        let outgoing = req.map(|b| forward::limit_body(b, limit));
        match self.forwarder.forward(outgoing, origin, upgrade).await {
            Ok(resp) => resp,
            Err(problem) => problem.into_response(),
        }
    }

    /// Ready when the upstream accepts connections (if `endpoints.readyz_checks_upstream`).
    async fn ready(&self) -> Response<Body> {
        if self.settings.endpoints.readyz_checks_upstream {
            let authority = self.forwarder.authority();
            let port = authority
                .port_u16()
                .unwrap_or_else(|| self.forwarder.default_port());
            let host = authority.host().trim_start_matches('[').trim_end_matches(']');
            let probe = tokio::net::TcpStream::connect((host, port));
            match tokio::time::timeout(Duration::from_secs(1), probe).await {
                Ok(Ok(_)) => {}
                _ => {
                    return Problem::NotReady {
                        detail: "the upstream does not accept connections".into(),
                    }
                    .into_response();
                }
            }
        }
        json_response(StatusCode::OK, r#"{"status":"ready"}"#)
    }
}

fn health() -> Response<Body> {
    json_response(StatusCode::OK, r#"{"status":"ok"}"#)
}

fn json_response(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// The `Content-Length` a request declares, if it is a plain number.
fn declared_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

fn access_event(
    method: &http::Method,
    uri: &http::Uri,
    resp: &Response<Body>,
    start: Instant,
    client_ip: IpAddr,
    route: &str,
) {
    tracing::info!(
        target: "warden::access",
        method = %method,
        path = uri.path(),
        status = resp.status().as_u16(),
        latency_us = start.elapsed().as_micros() as u64,
        client_ip = %client_ip,
        route,
        "request"
    );
}
