//! Idempotency keys (`Idempotency-Key`, draft-ietf-httpapi-idempotency-key-header-06, and
//! Pipevest's `X-Idempotency-Key`): which requests need one, the key's validation, the request
//! fingerprint, and the run of a keyed request: reserve → forward → record, or replay, 409, 422.
//! Records live in the store (atomic reservation, leases, expiry); what is kept and for how long
//! is decided here; refusals become responses in [`crate::problem`].

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::{
    HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri, header,
};
use http_body::Body as _;
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::time::{Instant, Sleep};

use crate::body::{Body, BoxError, full};
use crate::cache::Identity;
use crate::clock::Clock;
use crate::coarse_timer::CoarseTimer;
use crate::config::IdempotencySettings;
use crate::problem::Problem;
use crate::router::{Policy, SignatureMode};
use crate::store::{
    Hash, IdempotencyState, Reservation, Store, StoreError, StoredResponse, TokenKind,
};

/// The longest key accepted (draft §2.2 leaves the format to the resource; 255 is Pipevest's).
pub const MAX_KEY_LEN: usize = 255;

/// Set to `true` on a replayed response.
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// How many sweep batches one housekeeping tick runs at most; the rest waits for the next tick.
const MAX_SWEEP_BATCHES: u32 = 100;

/// Why a marker record was written instead of a response (its body; shown in the 422 detail).
const STREAMED: &str = "it was an event stream";
const TOO_LARGE: &str = "it was larger than idempotency.max_response_bytes";
const CUT_SHORT: &str = "the upstream broke off its body";
const TOO_SLOW: &str = "its body was still streaming when the reservation lease ran out";
const UPGRADED: &str = "the connection switched protocols";

/// Whether a route's requests need an idempotency key (route `idempotency`,
/// `idempotency.auth_endpoint`). Safe methods (GET, HEAD, OPTIONS, TRACE) never use keys.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdempotencyMode {
    /// The default: a key is required on `idempotency.require_methods` (default POST) when the
    /// request is signed, and honoured when present otherwise. Public routes: off.
    #[default]
    Auto,
    /// Every unsafe method must carry a key (400 `idempotency_key_missing`).
    Required,
    /// A key is honoured when present.
    Optional,
    /// Keys are not looked at (and are forwarded as they are).
    Off,
}

/// What one request must do about keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    Required,
    Optional,
    Off,
}

impl IdempotencyMode {
    /// What a request with `method` needs under this mode; `signed` says whether it carries a
    /// signature (checked before this runs).
    pub fn need(self, method: &Method, signed: bool, require_methods: &[Method]) -> Need {
        if is_safe(method) {
            return Need::Off;
        }
        match self {
            IdempotencyMode::Auto if signed && require_methods.contains(method) => Need::Required,
            IdempotencyMode::Auto | IdempotencyMode::Optional => Need::Optional,
            IdempotencyMode::Required => Need::Required,
            IdempotencyMode::Off => Need::Off,
        }
    }
}

fn is_safe(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// Whether a request carries an RFC 9421 signature. By the time idempotency runs, the
/// signature check has verified any signature a route looks at.
pub fn is_signed(headers: &HeaderMap) -> bool {
    headers.contains_key("signature-input")
}

fn invalid(detail: String) -> Problem {
    Problem::IdempotencyKeyInvalid { detail }
}

/// The idempotency key of a request, from the first of `names` present (all present must
/// agree). Validated here, before any lookup: one field line per name, 1 to [`MAX_KEY_LEN`]
/// visible ASCII characters, given as an sf-string (`"…"`, the draft's form) or as a plain value.
pub fn key_from(headers: &HeaderMap, names: &[HeaderName]) -> Result<Option<String>, Problem> {
    let mut found: Option<(String, &HeaderName)> = None;
    for name in names {
        let mut values = headers.get_all(name).iter();
        let Some(value) = values.next() else {
            continue;
        };
        if values.next().is_some() {
            return Err(invalid(format!("{name} is repeated; send one key")));
        }
        let key = parse_key(value.as_bytes()).map_err(|why| invalid(format!("{name}: {why}")))?;
        match &found {
            Some((first, first_name)) if *first != key => {
                return Err(invalid(format!(
                    "{first_name} and {name} carry different keys; send one"
                )));
            }
            Some(_) => {}
            None => found = Some((key, name)),
        }
    }
    Ok(found.map(|(key, _)| key))
}

/// Parses one field value into a key.
pub fn parse_key(value: &[u8]) -> Result<String, &'static str> {
    let key = if value.first() == Some(&b'"') {
        let item: sfv::Item = sfv::Parser::new(value)
            .parse()
            .map_err(|_| "not a valid structured-field string")?;
        match item.bare_item {
            sfv::BareItem::String(s) => s.as_str().to_owned(),
            _ => return Err("not a valid structured-field string"),
        }
    } else {
        String::from_utf8(value.to_vec()).map_err(|_| "must be visible ASCII")?
    };
    if key.is_empty() {
        return Err("must not be empty");
    }
    if key.len() > MAX_KEY_LEN {
        return Err("longer than 255 characters");
    }
    if !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("must be visible ASCII without spaces");
    }
    Ok(key)
}

/// How the body enters a request's fingerprint.
#[derive(Debug, Clone, Copy)]
pub enum BodyDigest<'a> {
    /// The request's `Content-Digest`, which the digest check holds the body to.
    Verified(&'a HeaderValue),
    /// The body itself, held whole.
    Bytes(&'a [u8]),
}

/// What a key is bound to: method, path and query (as sent), and the body. A retry must match
/// it; the same key with another fingerprint is `idempotency_key_reused`.
pub fn fingerprint(method: &Method, uri: &Uri, body: BodyDigest<'_>) -> Hash {
    let mut h = Sha256::new();
    h.update(b"warden idempotency v1\n");
    h.update(method.as_str().as_bytes());
    h.update(b" ");
    h.update(
        uri.path_and_query()
            .map(|pq| pq.as_str())
            .unwrap_or("/")
            .as_bytes(),
    );
    match body {
        BodyDigest::Verified(value) => {
            h.update(b"\ncontent-digest: ");
            h.update(value.as_bytes());
        }
        BodyDigest::Bytes(bytes) => {
            h.update(b"\nbody: ");
            h.update(bytes);
        }
    }
    h.finalize().into()
}

/// The namespace a proxied request's keys live in: whose requests a key can be a retry of.
///
/// An access token (from `/v1/auth` or `/v1/oauth/token`) is the client itself: whoever holds
/// the client's secret mints as many as they like, and one lasts an hour (`tokens.access_ttl`)
/// where a record lasts a day, so its records are the client's (`client id`): a retry made with a
/// refreshed token finds its record instead of running the request again. API keys and managed
/// tokens are handed to different people or systems of one client, so their records are their
/// own (`client id/token id`): another credential of the client neither gets their response nor
/// learns from 409 or 422 that the key is in use. (`/` never appears in a client id.)
pub fn namespace(identity: &Identity) -> Cow<'_, str> {
    // A token of another issuer: per client and user (`idp.rs` says which).
    if let Some(remote) = &identity.remote {
        return Cow::Borrowed(&remote.namespace);
    }
    match identity.kind {
        TokenKind::Access => Cow::Borrowed(&identity.client_id),
        TokenKind::ApiKey | TokenKind::Managed => {
            Cow::Owned(format!("{}/{}", identity.client_id, identity.token_id))
        }
    }
}

/// Idempotency for proxied routes and `/v1/auth`, shared by all connections.
pub struct Idempotency {
    store: Arc<dyn Store>,
    clock: Clock,
    /// Bounds the wait for a response body to gather (a tokio timer a request cost more).
    timer: CoarseTimer,
    settings: IdempotencySettings,
    /// Lease of a proxied request, in seconds: upstream.timeout + lease_margin, rounded up.
    lease_secs: i64,
    /// How long after its reservation a proxied response may still be recorded: half the
    /// margin before the lease ends, so a record is never written by a holder that lost it.
    record_within: Duration,
    /// Bytes of keyed bodies held for their fingerprint (`idempotency.buffer_budget_bytes`).
    budget: Arc<Budget>,
    /// Seals the proxied responses kept (`store.seal_key_file`).
    seal: Arc<ResponseSeal>,
}

pub use seal::ResponseSeal;

/// The outcome of a reservation.
enum Begin {
    /// The same request completed: its response, or the marker of one that was not kept.
    Done(StoredResponse),
    /// This caller holds the key until `lease_until`.
    Run { lease_until: i64 },
}

impl Idempotency {
    pub fn new(
        settings: IdempotencySettings,
        upstream_timeout: Duration,
        store: Arc<dyn Store>,
        clock: Clock,
        timer: CoarseTimer,
        seal: ResponseSeal,
    ) -> Self {
        let lease = upstream_timeout + settings.lease_margin;
        Self {
            timer,
            seal: Arc::new(seal),
            lease_secs: secs_up(lease) + 1,
            record_within: upstream_timeout + settings.lease_margin / 2,
            budget: Arc::new(Budget {
                held: AtomicUsize::new(0),
                max: settings.buffer_budget_bytes,
            }),
            store,
            clock,
            settings,
        }
    }

    pub fn settings(&self) -> &IdempotencySettings {
        &self.settings
    }

    /// What a proxied request needs on a route with `policy`. It counts as signed when it
    /// carries a signature and the route checks signatures (so the signature verified).
    pub fn need(&self, policy: &Policy, method: &Method, headers: &HeaderMap) -> Need {
        let signed = policy.signature != SignatureMode::Off && is_signed(headers);
        policy
            .idempotency
            .need(method, signed, &self.settings.require_methods)
    }

    /// The validated key a request must or may use, or the refusal.
    pub fn key(&self, headers: &HeaderMap, need: Need) -> Result<Option<String>, Problem> {
        if need == Need::Off {
            return Ok(None);
        }
        match key_from(headers, &self.settings.headers)? {
            None if need == Need::Required => Err(Problem::IdempotencyKeyMissing {
                header: self.settings.headers[0].to_string(),
            }),
            key => Ok(key),
        }
    }

    /// Deletes expired records in batches of `idempotency.sweep_batch`, yielding between them
    /// so requests keep the store; returns how many.
    pub async fn sweep(&self) -> Result<u64, StoreError> {
        let batch = self.settings.sweep_batch;
        let mut total = 0;
        for _ in 0..MAX_SWEEP_BATCHES {
            let n = self
                .store
                .sweep_idempotency(self.clock.now(), batch)
                .await?;
            total += n;
            if n < u64::from(batch) {
                break;
            }
            tokio::task::yield_now().await;
        }
        Ok(total)
    }

    async fn reserve(
        &self,
        client: &str,
        key: &str,
        fingerprint: Hash,
        lease_secs: i64,
        ttl: Duration,
    ) -> Result<Begin, Problem> {
        let now = self.clock.now();
        let lease_until = now + lease_secs;
        let expires_at = now + secs_up(ttl);
        let reservation = self
            .store
            .reserve_idempotency(client, key, fingerprint, now, lease_until, expires_at)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "store failed while reserving an idempotency key");
                Problem::StoreUnavailable
            })?;
        match reservation {
            Reservation::Reserved => Ok(Begin::Run { lease_until }),
            Reservation::InFlight { .. } => Err(Problem::IdempotencyKeyInUse { retry_after: 1 }),
            Reservation::Mismatch => Err(Problem::IdempotencyKeyReused),
            Reservation::Done(record) => match record.state {
                IdempotencyState::Done(stored) if stored.is_replayable() => Ok(Begin::Done(stored)),
                IdempotencyState::Done(marker) => Err(not_replayable(&marker.body)),
                // The store answers Done only for a completed record.
                IdempotencyState::InFlight { .. } => {
                    Err(Problem::IdempotencyKeyInUse { retry_after: 1 })
                }
            },
        }
    }

    fn ticket(&self, client: &str, key: String, lease_until: i64) -> Ticket {
        Ticket {
            store: self.store.clone(),
            client: client.to_owned(),
            key,
            lease_until,
            release_on_drop: false,
        }
    }

    /// Starts a proxied request made with `identity`'s credential under `need`, its keys in that
    /// credential's [`namespace`]. Without a key it goes on as it is
    /// (`None`); with one, the key is reserved and the request goes on with its [`Run`], to be
    /// handed back to [`Idempotency::finish`] with what the upstream answered. A retry is
    /// answered here (`Err`): the stored response, 409 or 422. `digest_checked` says the body is
    /// held to its `Content-Digest` on its way upstream, which then stands in for the body in
    /// the fingerprint; otherwise the body is read whole (at most
    /// `idempotency.max_request_bytes`) and hashed.
    pub async fn start(
        &self,
        req: Request<Body>,
        identity: &Identity,
        need: Need,
        digest_checked: bool,
    ) -> Result<(Request<Body>, Option<Run>), Response<Body>> {
        let namespace = namespace(identity);
        let client = namespace.as_ref();
        let key = match self.key(req.headers(), need) {
            Err(problem) => return Err(problem.into_response()),
            Ok(None) => return Ok((req, None)),
            Ok(Some(key)) => key,
        };
        let (parts, body) = req.into_parts();
        let digest = parts
            .headers
            .get("content-digest")
            .filter(|_| digest_checked);
        let (fp, body) = match digest {
            Some(value) => (
                fingerprint(&parts.method, &parts.uri, BodyDigest::Verified(value)),
                body,
            ),
            None => {
                let (bytes, hold) = self.buffer(body).await.map_err(Problem::into_response)?;
                let fp = fingerprint(&parts.method, &parts.uri, BodyDigest::Bytes(&bytes));
                (fp, Buffered::body(bytes, hold))
            }
        };
        let ttl = self.settings.ttl;
        let lease_until = match self.reserve(client, &key, fp, self.lease_secs, ttl).await {
            Ok(Begin::Run { lease_until }) => lease_until,
            Ok(Begin::Done(stored)) => {
                // A body held to its digest is still checked: a retry whose body does not
                // match is refused, not answered.
                if digest.is_some() {
                    discard(body).await.map_err(Problem::into_response)?;
                }
                return Err(match self.seal.open(client, &key, stored) {
                    Some(opened) => replay(opened),
                    None => {
                        tracing::warn!(
                            namespace = %client,
                            "stored response does not open (was store.seal_key_file replaced?)"
                        );
                        not_replayable(b"it could not be decrypted").into_response()
                    }
                });
            }
            Err(problem) => return Err(problem.into_response()),
        };
        // Dropped unfinished (the client went away while the upstream had the request), the
        // run keeps its lease: a retry waits for it to end, as after a crash.
        let run = Run {
            ticket: self.ticket(client, key, lease_until),
            deadline: Instant::now() + self.record_within,
        };
        Ok((Request::from_parts(parts, body), Some(run)))
    }

    /// Reads a keyed body whole for its fingerprint (before its key is reserved): at most
    /// `idempotency.max_request_bytes` (413), all of it within
    /// `idempotency.request_read_timeout` (408 `body_timeout`), and only while the bytes fit in
    /// what all keyed bodies may hold at once, `idempotency.buffer_budget_bytes`: a declared
    /// length is taken from the budget up front, a chunked body's bytes as they come, and a
    /// body that does not fit is refused at once (503 `server_busy`), never queued.
    async fn buffer(&self, body: Body) -> Result<(Bytes, Hold), Problem> {
        let limit = self.settings.max_request_bytes;
        let mut hold = Hold {
            budget: self.budget.clone(),
            bytes: 0,
        };
        if let Some(len) = body.size_hint().exact() {
            if len > limit as u64 {
                return Err(Problem::PayloadTooLarge {
                    limit: limit as u64,
                });
            }
            hold.grow_to(len as usize)?;
        }
        let deadline = self.settings.request_read_timeout;
        let read = read_whole(body, limit, Some(&mut hold));
        match self.timer.timeout(deadline, read).await {
            Ok(read) => Ok((read?, hold)),
            Err(_) => Err(Problem::BodyTimeout),
        }
    }

    /// Records what the upstream answered a reserved request (or frees the key when it was not
    /// run, or answered "retry") and returns the response to stream.
    pub async fn finish(
        &self,
        run: Run,
        result: Result<Response<Body>, Problem>,
    ) -> Response<Body> {
        let Run { ticket, deadline } = run;
        let resp = match result {
            // Not run, or not known to have run: unreachable, timed out, refused by a check.
            Err(problem) => {
                ticket.release().await;
                return problem.into_response();
            }
            Ok(resp) => resp,
        };
        let status = resp.status();
        if asks_for_retry(status, self.settings.store_server_errors) {
            ticket.release().await;
            return resp;
        }
        if status == StatusCode::SWITCHING_PROTOCOLS {
            ticket.give_up(UPGRADED).await;
            return resp;
        }
        if is_event_stream(resp.headers()) {
            ticket.give_up(STREAMED).await;
            return resp;
        }
        let max = self.settings.max_response_bytes;
        if resp.body().size_hint().lower() > max as u64 {
            ticket.give_up(TOO_LARGE).await;
            return resp;
        }
        let (parts, body) = resp.into_parts();
        let recorder = Recorder {
            ticket,
            status: status.as_u16(),
            head: ResponseSeal::head(&parts.headers),
            seal: self.seal.clone(),
            chunks: Vec::new(),
            seen: 0,
            max,
        };
        let exact = body.size_hint().exact();
        let tee = TeeBody {
            inner: body,
            recorder: Some(recorder),
            deadline,
            timer: None,
            writing: None,
            held: None,
        };
        match exact {
            Some(len) if len <= max as u64 => gather(parts, tee, &self.timer, deadline).await,
            _ => Response::from_parts(parts, tee.boxed()),
        }
    }

    /// `/v1/auth`: the validated key of a token request, if it has or needs one; `signature`
    /// is the endpoint's signature mode.
    pub fn auth_key(
        &self,
        headers: &HeaderMap,
        signature: SignatureMode,
    ) -> Result<Option<String>, Problem> {
        let signed = signature != SignatureMode::Off && is_signed(headers);
        let need =
            self.settings
                .auth_endpoint
                .need(&Method::POST, signed, &self.settings.require_methods);
        self.key(headers, need)
    }

    /// `/v1/auth`: reserves `key` for the authenticated `client`. A completed request's entity
    /// is opened with `secret` (the retry's own, which the fingerprint binds to the first's).
    pub async fn begin_token(
        &self,
        client: &str,
        key: String,
        fingerprint: Hash,
        secret: &str,
    ) -> Result<TokenRun, Problem> {
        let ttl = self.settings.token_ttl;
        let lease_secs = secs_up(self.settings.lease_margin) + 1;
        match self
            .reserve(client, &key, fingerprint, lease_secs, ttl)
            .await?
        {
            Begin::Done(mut stored) => {
                stored.body = seal::open(secret, client, &key, &stored.body).ok_or_else(|| {
                    tracing::warn!(client_id = %client, "stored token response does not open");
                    not_replayable(b"it could not be decrypted")
                })?;
                Ok(TokenRun::Replay(replay(stored)))
            }
            Begin::Run { lease_until } => {
                let mut ticket = self.ticket(client, key, lease_until);
                ticket.release_on_drop = true;
                Ok(TokenRun::Run(TokenTicket {
                    ticket: Some(ticket),
                    secret: secret.to_owned(),
                    max: self.settings.max_response_bytes,
                }))
            }
        }
    }
}

/// A proxied request that holds its key; see [`Idempotency::start`].
pub struct Run {
    ticket: Ticket,
    /// After this the response is no longer recorded (the lease is about to end).
    deadline: Instant,
}

/// What `/v1/auth` does with a keyed request.
pub enum TokenRun {
    /// Answer with the token issued for the first request.
    Replay(Response<Body>),
    /// Issue a token, then [`TokenTicket::finish`].
    Run(TokenTicket),
}

/// The key of a token request being served. Dropped unfinished (the request failed), it frees
/// the key.
pub struct TokenTicket {
    ticket: Option<Ticket>,
    secret: String,
    max: usize,
}

impl TokenTicket {
    /// Records a successful response, its body sealed with a key only the client's secret
    /// opens, and returns it; any other response frees the key.
    pub async fn finish(mut self, resp: Response<Body>) -> Response<Body> {
        let Some(mut ticket) = self.ticket.take() else {
            return resp;
        };
        ticket.release_on_drop = false;
        if !resp.status().is_success() {
            ticket.release().await;
            return resp;
        }
        let (parts, body) = resp.into_parts();
        let Ok(bytes) = read_whole(body, self.max, None).await else {
            ticket.release().await;
            return Problem::StoreUnavailable.into_response();
        };
        let sealed = seal::seal(&self.secret, &ticket.client, &ticket.key, &bytes);
        ticket
            .complete(StoredResponse {
                status: parts.status.as_u16(),
                headers: stored_headers(&parts.headers),
                body: sealed,
            })
            .await;
        Response::from_parts(parts, full(bytes))
    }
}

/// A held reservation: `(client, key)` under the lease `lease_until`, which fences its writes.
/// `client` is the key's namespace: the client id, or `client id/token id` (see [`namespace`]).
struct Ticket {
    store: Arc<dyn Store>,
    client: String,
    key: String,
    lease_until: i64,
    /// Whether dropping it unfinished frees the key (else the lease runs out, as after a crash).
    release_on_drop: bool,
}

impl Ticket {
    async fn release(mut self) {
        self.release_on_drop = false;
        let r = self
            .store
            .release_idempotency(&self.client, &self.key, self.lease_until)
            .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "idempotency key not released; it frees when its lease ends");
        }
    }

    async fn complete(mut self, response: StoredResponse) {
        self.release_on_drop = false;
        let r = self
            .store
            .complete_idempotency(&self.client, &self.key, self.lease_until, response)
            .await;
        match r {
            Ok(true) => {}
            Ok(false) => tracing::warn!(
                namespace = %self.client,
                "idempotency reservation was taken over before its response was recorded"
            ),
            Err(e) => tracing::error!(error = %e, "store failed while recording a response"),
        }
    }

    async fn give_up(self, reason: &str) {
        self.complete(StoredResponse::not_replayable(reason)).await;
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.release_on_drop {
            return;
        }
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let (store, client, key) = (self.store.clone(), self.client.clone(), self.key.clone());
            let lease_until = self.lease_until;
            handle.spawn(async move {
                let _ = store.release_idempotency(&client, &key, lease_until).await;
            });
        }
    }
}

/// Whether a response says "not done, try again" and so frees the key instead of being kept:
/// 408 and 429 always, 5xx unless `idempotency.store_server_errors`.
fn asks_for_retry(status: StatusCode, store_server_errors: bool) -> bool {
    status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || (status.is_server_error() && !store_server_errors)
}

fn is_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("text/event-stream")
        })
}

fn not_replayable(reason: &[u8]) -> Problem {
    Problem::IdempotencyResponseNotReplayable {
        reason: String::from_utf8_lossy(reason).into_owned(),
    }
}

fn secs_up(d: Duration) -> i64 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    i64::try_from(secs).unwrap_or(i64::MAX / 4)
}

fn stored_headers(headers: &HeaderMap) -> Vec<(String, Vec<u8>)> {
    headers
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
        .collect()
}

/// The stored response as it was sent, marked as a replay.
fn replay(stored: StoredResponse) -> Response<Body> {
    let Ok(status) = StatusCode::from_u16(stored.status) else {
        return not_replayable(b"its record is damaged").into_response();
    };
    let mut resp = Response::new(full(stored.body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    for (name, value) in stored.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(&value),
        ) {
            h.append(name, value);
        }
    }
    h.insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    resp
}

/// Reads a body whole, at most `limit` bytes, counting them against `hold`'s budget if given;
/// a body of one frame is not copied.
async fn read_whole(
    mut body: Body,
    limit: usize,
    mut hold: Option<&mut Hold>,
) -> Result<Bytes, Problem> {
    let mut chunks = Vec::new();
    let mut len = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| body_problem(e.as_ref()))?;
        if let Ok(data) = frame.into_data() {
            len += data.len();
            if len > limit {
                return Err(Problem::PayloadTooLarge {
                    limit: limit as u64,
                });
            }
            if let Some(hold) = hold.as_deref_mut() {
                hold.grow_to(len)?;
            }
            chunks.push(data);
        }
    }
    Ok(joined(chunks))
}

/// The bytes all keyed bodies held for their fingerprint may take together: a counting
/// semaphore of bytes that never waits (an atomic add that fails past `max`).
struct Budget {
    held: AtomicUsize,
    max: usize,
}

/// One body's share of the [`Budget`], given back when it is dropped.
struct Hold {
    budget: Arc<Budget>,
    bytes: usize,
}

impl Hold {
    /// Takes from the budget up to `bytes` in all for this body; 503 `server_busy` when they
    /// do not fit.
    fn grow_to(&mut self, bytes: usize) -> Result<(), Problem> {
        let more = bytes.saturating_sub(self.bytes);
        if more == 0 {
            return Ok(());
        }
        let max = self.budget.max;
        let taken = self
            .budget
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(more).filter(|&h| h <= max)
            });
        if taken.is_err() {
            tracing::debug!(
                budget = max,
                "keyed body refused: idempotency.buffer_budget_bytes is in use"
            );
            return Err(Problem::ServerBusy { retry_after: 1 });
        }
        self.bytes = bytes;
        Ok(())
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.budget.held.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// A keyed body read whole, on its way upstream: it keeps its share of the budget until it
/// has been handed on (or dropped).
struct Buffered {
    data: Option<Bytes>,
    hold: Option<Hold>,
}

impl Buffered {
    fn body(data: Bytes, hold: Hold) -> Body {
        Buffered {
            data: Some(data).filter(|d| !d.is_empty()),
            hold: Some(hold),
        }
        .boxed()
    }
}

impl http_body::Body for Buffered {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let frame = this.data.take().map(|d| Ok(Frame::data(d)));
        this.hold = None;
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.data.as_ref().map_or(0, |d| d.len() as u64))
    }
}

/// The chunks of a body as one; a body of one chunk is not copied.
fn joined(mut chunks: Vec<Bytes>) -> Bytes {
    match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.swap_remove(0),
        _ => chunks.concat().into(),
    }
}

/// Reads a body to its end (through whatever checks wrap it), keeping nothing.
async fn discard(mut body: Body) -> Result<(), Problem> {
    while let Some(frame) = body.frame().await {
        frame.map_err(|e| body_problem(e.as_ref()))?;
    }
    Ok(())
}

/// What a client is told when its body could not be read for the fingerprint.
fn body_problem(e: &(dyn std::error::Error + 'static)) -> Problem {
    let mut source = Some(e);
    while let Some(err) = source {
        if let Some(too_large) = err.downcast_ref::<crate::forward::BodyTooLarge>() {
            return Problem::PayloadTooLarge {
                limit: too_large.limit,
            };
        }
        if let Some(mismatch) = err.downcast_ref::<crate::gate::digest::DigestMismatch>() {
            return mismatch.problem();
        }
        if err.is::<crate::forward::BodyStalled>() {
            return Problem::BodyTimeout;
        }
        source = err.source();
    }
    Problem::BadRequest {
        detail: "the request body could not be read".into(),
    }
}

/// Reads a response of known length, small enough to be recorded, to its end (recording it on
/// the way, see [`TeeBody`]) before it is answered: its head and body then leave in one write
/// instead of two, which costs the client no time (the last frame waits for the record anyway)
/// and saves a send and a TCP segment on every keyed request. An upstream that breaks off the
/// body gets the client a 502. Not done by `deadline` (the upstream is slow), or on trailers,
/// the response goes out with what was read so far and streams the rest as before. Dropped
/// here (the client left), the [`TeeBody`] still reads and records the rest in the background.
///
/// The deadline is the coarse timer's: it is registered only when a frame is not there at once
/// (the record being written, or the upstream), and costs a slab entry rather than a tokio
/// timer.
async fn gather(
    parts: http::response::Parts,
    mut tee: TeeBody,
    timer: &CoarseTimer,
    deadline: Instant,
) -> Response<Body> {
    let deadline = deadline.into_std();
    let mut head = std::collections::VecDeque::new();
    let whole = loop {
        match timer.timeout_at(deadline, tee.frame()).await {
            Ok(None) => break true,
            Ok(Some(Ok(frame))) => {
                let data = frame.is_data();
                head.push_back(frame);
                if !data {
                    break false;
                }
            }
            // Nothing has gone out yet, so the client can be told plainly (its retry is answered
            // 422 from the marker the tee records: the request did run).
            Ok(Some(Err(_))) => return Problem::UpstreamUnavailable.into_response(),
            Err(_) => break false,
        }
    };
    let body = if whole {
        let chunks = head
            .into_iter()
            .filter_map(|f| f.into_data().ok())
            .collect();
        full(joined(chunks))
    } else {
        Prefixed { head, rest: tee }.boxed()
    };
    Response::from_parts(parts, body)
}

/// The frames already read of a response that could not be gathered whole, then the rest.
struct Prefixed {
    head: std::collections::VecDeque<Frame<Bytes>>,
    rest: TeeBody,
}

impl http_body::Body for Prefixed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match this.head.pop_front() {
            Some(frame) => Poll::Ready(Some(Ok(frame))),
            None => Pin::new(&mut this.rest).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.head.is_empty() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let held: u64 = (self.head.iter())
            .filter_map(|frame| frame.data_ref())
            .map(|data| data.len() as u64)
            .sum();
        let mut hint = self.rest.size_hint();
        // Upper first: `set_lower` refuses a lower bound above the upper one.
        if let Some(upper) = hint.upper() {
            hint.set_upper(upper + held);
        }
        hint.set_lower(hint.lower() + held);
        hint
    }
}

/// The response being recorded while it streams.
struct Recorder {
    ticket: Ticket,
    status: u16,
    /// The response's headers, encoded to be sealed with the body ([`ResponseSeal::head`]).
    head: Vec<u8>,
    seal: Arc<ResponseSeal>,
    chunks: Vec<Bytes>,
    seen: usize,
    max: usize,
}

impl Recorder {
    /// Keeps `data` (a cheap reference to the same bytes); `false` once past the cap.
    fn push(&mut self, data: &Bytes) -> bool {
        self.seen += data.len();
        if self.seen > self.max {
            self.chunks = Vec::new();
            return false;
        }
        self.chunks.push(data.clone());
        true
    }

    async fn complete(self) {
        let Self {
            ticket,
            status,
            head,
            seal,
            chunks,
            ..
        } = self;
        let response = seal.seal(&ticket.client, &ticket.key, status, head, &chunks);
        ticket.complete(response).await;
    }
}

/// A response body streamed to the client as it comes while a copy is kept, up to
/// `idempotency.max_response_bytes`. At its end the copy is recorded before the last frame
/// goes out, so a client that has the whole response finds it replayable. Past the cap, cut
/// short, or too slow, a marker is recorded instead and the body streams on uncopied. Dropped
/// early (the client left), the rest is read in the background so a retry finds the result.
struct TeeBody {
    inner: Body,
    recorder: Option<Recorder>,
    /// When recording gives up (the lease is about to run out).
    deadline: Instant,
    /// Wakes the body at `deadline`; armed only once the upstream keeps it waiting, so a body
    /// that is already there costs no timer.
    timer: Option<Pin<Box<Sleep>>>,
    /// The record being written; `held` goes out when it is done.
    /// In a mutex only to be `Sync` (a boxed body must be); `poll_frame` has `&mut self` and
    /// reaches it with `get_mut`, never locking.
    writing: Option<Mutex<Pin<Box<dyn Future<Output = ()> + Send>>>>,
    /// `Some(frame)`: the last data frame; `None`: the end of the body.
    held: Option<Option<Frame<Bytes>>>,
}

impl TeeBody {
    fn give_up(&mut self, reason: &'static str) {
        if let Some(recorder) = self.recorder.take() {
            tokio::spawn(recorder.ticket.give_up(reason));
        }
    }

    fn write_then(&mut self, held: Option<Frame<Bytes>>) {
        if let Some(recorder) = self.recorder.take() {
            self.writing = Some(Mutex::new(Box::pin(recorder.complete())));
        }
        self.held = Some(held);
    }
}

impl http_body::Body for TeeBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            if let Some(writing) = this.writing.as_mut() {
                // A failed write is logged; the response goes out regardless.
                let writing = writing.get_mut().unwrap_or_else(PoisonError::into_inner);
                ready!(writing.as_mut().poll(cx));
                this.writing = None;
            }
            if let Some(held) = this.held.take() {
                return Poll::Ready(held.map(Ok));
            }
            let polled = Pin::new(&mut this.inner).poll_frame(cx);
            if polled.is_pending() && this.recorder.is_some() {
                let deadline = this.deadline;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if timer.as_mut().poll(cx).is_ready() {
                    this.give_up(TOO_SLOW);
                }
            }
            match ready!(polled) {
                Some(Ok(frame)) => {
                    if let (Some(recorder), Some(data)) = (this.recorder.as_mut(), frame.data_ref())
                    {
                        if !recorder.push(data) {
                            this.give_up(TOO_LARGE);
                        }
                    }
                    if this.recorder.is_some() && this.inner.is_end_stream() {
                        this.write_then(Some(frame));
                        continue;
                    }
                    return Poll::Ready(Some(Ok(frame)));
                }
                None if this.recorder.is_some() => {
                    this.write_then(None);
                }
                None => return Poll::Ready(None),
                Some(Err(e)) => {
                    this.give_up(CUT_SHORT);
                    return Poll::Ready(Some(Err(e)));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.recorder.is_none()
            && self.writing.is_none()
            && self.held.is_none()
            && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for TeeBody {
    fn drop(&mut self) {
        let Some(recorder) = self.recorder.take() else {
            return;
        };
        let inner = std::mem::replace(&mut self.inner, crate::body::empty());
        let deadline = self.deadline;
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(drain(inner, recorder, deadline));
        }
    }
}

/// Reads the rest of a response nobody is waiting for, and records it.
async fn drain(mut body: Body, mut recorder: Recorder, deadline: Instant) {
    let read = tokio::time::timeout_at(deadline, async {
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else {
                return Err(CUT_SHORT);
            };
            if let Some(data) = frame.data_ref() {
                if !recorder.push(data) {
                    return Err(TOO_LARGE);
                }
            }
        }
        Ok(())
    })
    .await;
    match read {
        Ok(Ok(())) => recorder.complete().await,
        Ok(Err(reason)) => recorder.ticket.give_up(reason).await,
        Err(_) => recorder.ticket.give_up(TOO_SLOW).await,
    }
}

/// Token entities at rest: sealed (ChaCha20-Poly1305) with a key derived (HKDF-SHA256) from
/// the client's secret, which the store never holds, and bound to `(client, key)`. Proxied
/// responses at rest: sealed with a key derived from `store.seal_key_file` ([`ResponseSeal`]).
mod seal {
    use std::sync::atomic::{AtomicU64, Ordering};

    use bytes::Bytes;
    use http::HeaderMap;
    use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
    use ring::hkdf::{HKDF_SHA256, Salt};

    use crate::store::StoredResponse;

    const SALT: &[u8] = b"warden idempotency token entity v1";

    fn key(secret: &str, client: &str, key: &str) -> Option<LessSafeKey> {
        let prk = Salt::new(HKDF_SHA256, SALT).extract(secret.as_bytes());
        let info = [client.as_bytes(), b"\0", key.as_bytes()];
        let okm = prk.expand(&info, &CHACHA20_POLY1305).ok()?;
        Some(LessSafeKey::new(UnboundKey::from(okm)))
    }

    fn aad(client: &str, key: &str) -> Vec<u8> {
        [client.as_bytes(), b"\0", key.as_bytes()].concat()
    }

    /// `nonce ‖ ciphertext ‖ tag`.
    pub fn seal(secret: &str, client: &str, idem_key: &str, plain: &[u8]) -> Vec<u8> {
        let nonce: [u8; NONCE_LEN] = rand::random();
        let mut out = nonce.to_vec();
        let mut body = plain.to_vec();
        let sealed = key(secret, client, idem_key).and_then(|k| {
            k.seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(client, idem_key)),
                &mut body,
            )
            .ok()
        });
        // HKDF and sealing fail only on impossible lengths; an empty record then fails to open.
        if sealed.is_none() {
            return Vec::new();
        }
        out.extend_from_slice(&body);
        out
    }

    /// The header a sealed response is stored under, alone: a name no HTTP header can have,
    /// so a response stored in plaintext (before sealing, or a marker) is never taken for one.
    pub const SEALED: &str = ":sealed";
    const RESPONSE_SALT: &[u8] = b"warden store seal v1";
    const RESPONSE_INFO: &[u8] = b"idempotency responses";
    const RESPONSE_FORMAT: u8 = 1;
    const TAG_LEN: usize = 16;

    /// Seals the upstream responses kept for idempotency keys: their headers (`Set-Cookie`
    /// included) and body, ChaCha20-Poly1305 under a key derived (HKDF-SHA256) from the store's
    /// seal key, bound to the record's namespace, key and status. The status stays in the
    /// clear (a marker's 0 must be read without the key), and so do markers' reasons.
    ///
    /// Nonces never repeat under one key: each process counts its own from a random 64-bit
    /// start (the counter's high half is folded into it), so two processes' nonces meet only if
    /// their starts do (2^-64 a pair), where random 96-bit nonces would collide once in 2^32
    /// records.
    pub struct ResponseSeal {
        key: LessSafeKey,
        start: u64,
        count: AtomicU64,
    }

    impl ResponseSeal {
        /// The seal for the store's seal key `secret`.
        pub fn new(secret: &[u8]) -> Option<Self> {
            let prk = Salt::new(HKDF_SHA256, RESPONSE_SALT).extract(secret);
            let okm = prk.expand(&[RESPONSE_INFO], &CHACHA20_POLY1305).ok()?;
            Some(Self {
                key: LessSafeKey::new(UnboundKey::from(okm)),
                start: rand::random(),
                count: AtomicU64::new(0),
            })
        }

        fn nonce(&self) -> [u8; NONCE_LEN] {
            let n = self.count.fetch_add(1, Ordering::Relaxed);
            let mut nonce = [0; NONCE_LEN];
            nonce[..8].copy_from_slice(&(self.start ^ (n >> 32)).to_be_bytes());
            nonce[8..].copy_from_slice(&(n as u32).to_be_bytes());
            nonce
        }

        /// The headers of a response to seal, in the form [`ResponseSeal::seal`] takes.
        pub fn head(headers: &HeaderMap) -> Vec<u8> {
            let mut out = Vec::with_capacity(64 + 48 * headers.len());
            out.extend_from_slice(&[RESPONSE_FORMAT]);
            out.extend_from_slice(&[0; NONCE_LEN]);
            out.extend_from_slice(&(headers.len() as u32).to_be_bytes());
            for (name, value) in headers {
                for part in [name.as_str().as_bytes(), value.as_bytes()] {
                    out.extend_from_slice(&(part.len() as u32).to_be_bytes());
                    out.extend_from_slice(part);
                }
            }
            out
        }

        /// The record of a response: `head` (from [`ResponseSeal::head`]) and `body`, sealed
        /// in place: `format ‖ nonce ‖ ciphertext ‖ tag`.
        pub fn seal(
            &self,
            namespace: &str,
            idem_key: &str,
            status: u16,
            mut head: Vec<u8>,
            body: &[Bytes],
        ) -> StoredResponse {
            let len: usize = body.iter().map(Bytes::len).sum();
            head.reserve_exact(len + TAG_LEN);
            for chunk in body {
                head.extend_from_slice(chunk);
            }
            let nonce = self.nonce();
            head[1..1 + NONCE_LEN].copy_from_slice(&nonce);
            let sealed = self.key.seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(response_aad(namespace, idem_key, status)),
                &mut head[1 + NONCE_LEN..],
            );
            match sealed {
                Ok(tag) => head.extend_from_slice(tag.as_ref()),
                // Only for a record past ChaCha20's 256 GiB: kept as one that does not open.
                Err(_) => head.truncate(1),
            }
            StoredResponse {
                status,
                headers: vec![(SEALED.to_owned(), Vec::new())],
                body: head,
            }
        }

        /// The stored response as it was recorded, or `None` for another seal key or a
        /// damaged record. A record that is not sealed is returned as it is.
        pub fn open(
            &self,
            namespace: &str,
            idem_key: &str,
            stored: StoredResponse,
        ) -> Option<StoredResponse> {
            if !is_sealed(&stored) {
                return Some(stored);
            }
            let StoredResponse {
                status, mut body, ..
            } = stored;
            if body.len() < 1 + NONCE_LEN + TAG_LEN || body[0] != RESPONSE_FORMAT {
                return None;
            }
            let nonce = Nonce::try_assume_unique_for_key(&body[1..1 + NONCE_LEN]).ok()?;
            let aad = Aad::from(response_aad(namespace, idem_key, status));
            let plain = self
                .key
                .open_in_place(nonce, aad, &mut body[1 + NONCE_LEN..])
                .ok()?;
            let (headers, used) = read_head(plain)?;
            let start = 1 + NONCE_LEN + used;
            let end = body.len() - TAG_LEN;
            body.truncate(end);
            body.drain(..start);
            Some(StoredResponse {
                status,
                headers,
                body,
            })
        }
    }

    /// Whether a stored response is sealed with the store's seal key.
    pub fn is_sealed(stored: &StoredResponse) -> bool {
        matches!(stored.headers.as_slice(), [(name, _)] if name == SEALED)
    }

    fn response_aad(namespace: &str, idem_key: &str, status: u16) -> Vec<u8> {
        [
            b"warden idempotency response\0".as_slice(),
            namespace.as_bytes(),
            b"\0",
            idem_key.as_bytes(),
            b"\0",
            &status.to_be_bytes(),
        ]
        .concat()
    }

    /// Header names and raw values, as [`StoredResponse`] holds them.
    type Headers = Vec<(String, Vec<u8>)>;

    /// The headers at the start of an opened record, and how many bytes they took.
    fn read_head(plain: &[u8]) -> Option<(Headers, usize)> {
        fn take<'a>(rest: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
            let (taken, left) = rest.split_at_checked(n)?;
            *rest = left;
            Some(taken)
        }
        fn len(rest: &mut &[u8]) -> Option<usize> {
            let bytes: [u8; 4] = take(rest, 4)?.try_into().ok()?;
            usize::try_from(u32::from_be_bytes(bytes)).ok()
        }
        let mut rest = plain;
        let count = len(&mut rest)?;
        // Each header takes at least 8 bytes: a count beyond that is damage, not a reason to
        // reserve memory.
        let mut headers = Vec::with_capacity(count.min(rest.len() / 8));
        for _ in 0..count {
            let n = len(&mut rest)?;
            let name = String::from_utf8(take(&mut rest, n)?.to_vec()).ok()?;
            let n = len(&mut rest)?;
            headers.push((name, take(&mut rest, n)?.to_vec()));
        }
        Some((headers, plain.len() - rest.len()))
    }

    /// The plaintext, or `None` for another secret or a damaged record.
    pub fn open(secret: &str, client: &str, idem_key: &str, sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < NONCE_LEN {
            return None;
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut body = body.to_vec();
        let plain = key(secret, client, idem_key)?
            .open_in_place(nonce, Aad::from(aad(client, idem_key)), &mut body)
            .ok()?;
        Some(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn names() -> Vec<HeaderName> {
        vec![
            HeaderName::from_static("idempotency-key"),
            HeaderName::from_static("x-idempotency-key"),
        ]
    }

    fn headers(pairs: &[(&str, &[u8])]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_bytes(v).unwrap(),
            );
        }
        h
    }

    fn code(r: Result<Option<String>, Problem>) -> &'static str {
        r.unwrap_err().code()
    }

    #[test]
    fn sf_strings_and_plain_values_are_keys() {
        let k = key_from(
            &headers(&[("idempotency-key", b"\"8e03978e-40d5-43e8\"")]),
            &names(),
        );
        assert_eq!(k.unwrap().as_deref(), Some("8e03978e-40d5-43e8"));
        let k = key_from(
            &headers(&[("x-idempotency-key", b"8e03978e-40d5")]),
            &names(),
        );
        assert_eq!(k.unwrap().as_deref(), Some("8e03978e-40d5"));
        let k = key_from(
            &headers(&[
                ("idempotency-key", b"\"a\\\"b\""),
                ("x-idempotency-key", b"a\"b"),
            ]),
            &names(),
        );
        assert_eq!(k.unwrap().as_deref(), Some("a\"b"), "both names may agree");
        assert_eq!(key_from(&HeaderMap::new(), &names()).unwrap(), None);
    }

    #[test]
    fn bad_keys_are_refused_before_any_lookup() {
        let long = vec![b'a'; 256];
        for bad in [
            &b"\"\""[..],
            b"\"unterminated",
            b"\"has space\"",
            b"\"x\" trailing",
            b"has space",
            b"caf\xc3\xa9",
            &long,
        ] {
            let h = headers(&[("idempotency-key", bad)]);
            assert_eq!(
                code(key_from(&h, &names())),
                "idempotency_key_invalid",
                "{bad:?}"
            );
        }
        assert!(parse_key(&[b'a'; 255]).is_ok());
        let two = headers(&[("idempotency-key", b"\"a\""), ("idempotency-key", b"\"a\"")]);
        assert_eq!(code(key_from(&two, &names())), "idempotency_key_invalid");
        let differ = headers(&[("idempotency-key", b"\"a\""), ("x-idempotency-key", b"b")]);
        assert_eq!(code(key_from(&differ, &names())), "idempotency_key_invalid");
    }

    #[test]
    fn auto_requires_keys_on_signed_posts_only() {
        let post = [Method::POST];
        use IdempotencyMode::*;
        assert_eq!(Auto.need(&Method::POST, true, &post), Need::Required);
        assert_eq!(Auto.need(&Method::POST, false, &post), Need::Optional);
        assert_eq!(Auto.need(&Method::PATCH, true, &post), Need::Optional);
        assert_eq!(Required.need(&Method::PUT, false, &post), Need::Required);
        assert_eq!(Required.need(&Method::GET, true, &post), Need::Off);
        assert_eq!(Optional.need(&Method::DELETE, true, &post), Need::Optional);
        assert_eq!(Off.need(&Method::POST, true, &post), Need::Off);
    }

    #[test]
    fn the_fingerprint_binds_method_target_and_body() {
        let uri: Uri = "/v1/orders?x=1".parse().unwrap();
        let base = fingerprint(&Method::POST, &uri, BodyDigest::Bytes(b"{}"));
        assert_eq!(
            base,
            fingerprint(&Method::POST, &uri, BodyDigest::Bytes(b"{}"))
        );
        let other_query: Uri = "/v1/orders?x=2".parse().unwrap();
        let no_query: Uri = "/v1/orders".parse().unwrap();
        for other in [
            fingerprint(&Method::PUT, &uri, BodyDigest::Bytes(b"{}")),
            fingerprint(&Method::POST, &other_query, BodyDigest::Bytes(b"{}")),
            fingerprint(&Method::POST, &no_query, BodyDigest::Bytes(b"{}")),
            fingerprint(&Method::POST, &uri, BodyDigest::Bytes(b"{ }")),
            fingerprint(
                &Method::POST,
                &uri,
                BodyDigest::Verified(&HeaderValue::from_static("sha-256=:e30=:")),
            ),
        ] {
            assert_ne!(base, other);
        }
    }

    #[test]
    fn access_tokens_share_their_clients_namespace_and_other_credentials_have_their_own() {
        let of = |kind: TokenKind, token_id: &str| Identity {
            token_id: token_id.into(),
            kind,
            client_id: "acme".into(),
            account: "acme".into(),
            user: None,
            audience: None,
            scopes: vec![],
            trusted_ips: vec![],
            client_trusted_ips: vec![],
            expires_at: None,
            client_id_header: HeaderValue::from_static("acme"),
            token_id_header: HeaderValue::from_static("t"),
            scopes_header: HeaderValue::from_static(""),
            audience_header: None,
            remote: None,
        };
        assert_eq!(namespace(&of(TokenKind::Access, "at_1")), "acme");
        assert_eq!(namespace(&of(TokenKind::Access, "at_2")), "acme");
        assert_eq!(namespace(&of(TokenKind::ApiKey, "ak_1")), "acme/ak_1");
        assert_eq!(namespace(&of(TokenKind::Managed, "mt_1")), "acme/mt_1");
        assert_ne!(
            namespace(&of(TokenKind::Managed, "mt_1")),
            namespace(&of(TokenKind::Managed, "mt_2"))
        );
    }

    #[test]
    fn sealed_entities_open_only_with_the_same_secret_client_and_key() {
        let sealed = seal::seal("s3cret", "c1", "k1", b"{\"accessToken\":\"wdn_at_x\"}");
        assert!(!sealed.windows(8).any(|w| w == b"wdn_at_x"));
        assert_eq!(
            seal::open("s3cret", "c1", "k1", &sealed).as_deref(),
            Some(&b"{\"accessToken\":\"wdn_at_x\"}"[..])
        );
        assert_eq!(seal::open("other", "c1", "k1", &sealed), None);
        assert_eq!(seal::open("s3cret", "c2", "k1", &sealed), None);
        assert_eq!(seal::open("s3cret", "c1", "k2", &sealed), None);
        assert_eq!(seal::open("s3cret", "c1", "k1", &sealed[..5]), None);
    }

    #[test]
    fn stored_responses_are_sealed_and_open_only_under_their_record() {
        let seal = ResponseSeal::new(&[7; 32]).unwrap();
        let mut h = HeaderMap::new();
        h.insert("content-type", HeaderValue::from_static("application/json"));
        h.append(
            "set-cookie",
            HeaderValue::from_static("session=s3cr3t-cookie"),
        );
        h.append("set-cookie", HeaderValue::from_static("b=2"));
        let body = [
            Bytes::from_static(b"{\"iban\":\"DE89"),
            Bytes::from_static(b"370400440532013000\"}"),
        ];
        let sealed = seal.seal("acme/ak_1", "k1", 201, ResponseSeal::head(&h), &body);
        assert_eq!(sealed.status, 201);
        assert!(seal::is_sealed(&sealed));
        for secret in [&b"s3cr3t-cookie"[..], b"DE89", b"set-cookie"] {
            assert!(!sealed.body.windows(secret.len()).any(|w| w == secret));
        }
        let opened = seal.open("acme/ak_1", "k1", sealed.clone()).unwrap();
        assert_eq!(opened.status, 201);
        assert_eq!(
            opened.headers,
            [
                ("content-type".to_owned(), b"application/json".to_vec()),
                ("set-cookie".to_owned(), b"session=s3cr3t-cookie".to_vec()),
                ("set-cookie".to_owned(), b"b=2".to_vec()),
            ]
        );
        assert_eq!(opened.body, b"{\"iban\":\"DE89370400440532013000\"}");
        // Bound to its namespace, key and status; another seal key opens nothing.
        assert!(seal.open("acme/ak_2", "k1", sealed.clone()).is_none());
        assert!(seal.open("acme/ak_1", "k2", sealed.clone()).is_none());
        let mut other_status = sealed.clone();
        other_status.status = 200;
        assert!(seal.open("acme/ak_1", "k1", other_status).is_none());
        let other_key = ResponseSeal::new(&[8; 32]).unwrap();
        assert!(other_key.open("acme/ak_1", "k1", sealed.clone()).is_none());
        for cut in [0, 1, 13, 29, sealed.body.len() - 1] {
            let mut damaged = sealed.clone();
            damaged.body.truncate(cut);
            assert!(seal.open("acme/ak_1", "k1", damaged).is_none(), "{cut}");
        }
        // Two records never share a nonce.
        let again = seal.seal("acme/ak_1", "k1", 201, ResponseSeal::head(&h), &body);
        assert_ne!(again.body[..13], sealed.body[..13]);
        // A record stored before sealing (or a marker) is returned as it is.
        let plain = StoredResponse {
            status: 201,
            headers: vec![("x-call".into(), b"1".to_vec())],
            body: b"{}".to_vec(),
        };
        assert_eq!(seal.open("acme", "k1", plain.clone()), Some(plain));
        let empty = seal.seal(
            "acme",
            "k1",
            204,
            ResponseSeal::head(&HeaderMap::new()),
            &[],
        );
        let opened = seal.open("acme", "k1", empty).unwrap();
        assert!(opened.headers.is_empty() && opened.body.is_empty());
    }

    #[test]
    fn a_replay_carries_the_stored_status_headers_and_body_and_says_so() {
        let resp = replay(StoredResponse {
            status: 201,
            headers: vec![
                ("content-type".into(), b"application/json".to_vec()),
                ("set-cookie".into(), b"a=1".to_vec()),
                ("set-cookie".into(), b"b=2".to_vec()),
            ],
            body: b"{}".to_vec(),
        });
        assert_eq!(resp.status(), 201);
        assert_eq!(resp.headers().get_all("set-cookie").iter().count(), 2);
        assert_eq!(resp.headers()["idempotent-replayed"], "true");
    }

    #[test]
    fn retry_me_responses_free_the_key() {
        assert!(asks_for_retry(StatusCode::SERVICE_UNAVAILABLE, false));
        assert!(!asks_for_retry(StatusCode::SERVICE_UNAVAILABLE, true));
        assert!(asks_for_retry(StatusCode::TOO_MANY_REQUESTS, true));
        assert!(!asks_for_retry(StatusCode::CONFLICT, false));
        assert!(!asks_for_retry(StatusCode::CREATED, false));
    }

    #[tokio::test]
    async fn keyed_bodies_share_one_budget_of_bytes_given_back_when_sent_or_dropped() {
        let budget = Arc::new(Budget {
            held: AtomicUsize::new(0),
            max: 100,
        });
        let hold = || Hold {
            budget: budget.clone(),
            bytes: 0,
        };
        let mut a = hold();
        a.grow_to(60).unwrap();
        let mut b = hold();
        // A chunked body grows as it arrives, until it no longer fits.
        b.grow_to(30).unwrap();
        b.grow_to(40).unwrap();
        assert_eq!(b.grow_to(41).unwrap_err().code(), "server_busy");
        assert_eq!(budget.held.load(Ordering::Acquire), 100);
        drop(a);
        b.grow_to(90).unwrap();
        // Handed on whole, the body gives its share back.
        let body = Buffered::body(Bytes::from_static(b"payload"), b);
        assert_eq!(budget.held.load(Ordering::Acquire), 90);
        assert_eq!(body.collect().await.unwrap().to_bytes(), "payload");
        assert_eq!(budget.held.load(Ordering::Acquire), 0);
    }

    proptest! {
        #[test]
        fn opening_any_record_never_panics(body in proptest::collection::vec(any::<u8>(), 0..200)) {
            let seal = ResponseSeal::new(&[7; 32]).unwrap();
            let stored = StoredResponse {
                status: 200,
                headers: vec![(seal::SEALED.to_owned(), Vec::new())],
                body,
            };
            prop_assert!(seal.open("c", "k", stored).is_none());
        }

        #[test]
        fn key_parsing_never_panics(value in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(key) = parse_key(&value) {
                prop_assert!(!key.is_empty() && key.len() <= MAX_KEY_LEN);
                prop_assert!(key.bytes().all(|b| b.is_ascii_graphic()));
            }
        }
    }
}
