//! The forward-auth endpoint's decision (`endpoints.forward_auth`), through [`Warden`]: route the
//! original request a proxy describes, run the route's checks on it in the order of Warden's
//! own proxy, and answer from or into the decision cache. The protocol side (reading the
//! original request, the cache, the answer's headers) is `crate::forward_auth`.

use std::net::IpAddr;

use http::{Request, Response, header};
use hyper::body::Incoming;

use super::Warden;
use crate::body::Body;
use crate::forward;
use crate::forward_auth::{
    Decision, ForwardAuth, OriginalRequest, allowed, announces_body, cache_key, cacheable,
    check_body, client_claims, envoy_removals, original,
};
use crate::gate::client_ip::Origin;
use crate::gate::signature::RequestParts;
use crate::policy::AuthMode;
use crate::policy::Need;
use crate::problem::{ForwardAuthRefusal, Problem};
use crate::router::{Route, Target, normalize_path};

/// Answers one decision request (see the module doc).
pub(super) async fn handle(
    warden: &Warden,
    req: Request<Incoming>,
    origin: &Origin,
    client_ip: IpAddr,
) -> Response<Body> {
    let Some(fa) = warden.forward_auth() else {
        return Problem::RouteNotFound.into_response();
    };
    // Envoy copies the identity headers Warden sets, and leaves the client's own under the
    // names Warden does not set: those it is told to remove.
    let envoy = req
        .uri()
        .path()
        .strip_prefix(fa.endpoint())
        .is_some_and(|rest| rest.starts_with('/'));
    let spoofed = envoy.then(|| client_claims(req.headers()));
    match decide(warden, fa, req, origin, client_ip).await {
        Decision::Allow(identity) => {
            let mut resp = allowed(identity.as_deref());
            if let Some(mut names) = spoofed {
                if identity.is_some() && !warden.settings().tokens.forward_authorization {
                    names.push(header::AUTHORIZATION);
                }
                envoy_removals(&mut resp, names);
            }
            resp
        }
        Decision::Refuse(problem) => problem.into_response(),
    }
}

/// The decision on the original request `req` describes.
async fn decide(
    warden: &Warden,
    fa: &ForwardAuth,
    req: Request<Incoming>,
    origin: &Origin,
    client_ip: IpAddr,
) -> Decision {
    use Decision::Refuse;
    if !origin.peer_trusted {
        return Refuse(Problem::ForwardAuth(ForwardAuthRefusal::UntrustedPeer));
    }
    let orig = match original(req.method(), req.uri(), req.headers(), fa.endpoint()) {
        Ok(o) => o,
        Err(why) => return Refuse(Problem::ForwardAuth(why)),
    };
    // The refusals of Warden's own proxy, on the original request.
    let path = match normalize_path(orig.uri.path()) {
        Ok(p) => p,
        Err(refusal) => {
            return Refuse(Problem::InvalidPath {
                detail: refusal.detail(),
            });
        }
    };
    if orig.method.as_str().bytes().any(|b| b.is_ascii_lowercase()) {
        return Refuse(Problem::MethodNotUpperCase);
    }
    if let Some(name) = forward::method_override(req.headers(), orig.uri.query()) {
        return Refuse(Problem::MethodOverride { name });
    }
    let route = match warden.router().resolve(&orig.method, &path.decoded) {
        Target::Proxy(route) => route,
        Target::MethodNotAllowed(allow) => return Refuse(Problem::MethodNotAllowed { allow }),
        // Not found, or one of Warden's own endpoints: those are never proxied, so no proxy
        // in front of an upstream may pass a request there either.
        _ => return Refuse(Problem::RouteNotFound),
    };
    if warden
        .idempotency()
        .need(&route.policy, &orig.method, req.headers())
        == Need::Required
    {
        return Refuse(Problem::ForwardAuth(
            ForwardAuthRefusal::IdempotencyUnenforceable,
        ));
    }
    if route.policy.auth == AuthMode::None {
        let verify = warden.settings().digest.verify_unsigned;
        return match crate::gate::digest::plan(req.headers(), verify) {
            Ok(None) => Decision::Allow(None),
            Ok(Some(verifier)) => match body_checked(warden, req, verifier).await {
                Ok(()) => Decision::Allow(None),
                Err(problem) => Refuse(problem),
            },
            Err(problem) => Refuse(problem),
        };
    }

    let cache = (fa.caches() && cacheable(req.headers(), warden.idp().is_some()))
        .then(|| (cache_key(route, req.headers(), client_ip), warden.issuer()));
    let mut generation = None;
    if let Some((key, issuer)) = &cache {
        match issuer.settled_generation().await {
            Ok(g) => {
                if let Some(d) = fa.cached(key, g, issuer.clock().now()) {
                    return d;
                }
                generation = Some(g);
            }
            Err(e) => tracing::warn!(error = %e, "store change feed unreadable; deciding afresh"),
        }
    }
    let decision = bearer(warden, route, &orig, req, origin, client_ip).await;
    if let (Some((key, _)), Some(g)) = (cache, generation) {
        fa.remember(key, &decision, g);
    }
    decision
}

/// The checks of a bearer route, in the order of Warden's own proxy: the credential (Warden's
/// or another issuer's), scopes and audience, `X-Client-Id` and the signature over the
/// original request, then its body's digest.
async fn bearer(
    warden: &Warden,
    route: &Route,
    orig: &OriginalRequest,
    req: Request<Incoming>,
    origin: &Origin,
    client_ip: IpAddr,
) -> Decision {
    let identity = match crate::idp::caller(warden.issuer(), warden.idp(), req.headers(), client_ip)
        .await
        .and_then(|id| route.policy.require.check(&id).map(|()| id))
    {
        Ok(identity) => identity,
        Err(problem) => return Decision::Refuse(problem),
    };
    let parts = RequestParts {
        method: &orig.method,
        uri: &orig.uri,
        headers: req.headers(),
        has_body: announces_body(&req),
        origin,
    };
    let verifier = match warden.signed(&parts, route, &identity).await {
        Ok((digest, _label)) => digest,
        Err(problem) => return Decision::Refuse(problem),
    };
    if let Some(verifier) = verifier {
        if let Err(problem) = body_checked(warden, req, verifier).await {
            return Decision::Refuse(problem);
        }
    }
    Decision::Allow(Some(identity))
}

/// [`check_body`] within the listener's body limit and the body read deadline.
async fn body_checked(
    warden: &Warden,
    req: Request<Incoming>,
    verifier: crate::digest::DigestVerifier,
) -> Result<(), Problem> {
    let settings = warden.settings();
    let limit = settings.server.max_body_bytes;
    check_body(req, verifier, limit, settings.tokens.request_read_timeout).await
}
