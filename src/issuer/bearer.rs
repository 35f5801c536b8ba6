//! "Who is this bearer?": the token cache in front of the store, for Warden's own tokens and for
//! tokens of other issuers mapped to a Warden client, and the cache's part in the change feed.

use std::net::IpAddr;
use std::sync::Arc;

use http::HeaderValue;

use super::{BearerError, Issuer, effective_scopes, parse_nets};
use crate::cache::{Cached, Identity, TokenCache};
use crate::gate::admit::Admission;
use crate::gate::signature::{Endpoint, RequestParts, SignatureGate};
use crate::policy::SignatureMode;
use crate::secret;
use crate::store::feed::Subscriber;
use crate::store::{Change, ClientRecord, Hash, StoreError, TokenRecord};

impl Issuer {
    /// Forgets a credential's cached decision (after a change made elsewhere).
    pub fn forget(&self, hash: &Hash) {
        self.cache.invalidate(hash);
    }

    /// Forgets every cached decision.
    pub fn forget_all(&self) {
        self.cache.invalidate_all();
    }

    /// The credential cache's generation once changes by any writer have been read (as on a
    /// bearer check). A decision drawn from credentials and clients at generation `g` still
    /// holds while this returns `g`: every revocation or client change moves it.
    pub async fn settled_generation(&self) -> Result<u64, StoreError> {
        self.catch_up().await?;
        Ok(self.cache.generation())
    }

    /// Looks a token up by its value, whatever its state (for revocation and introspection).
    pub async fn find_by_value(&self, value: &str) -> Result<Option<TokenRecord>, StoreError> {
        self.store.token_by_hash(&secret::hash(value)).await
    }

    /// The caller a request's `Authorization: Bearer` identifies, allowed to call from `ip`:
    /// the one bearer check shared by proxied routes, `DELETE /v1/auth` and the tokens API.
    pub async fn caller(
        &self,
        headers: &http::HeaderMap,
        ip: IpAddr,
    ) -> Result<Arc<Identity>, crate::problem::Problem> {
        let identity = self.bearer_identity(headers).await?;
        if !identity.allows_ip(ip) {
            return Err(crate::problem::Problem::IpNotAllowed);
        }
        Ok(identity)
    }

    /// The caller of one of Warden's own endpoints (the tokens and webhooks APIs,
    /// `DELETE /v1/auth`), admitted: [`Issuer::caller`], then [`SignatureGate::admit`] at the
    /// endpoint's signature `mode`, which covers nothing beyond the global components.
    pub async fn admitted_caller(
        &self,
        signatures: &SignatureGate,
        parts: &RequestParts<'_>,
        ip: IpAddr,
        mode: SignatureMode,
        verify_unsigned: bool,
    ) -> Result<(Arc<Identity>, Admission), crate::problem::Problem> {
        let identity = self.caller(parts.headers, ip).await?;
        let at = Endpoint {
            mode,
            cover: &[],
            public_url: None,
        };
        let admission = signatures
            .admit(
                self.store.as_ref(),
                parts,
                &at,
                &identity.client_id,
                self.clock.now(),
                verify_unsigned,
            )
            .await?;
        Ok((identity, admission))
    }

    /// The identity a request's `Authorization: Bearer` proves, before its trusted IPs are
    /// looked at ([`Issuer::caller`] looks at them).
    pub async fn bearer_identity(
        &self,
        headers: &http::HeaderMap,
    ) -> Result<Arc<Identity>, crate::problem::Problem> {
        use crate::gate::bearer::{Presented, presented};
        use crate::problem::Problem;
        let value = match presented(headers) {
            Presented::Bearer(v) => v,
            Presented::Missing => {
                return Err(Problem::TokenMissing {
                    challenge: self.challenge(),
                });
            }
            Presented::Malformed(detail) => {
                return Err(Problem::MalformedCredential {
                    detail: detail.into(),
                });
            }
        };
        let identity = self.authenticate_bearer(value).await.map_err(|e| match e {
            BearerError::Invalid => Problem::InvalidToken {
                challenge: self.invalid_challenge(),
            },
            BearerError::Store(err) => {
                tracing::error!(error = %err, "store failed during bearer check");
                Problem::StoreUnavailable
            }
        })?;
        Ok(identity)
    }

    /// Who a bearer value identifies: cache first, the store on a miss.
    pub async fn authenticate_bearer(&self, value: &str) -> Result<Arc<Identity>, BearerError> {
        let hash = secret::hash(value);
        let now = self.clock.now();
        if let Some(id) = self.cached(&hash, now).await? {
            return Ok(id);
        }
        // A miss goes to the store: boxed so the cache hit's future stays small.
        let load = Box::pin(self.load_bearer(hash, now));
        load.await
    }

    /// The cached decision on the credential under `key`, once changes by any writer have been
    /// read: `None` on a miss. A cached identity is still judged by the clock at `now`.
    async fn cached(&self, key: &Hash, now: i64) -> Result<Option<Arc<Identity>>, BearerError> {
        self.catch_up().await.map_err(BearerError::Store)?;
        match self.cache.get(key) {
            // The cache never outlives a token, but the clock is the judge.
            Some(Cached::Valid(id)) => match id.expires_at {
                Some(end) if end <= now => Err(BearerError::Invalid),
                _ => Ok(Some(id)),
            },
            Some(Cached::Invalid) => Err(BearerError::Invalid),
            None => Ok(None),
        }
    }

    /// Caches the `decision` on the credential under `key`, drawn at cache generation `seen`,
    /// and answers with it.
    fn remember(
        &self,
        key: Hash,
        decision: Cached,
        seen: u64,
        now: i64,
    ) -> Result<Arc<Identity>, BearerError> {
        self.cache.insert(key, decision.clone(), seen, now);
        match decision {
            Cached::Valid(id) => Ok(id),
            Cached::Invalid => Err(BearerError::Invalid),
        }
    }

    async fn load_bearer(&self, hash: Hash, now: i64) -> Result<Arc<Identity>, BearerError> {
        let seen = self.cache.generation();
        let token = self
            .store
            .token_by_hash(&hash)
            .await
            .map_err(BearerError::Store)?;
        let decision = match token {
            Some(t) if t.is_active(now) => match self.store.get_client(&t.client_id).await {
                // Built from the client as it is now: the change feed drops this entry when the
                // client changes, so a narrowed client narrows its tokens on the next request.
                // A token is issued for its client's account; a client moved to another
                // account no longer speaks for the old one, so its tokens stop there.
                Ok(Some(c)) if c.enabled && c.account == t.account => {
                    Cached::Valid(Arc::new(identity_of(&t, &c)))
                }
                Ok(_) => Cached::Invalid,
                Err(e) => return Err(BearerError::Store(e)),
            },
            _ => Cached::Invalid,
        };
        self.remember(hash, decision, seen, now)
    }
}

impl Issuer {
    /// A token of another issuer (`[[issuers]]`) whose client that issuer maps to the Warden
    /// client `remote.client_id`: the identity that client, as it is now, allows: the token's
    /// scopes as far as the client holds them, the client's account and trusted IPs. Refused
    /// when the client is unknown or disabled. Cached under `key` (never a Warden token's
    /// hash) like Warden's own tokens, so a change to the client applies on the next request.
    pub async fn as_client(
        &self,
        key: Hash,
        remote: &Identity,
    ) -> Result<Arc<Identity>, BearerError> {
        let now = self.clock.now();
        if let Some(id) = self.cached(&key, now).await? {
            return Ok(id);
        }
        let seen = self.cache.generation();
        let client = self
            .store
            .get_client(&remote.client_id)
            .await
            .map_err(BearerError::Store)?;
        let decision = match client {
            Some(c) if c.enabled => {
                let scopes = effective_scopes(&remote.scopes, &c.scopes);
                Cached::Valid(Arc::new(Identity {
                    token_id: remote.token_id.clone(),
                    kind: remote.kind,
                    client_id: c.id.clone(),
                    account: c.account.clone(),
                    user: remote.user.clone(),
                    audience: remote.audience.clone(),
                    scopes_header: header(&scopes.join(" ")),
                    scopes,
                    trusted_ips: Vec::new(),
                    client_trusted_ips: parse_nets(&c.trusted_ips),
                    expires_at: remote.expires_at,
                    client_id_header: remote.client_id_header.clone(),
                    token_id_header: remote.token_id_header.clone(),
                    audience_header: remote.audience_header.clone(),
                    remote: remote.remote.clone(),
                }))
            }
            _ => Cached::Invalid,
        };
        self.remember(key, decision, seen, now)
    }
}

/// The token cache drops a changed token's decision, and every decision when a client changed.
impl Subscriber for TokenCache {
    fn changed(&self, change: &Change) {
        if let Some(hash) = &change.token_hash {
            self.invalidate(hash);
        }
        if change.client_id.is_some() {
            self.invalidate_all();
        }
    }
}

fn header(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The identity the proxy attaches to requests made with `t`, whose client is `client` as it
/// is now: the token may use only what both grant ([`effective_scopes`]), from where both allow.
fn identity_of(t: &TokenRecord, client: &ClientRecord) -> Identity {
    let effective = effective_scopes(&t.scopes, &client.scopes);
    let scopes = effective.join(" ");
    Identity {
        token_id: t.id.clone(),
        kind: t.kind,
        client_id: t.client_id.clone(),
        account: t.account.clone(),
        user: t.user.clone(),
        audience: t.audience.clone(),
        scopes: effective,
        trusted_ips: parse_nets(&t.trusted_ips),
        client_trusted_ips: parse_nets(&client.trusted_ips),
        expires_at: t.expires_at,
        client_id_header: header(&t.client_id),
        token_id_header: header(&t.id),
        scopes_header: header(&scopes),
        audience_header: t.audience.as_deref().map(header),
        remote: None,
    }
}
