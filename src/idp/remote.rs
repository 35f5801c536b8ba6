//! One configured issuer: its decisions remembered by token, JWTs verified with its keys, and
//! opaque tokens (or JWTs of an issuer without keys) asked about at its introspection endpoint.

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::sync::Cache;
use sha2::{Digest, Sha256};

use super::introspect::{Answer, Introspector};
use super::jwk::{self, Selected};
use super::jwt::{Claims, Compact};
use super::keys::Jwks;
use super::settings::{IssuerSettings, KeySource};
use super::{Failure, Refusal, Verified, fetch};
use crate::cache::Identity;
use crate::clock::Clock;
use crate::store::Hash;

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
pub(super) struct RemoteIssuer {
    pub(super) s: IssuerSettings,
    pub(super) keys: Option<Keys>,
    pub(super) introspector: Option<Arc<Introspector>>,
    /// The introspection endpoint as text, for cache keys ("" without one).
    endpoint: String,
    /// Decisions by token key: bounded (`cache_capacity`), never past the token's end.
    decisions: Cache<Hash, Timed>,
}

pub(super) enum Keys {
    Static(Arc<jwk::KeySet>),
    Fetched(Arc<Jwks>),
}

impl RemoteIssuer {
    /// The issuer of `s`, with its key source and introspector and an empty decision cache.
    pub(super) fn new(s: &IssuerSettings, clock: &Clock) -> Self {
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
        RemoteIssuer {
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
        }
    }

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
    pub(super) async fn verify(
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
    pub(super) async fn introspect(&self, token: &str, clock: &Clock) -> Result<Verified, Failure> {
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
}
