//! Access tokens of other issuers (`[[issuers]]`): JWTs verified against the issuer's keys
//! (RFC 9068), opaque tokens asked about at its introspection endpoint (RFC 7662). Either way
//! the token becomes an [`Identity`] like Warden's own, so routes' scopes and audience apply
//! unchanged. Warden's own credentials (`wdn_…`) never come here: [`caller`] sends them down
//! their usual path first.
//!
//! Which issuer a token goes to: a JWT to the issuer whose `issuer` is its `iss` (read before
//! verification, for routing only; an unknown `iss` is refused, never sent anywhere), verified
//! with that issuer's keys or, if it has none, introspected at its endpoint. An opaque token to
//! the issuer whose `token_prefix` it starts with, else to the one introspection issuer without
//! a prefix, else nowhere (refused). So no token is sent to an endpoint it was not meant for.

pub mod fetch;
pub mod introspect;
pub mod jwk;
pub mod jwt;
pub mod keys;
pub mod settings;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderValue};
use moka::sync::Cache;
use sha2::{Digest, Sha256};

use crate::cache::{Identity, Remote};
use crate::clock::Clock;
use crate::issuer::{BearerError, Issuer};
use crate::problem::Problem;
use crate::store::{Hash, TokenKind};
use introspect::{Answer, Introspector};
use jwk::Selected;
use jwt::{Claims, Compact};
use keys::Jwks;
use settings::{IssuerSettings, KeySource};

/// The prefix of every credential Warden mints itself.
pub const WARDEN_PREFIX: &str = "wdn_";
/// The most audiences of one token kept on its identity.
const MAX_AUDIENCES: usize = 16;

/// Why a token of another issuer is refused. Each says what is wrong without showing the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// Not a well-formed JWT (bad base64url or JSON, a duplicate header member, `crit`, a claim
    /// of the wrong type).
    Malformed,
    /// A JWT whose `iss` is no configured issuer, or that has no `iss`.
    UnknownIssuer,
    /// An opaque token that no introspection issuer takes.
    NoIssuer,
    /// `alg` is not one the issuer allows (`none` and HS* never are).
    AlgorithmNotAllowed,
    /// `typ` is not `at+jwt` (nor `JWT`, where the issuer allows it).
    WrongType,
    /// No key of the issuer has the token's `kid` (after a refetch, when one was allowed).
    UnknownKey,
    /// No `kid`, and several keys of the issuer fit the algorithm.
    AmbiguousKey,
    BadSignature,
    Expired,
    NoExpiry,
    NotYetValid,
    IssuedInFuture,
    /// `iat` older than `max_token_age`, or missing while that is set.
    TooOld,
    /// An introspection answer for another `iss`.
    WrongIssuer,
    WrongAudience,
    /// No client id claim.
    NoClient,
    /// A client id that cannot be used unmapped (characters outside Warden's client ids).
    BadClient,
    /// The introspection endpoint says the token is not active.
    Inactive,
    /// The introspection endpoint describes a refresh token.
    NotAccessToken,
    /// The token's client is mapped to a Warden client that is unknown or disabled.
    ClientDisabled,
}

impl Refusal {
    /// The `detail` and `error_description` of the 401 (no quotes or backslashes).
    pub fn detail(self) -> &'static str {
        match self {
            Refusal::Malformed => "the token is not a well-formed JWT",
            Refusal::UnknownIssuer => "the token's issuer (iss) is not one this service accepts",
            Refusal::NoIssuer => {
                "the token is neither Warden's nor one of an issuer this service accepts"
            }
            Refusal::AlgorithmNotAllowed => {
                "the token's signing algorithm (alg) is not accepted for its issuer"
            }
            Refusal::WrongType => "the token is not a JWT access token (typ at+jwt)",
            Refusal::UnknownKey => "the token's signing key (kid) is unknown to its issuer",
            Refusal::AmbiguousKey => {
                "the token names no signing key (kid) and its issuer has several"
            }
            Refusal::BadSignature => "the token's signature does not verify",
            Refusal::Expired => "the token has expired; obtain a new one",
            Refusal::NoExpiry => "the token has no expiry (exp)",
            Refusal::NotYetValid => "the token is not valid yet (nbf)",
            Refusal::IssuedInFuture => "the token was issued in the future (iat)",
            Refusal::TooOld => "the token is older than its issuer's tokens may be (iat)",
            Refusal::WrongIssuer => "the token was issued by another issuer than expected",
            Refusal::WrongAudience => {
                "the token was issued for another audience (aud) than this service"
            }
            Refusal::NoClient => "the token names no client (client_id)",
            Refusal::BadClient => {
                "the token's client id has characters Warden client ids cannot hold"
            }
            Refusal::Inactive => "the token is not active (revoked, expired or unknown)",
            Refusal::NotAccessToken => "the token is not an access token",
            Refusal::ClientDisabled => "the token's client is unknown or disabled here",
        }
    }
}

/// Why a token of another issuer was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Refused(Refusal),
    /// The issuer had to be asked (keys, introspection) and could not answer, and nothing
    /// cached decides; retry after this many seconds.
    Unavailable {
        retry_after: u64,
    },
}

impl From<Refusal> for Failure {
    fn from(r: Refusal) -> Self {
        Failure::Refused(r)
    }
}

/// A token of another issuer that was accepted.
#[derive(Debug, Clone)]
pub struct Verified {
    pub identity: Arc<Identity>,
    /// A key for this token, distinct from every other issuer's and from Warden's own.
    pub key: Hash,
    /// Whether the issuer maps its client to a Warden client (`clients`): then the identity
    /// still has to be bound to that client as it is now ([`Issuer::as_client`]).
    pub mapped: bool,
}

/// A decision about one token, remembered.
#[derive(Clone)]
enum Decision {
    Valid(Arc<Identity>, bool),
    Refused(Refusal),
}

#[derive(Clone)]
struct Timed {
    decision: Decision,
    ttl: Duration,
}

struct PerEntry;

impl moka::Expiry<Hash, Timed> for PerEntry {
    fn expire_after_create(&self, _key: &Hash, value: &Timed, _now: Instant) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// One configured issuer and its state.
struct RemoteIssuer {
    s: IssuerSettings,
    keys: Option<Keys>,
    introspector: Option<Arc<Introspector>>,
    /// The introspection endpoint as text, for cache keys ("" without one).
    endpoint: String,
    /// Decisions by token key: bounded (`cache_capacity`), never past the token's end.
    decisions: Cache<Hash, Timed>,
}

enum Keys {
    Static(Arc<jwk::KeySet>),
    Fetched(Arc<Jwks>),
}

/// Every configured issuer.
pub struct Idp {
    issuers: Vec<RemoteIssuer>,
    by_iss: HashMap<String, usize>,
    /// The introspection issuer that takes opaque tokens no `token_prefix` claims.
    default_opaque: Option<usize>,
    clock: Clock,
    realm: String,
}

impl Idp {
    /// The issuers of `settings`; `None` when there are none.
    pub fn new(settings: &[IssuerSettings], clock: Clock, realm: &str) -> Option<Self> {
        if settings.is_empty() {
            return None;
        }
        let mut issuers = Vec::with_capacity(settings.len());
        for s in settings {
            let fetcher = Arc::new(fetch::Fetcher::new(s.fetch_timeout, s.max_response_bytes));
            let keys = s.keys.as_ref().map(|k| match k {
                KeySource::Static(set) => Keys::Static(set.clone()),
                KeySource::Fetched(uri) => Keys::Fetched(Arc::new(Jwks::new(
                    &s.name,
                    uri.clone(),
                    fetcher.clone(),
                    clock.clone(),
                    s.jwks_cache_ttl,
                    s.jwks_refetch_min_interval,
                ))),
            });
            let introspector = s
                .introspection
                .as_ref()
                .map(|i| Arc::new(Introspector::new(&s.name, i.clone(), fetcher.clone())));
            issuers.push(RemoteIssuer {
                decisions: Cache::builder()
                    .max_capacity(s.cache_capacity)
                    .expire_after(PerEntry)
                    .build(),
                endpoint: s
                    .introspection
                    .as_ref()
                    .map(|i| i.endpoint.to_string())
                    .unwrap_or_default(),
                s: s.clone(),
                keys,
                introspector,
            });
        }
        Some(Self {
            by_iss: issuers
                .iter()
                .enumerate()
                .map(|(i, r)| (r.s.issuer.clone(), i))
                .collect(),
            default_opaque: issuers
                .iter()
                .position(|r| r.introspector.is_some() && r.s.token_prefix.is_none()),
            issuers,
            clock,
            realm: realm.to_string(),
        })
    }

    /// JWKS fetches begun for issuer `name` (0 for an issuer with static keys or none).
    pub fn jwks_fetches(&self, name: &str) -> u64 {
        self.issuers
            .iter()
            .find(|r| r.s.name == name)
            .and_then(|r| match &r.keys {
                Some(Keys::Fetched(j)) => Some(j.fetches()),
                _ => None,
            })
            .unwrap_or(0)
    }

    /// Introspection calls made for issuer `name`.
    pub fn introspections(&self, name: &str) -> u64 {
        self.issuers
            .iter()
            .find(|r| r.s.name == name)
            .and_then(|r| r.introspector.as_ref().map(|i| i.calls()))
            .unwrap_or(0)
    }

    /// The 401 of a refused token, its reason in `error_description` (RFC 6750 §3).
    pub fn refusal(&self, why: Refusal) -> Problem {
        let challenge = HeaderValue::from_str(&format!(
            "Bearer realm=\"{}\", error=\"invalid_token\", error_description=\"{}\"",
            self.realm,
            why.detail()
        ))
        .unwrap_or_else(|_| HeaderValue::from_static("Bearer error=\"invalid_token\""));
        Problem::RemoteTokenInvalid {
            detail: why.detail(),
            challenge,
        }
    }

    /// Who `token` (not Warden's own) identifies, according to the issuer it belongs to.
    pub async fn authenticate(&self, token: &str) -> Result<Verified, Failure> {
        if token.starts_with(WARDEN_PREFIX) {
            // Never sent anywhere: [`caller`] routes these to Warden's own path.
            return Err(Refusal::NoIssuer.into());
        }
        match jwt::split(token) {
            Some(Err(why)) => Err(why.into()),
            Some(Ok(jws)) => {
                let iss = jws.claims.str("iss")?.ok_or(Refusal::UnknownIssuer)?;
                let r = self
                    .by_iss
                    .get(iss)
                    .map(|&i| &self.issuers[i])
                    .ok_or(Refusal::UnknownIssuer)?;
                if r.keys.is_some() {
                    r.verify(token, jws, &self.clock).await
                } else {
                    r.introspect(token, &self.clock).await
                }
            }
            None => {
                let r = self
                    .issuers
                    .iter()
                    .find(|r| {
                        r.introspector.is_some()
                            && r.s
                                .token_prefix
                                .as_deref()
                                .is_some_and(|p| token.starts_with(p))
                    })
                    .or(self.default_opaque.map(|i| &self.issuers[i]))
                    .ok_or(Refusal::NoIssuer)?;
                r.introspect(token, &self.clock).await
            }
        }
    }
}

impl RemoteIssuer {
    /// The key of `token` in this issuer's cache and in Warden's: its SHA-256 with the issuer's
    /// name and where its answer comes from (`jwt`, or the introspection endpoint), so no two
    /// issuers or endpoints (nor Warden's own tokens) can ever share an entry.
    fn key(&self, source: &str, token: &str) -> Hash {
        let mut h = Sha256::new();
        h.update(b"warden-idp\0");
        h.update(self.s.name.as_bytes());
        h.update(b"\0");
        h.update(source.as_bytes());
        h.update(b"\0");
        h.update(token.as_bytes());
        h.finalize().into()
    }

    /// A remembered decision, if any; a valid one past its end is an expired token.
    fn remembered(&self, key: &Hash, now: i64) -> Option<Result<Verified, Failure>> {
        let timed = self.decisions.get(key)?;
        Some(match timed.decision {
            Decision::Valid(identity, mapped) => match identity.expires_at {
                Some(end) if end <= now => Err(Refusal::Expired.into()),
                _ => Ok(Verified {
                    identity,
                    key: *key,
                    mapped,
                }),
            },
            Decision::Refused(why) => Err(why.into()),
        })
    }

    fn remember(&self, key: Hash, decision: Decision, ttl: Duration, now: i64) {
        let ttl = match &decision {
            Decision::Valid(identity, _) => match identity.expires_at {
                Some(end) if end <= now => return,
                Some(end) => ttl.min(Duration::from_secs((end - now) as u64)),
                None => ttl,
            },
            Decision::Refused(_) => ttl,
        };
        if !ttl.is_zero() {
            self.decisions.insert(key, Timed { decision, ttl });
        }
    }

    /// Verifies a JWT of this issuer with its keys.
    async fn verify(
        &self,
        token: &str,
        jws: Compact<'_>,
        clock: &Clock,
    ) -> Result<Verified, Failure> {
        let key = self.key("jwt", token);
        if let Some(found) = self.remembered(&key, clock.now()) {
            return found;
        }
        let alg = jws.alg(&self.s.algorithms)?;
        jws.check_header(self.s.allow_typ_jwt)?;
        let kid = jws.header.kid.as_deref();
        let set = match &self.keys {
            Some(Keys::Static(set)) => set.clone(),
            Some(Keys::Fetched(jwks)) => {
                let Some(mut set) = jwks.current().await else {
                    return Err(Failure::Unavailable {
                        retry_after: self.s.jwks_refetch_min_interval.as_secs().max(1),
                    });
                };
                // A kid the set lacks may be a key the issuer has just added: fetch once more
                // (at most once per jwks_refetch_min_interval, shared by all who wait).
                if kid.is_some() && matches!(set.select(kid, alg), Selected::Unknown) {
                    jwks.refresh().await;
                    set = jwks.current().await.unwrap_or(set);
                }
                set
            }
            None => return Err(Refusal::UnknownKey.into()),
        };
        let verifying = match set.select(kid, alg) {
            Selected::Key(k) => k,
            Selected::Unknown => return Err(Refusal::UnknownKey.into()),
            Selected::Ambiguous => return Err(Refusal::AmbiguousKey.into()),
        };
        if !verifying.verify(alg, jws.signing_input, &jws.signature) {
            return Err(Refusal::BadSignature.into());
        }
        // From here on the claims are the issuer's.
        let claims = &jws.claims;
        if claims.str("iss")? != Some(self.s.issuer.as_str()) {
            return Err(Refusal::WrongIssuer.into());
        }
        let now = clock.now();
        let until = self.s.times.check(claims, now, true)?;
        let (identity, mapped) = self.identity(claims, until, token)?;
        let identity = Arc::new(identity);
        // Kept no longer than the keys are: a key the issuer withdraws stops verifying cached
        // tokens within about one jwks_cache_ttl, as it would uncached ones.
        self.remember(
            key,
            Decision::Valid(identity.clone(), mapped),
            self.s.jwks_cache_ttl,
            now,
        );
        Ok(Verified {
            identity,
            key,
            mapped,
        })
    }

    /// Asks this issuer's introspection endpoint about `token`.
    async fn introspect(&self, token: &str, clock: &Clock) -> Result<Verified, Failure> {
        let Some(introspector) = &self.introspector else {
            return Err(Refusal::NoIssuer.into());
        };
        let Some(cfg) = &self.s.introspection else {
            return Err(Refusal::NoIssuer.into());
        };
        let key = self.key(&self.endpoint, token);
        if let Some(found) = self.remembered(&key, clock.now()) {
            return found;
        }
        let answer = introspector
            .introspect(key, token)
            .await
            .map_err(|_| Failure::Unavailable { retry_after: 1 })?;
        let now = clock.now();
        let claims = match answer {
            Answer::Inactive => {
                self.remember(
                    key,
                    Decision::Refused(Refusal::Inactive),
                    cfg.negative_ttl,
                    now,
                );
                return Err(Refusal::Inactive.into());
            }
            Answer::Active(claims) => claims,
        };
        match self.accept_answer(&claims, token, now) {
            Ok((identity, mapped)) => {
                let identity = Arc::new(identity);
                self.remember(
                    key,
                    Decision::Valid(identity.clone(), mapped),
                    cfg.cache_ttl,
                    now,
                );
                Ok(Verified {
                    identity,
                    key,
                    mapped,
                })
            }
            Err(why) => {
                // An active token this service does not accept stays refused as long as an
                // inactive one would, so it cannot make a call per request.
                self.remember(key, Decision::Refused(why), cfg.negative_ttl, now);
                Err(why.into())
            }
        }
    }

    /// What an `active` introspection answer allows (RFC 7662 §2.2).
    fn accept_answer(
        &self,
        claims: &Claims,
        token: &str,
        now: i64,
    ) -> Result<(Identity, bool), Refusal> {
        if claims.str("iss")?.is_some_and(|iss| iss != self.s.issuer) {
            return Err(Refusal::WrongIssuer);
        }
        if claims
            .str("token_type")?
            .is_some_and(|t| t.to_ascii_lowercase().contains("refresh"))
            || claims
                .str("token_use")?
                .is_some_and(|t| t != "access_token")
        {
            return Err(Refusal::NotAccessToken);
        }
        let until = self.s.times.check(claims, now, false)?;
        // The endpoint has judged the token at its own clock; its exp still bounds how long
        // the answer is used, without leeway.
        let until = match claims.date("exp")? {
            Some(exp) if exp <= now => return Err(Refusal::Expired),
            Some(exp) => Some(until.map_or(exp, |u| u.min(exp))),
            None => until,
        };
        self.identity(claims, until, token)
    }

    /// The identity a verified token or an active answer stands for.
    fn identity(
        &self,
        claims: &Claims,
        until: Option<i64>,
        token: &str,
    ) -> Result<(Identity, bool), Refusal> {
        let s = &self.s;
        let raw_client = claims
            .str(&s.client_id_claim)?
            .filter(|c| !c.is_empty())
            .ok_or(Refusal::NoClient)?;
        let (client_id, mapped) = match s.clients.get(raw_client) {
            Some(local) => (local.clone(), true),
            None if crate::scope::valid_id(raw_client) => {
                (format!("{raw_client}@{}", s.name), false)
            }
            None => return Err(Refusal::BadClient),
        };
        let aud = claims.list("aud", false)?;
        if !s.audiences.is_empty() && !aud.iter().any(|a| s.audiences.iter().any(|w| w == a)) {
            return Err(Refusal::WrongAudience);
        }
        let audiences: Vec<String> = aud
            .iter()
            .filter(|a| crate::scope::valid_audience(a))
            .take(MAX_AUDIENCES)
            .map(|a| a.to_string())
            .collect();
        let mut granted = claims.list("scope", true)?;
        if granted.is_empty() {
            granted = claims.list("scp", true)?;
        }
        let mut scopes: Vec<String> = Vec::with_capacity(granted.len());
        for theirs in granted {
            let ours: Vec<&str> = match &s.scope_map {
                Some(map) => map
                    .get(theirs)
                    .map(|v| v.iter().map(String::as_str).collect())
                    .unwrap_or_default(),
                None => vec![theirs],
            };
            for scope in ours {
                if crate::scope::check(scope).is_ok() && !scopes.iter().any(|s| s == scope) {
                    scopes.push(scope.to_string());
                }
            }
        }
        let user = claims.str("sub")?.map(str::to_string);
        let token_id = match claims.str("jti")? {
            Some(jti) if jti.len() <= 128 && crate::scope::valid_scope(jti) => {
                format!("{jti}@{}", s.name)
            }
            _ => format!(
                "sha256:{}@{}",
                hex::encode(&Sha256::digest(token.as_bytes())[..16]),
                s.name
            ),
        };
        // Idempotency records are the client's, as for Warden's access tokens, but a client
        // acting for many users (a single-page app) keeps each user's apart.
        let namespace = match &user {
            Some(u) if u != raw_client => format!(
                "{client_id}/sub:{}",
                hex::encode(&Sha256::digest(u.as_bytes())[..16])
            ),
            _ => client_id.clone(),
        };
        let scopes_header = header(&scopes.join(" "));
        let audience_header = (!audiences.is_empty()).then(|| header(&audiences.join(" ")));
        Ok((
            Identity {
                token_id_header: header(&token_id),
                client_id_header: header(&client_id),
                token_id,
                kind: TokenKind::Access,
                client_id,
                account: s.account.clone(),
                user,
                audience: audiences.first().cloned(),
                scopes,
                trusted_ips: Vec::new(),
                client_trusted_ips: Vec::new(),
                expires_at: until,
                scopes_header,
                audience_header,
                remote: Some(Arc::new(Remote {
                    issuer: s.name.clone(),
                    audiences,
                    namespace,
                })),
            },
            mapped,
        ))
    }
}

fn header(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The caller of a proxied route: a Warden credential (`wdn_…`), or anything else when issuers
/// are configured, goes down Warden's own path as before; any other bearer to the issuer it
/// belongs to. Warden's own endpoints (`/v1/auth`, the tokens API) keep calling
/// [`Issuer::caller`]: a token of another issuer can neither revoke nor mint Warden credentials.
pub async fn caller(
    issuer: &Issuer,
    idp: Option<&Idp>,
    headers: &HeaderMap,
    ip: IpAddr,
) -> Result<Arc<Identity>, Problem> {
    let identity = identify(issuer, idp, headers).await?;
    if !identity.allows_ip(ip) {
        return Err(Problem::IpNotAllowed);
    }
    Ok(identity)
}

/// The identity a request's bearer token proves, Warden's or another issuer's, before its
/// trusted IPs are looked at ([`caller`] looks at them).
pub async fn identify(
    issuer: &Issuer,
    idp: Option<&Idp>,
    headers: &HeaderMap,
) -> Result<Arc<Identity>, Problem> {
    use crate::gate::bearer::{Presented, presented};
    let (Some(idp), Presented::Bearer(token)) = (idp, presented(headers)) else {
        return issuer.bearer_identity(headers).await;
    };
    if token.starts_with(WARDEN_PREFIX) {
        return issuer.bearer_identity(headers).await;
    }
    // Boxed: the common path's future stays small.
    let remote = Box::pin(remote_identity(issuer, idp, token));
    remote.await
}

async fn remote_identity(
    issuer: &Issuer,
    idp: &Idp,
    token: &str,
) -> Result<Arc<Identity>, Problem> {
    let verified = idp.authenticate(token).await.map_err(|f| match f {
        Failure::Refused(why) => {
            tracing::debug!(reason = why.detail(), "token of another issuer refused");
            idp.refusal(why)
        }
        Failure::Unavailable { retry_after } => Problem::IssuerUnavailable { retry_after },
    })?;
    if verified.mapped {
        issuer
            .as_client(verified.key, &verified.identity)
            .await
            .map_err(|e| match e {
                BearerError::Invalid => idp.refusal(Refusal::ClientDisabled),
                BearerError::Store(err) => {
                    tracing::error!(error = %err, "store failed during bearer check");
                    Problem::StoreUnavailable
                }
            })
    } else {
        Ok(verified.identity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use settings::{OneOrMany, RawIssuer};

    fn issuer(scope_map: &[(&str, &[&str])]) -> Idp {
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let x =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes());
        let raw = RawIssuer {
            name: "corp".into(),
            issuer: "https://idp.test/".into(),
            audience: OneOrMany::One("api".into()),
            keys: format!(r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","x":"{x}"}}]}}"#),
            clients: [("billing-svc".to_string(), "billing".to_string())].into(),
            scope_map: scope_map
                .iter()
                .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
                .collect(),
            ..RawIssuer::default()
        };
        let settings = crate::config::validate_issuers(&[raw]).unwrap();
        Idp::new(&settings, Clock::default(), "warden").unwrap()
    }

    fn claims(json: serde_json::Value) -> Claims {
        Claims(json.as_object().unwrap().clone())
    }

    #[test]
    fn identities_keep_issuers_clients_and_users_apart() {
        let idp = issuer(&[]);
        let r = &idp.issuers[0];
        let of = |json: serde_json::Value| r.identity(&claims(json), Some(100), "token").unwrap();
        let (svc, mapped) =
            of(serde_json::json!({"client_id": "svc", "sub": "svc", "aud": "api", "jti": "j1"}));
        assert!(!mapped);
        assert_eq!(svc.client_id, "svc@corp");
        assert_eq!(svc.token_id, "j1@corp");
        assert_eq!(crate::gate::idempotency::namespace(&svc), "svc@corp");
        // One app acting for two users: the same client, apart records.
        let (alice, _) = of(serde_json::json!({"client_id": "spa", "sub": "alice", "aud": "api"}));
        let (bob, _) = of(serde_json::json!({"client_id": "spa", "sub": "bob", "aud": "api"}));
        let (alice2, _) = of(serde_json::json!({"client_id": "spa", "sub": "alice", "aud": "api"}));
        let ns = crate::gate::idempotency::namespace;
        assert_eq!(alice.client_id, bob.client_id);
        assert_ne!(ns(&alice), ns(&bob));
        assert_eq!(ns(&alice), ns(&alice2));
        assert!(alice.token_id.starts_with("sha256:"));
        // Mapped explicitly, and only then, to a Warden client id.
        let (billing, mapped) = of(serde_json::json!({"client_id": "billing-svc", "aud": "api"}));
        assert!(mapped);
        assert_eq!(billing.client_id, "billing");
        // Client ids Warden's could not hold are refused unmapped.
        for bad in ["a@b", "https://app.example/", "has space", ""] {
            let c = claims(serde_json::json!({"client_id": bad, "aud": "api"}));
            assert!(r.identity(&c, None, "t").is_err(), "{bad}");
        }
        // Audiences: one of the issuer's required; all kept for routes.
        let (multi, _) = of(serde_json::json!({"client_id": "svc", "aud": ["x", "api"]}));
        assert!(multi.has_audience("x") && multi.has_audience("api") && !multi.has_audience("y"));
        let wrong = claims(serde_json::json!({"client_id": "svc", "aud": ["x"]}));
        assert_eq!(
            r.identity(&wrong, None, "t").unwrap_err(),
            Refusal::WrongAudience
        );
    }

    #[test]
    fn scopes_come_from_scope_or_scp_and_through_the_map_when_there_is_one() {
        let idp = issuer(&[]);
        let r = &idp.issuers[0];
        let scopes =
            |json: serde_json::Value| r.identity(&claims(json), None, "t").unwrap().0.scopes;
        let base = |extra: serde_json::Value| {
            let mut v = serde_json::json!({"client_id": "svc", "aud": "api"});
            v.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            v
        };
        assert_eq!(
            scopes(base(serde_json::json!({"scope": "a  b a"}))),
            ["a", "b"]
        );
        assert_eq!(
            scopes(base(serde_json::json!({"scp": ["c", "d"]}))),
            ["c", "d"]
        );
        // Strings that are no valid scope are dropped, not trusted.
        assert_eq!(
            scopes(base(serde_json::json!({"scp": ["ok", "bad\"q"]}))),
            ["ok"]
        );
        let mapped = issuer(&[("orders.read", &["table://orders.*", "read"])]);
        let r = &mapped.issuers[0];
        let c = claims(base(serde_json::json!({"scope": "orders.read admin"})));
        assert_eq!(
            r.identity(&c, None, "t").unwrap().0.scopes,
            ["table://orders.*", "read"]
        );
    }
}
