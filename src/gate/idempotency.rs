//! Idempotency keys (`Idempotency-Key`, draft-ietf-httpapi-idempotency-key-header-06, and
//! Pipevest's `X-Idempotency-Key`): which requests need one, the key's validation, the request
//! fingerprint, and the run of a keyed request: reserve → forward → record, or replay, 409, 422.
//! Records live in the store (atomic reservation, leases, expiry); what is kept and for how long
//! is decided here; refusals become responses in [`crate::problem`].
//!
//! - this file: which requests need a key ([`Idempotency::need`], by the route's
//!   [`crate::policy::IdempotencyMode`]) and the run of a keyed
//!   request ([`Idempotency`], [`Run`], [`TokenRun`]);
//! - `key`: the key read and validated, the fingerprint, the namespace of a credential;
//! - `record`: bodies read whole within a budget, responses recorded as they stream, replays;
//! - `seal`: what is kept, sealed at rest.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, Method, Request, Response, StatusCode};
use http_body::Body as _;
use http_body_util::BodyExt;
use tokio::time::Instant;

use crate::body::{Body, full};
use crate::cache::Identity;
use crate::clock::Clock;
use crate::coarse_timer::CoarseTimer;
use crate::policy::{IdempotencyMode, Need, Policy, SignatureMode};
use crate::problem::Problem;
use crate::store::{Hash, IdempotencyState, Reservation, Store, StoreError, StoredResponse};

mod key;
mod record;
mod seal;

pub use key::{BodyDigest, MAX_KEY_LEN, fingerprint, key_from, namespace, parse_key};
use record::{
    Budget, Buffered, Hold, Recorder, STREAMED, TOO_LARGE, TeeBody, UPGRADED, discard, gather,
    is_event_stream, not_replayable, read_whole, replay, stored_headers,
};

/// Set to `true` on a replayed response.
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// How many sweep batches one housekeeping tick runs at most; the rest waits for the next tick.
const MAX_SWEEP_BATCHES: u32 = 100;

/// `[idempotency]`, validated by `config/idempotency.rs`.
#[derive(Debug, Clone)]
pub struct IdempotencySettings {
    /// `idempotency.headers`, default `idempotency-key`, `x-idempotency-key`: the fields a key
    /// is read from (all present must agree); the first is named in `idempotency_key_missing`.
    pub headers: Vec<http::HeaderName>,
    /// `idempotency.require_methods`, default `["POST"]`: methods that must carry a key on
    /// `idempotency = "auto"` routes when the request is signed.
    pub require_methods: Vec<Method>,
    /// `idempotency.auth_endpoint`, default `auto`: keys on `POST /v1/auth`.
    pub auth_endpoint: IdempotencyMode,
    /// `idempotency.ttl`, default 24h: how long a proxied request's record answers retries.
    pub ttl: Duration,
    /// `idempotency.token_ttl`, default 10m: the same for `/v1/auth` (its record holds a token,
    /// sealed with a key derived from the client's secret).
    pub token_ttl: Duration,
    /// `idempotency.lease_margin`, default 30s: a reservation lasts `upstream.timeout` plus
    /// this before a crashed holder's key is taken over; a response still streaming half this
    /// margin after `upstream.timeout` is not recorded.
    pub lease_margin: Duration,
    /// `idempotency.max_request_bytes`, default 1 MiB: a keyed body without a checked
    /// `Content-Digest` is read whole to fingerprint it; larger ones get 413.
    pub max_request_bytes: usize,
    /// `idempotency.max_response_bytes`, default 1 MiB: larger responses stream on but are not
    /// kept; retries get 422 `idempotency_response_not_replayable`.
    pub max_response_bytes: usize,
    /// `idempotency.store_server_errors`, default false: 5xx responses free the key (retries
    /// run again) instead of being replayed.
    pub store_server_errors: bool,
    /// `idempotency.sweep_batch`, default 1000: the oldest records looked at (the expired
    /// ones among them deleted) per store transaction.
    pub sweep_batch: u32,
    /// `idempotency.request_read_timeout`, default 30s: a keyed body read whole for its
    /// fingerprint must have arrived within this time (408 `body_timeout`).
    pub request_read_timeout: Duration,
    /// `idempotency.buffer_budget_bytes`, default 64 MiB: the most bytes of keyed bodies held
    /// in memory for their fingerprint at once, all requests together; past it, 503
    /// `server_busy` with `Retry-After`.
    pub buffer_budget_bytes: usize,
}

/// Whether a request carries an RFC 9421 signature. By the time idempotency runs, the
/// signature check has verified any signature a route looks at.
pub fn is_signed(headers: &HeaderMap) -> bool {
    headers.contains_key("signature-input")
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

fn secs_up(d: Duration) -> i64 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    i64::try_from(secs).unwrap_or(i64::MAX / 4)
}

#[cfg(test)]
mod tests;
