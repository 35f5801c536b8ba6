//! Persistence: the [`Store`] trait, the records it keeps, and its backends ([`sqlite`], and
//! [`postgres`] for several replicas on one database).
//! It owns durability, schema and the atomicity of each operation; it decides no policy (what is
//! expired, revoked or reused is the caller's call) and never reads the clock: `now` is passed in.

pub mod feed;
pub mod postgres;
pub mod seal_key;
pub mod sqlite;
mod timing;
pub use timing::{StoreTiming, TimingFamily};
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// A SHA-256 digest: how secrets, token values and request fingerprints are kept.
pub type Hash = [u8; 32];

/// One hashed client secret. Two may be active at once during a rotation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretHash {
    /// SHA-256 of the secret; the secret itself is never stored.
    pub hash: Hash,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds after which the secret no longer authenticates; `None`: never expires.
    pub expires_at: Option<i64>,
}

impl SecretHash {
    /// Whether the secret still authenticates at `now`.
    pub fn is_active(&self, now: i64) -> bool {
        self.expires_at.is_none_or(|end| now < end)
    }
}

/// A client's registered public key, named by the RFC 9421 `keyid`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningKey {
    /// The `keyid` a signature names; unique within one client.
    pub key_id: String,
    /// Signature algorithm (an RFC 9421 registry name), e.g. `ed25519`.
    pub alg: String,
    /// The public key bytes (`httpsig::VerificationKey::stored`: ed25519 the 32 raw bytes,
    /// ecdsa the uncompressed point, rsa the PKCS#1 DER). Empty for `hmac-sha256`: a secret
    /// is never stored; the config that declared it holds it in memory.
    pub public_key: Vec<u8>,
}

/// Where a client was declared, which says who may change it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientSource {
    /// `[[clients]]` in the config file: rewritten by [`ClientStore::upsert_client`] at every
    /// start.
    Config,
    /// Created at run time through the API.
    Managed,
}

impl ClientSource {
    /// The stored text form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Config => "config",
            Self::Managed => "managed",
        }
    }

    /// Parses the stored text form.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "config" => Some(Self::Config),
            "managed" => Some(Self::Managed),
            _ => None,
        }
    }
}

/// An API client: who it is, how it authenticates, what it may do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientRecord {
    pub id: String,
    pub name: String,
    pub account: String,
    /// Hashed secrets, oldest first.
    pub secrets: Vec<SecretHash>,
    /// Signing keys, in the order given.
    pub keys: Vec<SigningKey>,
    /// CIDRs the client may call from; validated by the caller before storing.
    pub trusted_ips: Vec<String>,
    pub scopes: Vec<String>,
    pub enabled: bool,
    pub source: ClientSource,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
}

/// What a token is; stored as text (`access`, `api_key`, `managed`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    /// A short-lived bearer token from `/v1/auth` or `/v1/oauth/token`.
    Access,
    /// A long-lived user API key; revoking it may issue a replacement.
    ApiKey,
    /// A token created through the token-management API.
    Managed,
}

impl TokenKind {
    /// The stored text form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Access => "access",
            Self::ApiKey => "api_key",
            Self::Managed => "managed",
        }
    }

    /// Parses the stored text form.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "access" => Some(Self::Access),
            "api_key" => Some(Self::ApiKey),
            "managed" => Some(Self::Managed),
            _ => None,
        }
    }
}

/// An issued credential. Only the hash of its value is stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Public identifier (e.g. `accessTokenId`); not a secret.
    pub id: String,
    /// SHA-256 of the token value; unique, and the key of [`TokenStore::token_by_hash`].
    pub hash: Hash,
    pub kind: TokenKind,
    pub client_id: String,
    pub account: String,
    pub name: Option<String>,
    pub user: Option<String>,
    pub audience: Option<String>,
    pub scopes: Vec<String>,
    /// CIDRs the token may be used from (on top of the client's).
    pub trusted_ips: Vec<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
    /// Unix seconds; `None` for long-lived tokens.
    pub expires_at: Option<i64>,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    /// Unix seconds of the first revocation; a revoked token never comes back.
    pub revoked_at: Option<i64>,
    /// The id of the token that replaced this one ([`TokenStore::replace_api_key`]).
    pub replaced_by: Option<String>,
}

impl TokenRecord {
    /// Whether the token authenticates at `now`: enabled, not revoked, not expired.
    pub fn is_active(&self, now: i64) -> bool {
        self.enabled && self.revoked_at.is_none() && self.expires_at.is_none_or(|end| now < end)
    }
}

/// A recorded response, replayed for a repeated idempotency key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredResponse {
    /// The HTTP status, or [`StoredResponse::NOT_REPLAYABLE`].
    pub status: u16,
    /// Header names and raw values, in order; repeated names allowed.
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl StoredResponse {
    /// The status of a marker: the request ran, but its response was not kept (streamed, too
    /// large, or cut short), so a retry must be refused rather than run again. The body holds
    /// the reason as text.
    pub const NOT_REPLAYABLE: u16 = 0;

    /// A marker record (see [`StoredResponse::NOT_REPLAYABLE`]).
    pub fn not_replayable(reason: &str) -> Self {
        Self {
            status: Self::NOT_REPLAYABLE,
            headers: Vec::new(),
            body: reason.as_bytes().to_vec(),
        }
    }

    /// Whether this is a response to replay rather than a marker.
    pub fn is_replayable(&self) -> bool {
        self.status != Self::NOT_REPLAYABLE
    }
}

/// Where an idempotent request stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum IdempotencyState {
    /// A request holds the key until `lease_until` (unix seconds); after that the reservation is
    /// an orphan (its holder crashed) and the next [`IdempotencyStore::reserve_idempotency`]
    /// takes it over.
    InFlight { lease_until: i64 },
    /// The request completed with this response.
    Done(StoredResponse),
}

/// `(client, key)` → the request it was first used for and what became of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    pub client_id: String,
    pub key: String,
    /// Hash of the request (method, path, body digest…), chosen by the caller.
    pub fingerprint: Hash,
    pub state: IdempotencyState,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds after which the record is void and may be swept.
    pub expires_at: i64,
}

/// The answer of [`IdempotencyStore::reserve_idempotency`].
///
/// The store compares fingerprints itself, inside the reserving transaction, so a caller never
/// sees a record made for a different request: `InFlight` and `Done` always match the fingerprint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reservation {
    /// The caller now holds the key: a new record, or one taken over because it had expired or its
    /// in-flight lease had run out (the orphan of a crash). Run the request, then
    /// [`IdempotencyStore::complete_idempotency`] or [`IdempotencyStore::release_idempotency`].
    Reserved,
    /// The same request is running elsewhere and holds the key until `lease_until`.
    InFlight { lease_until: i64 },
    /// The same request already completed: replay its response.
    Done(Box<IdempotencyRecord>),
    /// The key is live but was used for a different request (another fingerprint).
    Mismatch,
}

/// One entry of the change feed: a token (by hash) or a client changed or went away.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub seq: i64,
    pub token_hash: Option<Hash>,
    pub client_id: Option<String>,
}

/// A webhook event to write into the outbox in the same transaction as the change it reports.
///
/// The store fans it out in that transaction: one delivery per enabled subscription that wants
/// it (see [`Outbox`]). An event no subscription wants is not kept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewEvent {
    /// Unique (`evt_` and 128 random bits): sent as `webhook-id`, the same on every attempt.
    pub id: String,
    /// E.g. `AUTH.CREATED`: a domain, a dot, a name.
    pub event_type: String,
    /// The account the change concerns.
    pub account: String,
    /// JSON text.
    pub payload: String,
    /// Unix seconds; also when its deliveries are first due.
    pub created_at: i64,
}

/// A webhook subscription: where an account's (or, for the operator's, every account's)
/// events go.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookSubscription {
    /// `wh_` and 128 random bits, or the id an operator gave in the config file.
    pub id: String,
    /// The account whose events it receives; `None`: an operator subscription (config file),
    /// which receives the events of every account.
    pub account: Option<String>,
    pub url: String,
    /// Event patterns, checked by the caller: a type (`AUTH.CREATED`), a domain (`AUTH.*`), `*`.
    pub events: Vec<String>,
    pub description: Option<String>,
    /// The signing secrets, sealed by the caller; opaque to the store.
    pub sealed_secrets: Vec<u8>,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub source: ClientSource,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
}

/// An event as stored, for delivery.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookEvent {
    pub id: String,
    pub event_type: String,
    pub account: String,
    /// JSON text, exactly as it is sent.
    pub payload: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// Where a delivery stands; stored as text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// To be tried (again) at `next_attempt_at`, or being tried under a lease.
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Every attempt failed (dead letter); `replay` makes it pending again.
    Dead,
}

impl DeliveryState {
    /// The stored text form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Dead => "dead",
        }
    }

    /// Parses the stored text form.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "pending" => Some(Self::Pending),
            "delivered" => Some(Self::Delivered),
            "dead" => Some(Self::Dead),
            _ => None,
        }
    }
}

/// One event for one subscription: what became of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// Increasing, never reused.
    pub id: i64,
    pub event_id: String,
    pub event_type: String,
    pub account: String,
    pub subscription_id: String,
    pub state: DeliveryState,
    /// Attempts started so far (a claim counts, so an attempt cut short by a crash counts too).
    pub attempts: u32,
    /// Unix seconds: when a pending delivery is due.
    pub next_attempt_at: i64,
    /// The HTTP status of the last attempt, if it got one.
    pub last_status: Option<u16>,
    /// Why the last attempt failed, if it did.
    pub last_error: Option<String>,
    /// Unix seconds: when the event happened.
    pub created_at: i64,
    /// Unix seconds: when it was delivered or declared dead.
    pub finished_at: Option<i64>,
}

/// A delivery claimed for one attempt: [`Outbox::claim_deliveries`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimedDelivery {
    pub id: i64,
    /// This attempt's number (the first is 1).
    pub attempt: u32,
    /// The lease it was claimed under; fences [`Outbox::finish_attempt`].
    pub lease_until: i64,
    pub event: WebhookEvent,
    pub subscription: WebhookSubscription,
}

/// How an attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The receiver answered 2xx.
    Delivered { status: u16 },
    /// It did not: due again at `retry_at`, or dead (`None`). `disable_subscription` disables
    /// the subscription with that reason (a receiver that answered 410 Gone).
    Failed {
        status: Option<u16>,
        error: String,
        retry_at: Option<i64>,
        disable_subscription: Option<String>,
    },
}

/// Which deliveries [`Outbox::list_deliveries`] returns, newest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeliveryFilter {
    pub subscription: Option<String>,
    pub state: Option<DeliveryState>,
    /// Only deliveries with a smaller id (the next page).
    pub before: Option<i64>,
    pub limit: u32,
}

/// How hard a commit tries to reach the disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// A committed transaction survives a crash or `kill -9` of the process; a power loss or OS
    /// crash may lose the last few transactions (SQLite: WAL with `synchronous=NORMAL`).
    #[default]
    Normal,
    /// A committed transaction also survives a power loss, at the cost of an fsync per commit
    /// (SQLite: `synchronous=FULL`; about 3× slower issuance on this machine's disk).
    Full,
}

/// How to open a store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreOptions {
    /// Default [`Durability::Normal`].
    pub durability: Durability,
    /// How long a write waits for another process's lock before failing. Default 5 s.
    pub busy_timeout: Duration,
    /// Read-only connections beside the single writer (SQLite). Default 4; 0 reads on the writer.
    pub readers: usize,
    /// The pool, timeouts and TLS roots of a PostgreSQL store (`[store.postgres]`).
    pub postgres: postgres::PostgresOptions,
    /// Where write latencies are recorded (`warden_store_write_duration_seconds`); default
    /// `None`: nowhere (metrics off, the CLI).
    pub timing: Option<StoreTiming>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            durability: Durability::Normal,
            busy_timeout: Duration::from_secs(5),
            readers: 4,
            postgres: postgres::PostgresOptions::default(),
            timing: None,
        }
    }
}

/// What can go wrong in the store. Messages never include secrets or connection passwords.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported store url scheme {scheme:?}; this build supports sqlite and postgres")]
    UnsupportedScheme { scheme: String },
    #[error("empty store path")]
    EmptyPath,
    #[error("cannot create store directory {path}: {source}")]
    CreateDir {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot prepare store file {path}: {source}")]
    File {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("database schema version {found} is newer than this build supports ({supported})")]
    SchemaTooNew { found: i64, supported: i64 },
    #[error("{op}: a record with the same id or hash already exists")]
    Conflict { op: &'static str },
    #[error("{op}: stored data is malformed: {detail}")]
    Corrupt { op: &'static str, detail: String },
    #[error("{op}: database error: {source}")]
    Database {
        op: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{op}: store task did not finish: {detail}")]
    Task { op: &'static str, detail: String },
}

/// The persistence interface: every operation of every concern, for use as `Arc<dyn Store>`.
/// Each call is one transaction, committed before it returns.
///
/// Narrow on purpose, so a shared backend (PostgreSQL, for several replicas) can implement it too.
/// It is the sum of one trait per concern ([`Health`], [`ChangeFeedSource`], [`ClientStore`],
/// [`TokenStore`], [`IdempotencyStore`], [`NonceStore`], [`Outbox`]): a backend implements each (one file per
/// concern reads well) and is then a `Store` by the blanket impl below. Every `bool` answer says
/// whether the named record existed (and so whether anything could change); times are unix
/// seconds from the caller's clock.
pub trait Store:
    Health + ChangeFeedSource + ClientStore + TokenStore + IdempotencyStore + NonceStore + Outbox
{
}

impl<T> Store for T where
    T: Health
        + ChangeFeedSource
        + ClientStore
        + TokenStore
        + IdempotencyStore
        + NonceStore
        + Outbox
        + ?Sized
{
}

/// Whether the store answers.
#[async_trait]
pub trait Health: Send + Sync {
    /// Checks that the store answers (readiness).
    async fn ping(&self) -> Result<(), StoreError>;
}

/// The change feed: how every instance learns that a token or client changed.
#[async_trait]
pub trait ChangeFeedSource: Send + Sync {
    /// A cheap, synchronous marker (called on every authenticated request, at most every
    /// `tokens.change_check_interval`) that differs from its last value whenever the change
    /// feed may have grown since, by any writer. A change written through this handle moves it
    /// before the write returns; one by another process moves it once this process hears of it:
    /// at once on SQLite (it reads the file), within a notification's trip (or, if that was
    /// lost, `store.postgres.fallback_poll_interval`) on PostgreSQL.
    fn change_marker(&self) -> Result<u64, StoreError>;
    /// Changes to tokens and clients after `seq`, oldest first, at most `limit`.
    async fn changes_since(&self, seq: i64, limit: u32) -> Result<Vec<Change>, StoreError>;
    /// The newest change's `seq` (0 when none).
    async fn latest_change(&self) -> Result<i64, StoreError>;
    /// Forgets changes recorded more than `older_than_secs` ago by the database's own clock
    /// (the feed is stamped by the database); returns how many.
    async fn prune_changes(&self, older_than_secs: i64) -> Result<u64, StoreError>;
}

/// Clients, with their secrets and signing keys.
#[async_trait]
pub trait ClientStore: Send + Sync {
    /// Creates or replaces a client with exactly what is given (secrets and keys included);
    /// an existing client keeps its original `created_at`.
    async fn upsert_client(&self, client: ClientRecord) -> Result<(), StoreError>;
    async fn get_client(&self, id: &str) -> Result<Option<ClientRecord>, StoreError>;
    /// All clients, by id.
    async fn list_clients(&self) -> Result<Vec<ClientRecord>, StoreError>;
    async fn set_client_enabled(
        &self,
        id: &str,
        enabled: bool,
        now: i64,
    ) -> Result<bool, StoreError>;
    /// Rotation: existing secrets that would outlive `old_secrets_expire_at` now expire then
    /// (`None` leaves them as they are), secrets already expired at `now` are dropped, and
    /// `secret` is added, with `event`. A secret the client already has is a
    /// [`StoreError::Conflict`].
    async fn add_client_secret(
        &self,
        id: &str,
        secret: SecretHash,
        old_secrets_expire_at: Option<i64>,
        now: i64,
        event: Option<NewEvent>,
    ) -> Result<bool, StoreError>;
    /// Drops every client secret expired at `now`; returns how many.
    async fn prune_expired_secrets(&self, now: i64) -> Result<u64, StoreError>;
}

/// Issued tokens, kept by the hash of their value; their outbox events are written with them.
#[async_trait]
pub trait TokenStore: Send + Sync {
    /// Stores a new token, and `event` in the outbox in the same transaction.
    /// A token with the same id or hash is a [`StoreError::Conflict`].
    async fn insert_token(
        &self,
        token: TokenRecord,
        event: Option<NewEvent>,
    ) -> Result<(), StoreError>;
    /// The indexed lookup behind a cache miss; returns revoked and expired tokens too.
    async fn token_by_hash(&self, hash: &Hash) -> Result<Option<TokenRecord>, StoreError>;
    async fn get_token(&self, id: &str) -> Result<Option<TokenRecord>, StoreError>;
    /// An account's tokens (optionally of one kind), oldest first.
    async fn list_tokens(
        &self,
        account: &str,
        kind: Option<TokenKind>,
    ) -> Result<Vec<TokenRecord>, StoreError>;
    /// Sets `revoked_at` once; later calls change nothing. `event` is written only by the call that
    /// revokes.
    async fn revoke_token(
        &self,
        id: &str,
        now: i64,
        event: Option<NewEvent>,
    ) -> Result<bool, StoreError>;
    /// Enabling clears `reason`. `event` is written only when `enabled` changes.
    async fn set_token_enabled(
        &self,
        id: &str,
        enabled: bool,
        reason: Option<String>,
        now: i64,
        event: Option<NewEvent>,
    ) -> Result<bool, StoreError>;
    /// `event` is written only when the name changes.
    async fn rename_token(
        &self,
        id: &str,
        name: String,
        now: i64,
        event: Option<NewEvent>,
    ) -> Result<bool, StoreError>;
    /// Deletes the row; `event` is written only if there was one.
    async fn delete_token(&self, id: &str, event: Option<NewEvent>) -> Result<bool, StoreError>;
    /// Atomically revokes `old_id` (with `replaced_by = new.id`) and inserts `new`, with
    /// `events`. `false`, and nothing written, when `old_id` is unknown or already revoked.
    async fn replace_api_key(
        &self,
        old_id: &str,
        new: TokenRecord,
        now: i64,
        events: Vec<NewEvent>,
    ) -> Result<bool, StoreError>;
    /// Deletes tokens that expired, or were revoked, before `before` (a retention cut-off);
    /// returns how many.
    async fn purge_expired_tokens(&self, before: i64) -> Result<u64, StoreError>;
}

/// Idempotency records: reservation, completion or release under a lease, and the sweep.
#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Atomic insert-if-absent of `(client_id, key)`; see [`Reservation`]. A record whose
    /// `expires_at` has passed counts as absent.
    async fn reserve_idempotency(
        &self,
        client_id: &str,
        key: &str,
        fingerprint: Hash,
        now: i64,
        lease_until: i64,
        expires_at: i64,
    ) -> Result<Reservation, StoreError>;
    /// Turns the caller's in-flight reservation into `Done(response)`, kept until the
    /// `expires_at` it was reserved with (the TTL counts from the first request, as Stripe's).
    ///
    /// `lease_until` is the one the caller reserved with, and fences the write: it changes
    /// nothing (`false`) unless the row is still in flight under that same lease. So a holder
    /// whose lease ran out and was taken over can never overwrite the newer reservation, nor
    /// one that was released, swept, or taken over and done.
    async fn complete_idempotency(
        &self,
        client_id: &str,
        key: &str,
        lease_until: i64,
        response: StoredResponse,
    ) -> Result<bool, StoreError>;
    /// Deletes the caller's in-flight reservation (fenced by `lease_until` as in
    /// [`IdempotencyStore::complete_idempotency`]) so the key is free again: the request was not
    /// run.
    async fn release_idempotency(
        &self,
        client_id: &str,
        key: &str,
        lease_until: i64,
    ) -> Result<bool, StoreError>;
    /// Deletes at most `limit` records expired at `now`; call again while it returns `limit`.
    async fn sweep_idempotency(&self, now: i64, limit: u32) -> Result<u64, StoreError>;
}

/// Signature nonces claimed through the store, so that a nonce used at one replica (or before a
/// restart) is refused at every other: the replay check of RFC 9421 §7.2.2 across processes.
/// An entry is the caller's hash of (client, keyid, nonce); the store keeps nothing else.
#[async_trait]
pub trait NonceStore: Send + Sync {
    /// Atomic insert-if-absent of `entry`, live through second `live_until` (inclusive); an
    /// entry whose `live_until` is before `now` counts as absent and is taken over. `true`: the
    /// caller claimed it now; `false`: a live claim exists (the nonce was used). Of concurrent
    /// claims of one entry, by any handle on the same data, exactly one is `true`.
    async fn claim_nonce(
        &self,
        entry: &Hash,
        now: i64,
        live_until: i64,
    ) -> Result<bool, StoreError>;
    /// Deletes at most `limit` entries whose `live_until` is before `now`; call again while it
    /// returns `limit`.
    async fn sweep_nonces(&self, now: i64, limit: u32) -> Result<u64, StoreError>;
}

/// Webhook subscriptions and the outbox: events fanned out into deliveries, one per (event,
/// subscription), claimed under a lease so that two processes never send one at the same time.
///
/// Events come in with the change they report ([`NewEvent`], through [`TokenStore`] and
/// [`ClientStore`]), and in the same transaction the store creates a pending delivery, due at
/// the event's `created_at`, for every subscription that is enabled, whose `account` is the
/// event's or `None`, and one of whose `events` patterns is the event's type, `*`, or the
/// type's domain followed by `.*` (`AUTH.*` for `AUTH.CREATED`). An event no subscription wants
/// is not stored. Deliveries of a disabled subscription are not claimed until it is enabled.
#[async_trait]
pub trait Outbox: Send + Sync {
    /// Adds a subscription unless its account already has `max_per_account` (`false`, nothing
    /// written). The same id is a [`StoreError::Conflict`].
    async fn insert_subscription(
        &self,
        subscription: WebhookSubscription,
        max_per_account: u32,
    ) -> Result<bool, StoreError>;
    /// Creates or replaces an operator subscription (keeping its `created_at`); changes
    /// nothing (`false`) when the id belongs to a managed one.
    async fn put_config_subscription(
        &self,
        subscription: WebhookSubscription,
    ) -> Result<bool, StoreError>;
    async fn get_subscription(&self, id: &str) -> Result<Option<WebhookSubscription>, StoreError>;
    /// An account's subscriptions (`Some`), or every one (`None`), oldest first.
    async fn list_subscriptions(
        &self,
        account: Option<&str>,
    ) -> Result<Vec<WebhookSubscription>, StoreError>;
    /// Enabling clears `reason`.
    async fn set_subscription_enabled(
        &self,
        id: &str,
        enabled: bool,
        reason: Option<String>,
        now: i64,
    ) -> Result<bool, StoreError>;
    /// Replaces the sealed secrets (a rotation).
    async fn set_subscription_secrets(
        &self,
        id: &str,
        sealed_secrets: Vec<u8>,
        now: i64,
    ) -> Result<bool, StoreError>;
    /// Deletes a subscription and its deliveries.
    async fn delete_subscription(&self, id: &str) -> Result<bool, StoreError>;

    /// Claims at most `limit` pending deliveries due at `now` (oldest due first) whose
    /// subscription is enabled and that no live lease holds: each gets `owner` and
    /// `lease_until`, and its attempt count goes up by one, atomically, so no other caller
    /// claims it before the lease ends or [`Outbox::finish_attempt`] releases it. No
    /// subscription ends up with more than `per_subscription` live leases (all owners
    /// together), so one slow receiver cannot hold every sender.
    async fn claim_deliveries(
        &self,
        owner: &str,
        now: i64,
        lease_until: i64,
        limit: u32,
        per_subscription: u32,
    ) -> Result<Vec<ClaimedDelivery>, StoreError>;
    /// Records an attempt's outcome and ends its lease; fenced by the claim (`owner`,
    /// `lease_until`): changes nothing (`false`) when the lease was lost.
    async fn finish_attempt(
        &self,
        id: i64,
        owner: &str,
        lease_until: i64,
        outcome: AttemptOutcome,
        now: i64,
    ) -> Result<bool, StoreError>;
    async fn get_delivery(&self, id: i64) -> Result<Option<Delivery>, StoreError>;
    async fn list_deliveries(&self, filter: DeliveryFilter) -> Result<Vec<Delivery>, StoreError>;
    /// Makes a delivered or dead delivery pending again, due at `now`, its attempts counted
    /// from zero (a pending one is made due at `now` unless a lease holds it). `false` when
    /// unknown or leased.
    async fn replay_delivery(&self, id: i64, now: i64) -> Result<bool, StoreError>;
    /// [`Outbox::replay_delivery`] for every dead delivery declared dead at or after `since`
    /// (of one subscription, or all); returns how many.
    async fn replay_dead_deliveries(
        &self,
        since: i64,
        subscription: Option<&str>,
        now: i64,
    ) -> Result<u64, StoreError>;
    /// Deletes at most `limit` deliveries delivered or dead before `before`, then at most
    /// `limit` events older than `before` with no delivery left; returns how many rows.
    async fn purge_webhooks(&self, before: i64, limit: u32) -> Result<u64, StoreError>;
}

/// Opens the store named by `url` and brings its schema up to date.
///
/// Accepts `sqlite://data/warden.db`, `sqlite:data/warden.db`, `sqlite:///abs/warden.db`, a plain
/// path, or `sqlite::memory:` (tests only: nothing survives). Parent directories are created.
/// `postgres://` (or `postgresql://`) URLs open a [`postgres::PostgresStore`].
pub async fn open(url: &str, options: StoreOptions) -> Result<Arc<dyn Store>, StoreError> {
    if postgres::is_postgres_url(url) {
        return Ok(Arc::new(postgres::PostgresStore::open(url, options).await?));
    }
    Ok(Arc::new(sqlite::SqliteStore::open(url, options).await?))
}
