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
//!
//! This file holds [`Idp`], which routes a token to its issuer, and [`caller`] / [`identify`];
//! beside it `remote.rs` (one issuer: its decision cache, JWT verification, introspection),
//! `identity.rs` (claims to an [`Identity`]), `refusal.rs` ([`Refusal`], [`Failure`]), and the
//! parts they use: `jwt.rs`, `jwk.rs`, `keys.rs` (JWKS fetched and kept), `fetch.rs`,
//! `introspect.rs`, `settings.rs`.

pub mod fetch;
mod identity;
pub mod introspect;
pub mod jwk;
pub mod jwt;
pub mod keys;
mod refusal;
mod remote;
pub mod settings;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use http::{HeaderMap, HeaderValue};

use crate::cache::Identity;
use crate::clock::Clock;
use crate::issuer::{BearerError, Issuer};
use crate::problem::Problem;
use crate::store::Hash;
pub use refusal::{Failure, Refusal};
use remote::{Keys, RemoteIssuer};
use settings::IssuerSettings;

/// The prefix of every credential Warden mints itself.
pub const WARDEN_PREFIX: &str = "wdn_";

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
        let issuers: Vec<RemoteIssuer> = settings
            .iter()
            .map(|s| RemoteIssuer::new(s, &clock))
            .collect();
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
    use jwt::Claims;
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
