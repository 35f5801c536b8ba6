//! The forward-auth decision endpoint (`endpoints.forward_auth`): Warden as the authorizer of a
//! proxy that forwards by itself (nginx `auth_request`, Envoy `ext_authz` HTTP service, Traefik
//! `forwardAuth`, Caddy `forward_auth`). The proxy describes the original request; Warden routes
//! it as it would route a request to its own proxy (same path normalisation and refusals), runs
//! the route's checks, and answers 200 with the identity headers for the proxy to copy, or the
//! refusal. It forwards nothing and keeps no idempotency records.
//!
//! Where the original request comes from, believed only from a peer in
//! `server.trusted_proxies`:
//! - Envoy: the check request's own method, and its path (with query) after the endpoint's
//!   path (`path_prefix`);
//! - nginx: `X-Original-Method` and `X-Original-URI`, set by the proxy's config;
//! - Traefik, Caddy: `X-Forwarded-Method` and `X-Forwarded-Uri`.
//!
//! Both header families at once are refused: a client may have added one of them, and a proxy
//! that sets one family passes the other through.
//!
//! Decisions about unsigned requests with Warden's own credentials are cached ([`ForwardAuth`]):
//! keyed by the route, the credential, `X-Client-Id` and the client address, and valid only while
//! the credential cache's generation is unchanged, so a revocation (or any change to a client)
//! applies on the next decision, as it does on Warden's own proxy.
//!
//! Beside this file: `config.rs` (`[forward_auth]` and `endpoints.forward_auth`, validated) and
//! `original.rs` (reading the original request by the proxy's convention). The decision itself,
//! which runs a route's checks through `Warden`, is `service/forward_auth.rs`: this module knows
//! the protocol and the cache, not the service.
mod config;
mod original;

pub use self::config::{ForwardAuthSettings, RawForwardAuth};
pub use self::original::{
    Convention, OriginalRequest, X_FORWARDED_METHOD, X_FORWARDED_URI, X_ORIGINAL_METHOD,
    X_ORIGINAL_URI, original,
};

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use moka::sync::Cache;
use sha2::{Digest, Sha256};

use crate::body::{Body, full};
use crate::cache::Identity;
use crate::digest::DigestVerifier;
use crate::forward;
use crate::problem::{ForwardAuthRefusal, Problem};
use crate::router::Route;
use crate::store::Hash;

/// The original request's `Content-Length` (nginx: `$content_length`), for a proxy that sends
/// no body: a body it announces must be covered by the signature's `content-digest`.
pub const X_ORIGINAL_CONTENT_LENGTH: HeaderName =
    HeaderName::from_static("x-original-content-length");
/// The original request's `Transfer-Encoding` (nginx: `$http_transfer_encoding`): a chunked
/// body has no length to announce.
pub const X_ORIGINAL_TRANSFER_ENCODING: HeaderName =
    HeaderName::from_static("x-original-transfer-encoding");
/// Envoy `ext_authz` (`allow_partial_message`): the body it sent is cut short.
const X_ENVOY_AUTH_PARTIAL_BODY: HeaderName = HeaderName::from_static("x-envoy-auth-partial-body");
/// What was decided about one request.
#[derive(Debug, Clone)]
pub(crate) enum Decision {
    /// 200, with the caller's identity on a bearer route.
    Allow(Option<Arc<Identity>>),
    Refuse(Problem),
}

#[derive(Debug, Clone)]
struct Entry {
    decision: Decision,
    /// The credential cache's generation before the decision was drawn.
    generation: u64,
}

/// The endpoint's state: its path and the decision cache.
pub struct ForwardAuth {
    endpoint: String,
    cache: Option<Cache<Hash, Entry>>,
    hits: AtomicU64,
}

impl ForwardAuth {
    /// The endpoint at `endpoint` (`endpoints.forward_auth`), `None` when it is off; `routes`
    /// are the configured routes, `s` is `[forward_auth]`.
    pub fn new(
        endpoint: Option<&String>,
        routes: &[Route],
        s: &ForwardAuthSettings,
    ) -> Option<Self> {
        let endpoint = endpoint.cloned()?;
        for route in routes {
            if route.policy.idempotency == crate::policy::IdempotencyMode::Required {
                tracing::warn!(
                    route = %route.name,
                    "forward auth refuses this route's unsafe requests: it requires idempotency keys, which only Warden's proxy can enforce"
                );
            }
        }
        let cache = (s.cache_capacity > 0 && !s.cache_ttl.is_zero()).then(|| {
            Cache::builder()
                .name("forward_auth_decisions")
                .max_capacity(s.cache_capacity)
                .time_to_live(s.cache_ttl)
                .build()
        });
        Some(Self {
            endpoint,
            cache,
            hits: AtomicU64::new(0),
        })
    }

    /// The endpoint's path (`endpoints.forward_auth`).
    pub(crate) fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Whether decisions are cached (`forward_auth.cache_capacity` and `cache_ttl` not 0).
    pub(crate) fn caches(&self) -> bool {
        self.cache.is_some()
    }

    /// Decisions answered from the cache since start.
    pub fn cache_hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// A cached decision drawn at `generation`, if any still holds at `now` (unix seconds).
    pub(crate) fn cached(&self, key: &Hash, generation: u64, now: i64) -> Option<Decision> {
        let entry = self.cache.as_ref()?.get(key)?;
        if entry.generation != generation {
            return None;
        }
        if let Decision::Allow(Some(id)) = &entry.decision {
            if id.expires_at.is_some_and(|end| end <= now) {
                return None;
            }
        }
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some(entry.decision)
    }

    pub(crate) fn remember(&self, key: Hash, decision: &Decision, generation: u64) {
        let Some(cache) = &self.cache else {
            return;
        };
        // Only what follows from the credential and the route alone: not an unavailable
        // store or issuer, not a rate limit.
        let keep = match decision {
            Decision::Allow(id) => id.as_ref().is_none_or(|id| id.remote.is_none()),
            Decision::Refuse(p) => matches!(
                p,
                Problem::TokenMissing { .. }
                    | Problem::InvalidToken { .. }
                    | Problem::MalformedCredential { .. }
                    | Problem::InsufficientScope { .. }
                    | Problem::InvalidAudience
                    | Problem::IpNotAllowed
            ),
        };
        if keep {
            cache.insert(
                key,
                Entry {
                    decision: decision.clone(),
                    generation,
                },
            );
        }
    }
}

/// The cache key of a decision: the route (its place in the routing table, which lives as long
/// as the process), the credential, `X-Client-Id` and the client address. Each part is
/// length-prefixed so no two requests share a key.
pub(crate) fn cache_key(route: &Route, headers: &HeaderMap, client_ip: IpAddr) -> Hash {
    let mut h = Sha256::new();
    h.update((route as *const Route as usize).to_be_bytes());
    for name in [
        header::AUTHORIZATION,
        HeaderName::from_static("x-client-id"),
    ] {
        let values: Vec<&HeaderValue> = headers.get_all(&name).iter().collect();
        h.update((values.len() as u64).to_be_bytes());
        for v in values {
            h.update((v.len() as u64).to_be_bytes());
            h.update(v.as_bytes());
        }
    }
    h.update(client_ip.to_string().as_bytes());
    h.finalize().into()
}

/// Whether a decision may come from (and go to) the cache: a signature (its nonce, its
/// `created`) or a body digest is checked per request, and a token of another issuer has its
/// own cache in `idp.rs`, which must stay the only one bounding how stale its answer is.
pub(crate) fn cacheable(headers: &HeaderMap, idp_configured: bool) -> bool {
    if ["signature", "signature-input", "content-digest"]
        .iter()
        .any(|n| headers.contains_key(*n))
    {
        return false;
    }
    match crate::gate::bearer::presented(headers) {
        crate::gate::bearer::Presented::Bearer(t) => {
            !idp_configured || t.starts_with(crate::idp::WARDEN_PREFIX)
        }
        _ => true,
    }
}

/// Envoy `ext_authz` (HTTP service): the response header naming request headers to remove.
pub(crate) const X_ENVOY_AUTH_HEADERS_TO_REMOVE: HeaderName =
    HeaderName::from_static("x-envoy-auth-headers-to-remove");

/// The headers of `headers` that Warden's own proxy removes as a client's claims to speak for
/// Warden or a proxy ([`forward::strip_identity`]).
pub(crate) fn client_claims(headers: &HeaderMap) -> Vec<HeaderName> {
    let mut kept = headers.clone();
    forward::strip_identity(&mut kept);
    let mut names: Vec<HeaderName> = headers
        .keys()
        .filter(|k| !kept.contains_key(*k))
        .cloned()
        .collect();
    names.dedup();
    names
}

/// Lists `names` in `x-envoy-auth-headers-to-remove`, except those the answer sets itself.
pub(crate) fn envoy_removals(resp: &mut Response<Body>, names: Vec<HeaderName>) {
    let list: Vec<&str> = names
        .iter()
        .filter(|n| !resp.headers().contains_key(*n))
        .map(HeaderName::as_str)
        .collect();
    if list.is_empty() {
        return;
    }
    if let Ok(v) = HeaderValue::from_str(&list.join(", ")) {
        resp.headers_mut().insert(X_ENVOY_AUTH_HEADERS_TO_REMOVE, v);
    }
}

/// Whether the original request has a body, as far as the proxy tells: it sent one (Envoy
/// `with_request_body`), or announces one in `X-Original-Content-Length` (other than 0) or
/// `X-Original-Transfer-Encoding` (nginx). A proxy that says neither is taken at its word; see
/// the README on what that leaves to the upstream.
pub(crate) fn announces_body(req: &Request<Incoming>) -> bool {
    use http_body::Body as _;
    if !req.body().is_end_stream() {
        return true;
    }
    let h = req.headers();
    h.get_all(&X_ORIGINAL_CONTENT_LENGTH)
        .iter()
        .any(|v| v.to_str().ok().and_then(|s| s.trim().parse::<u64>().ok()) != Some(0))
        || h.get_all(&X_ORIGINAL_TRANSFER_ENCODING)
            .iter()
            .any(|v| !v.as_bytes().trim_ascii().is_empty())
}

/// Checks the original body's `Content-Digest`, when the proxy sent the whole body (Envoy
/// `with_request_body` without a cut); otherwise the digest cannot be checked and the request
/// is refused rather than passed unchecked.
pub(crate) async fn check_body(
    req: Request<Incoming>,
    verifier: DigestVerifier,
    limit: u64,
    deadline: Duration,
) -> Result<(), Problem> {
    use http_body::Body as _;
    let partial = req
        .headers()
        .get(&X_ENVOY_AUTH_PARTIAL_BODY)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true"));
    if partial {
        return Err(Problem::ForwardAuth(ForwardAuthRefusal::DigestUnseen));
    }
    if req.body().is_end_stream() {
        // Nothing sent: the body is known only when the proxy says there is none.
        return if announces_body(&req) || !req.headers().contains_key(&X_ORIGINAL_CONTENT_LENGTH) {
            Err(Problem::ForwardAuth(ForwardAuthRefusal::DigestUnseen))
        } else {
            crate::gate::digest::check_whole(verifier, b"")
        };
    }
    let body = crate::issuer::form::read_body(
        req.into_body(),
        usize::try_from(limit).unwrap_or(usize::MAX),
        deadline,
    )
    .await
    .map_err(|e| match e {
        crate::issuer::form::FormError::TooLarge { .. } => Problem::PayloadTooLarge { limit },
        crate::issuer::form::FormError::TimedOut => Problem::BodyTimeout,
        _ => Problem::BadRequest {
            detail: "the request body could not be read".into(),
        },
    })?;
    crate::gate::digest::check_whole(verifier, &body)
}

/// The 200 of an allowed request: the identity headers Warden would set for the upstream, for
/// the proxy to copy (and with them overwrite whatever the client sent under those names).
pub(crate) fn allowed(identity: Option<&Identity>) -> Response<Body> {
    let mut resp = Response::new(full(""));
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(id) = identity {
        forward::set_identity(h, id);
    }
    resp
}

#[cfg(test)]
mod tests;
