//! Persistence: the [`Store`] trait, the records it keeps, and its backends ([`sqlite`], and
//! [`postgres`] for several replicas on one database).
//! It owns durability, schema and the atomicity of each operation; it decides no policy (what is
//! expired, revoked or reused is the caller's call) and never reads the clock: `now` is passed in.
//!
//! This file is the table of contents: [`Store`] and the small concerns ([`Health`], the change
//! feed, nonces), the options, the error and [`open`]. Each larger concern has its records and its
//! trait in a file of its own, named again here:
//! - `clients.rs`: [`ClientRecord`] and its secrets and keys, [`ClientStore`];
//! - `tokens.rs`: [`TokenRecord`], [`TokenStore`];
//! - `idempotency.rs`: [`IdempotencyRecord`], [`Reservation`], [`IdempotencyStore`];
//! - `outbox.rs`: webhook subscriptions, events and deliveries, [`SubscriptionStore`] and
//!   [`Outbox`].

mod clients;
pub mod feed;
mod idempotency;
mod outbox;
pub mod postgres;
pub mod seal_key;
pub mod sqlite;
mod timing;
pub use timing::{StoreTiming, TimingFamily};
#[cfg(test)]
mod tests;
mod tokens;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use self::clients::{ClientRecord, ClientSource, ClientStore, SecretHash, SigningKey};
pub use self::idempotency::{
    IdempotencyRecord, IdempotencyState, IdempotencyStore, Reservation, StoredResponse,
};
pub use self::outbox::{
    AttemptOutcome, ClaimedDelivery, Delivery, DeliveryFilter, DeliveryState, NewEvent, Outbox,
    SubscriptionStore, WebhookEvent, WebhookSubscription,
};
pub use self::tokens::{TokenKind, TokenRecord, TokenStore};

/// A SHA-256 digest: how secrets, token values and request fingerprints are kept.
pub type Hash = [u8; 32];

/// One entry of the change feed: a token (by hash) or a client changed or went away.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub seq: i64,
    pub token_hash: Option<Hash>,
    pub client_id: Option<String>,
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

/// `[store]`, validated (`config/store.rs` builds it): where records are kept, how to open the
/// store, and its housekeeping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreSettings {
    /// `store.url`: `sqlite://path` or `postgres://…`.
    pub url: String,
    /// `store.durability` and `[store.postgres]`, as [`open`] takes them (no timing: the
    /// service adds its metrics' when it opens the store).
    pub options: StoreOptions,
    /// `store.sweep_interval`: how often expired records are deleted.
    pub sweep_interval: Duration,
    /// `store.token_retention`: how long expired or revoked tokens are kept before deletion.
    pub token_retention: Duration,
    /// `store.seal_key_file`; "": `<database>.seal-key` beside an SQLite database.
    pub seal_key_file: String,
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
/// [`TokenStore`], [`IdempotencyStore`], [`NonceStore`], [`SubscriptionStore`], [`Outbox`]): a backend implements each (one file per
/// concern reads well) and is then a `Store` by the blanket impl below. Every `bool` answer says
/// whether the named record existed (and so whether anything could change); times are unix
/// seconds from the caller's clock.
pub trait Store:
    Health
    + ChangeFeedSource
    + ClientStore
    + TokenStore
    + IdempotencyStore
    + NonceStore
    + SubscriptionStore
    + Outbox
{
}

impl<T> Store for T where
    T: Health
        + ChangeFeedSource
        + ClientStore
        + TokenStore
        + IdempotencyStore
        + NonceStore
        + SubscriptionStore
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

/// The disabled reason a record keeps: enabling it clears the reason (the rule of
/// [`TokenStore::set_token_enabled`] and [`SubscriptionStore::set_subscription_enabled`]).
pub(crate) fn kept_reason(enabled: bool, reason: Option<String>) -> Option<String> {
    if enabled { None } else { reason }
}
