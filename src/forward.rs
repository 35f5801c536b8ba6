//! Forwarding to the upstream: a pooled keep-alive client (http and https), header hygiene
//! (hop-by-hop removal, identity headers, `X-Forwarded-*`), streaming in both directions, and
//! WebSocket/upgrade pass-through. Upstream failures become 502/504 without internals.
//!
//! This file holds the client ([`Forwarder`]) and the error mapping; `headers.rs` the header
//! hygiene, `body_limit.rs` the request body's size limit and stall deadline, `pool.rs` the
//! upstream connection pool and `idle.rs` the response body's idle timeout.

use std::time::Duration;

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use hyper::upgrade::OnUpgrade;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;

mod body_limit;
mod headers;
mod idle;
mod pool;
pub use body_limit::{ClientBodyError, limit_body};
use headers::X_WARDEN_WOULD_DENY;
pub use headers::{
    HOP_BY_HOP, IDENTITY_PREFIX, is_upgrade, method_override, set_forwarded, set_identity,
    strip_hop_by_hop, strip_identity,
};
pub use idle::UpstreamBodyStalled;
use pool::UpstreamPool;

use crate::body::Body;
use crate::cache::Identity;
use crate::coarse_timer::CoarseTimer;
use crate::gate::client_ip::Origin;
use crate::problem::Problem;
/// `[upstream]`, validated by `config/upstream.rs`.
#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    /// `upstream.url`, default `http://127.0.0.1:3000`: scheme, authority and an optional base path.
    pub scheme: http::uri::Scheme,
    pub authority: http::uri::Authority,
    /// Base path without a trailing slash ("" for none).
    pub base_path: String,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    pub pool_idle_timeout: Duration,
    pub pool_max_idle_per_host: usize,
    pub preserve_host: bool,
    /// `upstream.body_idle_timeout`, default 5m: the longest wait for the next frame of an
    /// upstream response body once its head has arrived; past it the body is cut (the client
    /// sees it end with an error) and the upstream connection closed. `None` ("0s"): no limit.
    pub body_idle_timeout: Option<Duration>,
}

type Connector = HttpsConnector<HttpConnector>;

/// The pooled upstream client and where it sends requests.
pub struct Forwarder {
    pool: std::sync::Arc<UpstreamPool>,
    timer: CoarseTimer,
    settings: UpstreamSettings,
    authority_value: HeaderValue,
}

impl Forwarder {
    /// Builds the client. The pool keeps idle connections per `upstream.pool_*`.
    pub fn new(settings: UpstreamSettings, timer: CoarseTimer) -> Self {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(settings.connect_timeout));
        http.set_keepalive(Some(Duration::from_secs(60)));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let target = Uri::builder()
            .scheme(settings.scheme.clone())
            .authority(settings.authority.clone())
            .path_and_query("/")
            .build()
            .unwrap_or_default();
        let pool = std::sync::Arc::new(UpstreamPool::new(
            connector,
            target,
            settings.pool_max_idle_per_host,
            settings.pool_idle_timeout,
        ));
        let authority_value = HeaderValue::from_str(settings.authority.as_str())
            .unwrap_or_else(|_| HeaderValue::from_static("localhost"));
        Self {
            pool,
            timer,
            settings,
            authority_value,
        }
    }

    /// The upstream's `host:port`, for readiness checks.
    pub fn authority(&self) -> &http::uri::Authority {
        &self.settings.authority
    }

    /// The default port of the upstream's scheme.
    pub fn default_port(&self) -> u16 {
        if self.settings.scheme == http::uri::Scheme::HTTPS {
            443
        } else {
            80
        }
    }

    /// The request target as the upstream sees it: origin-form (`/path?query`), under
    /// `upstream.url`'s base path if it has one. The connection itself is the pool's.
    fn upstream_uri(&self, original: &Uri) -> Result<Uri, Problem> {
        let cannot = |_| Problem::BadRequest {
            detail: "the request target cannot be forwarded".into(),
        };
        let pq = original.path_and_query();
        let (path, query) = pq.map_or(("/", None), |pq| (pq.path(), pq.query()));
        // The path in its normal form (`/%61dmin` goes as `/admin`), the one Warden routed by.
        let path = crate::router::normalize_path(path).map_err(|refusal| Problem::InvalidPath {
            detail: refusal.detail(),
        })?;
        // A path already in normal form, without a base path, is reused as it is (a cheap
        // clone of shared bytes), never re-parsed.
        let pq = match (self.settings.base_path.is_empty(), &path.forwarded, pq) {
            (true, std::borrow::Cow::Borrowed(_), Some(pq)) => pq.clone(),
            (_, forwarded, _) => {
                let query = query.map(|q| format!("?{q}")).unwrap_or_default();
                format!("{}{forwarded}{query}", self.settings.base_path)
                    .parse()
                    .map_err(|e: http::uri::InvalidUri| cannot(e.to_string()))?
            }
        };
        Ok(Uri::from(pq))
    }

    /// Idle keep-alive connections to the upstream now.
    pub fn idle_connections(&self) -> usize {
        self.pool.idle_count()
    }

    /// Sends `req` upstream and returns its response with a streaming body. `upgrade` is the
    /// client side of a protocol switch, joined to the upstream's if it answers 101.
    pub async fn forward(
        &self,
        req: Request<Body>,
        origin: &Origin,
        upgrade: Option<OnUpgrade>,
        identity: Option<&Identity>,
    ) -> Result<Response<Body>, Problem> {
        let (mut parts, body) = req.into_parts();
        // The Host the client used (HTTP/2: the :authority), as a shared value, not a copy.
        let authority = parts.headers.get(header::HOST).cloned().or_else(|| {
            parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });

        strip_hop_by_hop(&mut parts.headers, upgrade.is_some());
        strip_identity(&mut parts.headers);
        if let Some(id) = identity {
            set_identity(&mut parts.headers, id);
        }
        if let Some(value) = parts
            .extensions
            .get::<crate::checks::WouldDeny>()
            .and_then(crate::checks::WouldDeny::header_value)
        {
            parts.headers.insert(X_WARDEN_WOULD_DENY, value);
        }
        set_forwarded(&mut parts.headers, origin, authority.clone());
        if self.settings.preserve_host {
            if let Some(v) = authority {
                parts.headers.insert(header::HOST, v);
            }
        } else {
            parts
                .headers
                .insert(header::HOST, self.authority_value.clone());
        }
        parts.uri = self.upstream_uri(&parts.uri)?;
        // The upstream hop is HTTP/1.1 whatever the client spoke.
        parts.version = http::Version::HTTP_11;
        let up_req = Request::from_parts(parts, body);

        let timeout = self.settings.timeout;
        let mut resp = match self.timer.timeout(timeout, self.pool.send(up_req)).await {
            Err(_) => {
                tracing::warn!(
                    timeout_ms = timeout.as_millis() as u64,
                    "upstream timed out"
                );
                return Err(Problem::UpstreamTimeout {
                    after_ms: timeout.as_millis(),
                });
            }
            Ok(Err(e)) => return Err(classify(&*e)),
            Ok(Ok(resp)) => resp,
        };

        let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
        if switching {
            match upgrade {
                Some(client_side) => {
                    let upstream_side = hyper::upgrade::on(&mut resp);
                    tokio::spawn(tunnel(client_side, upstream_side));
                }
                None => {
                    tracing::warn!("upstream switched protocols unasked");
                    return Err(Problem::UpstreamUnavailable);
                }
            }
        }
        strip_hop_by_hop(resp.headers_mut(), switching);
        match self.settings.body_idle_timeout {
            Some(after) if !switching => {
                Ok(resp.map(|body| idle::idle_limited(body, &self.timer, after)))
            }
            _ => Ok(resp),
        }
    }
}

/// Maps a client error to what the caller sees, and logs the cause for the operator.
fn classify(e: &(dyn std::error::Error + 'static)) -> Problem {
    if let Some(problem) = crate::problem::from_body_error(e) {
        // A stalled or refused body: the upstream got a cut-off request; its connection is
        // not reused.
        tracing::debug!(code = problem.code(), "client request body refused");
        return problem;
    }
    // Checked after the walk above: a limit or digest failure is wrapped in this one.
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.is::<ClientBodyError>() {
            tracing::debug!(error = %ErrorChain(e), "client request body failed");
            return Problem::BadRequest {
                detail: "the request body is malformed or was cut off".into(),
            };
        }
        source = err.source();
    }
    tracing::warn!(error = %ErrorChain(e), "upstream request failed");
    Problem::UpstreamUnavailable
}

/// Displays an error with its causes, for logs.
struct ErrorChain<'a>(&'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

/// Copies bytes both ways between an upgraded client connection and the upstream's.
async fn tunnel(client: OnUpgrade, upstream: OnUpgrade) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!(error = %e, "upgrade did not complete");
            return;
        }
    };
    let mut client = TokioIo::new(client);
    let mut upstream = TokioIo::new(upstream);
    if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        tracing::debug!(error = %e, "upgraded connection ended");
    }
}

#[cfg(test)]
mod tests;
