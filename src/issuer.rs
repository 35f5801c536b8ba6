//! The issuer: Warden's own credentials. Authenticates clients (with failure rate limits),
//! mints access tokens and API keys, revokes them, and answers "who is this bearer?" for the
//! proxy through the token cache. The HTTP shapes of its endpoints live in `issuer/`.

pub mod auth;
pub mod form;
pub mod oauth;
pub mod throttle;
pub mod tokens_api;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use http::HeaderValue;
use ipnet::IpNet;

use crate::cache::{Cached, Identity, TokenCache};
use crate::clock::Clock;
use crate::config::{ClientSettings, RawTokens};
use crate::secret::{self, SecretKind};
use crate::store::feed::{Follower, Subscriber};
use crate::store::{
    Change, ClientRecord, ClientSource, Hash, SecretHash, SigningKey, Store, StoreError, TokenKind,
    TokenRecord,
};
use crate::webhooks::events::{self, Gone};
use throttle::{Attempt, FailureLimiter};

/// Why a client could not authenticate. The variants stay internal detail: callers answer
/// `invalid_client` for all but `RateLimited`, `IpNotAllowed` (only ever after the right
/// secret) and `Store`.
#[derive(Debug)]
pub enum ClientAuthError {
    UnknownClient,
    WrongSecret,
    Disabled,
    IpNotAllowed,
    RateLimited { retry_after: u64 },
    Store(StoreError),
}

/// Why an administrative operation (CLI) failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    Invalid(String),
    #[error("no such {0}")]
    NotFound(String),
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// Why a bearer credential was refused.
#[derive(Debug)]
pub enum BearerError {
    /// Unknown, revoked, disabled, expired, or its client is disabled.
    Invalid,
    Store(StoreError),
}

/// A freshly issued credential: its record and its value, which is shown this once.
pub struct Issued {
    pub record: TokenRecord,
    pub value: String,
}

/// The issuer and its caches, shared by all connections.
pub struct Issuer {
    store: Arc<dyn Store>,
    cache: Arc<TokenCache>,
    clock: Clock,
    cfg: RawTokens,
    failures: FailureLimiter,
    failed_auth_total: AtomicU64,
    challenge: HeaderValue,
    invalid_challenge: HeaderValue,
    /// The process's one follower of the change feed; the token cache is a subscriber.
    feed: Arc<Follower>,
    /// The client ids the config file declares, once [`Issuer::apply_config_clients`] ran.
    declared: std::sync::Mutex<Option<Vec<String>>>,
}

impl Issuer {
    pub fn new(store: Arc<dyn Store>, cfg: RawTokens, clock: Clock) -> Self {
        let realm = cfg.realm.clone();
        let challenge = HeaderValue::from_str(&format!("Bearer realm=\"{realm}\""))
            .unwrap_or_else(|_| HeaderValue::from_static("Bearer"));
        let invalid_challenge = HeaderValue::from_str(&format!(
            "Bearer realm=\"{realm}\", error=\"invalid_token\", error_description=\"the access token is unknown, expired, revoked or disabled\""
        ))
        .unwrap_or_else(|_| HeaderValue::from_static("Bearer error=\"invalid_token\""));
        let cache = Arc::new(TokenCache::new(
            cfg.cache_capacity,
            cfg.cache_ttl,
            cfg.negative_cache_ttl,
        ));
        let feed = Arc::new(Follower::new(store.clone(), cfg.change_check_interval));
        feed.subscribe(cache.clone());
        Self {
            cache,
            feed,
            failures: FailureLimiter::new(throttle::Limits {
                per_pair: cfg.max_failed_auth,
                per_address: cfg.max_failed_auth_per_ip,
                per_client: cfg.max_failed_auth_per_client,
                window: cfg.failed_auth_window,
                known_for: cfg.known_address_ttl,
            }),
            store,
            clock,
            cfg,
            failed_auth_total: AtomicU64::new(0),
            challenge,
            invalid_challenge,
            declared: std::sync::Mutex::new(None),
        }
    }

    /// Starts following the change feed from now: earlier changes concern nothing cached.
    pub async fn start_feed(&self) -> Result<(), StoreError> {
        self.feed.start().await
    }

    /// The process's one follower of the store's change feed (`tokens.change_check_interval`),
    /// for the other caches to subscribe to.
    pub fn feed(&self) -> &Arc<Follower> {
        &self.feed
    }

    /// Drops cached decisions about tokens and clients changed by any writer since the last
    /// look (through the feed, for every subscriber).
    async fn catch_up(&self) -> Result<(), StoreError> {
        self.feed.catch_up().await
    }

    /// The token cache's hit and miss counters (for the metrics).
    pub fn token_cache_lookups(&self) -> &crate::metrics::Lookups {
        self.cache.lookups()
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    pub fn settings(&self) -> &RawTokens {
        &self.cfg
    }

    /// `WWW-Authenticate` for a request with no credential (RFC 6750 §3.1: no error code).
    pub fn challenge(&self) -> HeaderValue {
        self.challenge.clone()
    }

    /// `WWW-Authenticate` for an unusable credential.
    pub fn invalid_challenge(&self) -> HeaderValue {
        self.invalid_challenge.clone()
    }

    /// Failed client authentications since start.
    pub fn failed_auth_total(&self) -> u64 {
        self.failed_auth_total.load(Ordering::Relaxed)
    }

    /// Makes the store say what the config file says, at every start: writes the declared
    /// clients ([`Issuer::apply_config_clients`]) and disables every client the file declared
    /// once and no longer does, so that removing a client from the file retires its secret and
    /// every credential issued to it. Declaring it again brings it back as declared.
    pub async fn bootstrap(&self, clients: &[ClientSettings]) -> Result<(), StoreError> {
        self.apply_config_clients(clients).await?;
        self.disable_undeclared_clients().await
    }

    /// Writes the clients declared in config into the store (they are config-owned: the file
    /// is the source of truth), leaving clients the file does not declare as they are. The
    /// CLI does only this, so that running it with a partial config file retires nothing.
    pub async fn apply_config_clients(&self, clients: &[ClientSettings]) -> Result<(), StoreError> {
        let now = self.clock.now();
        *self.declared.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(clients.iter().map(|c| c.id.clone()).collect());
        for c in clients {
            if is_well_known_secret(&c.secret_sha256) {
                tracing::warn!(client_id = %c.id, "client secret is a well-known word (like the demo client's): anyone can guess it; use a generated secret");
            }
            let record = ClientRecord {
                id: c.id.clone(),
                name: c.name.clone(),
                account: c.account.clone(),
                secrets: vec![SecretHash {
                    hash: c.secret_sha256,
                    created_at: now,
                    expires_at: None,
                }],
                keys: c
                    .keys
                    .iter()
                    .map(|k| SigningKey {
                        key_id: k.id.clone(),
                        alg: k.key.alg().name().to_owned(),
                        // An HMAC secret is held in memory only: its row has no bytes.
                        public_key: k.key.stored().unwrap_or_default(),
                    })
                    .collect(),
                trusted_ips: c.trusted_ips.iter().map(|n| n.to_string()).collect(),
                scopes: c.scopes.clone(),
                enabled: c.enabled,
                source: ClientSource::Config,
                created_at: now,
                updated_at: now,
            };
            // Rewriting an unchanged client would fire the change feed and empty every
            // instance's cache; compare first.
            if let Some(existing) = self.store.get_client(&c.id).await? {
                if same_declaration(&existing, &record) {
                    continue;
                }
            }
            self.store.upsert_client(record).await?;
        }
        Ok(())
    }

    /// Disables the config-declared clients that the file no longer declares.
    async fn disable_undeclared_clients(&self) -> Result<(), StoreError> {
        let now = self.clock.now();
        let mut disabled = false;
        for c in self.store.list_clients().await? {
            if c.source != ClientSource::Config || !c.enabled || self.is_declared(&c.id) {
                continue;
            }
            if self.store.set_client_enabled(&c.id, false, now).await? {
                tracing::warn!(client_id = %c.id, "client no longer declared in the config file: disabled, with its secrets, keys and tokens");
                disabled = true;
            }
        }
        if disabled {
            self.cache.invalidate_all();
        }
        Ok(())
    }

    /// Whether the config file declares client `id`; `true` for any id before the file was
    /// applied (nothing is known to be undeclared then).
    fn is_declared(&self, id: &str) -> bool {
        self.declared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_none_or(|ids| ids.iter().any(|d| d == id))
    }

    /// Creates a managed client and returns it with its secret, shown this once.
    pub async fn create_client(
        &self,
        id: &str,
        name: Option<String>,
        account: Option<String>,
        scopes: Vec<String>,
        trusted_ips: Vec<IpNet>,
    ) -> Result<(ClientRecord, String), AdminError> {
        if !crate::config::valid_id(id) {
            return Err(AdminError::Invalid(format!(
                "client id '{id}' must be 1-128 of A-Z a-z 0-9 . _ : -"
            )));
        }
        for s in &scopes {
            crate::scope::check(s).map_err(|e| AdminError::Invalid(format!("scope '{s}': {e}")))?;
        }
        if self.store.get_client(id).await?.is_some() {
            return Err(AdminError::Invalid(format!("client '{id}' already exists")));
        }
        let now = self.clock.now();
        let minted = secret::mint(SecretKind::ClientSecret);
        let record = ClientRecord {
            id: id.to_string(),
            name: name.unwrap_or_else(|| id.to_string()),
            account: account.unwrap_or_else(|| id.to_string()),
            secrets: vec![SecretHash {
                hash: minted.hash,
                created_at: now,
                expires_at: None,
            }],
            keys: Vec::new(),
            trusted_ips: trusted_ips.iter().map(|n| n.to_string()).collect(),
            scopes,
            enabled: true,
            source: ClientSource::Managed,
            created_at: now,
            updated_at: now,
        };
        self.store.upsert_client(record.clone()).await?;
        Ok((record, minted.value))
    }

    /// Gives a managed client a new secret; the old ones stay valid for `overlap`, then only
    /// the new one works. Config-declared clients rotate by editing `secret_sha256`.
    pub async fn rotate_client_secret(
        &self,
        id: &str,
        overlap: std::time::Duration,
    ) -> Result<String, AdminError> {
        let Some(client) = self.store.get_client(id).await? else {
            return Err(AdminError::NotFound(format!("client '{id}'")));
        };
        if client.source == ClientSource::Config {
            return Err(AdminError::Invalid(if self.is_declared(id) {
                format!(
                    "client '{id}' is declared in the config file: change its secret_sha256 there"
                )
            } else {
                format!(
                    "client '{id}' was declared in a config file that no longer declares it: declare it again in [[clients]], with a new secret_sha256, to use it"
                )
            }));
        }
        let now = self.clock.now();
        let minted = secret::mint(SecretKind::ClientSecret);
        let new = SecretHash {
            hash: minted.hash,
            created_at: now,
            expires_at: None,
        };
        let old_expire_at = now + overlap.as_secs() as i64;
        let event = events::client_secret_rotated(&client, old_expire_at, now);
        self.store
            .add_client_secret(id, new, Some(old_expire_at), now, Some(event))
            .await?;
        Ok(minted.value)
    }

    /// Enables or disables a client; its tokens stop (or resume) working at once. A client
    /// declared in the config file is enabled or disabled there. One the file declared once
    /// and no longer does can be disabled here (before `warden serve` does it at its next
    /// start), but comes back only by being declared again.
    pub async fn set_client_enabled(&self, id: &str, enabled: bool) -> Result<(), AdminError> {
        if let Some(c) = self.store.get_client(id).await? {
            if c.source == ClientSource::Config && self.is_declared(id) {
                return Err(AdminError::Invalid(format!(
                    "client '{id}' is declared in the config file: set enabled = {enabled} there"
                )));
            }
            if c.source == ClientSource::Config && enabled {
                return Err(AdminError::Invalid(format!(
                    "client '{id}' was declared in a config file that no longer declares it, so `warden serve` disables it at every start: declare it again in [[clients]] to enable it"
                )));
            }
        }
        let now = self.clock.now();
        if !self.store.set_client_enabled(id, enabled, now).await? {
            return Err(AdminError::NotFound(format!("client '{id}'")));
        }
        self.cache.invalidate_all();
        Ok(())
    }

    /// Housekeeping, run every `store.sweep_interval`: deletes tokens expired or revoked longer
    /// than `retention` ago, client secrets past their overlap, and old change-feed entries.
    pub async fn sweep(&self, retention: std::time::Duration) -> Result<(), StoreError> {
        let now = self.clock.now();
        let purged = self
            .store
            .purge_expired_tokens(now - retention.as_secs() as i64)
            .await?;
        let secrets = self.store.prune_expired_secrets(now).await?;
        let keep = feed_retention(self.cfg.cache_ttl);
        let keep = i64::try_from(keep.as_secs()).unwrap_or(i64::MAX);
        let changes = self.store.prune_changes(keep).await?;
        if purged + secrets + changes > 0 {
            tracing::debug!(purged, secrets, changes, "store swept");
        }
        Ok(())
    }

    /// Authenticates a client by id and secret, calling from `ip`.
    ///
    /// The secret is checked first: a caller without it learns nothing about the client, not
    /// even whether it exists, is disabled or may call from `ip` (all `invalid_client`). Only a
    /// caller who proved the secret hears that its address is outside the client's networks.
    /// Every refusal counts as a failure ([`throttle`]).
    pub async fn authenticate_client(
        &self,
        client_id: &str,
        client_secret: &str,
        ip: IpAddr,
    ) -> Result<ClientRecord, ClientAuthError> {
        let attempt = Attempt::new(client_id, ip);
        if self.failures.refused(&attempt) {
            return Err(ClientAuthError::RateLimited {
                retry_after: self.failures.retry_after(),
            });
        }
        // No client can have an invalid id: not worth a store read.
        if !attempt.has_valid_id() {
            return Err(self.failed(&attempt, client_id, ip, ClientAuthError::UnknownClient));
        }
        let client = match self.store.get_client(client_id).await {
            Ok(Some(c)) => c,
            Ok(None) => {
                return Err(self.failed(&attempt, client_id, ip, ClientAuthError::UnknownClient));
            }
            Err(e) => return Err(ClientAuthError::Store(e)),
        };
        let now = self.clock.now();
        let presented = secret::hash(client_secret);
        // Check every active secret, so the time taken does not say which one matched.
        let mut ok = false;
        for s in client.secrets.iter().filter(|s| s.is_active(now)) {
            ok |= bool::from(subtle::ConstantTimeEq::ct_eq(&presented[..], &s.hash[..]));
        }
        if !ok {
            return Err(self.failed(&attempt, client_id, ip, ClientAuthError::WrongSecret));
        }
        if !client.enabled {
            return Err(self.failed(&attempt, client_id, ip, ClientAuthError::Disabled));
        }
        // A stolen secret is useless from the wrong network.
        let nets = parse_nets(&client.trusted_ips);
        if !nets.is_empty() && !crate::gate::client_ip::is_trusted(ip, &nets) {
            return Err(self.failed(&attempt, client_id, ip, ClientAuthError::IpNotAllowed));
        }
        self.failures.succeeded(&attempt);
        Ok(client)
    }

    fn failed(
        &self,
        attempt: &Attempt,
        client_id: &str,
        ip: IpAddr,
        why: ClientAuthError,
    ) -> ClientAuthError {
        self.failures.failed(attempt);
        self.failed_auth_total.fetch_add(1, Ordering::Relaxed);
        // A caller who swapped the fields sends a secret as the id: never log one.
        let shown = if crate::config::valid_id(client_id) && !client_id.starts_with("wdn_") {
            client_id
        } else {
            "<malformed>"
        };
        let reason = match &why {
            ClientAuthError::UnknownClient => "unknown_client",
            ClientAuthError::WrongSecret => "wrong_secret",
            ClientAuthError::Disabled => "client_disabled",
            ClientAuthError::IpNotAllowed => "outside_trusted_ips",
            _ => "other",
        };
        tracing::warn!(client_id = shown, client_ip = %ip, reason, "client authentication failed");
        why
    }

    /// Issues an access token for `client` with `scopes` (already checked to be allowed).
    pub async fn issue_access_token(
        &self,
        client: &ClientRecord,
        scopes: Vec<String>,
    ) -> Result<Issued, StoreError> {
        let now = self.clock.now();
        let ttl = self.cfg.access_ttl.as_secs() as i64;
        self.issue(
            client,
            TokenKind::Access,
            scopes,
            Some(now + ttl),
            None,
            now,
        )
        .await
    }

    /// Issues a long-lived API key with the client's full scopes.
    pub async fn issue_api_key(
        &self,
        client: &ClientRecord,
        name: Option<String>,
    ) -> Result<Issued, StoreError> {
        let now = self.clock.now();
        self.issue(
            client,
            TokenKind::ApiKey,
            client.scopes.clone(),
            None,
            name,
            now,
        )
        .await
    }

    async fn issue(
        &self,
        client: &ClientRecord,
        kind: TokenKind,
        scopes: Vec<String>,
        expires_at: Option<i64>,
        name: Option<String>,
        now: i64,
    ) -> Result<Issued, StoreError> {
        let record = new_token_record(client, kind, scopes, expires_at, name, now);
        let minted = secret::mint(secret_kind(kind));
        let record = TokenRecord {
            hash: minted.hash,
            ..record
        };
        let event = events::token_created(&record, now);
        self.store.insert_token(record.clone(), Some(event)).await?;
        Ok(Issued {
            record,
            value: minted.value,
        })
    }

    /// Revokes an API key and issues its replacement in one transaction. `None` when the key is
    /// unknown, not an API key, or already revoked.
    pub async fn rotate_api_key(&self, old_id: &str) -> Result<Option<Issued>, StoreError> {
        let Some(old) = self.store.get_token(old_id).await? else {
            return Ok(None);
        };
        if old.kind != TokenKind::ApiKey || old.revoked_at.is_some() {
            return Ok(None);
        }
        let Some(client) = self.store.get_client(&old.client_id).await? else {
            return Ok(None);
        };
        let now = self.clock.now();
        let minted = secret::mint(SecretKind::ApiKey);
        let record = TokenRecord {
            hash: minted.hash,
            name: old.name.clone(),
            ..new_token_record(
                &client,
                TokenKind::ApiKey,
                old.scopes.clone(),
                None,
                None,
                now,
            )
        };
        let events = vec![
            events::token_deleted(&old, Gone::Replaced(&record.id), now),
            events::token_created(&record, now),
        ];
        if !self
            .store
            .replace_api_key(old_id, record.clone(), now, events)
            .await?
        {
            return Ok(None);
        }
        self.cache.invalidate(&old.hash);
        Ok(Some(Issued {
            record,
            value: minted.value,
        }))
    }

    /// Revokes a token; the very next request with it is refused. `false` if unknown.
    pub async fn revoke(&self, token: &TokenRecord) -> Result<bool, StoreError> {
        let now = self.clock.now();
        let event = events::token_deleted(token, Gone::Revoked, now);
        let found = self.store.revoke_token(&token.id, now, Some(event)).await?;
        self.cache.invalidate(&token.hash);
        Ok(found)
    }

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
        self.catch_up().await.map_err(BearerError::Store)?;
        match self.cache.get(&hash) {
            Some(Cached::Valid(id)) => {
                // The cache never outlives a token, but the clock is the judge.
                return match id.expires_at {
                    Some(end) if end <= now => Err(BearerError::Invalid),
                    _ => Ok(id),
                };
            }
            Some(Cached::Invalid) => return Err(BearerError::Invalid),
            None => {}
        }
        // A miss goes to the store: boxed so the cache hit's future stays small.
        let load = Box::pin(self.load_bearer(hash, now));
        load.await
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
        self.cache.insert(hash, decision.clone(), seen, now);
        match decision {
            Cached::Valid(id) => Ok(id),
            Cached::Invalid => Err(BearerError::Invalid),
        }
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
        self.catch_up().await.map_err(BearerError::Store)?;
        match self.cache.get(&key) {
            Some(Cached::Valid(id)) => {
                return match id.expires_at {
                    Some(end) if end <= now => Err(BearerError::Invalid),
                    _ => Ok(id),
                };
            }
            Some(Cached::Invalid) => return Err(BearerError::Invalid),
            None => {}
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
        self.cache.insert(key, decision.clone(), seen, now);
        match decision {
            Cached::Valid(id) => Ok(id),
            Cached::Invalid => Err(BearerError::Invalid),
        }
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

/// How long change-feed entries are kept. An instance that has not read the feed for longer
/// (idle: it reads it on requests) misses the changes pruned meanwhile, which is harmless only
/// if every cached decision such a change concerns has aged out by then. Those decisions were
/// cached before the change (give or take one store read, which the margin covers) and live at
/// most `tokens.cache_ttl` (the token cache, and the signature gate's keys), so the feed is
/// kept that long plus a margin, and at least an hour.
pub fn feed_retention(cache_ttl: std::time::Duration) -> std::time::Duration {
    const FLOOR: std::time::Duration = std::time::Duration::from_secs(3600);
    const MARGIN: std::time::Duration = std::time::Duration::from_secs(600);
    FLOOR.max(cache_ttl.saturating_add(MARGIN))
}

/// Secrets anyone would try first: the demo client's, and the usual placeholders.
const WELL_KNOWN_SECRETS: [&str; 6] = [
    "demo-secret",
    "secret",
    "password",
    "changeme",
    "client-secret",
    "",
];

/// Whether a config-declared secret is a well-known word. Its SHA-256 is unsalted, so a word
/// gives the same hash in every file, and a leaked file or store gives the word back at once.
fn is_well_known_secret(hash: &Hash) -> bool {
    WELL_KNOWN_SECRETS.iter().any(|w| secret::matches(w, hash))
}

/// Whether a stored client already says what the config declares (timestamps aside).
fn same_declaration(stored: &ClientRecord, declared: &ClientRecord) -> bool {
    let secrets = |c: &ClientRecord| -> Vec<(Hash, Option<i64>)> {
        c.secrets.iter().map(|s| (s.hash, s.expires_at)).collect()
    };
    stored.name == declared.name
        && stored.account == declared.account
        && stored.keys == declared.keys
        && stored.trusted_ips == declared.trusted_ips
        && stored.scopes == declared.scopes
        && stored.enabled == declared.enabled
        && stored.source == declared.source
        && secrets(stored) == secrets(declared)
}

fn secret_kind(kind: TokenKind) -> SecretKind {
    match kind {
        TokenKind::Access => SecretKind::AccessToken,
        TokenKind::ApiKey => SecretKind::ApiKey,
        TokenKind::Managed => SecretKind::ManagedToken,
    }
}

/// A token record for `client` with a fresh id; its `hash` is filled in by the caller.
fn new_token_record(
    client: &ClientRecord,
    kind: TokenKind,
    scopes: Vec<String>,
    expires_at: Option<i64>,
    name: Option<String>,
    now: i64,
) -> TokenRecord {
    let prefix = match kind {
        TokenKind::Access => "at_",
        TokenKind::ApiKey => "ak_",
        TokenKind::Managed => "mt_",
    };
    TokenRecord {
        id: secret::new_id(prefix),
        hash: [0; 32],
        kind,
        client_id: client.id.clone(),
        account: client.account.clone(),
        name,
        user: None,
        audience: None,
        scopes,
        trusted_ips: client.trusted_ips.clone(),
        created_at: now,
        updated_at: now,
        expires_at,
        enabled: true,
        disabled_reason: None,
        revoked_at: None,
        replaced_by: None,
    }
}

/// CIDRs as stored (validated before storing); anything unparsable is skipped.
pub fn parse_nets(items: &[String]) -> Vec<IpNet> {
    items.iter().filter_map(|s| s.parse().ok()).collect()
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

/// The scopes a token may use while its client holds `client`: each of the token's own that a
/// client scope grants, and each of the client's that a token scope grants (a token holding
/// `table://**` keeps `table://a.*` when that is all its client still holds). Both kinds are
/// granted by both lists, so the result never exceeds either; a partial overlap that neither
/// side spells out (`table://a.*` against `table://*.b`) is dropped, which fails closed.
pub fn effective_scopes(token: &[String], client: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(token.len());
    for t in token {
        if crate::scope::granted(t, client) && !out.contains(t) {
            out.push(t.clone());
        }
    }
    for c in client {
        if crate::scope::granted(c, token) && !crate::scope::granted(c, &out) {
            out.push(c.clone());
        }
    }
    out
}

/// Checks requested scopes (space-separated) against what the client holds, with the wildcard
/// rules of [`crate::scope`] (holding `table://*.**` grants `table://a.b`). `None` asks for
/// everything the client holds; `Err` names the first scope it may not have.
pub fn narrow_scopes(requested: Option<&str>, held: &[String]) -> Result<Vec<String>, String> {
    match requested {
        None => Ok(held.to_vec()),
        Some(req) => {
            let mut out: Vec<String> = Vec::new();
            for s in req.split(' ').filter(|s| !s.is_empty()) {
                if !crate::scope::granted(s, held) {
                    return Err(s.to_string());
                }
                if !out.iter().any(|o| o == s) {
                    out.push(s.to_string());
                }
            }
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_narrow_to_a_subset_only() {
        let held = vec!["read".to_string(), "write".to_string()];
        assert_eq!(narrow_scopes(None, &held).unwrap(), held);
        assert_eq!(narrow_scopes(Some("read"), &held).unwrap(), ["read"]);
        assert_eq!(
            narrow_scopes(Some("read  read write"), &held).unwrap(),
            ["read", "write"]
        );
        assert_eq!(narrow_scopes(Some("admin"), &held).unwrap_err(), "admin");
        assert_eq!(narrow_scopes(Some("rea"), &held).unwrap_err(), "rea");
    }

    fn list(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_token_keeps_only_the_scopes_its_client_still_grants() {
        let token = list(&["read", "level://admin", "table://my.app.*"]);
        // The client unchanged: the token unchanged.
        let client = list(&["read", "write", "level://admin", "table://**"]);
        assert_eq!(effective_scopes(&token, &client), token);
        // Narrowed: the admin level and the tables go.
        assert_eq!(effective_scopes(&token, &list(&["read"])), ["read"]);
        assert!(effective_scopes(&token, &[]).is_empty());
        // A wildcard the client narrowed becomes what the client still holds under it.
        let wide = list(&["table://**", "read"]);
        assert_eq!(
            effective_scopes(&wide, &list(&["table://a.*", "write"])),
            ["table://a.*"]
        );
        assert_eq!(
            effective_scopes(&list(&["table://a.*"]), &list(&["table://*.b"])),
            Vec::<String>::new()
        );
        // Never wider than the token, whatever the client gains.
        assert_eq!(
            effective_scopes(
                &list(&["table://a.b"]),
                &list(&["table://**", "table://a.b"])
            ),
            ["table://a.b"]
        );
    }

    #[test]
    fn the_feed_outlives_every_cached_decision() {
        use std::time::Duration;
        let h = |n: u64| Duration::from_secs(n * 3600);
        assert_eq!(feed_retention(Duration::from_secs(300)), h(1));
        assert!(feed_retention(h(1)) > h(1));
        assert!(feed_retention(h(48)) > h(48));
        assert_eq!(feed_retention(Duration::MAX), Duration::MAX);
    }

    #[test]
    fn well_known_secrets_are_recognised_by_their_hash() {
        let demo = secret::parse_sha256_hex(
            "cd577fe2561ebff23505db0bb006300c7cdecbd46bc0e03c449afafaca2c25bf",
        )
        .unwrap();
        assert!(is_well_known_secret(&demo));
        assert!(!is_well_known_secret(
            &secret::mint(SecretKind::ClientSecret).hash
        ));
    }

    #[test]
    fn scopes_narrow_through_wildcards() {
        let held = vec!["table://*.**".to_string(), "level://admin".to_string()];
        assert_eq!(
            narrow_scopes(Some("table://a.b table://a.*"), &held).unwrap(),
            ["table://a.b", "table://a.*"]
        );
        assert_eq!(
            narrow_scopes(Some("table://a"), &held).unwrap_err(),
            "table://a"
        );
        assert_eq!(
            narrow_scopes(Some("level://root"), &held).unwrap_err(),
            "level://root"
        );
        assert_eq!(
            narrow_scopes(Some("table://a..b"), &held).unwrap_err(),
            "table://a..b"
        );
    }
}
