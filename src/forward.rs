//! Forwarding to the upstream: a pooled keep-alive client (http and https), header hygiene
//! (hop-by-hop removal, identity headers, `X-Forwarded-*`), streaming in both directions, and
//! WebSocket/upgrade pass-through. Upstream failures become 502/504 without internals.

use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use hyper::upgrade::OnUpgrade;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;

mod idle;
mod pool;
pub use idle::UpstreamBodyStalled;
use pool::UpstreamPool;

use crate::body::{Body, BoxError};
use crate::cache::Identity;
use crate::coarse_timer::{Alarm, CoarseTimer};
use crate::config::UpstreamSettings;
use crate::problem::Problem;

/// Headers that describe one connection, never the message (RFC 9110 §7.6.1), plus the
/// non-standard ones proxies have used for the same purpose.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_WARDEN_CLIENT_ID: HeaderName = HeaderName::from_static("x-warden-client-id");
const X_WARDEN_TOKEN_ID: HeaderName = HeaderName::from_static("x-warden-token-id");
const X_WARDEN_SCOPES: HeaderName = HeaderName::from_static("x-warden-scopes");
const X_WARDEN_AUDIENCE: HeaderName = HeaderName::from_static("x-warden-audience");
/// The codes of the checks that failed in report mode (`[routes.checks]`).
const X_WARDEN_WOULD_DENY: HeaderName = HeaderName::from_static("x-warden-would-deny");
/// Identity headers are Warden's to set; whatever a client sends under this prefix is dropped.
pub const IDENTITY_PREFIX: &str = "x-warden-";

/// Fields that make an upstream route the request to another path than its target (IIS,
/// Zend/Laminas, old Symfony). Warden routed by the target, so they are dropped from every
/// peer, trusted or not.
const ROUTING_OVERRIDES: [&str; 2] = ["x-original-url", "x-rewrite-url"];

/// What a proxy says about the client or the URL it used, beyond `X-Forwarded-For/-Proto/-Host`
/// (which [`set_forwarded`] handles) and `Forwarded`. From an untrusted peer they are lies
/// and are dropped; from a trusted proxy they pass as the proxy sent them. Any `x-forwarded-*`,
/// `x-ssl-*` and `cf-connecting-*` field counts as well.
const PROXY_CLAIMS: [&str; 20] = [
    "x-real-ip",
    "true-client-ip",
    "x-client-ip",
    "x-cluster-client-ip",
    "fastly-client-ip",
    "x-original-forwarded-for",
    "x-forwarded",
    "forwarded-for",
    "x-originating-ip",
    "x-remote-ip",
    "x-remote-addr",
    "x-proxyuser-ip",
    "x-original-host",
    "x-host",
    "x-original-uri",
    "x-client-cert",
    "ssl-client-cert",
    "x-arr-clientcert",
    "front-end-https",
    "x-url-scheme",
];

/// Whether `name` (lower case, with dashes) is a proxy's claim about the connection.
fn is_proxy_claim(name: &str) -> bool {
    name.starts_with("x-forwarded-")
        || name.starts_with("x-ssl-")
        || name.starts_with("cf-connecting-")
        || PROXY_CLAIMS.contains(&name)
}

/// Request fields Warden reads to decide, beyond the identity and proxy fields: their
/// underscore spellings are dropped, and `Connection` cannot remove them.
const CHECKED: [&str; 7] = [
    "authorization",
    "x-client-id",
    "signature",
    "signature-input",
    "content-digest",
    "idempotency-key",
    "x-idempotency-key",
];

/// Headers with which Express's `method-override`, ASP.NET, Symfony, Rails and others make a
/// POST run as another method.
const METHOD_OVERRIDES: [&str; 3] = [
    "x-http-method-override",
    "x-method-override",
    "x-http-method",
];

/// `name` as CGI and WSGI servers read it: `_` and `-` are the same (`HTTP_X_WARDEN_SCOPES`).
fn dash_spelling(name: &str) -> std::borrow::Cow<'_, str> {
    if name.contains('_') {
        std::borrow::Cow::Owned(name.replace('_', "-"))
    } else {
        std::borrow::Cow::Borrowed(name)
    }
}

/// The method-override header or query parameter a request carries, if any, named as sent:
/// `X-HTTP-Method-Override`, `X-Method-Override` or `X-HTTP-Method` in any spelling
/// (underscores too), or a `_method` query parameter as PHP reads names (`.` and spaces
/// become `_`). Upstreams that honour one would run another method than Warden routed.
pub fn method_override(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    for name in headers.keys() {
        let name = name.as_str();
        if name.contains("method") && METHOD_OVERRIDES.contains(&&*dash_spelling(name)) {
            return Some(name.to_owned());
        }
    }
    let query = query?;
    if !query.to_ascii_lowercase().contains("method") {
        return None;
    }
    form_urlencoded::parse(query.as_bytes())
        .any(|(key, _)| {
            let key: String = key
                .trim_start()
                .chars()
                .map(|c| match c {
                    ' ' | '.' | '[' => '_',
                    c => c.to_ascii_lowercase(),
                })
                .collect();
            key == "_method"
        })
        .then(|| "the _method query parameter".to_owned())
}

/// What Warden knows about the connection a request came on.
#[derive(Debug, Clone, Copy)]
pub struct Origin {
    /// The TCP peer.
    pub peer: IpAddr,
    /// Whether the peer is in `server.trusted_proxies`.
    pub peer_trusted: bool,
    /// Whether the client reached Warden over TLS.
    pub tls: bool,
}

/// Whether a request asks to switch protocols (WebSocket and friends, HTTP/1.1 only).
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .any(|v| connection_tokens(v).any(|t| t.eq_ignore_ascii_case("upgrade")))
}

fn connection_tokens(v: &HeaderValue) -> impl Iterator<Item = &str> {
    v.to_str()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Removes hop-by-hop headers and those the `Connection` header names, except fields that
/// must reach the upstream as Warden saw them: a field a signature on the message covers
/// (`Signature-Input`), one Warden reads to decide (`CHECKED`) or sets (`X-Warden-*`,
/// `X-Forwarded-*`, `Forwarded`). Otherwise `Connection: x-dry-run` would strip a signed
/// field after its signature was verified. When `keep_upgrade` is set, the `Upgrade` header
/// survives and `Connection: upgrade` is restored.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // Most messages carry none of these, and removing an absent name still costs a hash
    // lookup each: one pass over the names present decides whether there is anything to do.
    let any = headers
        .keys()
        .any(|name| name == header::UPGRADE || HOP_BY_HOP.contains(name));
    if !any {
        if keep_upgrade {
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        }
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(connection_tokens)
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .collect();
    let mut signed: Option<Covered> = None;
    for name in named {
        if keep_upgrade && name == header::UPGRADE {
            continue;
        }
        if HOP_BY_HOP.contains(&name) || !headers.contains_key(&name) {
            continue; // removed below, or absent
        }
        let end_to_end = name.as_str().starts_with(IDENTITY_PREFIX)
            || name.as_str().starts_with("x-forwarded-")
            || name == header::FORWARDED
            || CHECKED.contains(&name.as_str());
        if end_to_end
            || signed
                .get_or_insert_with(|| Covered::of(headers))
                .covers(&name)
        {
            continue;
        }
        headers.remove(&name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(header::UPGRADE);
    }
}

/// The fields the signatures on a message cover, as far as `Connection` is concerned.
enum Covered {
    Names(Vec<String>),
    /// `Signature-Input` is there but unreadable: nothing named may go.
    All,
}

impl Covered {
    fn of(headers: &HeaderMap) -> Self {
        if !headers.contains_key("signature-input") {
            return Covered::Names(Vec::new());
        }
        match crate::httpsig::parse_signatures(headers) {
            Ok(sigs) => Covered::Names(
                sigs.iter()
                    .flat_map(|s| s.components().iter().map(|c| c.name().to_owned()))
                    .collect(),
            ),
            Err(_) => Covered::All,
        }
    }

    fn covers(&self, name: &HeaderName) -> bool {
        match self {
            Covered::Names(names) => names.iter().any(|n| n == name.as_str()),
            Covered::All => true,
        }
    }
}

/// Removes what a client may not say to the upstream, whoever the peer: every `X-Warden-*`
/// header, also spelled with underscores (`X_Warden_Client_Id`, which CGI and WSGI servers
/// read as `X-Warden-Client-Id`); the underscore spellings of every field Warden sets or
/// checks (`X_Forwarded_For`, `X_Client_Id`, …); and `X-Original-URL` / `X-Rewrite-URL`.
pub fn strip_identity(headers: &mut HeaderMap) {
    let spoofed: Vec<HeaderName> = headers
        .keys()
        .filter(|k| {
            let name = k.as_str();
            // Most names pass the first test; only underscores need a copy.
            if !name.starts_with("x") && !name.contains('_') {
                return false;
            }
            let dashed = dash_spelling(name);
            let dashed = dashed.as_ref();
            dashed.starts_with(IDENTITY_PREFIX)
                || ROUTING_OVERRIDES.contains(&dashed)
                || (name.contains('_')
                    && (is_proxy_claim(dashed)
                        || CHECKED.contains(&dashed)
                        || METHOD_OVERRIDES.contains(&dashed)))
        })
        .cloned()
        .collect();
    for name in spoofed {
        headers.remove(name);
    }
}

/// Adds the identity headers of an authenticated request (after [`strip_identity`]).
pub fn set_identity(headers: &mut HeaderMap, id: &Identity) {
    headers.insert(X_WARDEN_CLIENT_ID, id.client_id_header.clone());
    headers.insert(X_WARDEN_TOKEN_ID, id.token_id_header.clone());
    headers.insert(X_WARDEN_SCOPES, id.scopes_header.clone());
    if let Some(aud) = &id.audience_header {
        headers.insert(X_WARDEN_AUDIENCE, aud.clone());
    }
}

/// Sets `X-Forwarded-For/-Proto/-Host`. What a peer says is kept only if the peer is trusted;
/// otherwise the values are Warden's own view of the connection.
pub fn set_forwarded(headers: &mut HeaderMap, origin: &Origin, authority: Option<HeaderValue>) {
    let prior: Vec<&str> = if origin.peer_trusted {
        headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect()
    } else {
        Vec::new()
    };
    let xff = if prior.is_empty() {
        ip_header(origin.peer)
    } else {
        HeaderValue::from_str(&format!("{}, {}", prior.join(", "), origin.peer)).ok()
    };
    if let Some(v) = xff {
        headers.insert(X_FORWARDED_FOR, v);
    }
    if !(origin.peer_trusted && headers.contains_key(&X_FORWARDED_PROTO)) {
        let proto = if origin.tls { "https" } else { "http" };
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    }
    if !(origin.peer_trusted && headers.contains_key(&X_FORWARDED_HOST)) {
        match authority {
            Some(v) => {
                headers.insert(X_FORWARDED_HOST, v);
            }
            None => {
                headers.remove(X_FORWARDED_HOST);
            }
        }
    }
    if !origin.peer_trusted {
        // RFC 7239's Forwarded carries the same claims; from an untrusted peer it is a lie,
        // and so are X-Real-IP, X-Forwarded-Port/-Prefix and the others.
        headers.remove(header::FORWARDED);
        let claims: Vec<HeaderName> = headers
            .keys()
            .filter(|k| {
                *k != X_FORWARDED_FOR
                    && *k != X_FORWARDED_PROTO
                    && *k != X_FORWARDED_HOST
                    && is_proxy_claim(k.as_str())
            })
            .cloned()
            .collect();
        for name in claims {
            headers.remove(name);
        }
    }
}

/// `ip` as a header value. IPv4 is written by hand: `Display` goes through the formatting
/// machinery and cost more than the rest of `set_forwarded` together.
fn ip_header(ip: IpAddr) -> Option<HeaderValue> {
    let IpAddr::V4(v4) = ip else {
        return HeaderValue::from_str(&ip.to_string()).ok();
    };
    let mut buf = [0u8; 15];
    let mut len = 0;
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            buf[len] = b'.';
            len += 1;
        }
        if octet >= 100 {
            buf[len] = b'0' + octet / 100;
            len += 1;
        }
        if octet >= 10 {
            buf[len] = b'0' + octet / 10 % 10;
            len += 1;
        }
        buf[len] = b'0' + octet % 10;
        len += 1;
    }
    HeaderValue::from_bytes(&buf[..len]).ok()
}

/// The error a request body raises when it grows past `server.max_body_bytes`.
#[derive(Debug, thiserror::Error)]
#[error("request body larger than {limit} bytes")]
pub struct BodyTooLarge {
    pub limit: u64,
}

/// The error a request body raises when its next frame keeps Warden waiting longer than
/// `server.body_read_timeout`.
#[derive(Debug, thiserror::Error)]
#[error("request body stalled for {after:?}")]
pub struct BodyStalled {
    pub after: Duration,
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
/// The client's fault a request body failed with, anywhere in `e`'s chain: over the size limit
/// (413), a `Content-Digest` that does not match (its own refusal), or stalled past
/// `server.body_read_timeout` (408). The one mapping of body errors to refusals: the proxy, the
/// digest gate and idempotency's whole-body reads all use it.
pub(crate) fn body_problem(e: &(dyn std::error::Error + 'static)) -> Option<Problem> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(too_large) = err.downcast_ref::<BodyTooLarge>() {
            return Some(Problem::PayloadTooLarge {
                limit: too_large.limit,
            });
        }
        if let Some(mismatch) = err.downcast_ref::<crate::gate::digest::DigestMismatch>() {
            return Some(mismatch.problem());
        }
        if err.is::<BodyStalled>() {
            return Some(Problem::BodyTimeout);
        }
        source = err.source();
    }
    None
}

fn classify(e: &(dyn std::error::Error + 'static)) -> Problem {
    if let Some(problem) = body_problem(e) {
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

/// The client's request body failed (bad chunked framing, connection closed mid-body): the
/// client's fault, not the upstream's.
#[derive(Debug, thiserror::Error)]
#[error("request body unreadable")]
pub struct ClientBodyError(#[source] BoxError);

/// A request body that fails with [`BodyTooLarge`] once more than `limit` bytes have passed,
/// and, given `stall` (the timer and `server.body_read_timeout`), with [`BodyStalled`] when its
/// next frame keeps the reader waiting longer than that.
///
/// The stall deadline costs nothing for a body that is already complete (no body, or nothing
/// left to read) and nothing while frames are there when polled: it runs only while the reader
/// waits, on the coarse timer's [`Alarm`] (an atomic load a wait; the timer's lock once when a
/// body first keeps its reader waiting, about once a `body_read_timeout` after that, and once
/// when it is dropped).
pub fn limit_body<B>(body: B, limit: u64, stall: Option<(&CoarseTimer, Duration)>) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    let stall = stall
        .filter(|_| !body.is_end_stream())
        .map(|(timer, after)| Stall {
            alarm: timer.alarm(),
            after,
            until: None,
        });
    LimitedBody {
        inner: body
            .map_err(|e| BoxError::from(ClientBodyError(e.into())))
            .boxed(),
        seen: 0,
        limit,
        stall,
    }
    .boxed()
}

/// The stall deadline of a request body: `until` is set when a wait for a frame begins.
struct Stall {
    alarm: Alarm,
    after: Duration,
    until: Option<u64>,
}

pin_project_lite::pin_project! {
    struct LimitedBody {
        #[pin]
        inner: Body,
        seen: u64,
        limit: u64,
        stall: Option<Stall>,
    }
}

impl http_body::Body for LimitedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        use std::task::Poll;
        let this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Pending => {
                let Some(stall) = this.stall.as_mut() else {
                    return Poll::Pending;
                };
                // The wait is counted from its start, not from the last frame: a reader that
                // did not poll (the upstream applying backpressure) is not the client's delay.
                let until = *stall
                    .until
                    .get_or_insert_with(|| stall.alarm.ms_after(stall.alarm.now_ms(), stall.after));
                match stall.alarm.poll_at(until, cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(()) => {
                        let after = stall.after;
                        Poll::Ready(Some(Err(Box::new(BodyStalled { after }))))
                    }
                }
            }
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(stall) = this.stall.as_mut() {
                    stall.until = None;
                }
                if let Some(data) = frame.data_ref() {
                    *this.seen += data.len() as u64;
                    if *this.seen > *this.limit {
                        let limit = *this.limit;
                        return Poll::Ready(Some(Err(Box::new(BodyTooLarge { limit }))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests;
