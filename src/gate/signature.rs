//! The RFC 9421 signature check of a request: whether it must be signed (route, client and
//! global policy), which components the signature must cover, which key verifies it (a key of
//! the client its credential and `X-Client-Id` name), and whether it is fresh and not replayed.
//! Parsing, the signature base and Ed25519 are [`crate::httpsig`]'s; the body is
//! [`super::digest`]'s, once this check has said whether a digest is covered.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, Uri};

use crate::gate::client_ip::Origin;
use crate::gate::nonce::NonceCache;
use crate::httpsig::batch::BatchVerifier;
use crate::httpsig::{self, Message, ParsedSignature, RequestView, SigError, VerificationKey};
use crate::policy::{PublicUrl, SignatureMode};
use crate::problem::{Problem, SignatureProblem, SignatureRefusal};
use crate::store::Store;
use crate::store::feed::Follower;

mod external;
mod keys;
mod replay;
mod settings;
pub use external::External;
pub use keys::{ClientKeys, HmacSecrets};
use keys::{KeyCache, RegisteredKey};
pub use settings::{NonceMode, NonceStoreMode, SignatureContext, SignatureSettings};

/// The header a client may send to say who it is; it must name the credential's client.
pub const X_CLIENT_ID: HeaderName = HeaderName::from_static("x-client-id");
const SIGNATURE_INPUT: HeaderName = HeaderName::from_static("signature-input");
const SIGNATURE: HeaderName = HeaderName::from_static("signature");
const CONTENT_DIGEST: HeaderName = HeaderName::from_static("content-digest");
/// The label Warden asks for in `Accept-Signature` (labels are not signed; any label works).
const LABEL: &str = "sig1";

/// What the check reads of a request.
#[derive(Debug, Clone, Copy)]
pub struct RequestParts<'a> {
    pub method: &'a Method,
    pub uri: &'a Uri,
    pub headers: &'a HeaderMap,
    /// Whether a body follows (one is announced and not known to be empty).
    pub has_body: bool,
    pub origin: &'a Origin,
}

/// Where the request is checked, and what that place asks for.
#[derive(Debug, Clone, Copy)]
pub struct Endpoint<'a> {
    /// The route's (or `/v1/auth`'s) mode, before the client's own is applied.
    pub mode: SignatureMode,
    /// Components required here on top of the global ones.
    pub cover: &'a [String],
    /// The route's `public_url`; `None` falls back to `signatures.public_url`.
    pub public_url: Option<&'a PublicUrl>,
}

/// What the check concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No signature was required and none was sent (or the mode is `off`).
    Unchecked,
    /// A signature by a key of the client verified.
    Verified {
        /// Whether it covers `content-digest`, which then must match the body.
        digest_covered: bool,
        /// Its label, which a signed response binds (`"signature";req;key=…`).
        label: String,
    },
}

impl Verdict {
    /// Whether the body's digest is covered by a verified signature.
    pub fn digest_covered(&self) -> bool {
        matches!(
            self,
            Verdict::Verified {
                digest_covered: true,
                ..
            }
        )
    }

    /// The label of the signature that verified.
    pub fn label(&self) -> Option<&str> {
        match self {
            Verdict::Verified { label, .. } => Some(label),
            Verdict::Unchecked => None,
        }
    }
}

/// The signature check and its state: the parsed keys of recently seen clients and the nonces
/// seen within the signature window.
pub struct SignatureGate {
    cfg: SignatureSettings,
    /// `clients[].signature` of config-declared clients; others are `auto`.
    client_modes: HashMap<String, SignatureMode>,
    keys: Arc<KeyCache>,
    nonces: Option<NonceCache>,
    /// The store, once [`Self::with_store`] gave it: nonces are claimed in it too when
    /// `claims_in_store`, and its lapsed claims are swept ([`Self::sweep_nonces`]).
    store: Option<Arc<dyn Store>>,
    /// `signatures.nonce_store` (`auto`: the store is PostgreSQL), with nonces on.
    claims_in_store: bool,
    /// Whether a claim committed to the store survives whatever a restart follows (a crash, a
    /// power loss): PostgreSQL, or SQLite with `store.durability = "full"` (with `normal` a
    /// power loss may lose the last commits). Only then does the store replace the restart fence.
    store_durable: bool,
    /// Unix second from which this process has remembered nonces ([`Self::fence_nonces`]):
    /// a signature created earlier may have used its nonce before, where this process cannot
    /// see it (a restart forgets the nonces in memory), so one that carries a nonce is refused.
    /// `i64::MIN` (no fence) until set.
    nonces_since: AtomicI64,
    /// The second of the last warning about refused nonces (one a second at most).
    nonce_warned: AtomicI64,
    challenge: HeaderValue,
    /// Verifies the signatures of concurrent requests together.
    batch: BatchVerifier,
}

impl SignatureGate {
    /// Builds the gate; `challenge` is the `WWW-Authenticate` value of its 401s.
    pub fn new(cfg: &SignatureSettings, context: SignatureContext, challenge: HeaderValue) -> Self {
        let cfg = cfg.clone();
        let nonces = (cfg.nonce != NonceMode::Off)
            .then(|| NonceCache::new(cfg.nonce_cache_capacity, cfg.nonce_cache_per_client));
        let postgres = context.postgres;
        let claims_in_store = nonces.is_some()
            && match cfg.nonce_store {
                NonceStoreMode::Auto => postgres,
                NonceStoreMode::Memory => false,
                NonceStoreMode::Store => true,
            };
        Self {
            client_modes: context.client_modes,
            keys: Arc::new(KeyCache::new(
                cfg.key_cache_capacity,
                context.key_ttl,
                context.hmac_secrets,
            )),
            nonces,
            store: None,
            claims_in_store,
            store_durable: postgres || context.durability_full,
            nonces_since: AtomicI64::new(i64::MIN),
            nonce_warned: AtomicI64::new(i64::MIN),
            challenge,
            batch: BatchVerifier::new(cfg.verify_batch_max),
            cfg,
        }
    }

    /// `signatures.*`.
    pub fn settings(&self) -> &SignatureSettings {
        &self.cfg
    }

    /// The HMAC secrets of config clients (for [`ClientKeys::from_record`]).
    pub fn hmac_secrets(&self) -> &HmacSecrets {
        &self.keys.secrets
    }

    /// The key cache's hit and miss counters (for the metrics).
    pub fn key_cache_lookups(&self) -> &crate::cache::Lookups {
        &self.keys.lookups
    }

    /// A client's own signature mode.
    pub fn client_mode(&self, client_id: &str) -> SignatureMode {
        self.client_modes
            .get(client_id)
            .copied()
            .unwrap_or_default()
    }

    /// The store nonces are claimed in when `signatures.nonce_store` says so, and whose lapsed
    /// claims [`Self::sweep_nonces`] deletes. Without it nonces live in memory only.
    pub fn with_store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// Subscribes the key cache to the process's change feed (call once), so a client changed
    /// by any writer is re-read once the feed is next caught up, which every key lookup does.
    pub fn follow(&self, feed: &Arc<Follower>) {
        feed.subscribe(self.keys.clone());
        let _ = self.keys.feed.set(feed.clone());
    }

    /// The parsed keys of `client_id`: memory first, the store on a miss.
    pub async fn client_keys(
        &self,
        store: &dyn Store,
        client_id: &str,
    ) -> Result<Arc<ClientKeys>, Problem> {
        self.keys
            .get(store, client_id, self.client_mode(client_id))
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "store failed while loading signing keys");
                Problem::StoreUnavailable
            })
    }

    /// Refuses a request whose `X-Client-Id` names another client than its credential.
    pub fn check_client_id(&self, headers: &HeaderMap, client_id: &str) -> Result<(), Problem> {
        let mut values = headers.get_all(X_CLIENT_ID).iter();
        let Some(first) = values.next() else {
            return Ok(());
        };
        if first.as_bytes() == client_id.as_bytes() && values.next().is_none() {
            return Ok(());
        }
        Err(self.refuse(
            SignatureRefusal::ClientIdMismatch,
            "X-Client-Id must name the client the credential was issued to (send it once, or not at all)".into(),
            None,
        ))
    }

    /// The signature check of a request by `client_id`, whose keys are `keys`, at `now` (unix
    /// seconds). `reveal_key_id`: the caller has proved a credential, so `Accept-Signature` may
    /// name the key it should use.
    pub async fn check(
        &self,
        req: &RequestParts<'_>,
        at: &Endpoint<'_>,
        client_id: &str,
        keys: &ClientKeys,
        now: i64,
        reveal_key_id: bool,
    ) -> Result<Verdict, Problem> {
        let mode = at.mode.effective(keys.mode, !keys.is_empty());
        if mode == SignatureMode::Off {
            return Ok(Verdict::Unchecked);
        }
        let accept = || self.accept_signature(req, at, keys, reveal_key_id);
        if !req.headers.contains_key(SIGNATURE_INPUT) && !req.headers.contains_key(SIGNATURE) {
            return match mode {
                SignatureMode::Required => Err(self.refuse(
                    SignatureRefusal::Missing,
                    "this request must carry an RFC 9421 signature (Signature-Input and Signature) \
                     made with the client's registered key; Accept-Signature names what to cover"
                        .into(),
                    accept(),
                )),
                _ => Ok(Verdict::Unchecked),
            };
        }
        if req.has_body && !req.headers.contains_key(CONTENT_DIGEST) {
            return Err(super::digest::missing());
        }
        let signatures =
            httpsig::parse_signatures(req.headers).map_err(|e| self.sig_error(e, accept()))?;
        // Labels are not signed: select by keyid, among the client's own keys only.
        let mut first_refusal = None;
        for sig in &signatures {
            let Some(key) = sig.params().keyid().and_then(|id| keys.find(id)) else {
                continue;
            };
            match self.verify_one(req, at, client_id, sig, key, now).await {
                Ok(verdict) => return Ok(verdict),
                Err(Failure::Refused(refusal, detail)) => {
                    first_refusal.get_or_insert((refusal, detail));
                }
                Err(Failure::Unavailable(problem)) => return Err(problem),
            }
        }
        let (refusal, detail) = first_refusal.unwrap_or_else(|| {
            (
                SignatureRefusal::UnknownKey,
                "no signature names (keyid) a key registered to this client".into(),
            )
        });
        Err(self.refuse(refusal, detail, accept()))
    }

    async fn verify_one(
        &self,
        req: &RequestParts<'_>,
        at: &Endpoint<'_>,
        client_id: &str,
        sig: &ParsedSignature,
        key: &RegisteredKey,
        now: i64,
    ) -> Result<Verdict, Failure> {
        let params = sig.params();
        httpsig::check_times(
            params,
            now,
            self.cfg.max_age.as_secs(),
            self.cfg.clock_skew.as_secs(),
            true,
        )
        .map_err(|e| time_refusal(&e, self.cfg.max_age))?;
        if let Some(missing) = self.uncovered(sig, req, at) {
            return Err(Failure::Refused(
                SignatureRefusal::ComponentNotCovered,
                format!("the signature must also cover: {missing}"),
            ));
        }
        // The algorithm is the key's; alg may only agree with it (RFC 9421 §3.2 step 6).
        if let Some(alg) = params.alg()
            && alg != key.key.alg().name()
        {
            return Err(Failure::Refused(
                SignatureRefusal::AlgorithmMismatch,
                format!(
                    "alg \"{}\" does not match the key's algorithm ({})",
                    printable(alg),
                    key.key.alg()
                ),
            ));
        }
        let nonce = match (self.cfg.nonce, params.nonce()) {
            (NonceMode::Off, _) => None,
            (NonceMode::Required, None) => {
                return Err(Failure::Refused(
                    SignatureRefusal::NonceMissing,
                    "the signature must carry a nonce parameter, new for every request".into(),
                ));
            }
            (_, nonce) => nonce,
        };
        let external = External::of(req, at.public_url.or(self.cfg.public_url.as_ref()));
        let view = RequestView::new(
            req.method.as_str(),
            external.scheme,
            external.authority,
            &external.path,
            req.uri.query(),
            req.headers,
        );
        let log = |e: &SigError| {
            tracing::debug!(
                client_id,
                key_id = %key.id,
                scheme = external.scheme,
                authority = external.authority,
                error = %e,
                "signature did not verify"
            );
        };
        match &key.key {
            VerificationKey::Ed25519(strong) => {
                let prepared = httpsig::prepare(&view, sig, strong).map_err(|e| {
                    log(&e);
                    verify_refusal(e)
                })?;
                // The curve arithmetic, batched with concurrent requests' (httpsig::batch).
                if !self
                    .batch
                    .verify(prepared.base, prepared.signature, *strong.key())
                    .await
                {
                    let e = SigError::InvalidSignature;
                    log(&e);
                    return Err(verify_refusal(e).into());
                }
            }
            // ECDSA, RSA and HMAC through ring, one at a time.
            other => httpsig::verify_message(&Message::Request(view), sig, other).map_err(|e| {
                log(&e);
                verify_refusal(e)
            })?,
        }
        // A nonce used before this process started is one it cannot have remembered.
        if nonce.is_some()
            && self.nonces.is_some()
            && params
                .created()
                .is_some_and(|created| created < self.nonces_since.load(Ordering::Relaxed))
        {
            return Err(Failure::Refused(
                SignatureRefusal::Replayed,
                "this signature was created before Warden last started, so its nonce may have been used already; sign the request again".into(),
            ));
        }
        // Only a verified signature may burn its nonce, else anyone could void others' nonces.
        if let Some(nonce) = nonce {
            self.remember(
                client_id,
                &key.id,
                nonce,
                now,
                self.last_second(params, now),
            )
            .await?;
        }
        Ok(Verdict::Verified {
            digest_covered: sig.covers("content-digest"),
            label: sig.label().to_owned(),
        })
    }

    /// The required components `sig` leaves out, as a list for a person; `None` when it covers
    /// them all. Allocates only when something is missing.
    fn uncovered(
        &self,
        sig: &ParsedSignature,
        req: &RequestParts<'_>,
        at: &Endpoint<'_>,
    ) -> Option<String> {
        let mut missing: Vec<&str> = Vec::new();
        if !sig.covers("@method") {
            missing.push("@method");
        }
        if !covers_target(sig, req.uri.query().is_some()) {
            missing.push(if req.uri.query().is_some() {
                "@target-uri (or @authority, @path and @query)"
            } else {
                "@target-uri (or @authority and @path)"
            });
        }
        if req.has_body && !sig.covers("content-digest") {
            missing.push("content-digest");
        }
        for name in &self.cfg.cover_if_present {
            if req.headers.contains_key(name) && !sig.covers(name.as_str()) {
                missing.push(name.as_str());
            }
        }
        for name in self.cfg.cover_always.iter().chain(at.cover) {
            if !sig.covers(name) && !missing.contains(&name.as_str()) {
                missing.push(name);
            }
        }
        (!missing.is_empty()).then(|| missing.join(", "))
    }

    /// `Accept-Signature` (RFC 9421 §5.1) naming what this request's signature must cover.
    fn accept_signature(
        &self,
        req: &RequestParts<'_>,
        at: &Endpoint<'_>,
        keys: &ClientKeys,
        reveal_key_id: bool,
    ) -> Option<HeaderValue> {
        let mut names: Vec<&str> = vec!["@method", "@target-uri"];
        if req.has_body {
            names.push("content-digest");
        }
        for name in &self.cfg.cover_if_present {
            if req.headers.contains_key(name) {
                names.push(name.as_str());
            }
        }
        for name in self.cfg.cover_always.iter().chain(at.cover) {
            names.push(name);
        }
        let mut value = format!("{LABEL}=(");
        let mut written: Vec<&str> = Vec::with_capacity(names.len());
        for name in names {
            if written.contains(&name) {
                continue;
            }
            if !written.is_empty() {
                value.push(' ');
            }
            value.push('"');
            value.push_str(name);
            value.push('"');
            written.push(name);
        }
        value.push_str(");created");
        // A keyid is shown only to a caller that proved a credential of this client (§8.3).
        if reveal_key_id
            && let Some(key) = keys.keys.first()
            && key
                .id
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
        {
            value.push_str(";keyid=\"");
            value.push_str(&key.id);
            value.push('"');
        }
        HeaderValue::from_str(&value).ok()
    }

    fn sig_error(&self, e: SigError, accept: Option<HeaderValue>) -> Problem {
        let refusal = match &e {
            SigError::Missing => SignatureRefusal::Missing,
            e if e.is_malformed() => SignatureRefusal::Malformed,
            _ => SignatureRefusal::Invalid,
        };
        self.refuse(refusal, e.to_string(), accept)
    }

    fn refuse(
        &self,
        refusal: SignatureRefusal,
        detail: String,
        accept: Option<HeaderValue>,
    ) -> Problem {
        Problem::Signature(SignatureProblem {
            refusal,
            detail,
            accept,
            challenge: (refusal != SignatureRefusal::Malformed).then(|| self.challenge.clone()),
        })
    }
}

/// Whether `sig` pins the target: `@target-uri`, or `@authority` with `@request-target` or
/// `@path` (and `@query` when the request has one: `@path` alone leaves the query unsigned).
fn covers_target(sig: &ParsedSignature, has_query: bool) -> bool {
    sig.covers("@target-uri")
        || (sig.covers("@authority")
            && (sig.covers("@request-target")
                || (sig.covers("@path") && (!has_query || sig.covers("@query")))))
}

/// Why one signature was not accepted.
enum Failure {
    /// Refused; another signature of the request may still verify.
    Refused(SignatureRefusal, String),
    /// Verified, but its nonce could not be remembered: the request gets this answer.
    Unavailable(Problem),
}

impl From<(SignatureRefusal, String)> for Failure {
    fn from((refusal, detail): (SignatureRefusal, String)) -> Self {
        Failure::Refused(refusal, detail)
    }
}

/// What a client is told when its signature does not verify.
fn verify_refusal(e: SigError) -> (SignatureRefusal, String) {
    match e {
        SigError::InvalidSignature => (
            SignatureRefusal::Invalid,
            "the signature does not verify: sign exactly the method, URL and fields sent, \
             with the key keyid names"
                .to_owned(),
        ),
        SigError::AlgorithmNotAllowed { .. } => (
            SignatureRefusal::AlgorithmMismatch,
            "alg does not match the algorithm of the key keyid names".to_owned(),
        ),
        other => (SignatureRefusal::Invalid, other.to_string()),
    }
}

fn time_refusal(e: &SigError, max_age: Duration) -> (SignatureRefusal, String) {
    match e {
        SigError::Expired { .. } => (
            SignatureRefusal::Expired,
            "the signature's expires time has passed; sign the request again".into(),
        ),
        SigError::TooOld { .. } => (
            SignatureRefusal::Expired,
            format!(
                "the signature was created more than {} ago; sign the request again",
                humantime::format_duration(max_age)
            ),
        ),
        SigError::CreatedInFuture { .. } => (
            SignatureRefusal::NotYetValid,
            "the signature's created time is in the future; check the signer's clock".into(),
        ),
        SigError::MissingCreated => (
            SignatureRefusal::Invalid,
            "the signature must carry a created parameter (unix seconds)".into(),
        ),
        other => (SignatureRefusal::Invalid, other.to_string()),
    }
}

/// A client-chosen string, safe to echo in a detail.
fn printable(s: &str) -> Cow<'_, str> {
    if s.len() <= 32 && s.bytes().all(|b| b.is_ascii_graphic()) {
        Cow::Borrowed(s)
    } else {
        Cow::Borrowed("(unprintable)")
    }
}

#[cfg(test)]
mod tests;
