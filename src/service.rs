//! The request handler: route, run the route's checks, answer Warden's own endpoints or forward,
//! and write one access event. It never fails: every outcome is already a response.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;

use crate::body::{Body, BoxFuture, full};
use crate::cache::Identity;
use crate::checks::{Check, WouldDeny};
use crate::clock::Clock;
use crate::coarse_timer::{self, CoarseTimer};
use crate::config::{Durability, Settings};
use crate::digest::DigestVerifier;
use crate::forward::{self, Forwarder};
use crate::gate::admit::plan_digest;
use crate::gate::allowlist::Allowlist;
use crate::gate::client_ip::Origin;
use crate::gate::idempotency::{Idempotency, ResponseSeal};
use crate::gate::signature::{Endpoint, External, RequestParts, SignatureGate, Verdict};
use crate::gate::{client_ip, digest};
use crate::issuer::{Issuer, auth, oauth, tokens_api};
use crate::metrics::{Metrics, Outcome, RouteRef};
use crate::policy::Need;
use crate::policy::{AuthMode, SignatureMode};
use crate::problem::{OAuthError, Problem};
use crate::response_signing::SignedRequest;
use crate::router::{NormalPath, Route, Router, Target, normalize_path};
use crate::store::{self, StoreError, StoreOptions};
use crate::webhooks::Webhooks;
use http_body::Body as _;

/// Opens the store named by `store.url`.
pub async fn open_store(settings: &Settings) -> Result<Arc<dyn store::Store>, StoreError> {
    open_store_timed(settings, None).await
}

/// [`open_store`], recording its write latencies into `timing` when given.
async fn open_store_timed(
    settings: &Settings,
    timing: Option<crate::store::StoreTiming>,
) -> Result<Arc<dyn store::Store>, StoreError> {
    let options = StoreOptions {
        timing,
        durability: match settings.store.durability {
            Durability::Normal => store::Durability::Normal,
            Durability::Full => store::Durability::Full,
        },
        postgres: settings.store.postgres.options(),
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
    tls: Option<Arc<crate::server::TlsReloader>>,
    webhooks: Webhooks,
    /// `endpoints.forward_auth` and its decision cache; `None` when off.
    forward_auth: Option<crate::forward_auth::ForwardAuth>,
    /// The Prometheus families, when `endpoints.metrics` is set; nothing is recorded without.
    metrics: Option<Arc<Metrics>>,
}

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
    /// Builds the shared state: opens (creating and migrating) the store and writes the
    /// config-declared clients into it. Fails, before anything binds, on unusable TLS material
    /// or an unusable store.
    pub async fn new(settings: Settings) -> Result<Arc<Self>, StartError> {
        Self::with_clock(settings, Clock::default()).await
    }

    /// [`Warden::new`] with a given clock (tests move it forward).
    pub async fn with_clock(settings: Settings, clock: Clock) -> Result<Arc<Self>, StartError> {
        let tls = match &settings.server.tls {
            Some(files) => Some(Arc::new(
                crate::server::TlsReloader::load(files).map_err(StartError::Tls)?,
            )),
            None => None,
        };
        let router = Router::new(&settings.endpoints, settings.routes.clone())
            .case_insensitive(settings.router.case_insensitive);
        let timer = CoarseTimer::start(coarse_timer::DEFAULT_TICK);
        let forwarder = Forwarder::new(settings.upstream.clone(), timer.clone());
        // Recorded when something serves them: `endpoints.metrics` or the admin listener.
        let metrics = (settings.endpoints.metrics.is_some() || settings.admin.listen.is_some())
            .then(|| Arc::new(Metrics::new(&settings.routes)));
        let store = open_store_timed(&settings, metrics.as_ref().map(|m| m.store_timing())).await?;
        let issuer = Issuer::new(store, settings.tokens.clone(), clock);
        issuer.bootstrap(&settings.clients).await?;
        issuer.start_feed().await?;
        let signatures = SignatureGate::new(
            &settings.signatures,
            settings.signature_context(),
            issuer.challenge(),
        )
        .with_store(issuer.store().clone());
        signatures.follow(issuer.feed());
        signatures.fence_nonces(issuer.clock().now());
        let allowlist = Allowlist::new(
            settings.server.allow_ips.clone(),
            settings.server.deny_ips.clone(),
        );
        let secret = store::seal_key::load(&settings.store.url, &settings.store.seal_key_file)
            .map_err(StartError::SealKey)?;
        let seal = ResponseSeal::new(&secret)
            .ok_or_else(|| StartError::SealKey("cannot derive the sealing key".into()))?;
        let idempotency = Idempotency::new(
            settings.idempotency.clone(),
            settings.upstream.timeout,
            issuer.store().clone(),
            issuer.clock().clone(),
            timer.clone(),
            seal,
        );
        let webhooks = Webhooks::new(
            issuer.store().clone(),
            issuer.clock().clone(),
            settings.webhooks.clone(),
            &secret,
        )
        .map_err(StartError::Webhooks)?;
        webhooks.apply_config(true).await?;
        let idp = crate::idp::Idp::new(
            &settings.issuers,
            issuer.clock().clone(),
            &settings.tokens.realm,
        );
        let forward_auth = crate::forward_auth::ForwardAuth::new(
            settings.endpoints.forward_auth.as_ref(),
            &settings.routes,
            &settings.forward_auth,
        );
        if let Some(m) = &metrics {
            m.count_lookups("token", issuer.token_cache_lookups());
            m.count_lookups("signature_key", signatures.key_cache_lookups());
            m.count_deliveries(&webhooks.stats().deliveries);
        }
        for route in settings
            .routes
            .iter()
            .filter(|r| r.policy.checks.any_report())
        {
            tracing::warn!(
                route = %route.name,
                "some checks of this route only report: requests that fail them are forwarded"
            );
        }
        Ok(Arc::new(Self {
            metrics,
            forward_auth,
            idp,
            settings,
            timer,
            router,
            forwarder,
            issuer,
            idempotency,
            allowlist,
            signatures,
            tls,
            webhooks,
        }))
    }

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
    pub fn tls(&self) -> Option<&Arc<crate::server::TlsReloader>> {
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

    /// The `endpoints.metrics` (and `admin.metrics`) answer: the exposition, or 404 when
    /// metrics are off.
    pub(crate) fn exposition(&self) -> Response<Body> {
        let Some(metrics) = &self.metrics else {
            return Problem::RouteNotFound.into_response();
        };
        let text = metrics.encode(self.forwarder.idle_connections());
        let mut resp = Response::new(full(text));
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
        );
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        resp
    }

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

    /// Warden's own endpoints (not `/healthz`), boxed: see [`Warden::handle`].
    fn own_endpoint<'a>(
        &'a self,
        target: Target<'a>,
        req: Request<Incoming>,
        origin: &'a Origin,
        client_ip: IpAddr,
    ) -> (&'static str, BoxFuture<'a, Response<Body>>) {
        match target {
            Target::Ready => ("readyz", Box::pin(self.ready())),
            Target::Auth => (
                "auth",
                Box::pin(auth::handle(
                    &self.issuer,
                    &self.signatures,
                    &self.idempotency,
                    req,
                    origin,
                    client_ip,
                )),
            ),
            Target::OAuthToken => (
                "oauth_token",
                Box::pin(oauth::token(&self.issuer, req, client_ip)),
            ),
            Target::OAuthRevoke => (
                "oauth_revoke",
                Box::pin(oauth::revoke(&self.issuer, req, client_ip)),
            ),
            Target::OAuthIntrospect => (
                "oauth_introspect",
                Box::pin(oauth::introspect(&self.issuer, req, client_ip)),
            ),
            Target::Tokens => (
                "tokens",
                Box::pin(tokens_api::handle(
                    &self.issuer,
                    &self.signatures,
                    tokens_api::ApiMount {
                        base: self.settings.endpoints.tokens.as_ref(),
                        verify_unsigned: self.settings.digest.verify_unsigned,
                    },
                    req,
                    origin,
                    client_ip,
                )),
            ),
            Target::Webhooks => (
                "webhooks",
                Box::pin(crate::webhooks::api::handle(
                    &self.issuer,
                    &self.webhooks,
                    &self.signatures,
                    tokens_api::ApiMount {
                        base: self.settings.endpoints.webhooks.as_ref(),
                        verify_unsigned: self.settings.digest.verify_unsigned,
                    },
                    req,
                    origin,
                    client_ip,
                )),
            ),
            Target::ForwardAuth => (
                "forward_auth",
                Box::pin(crate::forward_auth::handle(self, req, origin, client_ip)),
            ),
            Target::Health
            | Target::Metrics
            | Target::NotFound
            | Target::MethodNotAllowed(_)
            | Target::Proxy(_) => {
                // Answered by the caller; kept exhaustive so a new target cannot fall through.
                (
                    "-",
                    Box::pin(async { Problem::RouteNotFound.into_response() }),
                )
            }
        }
    }

    /// A proxied route: its credential, scopes, audience and signature, then the upstream. A
    /// check that only reports (`[routes.checks]`) and fails is noted, and the request goes on
    /// without what that check would have vouched for.
    async fn route(
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
        let parts = RequestParts {
            method: req.method(),
            uri: req.uri(),
            headers: req.headers(),
            has_body: !req.body().is_end_stream(),
            origin,
        };
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
        let parts = RequestParts {
            method: req.method(),
            uri: req.uri(),
            headers: req.headers(),
            has_body: false,
            origin,
        };
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
    async fn proxy(
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

    /// Ready when the store answers and the upstream accepts connections (the latter if
    /// `endpoints.readyz_checks_upstream`).
    pub(crate) async fn ready(&self) -> Response<Body> {
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

/// The refusal of an address by the network policy, in the endpoint's own error form.
fn blocked(target: &Target<'_>) -> Response<Body> {
    match target {
        Target::OAuthToken | Target::OAuthRevoke | Target::OAuthIntrospect => {
            OAuthError::AccessDenied("requests from this address are not accepted").into_response()
        }
        _ => Problem::IpBlocked.into_response(),
    }
}

/// Refuses requests that an upstream could read differently from Warden (path, method,
/// authority), and returns the path to route by. (Framing is hyper's: it refuses duplicate
/// Content-Length and drops Content-Length beside Transfer-Encoding, RFC 9112 §6.1.)
/// `server.max_header_bytes`, counted as the request head's size on the wire (request line,
/// and each field as `name: value` and its CRLF), whatever the protocol. hyper's own limits are
/// set above it (`server::hyper_header_limit`) so that a head past it reaches this check and
/// gets a problem+json 431 instead of hyper's bare one.
fn head_fits<B>(req: &Request<B>, limit: usize) -> Result<(), Problem> {
    let uri = req.uri();
    let target = uri.path_and_query().map_or(1, |pq| pq.as_str().len())
        + uri.authority().map_or(0, |a| a.as_str().len())
        + uri.scheme_str().map_or(0, |s| s.len() + 3);
    // "METHOD target HTTP/1.1\r\n"
    let mut size = req.method().as_str().len() + target + 12;
    for (name, value) in req.headers() {
        size += name.as_str().len() + value.len() + 4;
        if size > limit {
            return Err(Problem::HeadersTooLarge { limit });
        }
    }
    if size > limit {
        return Err(Problem::HeadersTooLarge { limit });
    }
    Ok(())
}

fn request_shape(req: &Request<Incoming>) -> Result<NormalPath<'_>, Problem> {
    let path = normalize_path(req.uri().path()).map_err(|refusal| Problem::InvalidPath {
        detail: refusal.detail(),
    })?;
    // Werkzeug upper-cases the method and ASP.NET compares it without case; others do not.
    if req
        .method()
        .as_str()
        .bytes()
        .any(|b| b.is_ascii_lowercase())
    {
        return Err(Problem::MethodNotUpperCase);
    }
    if let Some(name) = forward::method_override(req.headers(), req.uri().query()) {
        return Err(Problem::MethodOverride { name });
    }
    if !host_agrees(req.uri(), req.headers()) {
        return Err(Problem::HostMismatch);
    }
    Ok(path)
}

/// At most one `Host`, equal (without case, default port aside) to the target's authority when
/// the target has one: HTTP/2's `:authority`, or an HTTP/1.1 absolute-form target. Warden
/// signs with one and forwards the other, so they must name the same host.
fn host_agrees(uri: &http::Uri, headers: &http::HeaderMap) -> bool {
    let mut hosts = headers.get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return false;
    }
    let (Some(authority), Some(host)) = (uri.authority(), host) else {
        return true;
    };
    if authority.as_str().contains('@') {
        return false; // userinfo: RFC 9113 §8.3.1 forbids it in :authority
    }
    let default_port = match uri.scheme_str() {
        Some("https") => ":443",
        _ => ":80",
    };
    let bare = |s: &[u8]| -> Vec<u8> {
        let s = s.strip_suffix(default_port.as_bytes()).unwrap_or(s);
        s.to_ascii_lowercase()
    };
    bare(authority.as_str().as_bytes()) == bare(host.as_bytes())
}

/// The liveness answer (`endpoints.healthz`, `admin.healthz`).
pub(crate) fn health() -> Response<Body> {
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
    use super::*;

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
