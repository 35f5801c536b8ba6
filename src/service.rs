//! The request handler: route, run the route's checks, answer Warden's own endpoints or forward,
//! and write one access event. It never fails: every outcome is already a response.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;

use crate::body::{Body, full};
use crate::cache::Identity;
use crate::clock::Clock;
use crate::config::{Durability, Settings};
use crate::forward::{self, Forwarder, Origin};
use crate::gate::bearer::{self, Presented};
use crate::gate::client_ip;
use crate::issuer::{BearerError, Issuer, auth, oauth};
use crate::problem::Problem;
use crate::router::{AuthMode, Router, Target};
use crate::store::{self, StoreError, StoreOptions};

/// Opens the store named by `store.url`.
pub async fn open_store(settings: &Settings) -> Result<Arc<dyn store::Store>, StoreError> {
    let options = StoreOptions {
        durability: match settings.store.durability {
            Durability::Normal => store::Durability::Normal,
            Durability::Full => store::Durability::Full,
        },
        ..StoreOptions::default()
    };
    store::open(&settings.store.url, options).await
}

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
}

/// Everything a request needs, built once at start-up and shared by all connections.
pub struct Warden {
    settings: Settings,
    router: Router,
    forwarder: Forwarder,
    issuer: Issuer,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl Warden {
    /// Builds the shared state: opens (creating and migrating) the store and writes the
    /// config-declared clients into it. Fails, before anything binds, on unusable TLS material
    /// or an unusable store.
    pub async fn new(settings: Settings) -> Result<Arc<Self>, StartError> {
        Self::with_clock(settings, Clock::default()).await
    }

    /// [`Warden::new`] with a given clock (tests move it forward).
    pub async fn with_clock(settings: Settings, clock: Clock) -> Result<Arc<Self>, StartError> {
        let tls = match &settings.server.tls {
            Some(files) => Some(crate::server::tls_acceptor(files).map_err(StartError::Tls)?),
            None => None,
        };
        let router = Router::new(&settings.endpoints, settings.routes.clone());
        let forwarder = Forwarder::new(settings.upstream.clone());
        let store = open_store(&settings).await?;
        let issuer = Issuer::new(store, settings.tokens.clone(), clock);
        issuer.bootstrap(&settings.clients).await?;
        issuer.start_feed().await?;
        Ok(Arc::new(Self {
            settings,
            router,
            forwarder,
            issuer,
            tls,
        }))
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn issuer(&self) -> &Issuer {
        &self.issuer
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
            Target::Auth => ("auth", auth::handle(&self.issuer, req, client_ip).await),
            Target::OAuthToken => (
                "oauth_token",
                oauth::token(&self.issuer, req, client_ip).await,
            ),
            Target::OAuthRevoke => (
                "oauth_revoke",
                oauth::revoke(&self.issuer, req, client_ip).await,
            ),
            Target::OAuthIntrospect => (
                "oauth_introspect",
                oauth::introspect(&self.issuer, req, client_ip).await,
            ),
            Target::MethodNotAllowed(allow) => {
                ("-", Problem::MethodNotAllowed { allow }.into_response())
            }
            Target::Proxy(route) => {
                let resp = match route.policy.auth {
                    AuthMode::None => self.proxy(req, &origin, None).await,
                    AuthMode::Bearer => match self.bearer(&req, client_ip).await {
                        Ok(identity) => {
                            let mut req = req;
                            if !self.settings.tokens.forward_authorization {
                                req.headers_mut().remove(header::AUTHORIZATION);
                            }
                            self.proxy(req, &origin, Some(&identity)).await
                        }
                        Err(problem) => problem.into_response(),
                    },
                };
                (route.name.as_str(), resp)
            }
        };

        if let Some(uri) = uri {
            access_event(&method, &uri, &resp, start, client_ip, route_name);
        }
        resp
    }

    /// The bearer check of a proxied route: who the credential identifies, and whether it may
    /// be used from `client_ip`.
    async fn bearer(
        &self,
        req: &Request<Incoming>,
        client_ip: IpAddr,
    ) -> Result<Arc<Identity>, Problem> {
        let value = match bearer::presented(req.headers()) {
            Presented::Bearer(v) => v,
            Presented::Missing => {
                return Err(Problem::TokenMissing {
                    challenge: self.issuer.challenge(),
                });
            }
            Presented::Malformed(detail) => {
                return Err(Problem::MalformedCredential {
                    detail: detail.into(),
                });
            }
        };
        let identity = self
            .issuer
            .authenticate_bearer(value)
            .await
            .map_err(|e| match e {
                BearerError::Invalid => Problem::InvalidToken {
                    challenge: self.issuer.invalid_challenge(),
                },
                BearerError::Store(err) => {
                    tracing::error!(error = %err, "store failed during bearer check");
                    Problem::StoreUnavailable
                }
            })?;
        if !identity.allows_ip(client_ip) {
            return Err(Problem::IpNotAllowed);
        }
        Ok(identity)
    }

    /// Forwards a request that passed its checks.
    async fn proxy(
        &self,
        mut req: Request<Incoming>,
        origin: &Origin,
        identity: Option<&Identity>,
    ) -> Response<Body> {
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
        match self
            .forwarder
            .forward(outgoing, origin, upgrade, identity)
            .await
        {
            Ok(resp) => resp,
            Err(problem) => problem.into_response(),
        }
    }

    /// Ready when the store answers and the upstream accepts connections (the latter if
    /// `endpoints.readyz_checks_upstream`).
    async fn ready(&self) -> Response<Body> {
        if let Err(e) = self.issuer.store().ping().await {
            tracing::error!(error = %e, "store ping failed");
            return Problem::NotReady {
                detail: "the store does not answer".into(),
            }
            .into_response();
        }
        if self.settings.endpoints.readyz_checks_upstream {
            let authority = self.forwarder.authority();
            let port = authority
                .port_u16()
                .unwrap_or_else(|| self.forwarder.default_port());
            let host = authority
                .host()
                .trim_start_matches('[')
                .trim_end_matches(']');
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
