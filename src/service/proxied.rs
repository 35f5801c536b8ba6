//! A proxied route: its checks (credential, addresses, scopes, signature, digest, idempotency
//! key), each enforcing or only reporting, then the upstream, and the signed response.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use http::{Method, Request, Response, StatusCode, header};
use http_body::Body as _;
use hyper::body::Incoming;

use super::{Note, Warden};
use crate::body::Body;
use crate::cache::Identity;
use crate::checks::{Check, WouldDeny};
use crate::digest::DigestVerifier;
use crate::forward;
use crate::gate::admit::plan_digest;
use crate::gate::client_ip::Origin;
use crate::gate::digest;
use crate::gate::signature::{Endpoint, External, RequestParts, Verdict};
use crate::metrics::Outcome;
use crate::policy::Need;
use crate::policy::{AuthMode, SignatureMode};
use crate::problem::Problem;
use crate::response_signing::SignedRequest;
use crate::router::Route;

/// What the checks of a bearer route let through.
struct Admitted {
    /// `None` when the credential failed on a route where that check only reports.
    identity: Option<Arc<Identity>>,
    digest: Option<DigestVerifier>,
    /// The label of the signature that verified.
    label: Option<String>,
    /// Whether `X-Client-Id` (if any) and the signature (if checked) passed.
    signature_passed: bool,
}

impl Warden {
    /// Counts a check's decision on a proxied route.
    fn decided(&self, route: &Route, check: Check, outcome: Outcome, code: &'static str) {
        if let Some(metrics) = &self.metrics {
            metrics.decision(route.index, check, outcome, code);
        }
    }

    /// A check's refusal of a request on `route`: the response when the check enforces (or
    /// the failure is Warden's, such as an unavailable store, which is answered in either
    /// mode); `None` when it only reports, after logging and counting it.
    fn failed(
        &self,
        route: &Route,
        check: Check,
        problem: Problem,
        note: &mut Note,
    ) -> Option<Response<Body>> {
        let code = problem.code();
        let report = route.policy.checks.reports(check) && !problem.status().is_server_error();
        if report {
            self.decided(route, check, Outcome::WouldDeny, code);
            tracing::warn!(
                route = %route.name,
                check = check.name(),
                code,
                "check failed in report mode; forwarded"
            );
            note.would_deny.push(code);
            None
        } else {
            self.decided(route, check, Outcome::Deny, code);
            note.refused_by = Some(check);
            note.span.record("check", check.name());
            Some(problem.into_response())
        }
    }

    /// A proxied route: its credential, scopes, audience and signature, then the upstream. A
    /// check that only reports (`[routes.checks]`) and fails is noted, and the request goes on
    /// without what that check would have vouched for.
    pub(super) async fn route(
        &self,
        mut req: Request<Incoming>,
        route: &Route,
        origin: &Origin,
        client_ip: IpAddr,
        method: &Method,
        note: &mut Note,
    ) -> Response<Body> {
        match route.policy.auth {
            AuthMode::None => {
                match digest::plan(req.headers(), self.settings.digest.verify_unsigned) {
                    Ok(digest) => {
                        let answer = self.answered(&req, route, origin, None);
                        let resp = self.proxy(req, origin, None, digest, Need::Off, None).await;
                        self.sign_response(resp, answer).await
                    }
                    Err(problem) => problem.into_response(),
                }
            }
            AuthMode::Bearer => {
                let (identity, digest, signature_passed, answer) =
                    match self.admit(&req, route, origin, client_ip, note).await {
                        Ok(a) => {
                            let answer = self.answered(&req, route, origin, a.label.as_deref());
                            (a.identity, a.digest, a.signature_passed, answer)
                        }
                        Err(refused) => return refused,
                    };
                if !self.settings.tokens.forward_authorization {
                    req.headers_mut().remove(header::AUTHORIZATION);
                }
                if !signature_passed {
                    // Unchecked, or checked and refused in report mode: not a claim the
                    // upstream may take as proved.
                    req.headers_mut()
                        .remove(crate::gate::signature::X_CLIENT_ID);
                }
                let mut need = match &identity {
                    Some(_) => self.idempotency.need(&route.policy, method, req.headers()),
                    // Keys are kept per credential.
                    None => Need::Off,
                };
                if need != Need::Off {
                    if let Err(problem) = self.idempotency.key(req.headers(), need) {
                        match self.failed(route, Check::Idempotency, problem, note) {
                            Some(refused) => return refused,
                            None => need = Need::Off,
                        }
                    }
                }
                if !note.would_deny.is_empty() {
                    req.extensions_mut()
                        .insert(WouldDeny(note.would_deny.clone()));
                }
                let resp = self
                    .proxy(req, origin, identity.as_deref(), digest, need, Some(route))
                    .await;
                self.sign_response(resp, answer).await
            }
        }
    }

    /// The checks of a bearer route before its body: the credential, its addresses, then
    /// scopes and audience (a refusal costs no signature verification), the signature and the
    /// digest's header. `Err`: the refusal of a check that enforces.
    async fn admit(
        &self,
        req: &Request<Incoming>,
        route: &Route,
        origin: &Origin,
        client_ip: IpAddr,
        note: &mut Note,
    ) -> Result<Admitted, Response<Body>> {
        let identity =
            match crate::idp::identify(&self.issuer, self.idp.as_ref(), req.headers()).await {
                Ok(identity) => {
                    self.decided(route, Check::Bearer, Outcome::Allow, "ok");
                    note.span.record("client_id", identity.client_id.as_str());
                    Some(identity)
                }
                Err(problem) => {
                    if let Some(refused) = self.failed(route, Check::Bearer, problem, note) {
                        return Err(refused);
                    }
                    None
                }
            };
        if let Some(id) = &identity {
            if id.allows_ip(client_ip) {
                self.decided(route, Check::Ip, Outcome::Allow, "ok");
            } else if let Some(refused) = self.failed(route, Check::Ip, Problem::IpNotAllowed, note)
            {
                return Err(refused);
            }
            match route.policy.require.check(id) {
                Ok(()) => self.decided(route, Check::Scope, Outcome::Allow, "ok"),
                Err(problem) => {
                    if let Some(refused) = self.failed(route, Check::Scope, problem, note) {
                        return Err(refused);
                    }
                }
            }
            note.client_id = Some(id.clone());
        }
        let parts = RequestParts::of(req, origin, !req.body().is_end_stream());
        // Without a proved credential there is no client whose keys could verify.
        let mut signature_passed = false;
        let verdict = match &identity {
            Some(id) => match self.verdict(&parts, route, id).await {
                Ok(verdict) => {
                    if route.policy.signature != SignatureMode::Off {
                        self.decided(route, Check::Signature, Outcome::Allow, "ok");
                    }
                    signature_passed = true;
                    verdict
                }
                Err(problem) => {
                    let check = match problem {
                        Problem::Digest { .. } => Check::Digest,
                        _ => Check::Signature,
                    };
                    if let Some(refused) = self.failed(route, check, problem, note) {
                        return Err(refused);
                    }
                    Verdict::Unchecked
                }
            },
            None => Verdict::Unchecked,
        };
        let digest = match plan_digest(&verdict, &parts, self.settings.digest.verify_unsigned) {
            Ok(digest) => digest,
            Err(problem) => {
                if let Some(refused) = self.failed(route, Check::Digest, problem, note) {
                    return Err(refused);
                }
                None
            }
        };
        Ok(Admitted {
            identity,
            digest,
            label: verdict.label().map(str::to_owned),
            signature_passed,
        })
    }

    /// What a signed response of `route` binds of `req` (`None` when the route does not sign
    /// its responses); `label`: the request's verified signature. Boxed: see [`Warden::handle`].
    fn answered(
        &self,
        req: &Request<Incoming>,
        route: &Route,
        origin: &Origin,
        label: Option<&str>,
    ) -> Option<Box<SignedRequest>> {
        if !route.policy.sign_responses {
            return None;
        }
        let parts = RequestParts::of(req, origin, false);
        let public_url = route.policy.public_url.as_ref().or(self
            .settings
            .signatures
            .public_url
            .as_ref());
        let external = External::of(&parts, public_url);
        Some(Box::new(SignedRequest::new(
            req.method(),
            &external,
            req.uri().query(),
            req.headers(),
            label,
        )))
    }

    /// Signs `resp` with Warden's key when the route signs its responses.
    async fn sign_response(
        &self,
        resp: Response<Body>,
        answer: Option<Box<SignedRequest>>,
    ) -> Response<Body> {
        match (answer, &self.settings.response_signing) {
            (Some(answer), Some(signing)) => {
                let now = self.issuer.clock().now();
                let sign = Box::pin(signing.sign(resp, &answer, now));
                sign.await
            }
            _ => resp,
        }
    }

    /// The signature check of a bearer route, after the credential: `X-Client-Id` and `keyid`
    /// must name the credential's client. Returns the body's digest check, if it gets one, and
    /// the label of the signature that verified. `parts`: the request as the client sent it
    /// (the forward-auth endpoint passes the original request a proxy describes).
    pub(crate) async fn signed(
        &self,
        parts: &RequestParts<'_>,
        route: &Route,
        identity: &Identity,
    ) -> Result<(Option<DigestVerifier>, Option<String>), Problem> {
        let verdict = self.verdict(parts, route, identity).await?;
        let digest = plan_digest(&verdict, parts, self.settings.digest.verify_unsigned)?;
        Ok((digest, verdict.label().map(str::to_owned)))
    }

    /// The signature check alone (see [`Warden::signed`]): the gate's admission without the
    /// digest, timed for the metrics.
    async fn verdict(
        &self,
        parts: &RequestParts<'_>,
        route: &Route,
        identity: &Identity,
    ) -> Result<Verdict, Problem> {
        let policy = &route.policy;
        let at = Endpoint {
            mode: policy.signature,
            cover: &policy.cover,
            public_url: policy.public_url.as_ref(),
        };
        let timed = policy.signature != SignatureMode::Off;
        let started = self
            .metrics
            .as_ref()
            .filter(|_| timed)
            .map(|_| Instant::now());
        // Boxed (see `handle`): its future is large, and the signature's own work (~20-30 µs)
        // dwarfs an allocation.
        let check = Box::pin(self.signatures.verdict(
            self.issuer.store().as_ref(),
            parts,
            &at,
            &identity.client_id,
            self.issuer.clock().now(),
        ));
        let verdict = check.await;
        if let (Some(metrics), Some(started)) = (&self.metrics, started) {
            metrics.signature(started.elapsed());
        }
        verdict
    }

    /// Forwards a request that passed its checks, checking its body against `digest` on the way.
    pub(super) async fn proxy(
        &self,
        mut req: Request<Incoming>,
        origin: &Origin,
        identity: Option<&Identity>,
        digest: Option<DigestVerifier>,
        need: Need,
        route: Option<&Route>,
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
        let (mut parts, body) = req.into_parts();
        let stall = self.settings.server.body_read_timeout;
        let mut body = forward::limit_body(body, limit, stall.map(|d| (&self.timer, d)));
        let digest_checked = digest.is_some();
        if let Some(verifier) = digest {
            let wait = self.settings.server.header_read_timeout;
            // Bearer routes count the result, and may only report a mismatch.
            let observer = route
                .filter(|r| self.metrics.is_some() || r.policy.checks.reports(Check::Digest))
                .map(|r| digest::DigestObserver {
                    metrics: self.metrics.clone(),
                    route: r.index,
                    name: Arc::from(r.name.as_str()),
                    report: r.policy.checks.reports(Check::Digest),
                });
            let guard = Box::pin(digest::guard_observed(body, verifier, wait, observer));
            body = match guard.await {
                Ok((body, reported)) => {
                    if reported {
                        let noted = parts.extensions.get_mut::<WouldDeny>();
                        match noted {
                            Some(noted) => noted.0.push("digest_mismatch"),
                            None => {
                                parts.extensions.insert(WouldDeny(vec!["digest_mismatch"]));
                            }
                        }
                    }
                    body
                }
                Err(problem) => return problem.into_response(),
            };
        }
        let outgoing = Request::from_parts(parts, body);
        // Keys are kept per credential (idempotency::namespace), so only authenticated requests
        // use them; upgrades never.
        let (outgoing, run) = match identity {
            Some(id) if need != Need::Off && upgrade.is_none() => {
                let idem = &self.idempotency;
                let start = Box::pin(idem.start(outgoing, id, need, digest_checked));
                match start.await {
                    Ok(started) => {
                        if let Some(route) = route {
                            self.decided(route, Check::Idempotency, Outcome::Allow, "ok");
                        }
                        started
                    }
                    Err(answer) => {
                        // A replay is an answer, not a refusal; a key in use or reused for
                        // another request is refused in either mode (forwarding it would run
                        // the operation twice).
                        let code = match answer.status() {
                            StatusCode::CONFLICT => Some("idempotency_key_in_use"),
                            StatusCode::UNPROCESSABLE_ENTITY => Some("idempotency_key_reused"),
                            _ => None,
                        };
                        if let (Some(route), Some(code)) = (route, code) {
                            self.decided(route, Check::Idempotency, Outcome::Deny, code);
                        }
                        return answer;
                    }
                }
            }
            _ => (outgoing, None),
        };
        let sent = self.metrics.as_ref().map(|_| Instant::now());
        let result = self
            .forwarder
            .forward(outgoing, origin, upgrade, identity)
            .await;
        if let (Some(metrics), Some(sent)) = (&self.metrics, sent) {
            metrics.upstream(sent.elapsed());
        }
        match run {
            Some(run) => {
                let finish = Box::pin(self.idempotency.finish(run, result));
                finish.await
            }
            None => result.unwrap_or_else(Problem::into_response),
        }
    }
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
