//! The SQLite backend of [`Store`](super::Store): schema, migrations, and one transaction per
//! call. Blocking calls run on tokio's blocking pool; it knows nothing of HTTP or of policy.
//!
//! Durability: WAL with `synchronous=NORMAL` ([`Durability::Normal`]) by default. A call returns
//! only after its transaction committed to the WAL, so it survives `kill -9` of the process; a power
//! loss or OS crash may lose the last transactions. [`Durability::Full`] (`synchronous=FULL`)
//! closes that gap at the cost of an fsync per commit.
//!
//! This file holds the store itself: its connections (one writer, readers, the change watch),
//! `open`, and the `read` / `write` / `batched` calls every operation runs through. Each concern of
//! [`Store`](super::Store) is implemented in a file of its own beside it:
//! - `schema.rs`: the migrations (append only) and per-connection settings;
//! - `batch.rs`: the batch writer (group commit) and the WAL checkpointer;
//! - `files.rs`: the database's directories and files, private to their owner;
//! - `rows.rs`: error mapping, statement helpers and row codecs;
//! - `changes.rs`, `clients.rs`, `tokens.rs`, `outbox.rs` (webhook events; subscriptions and
//!   deliveries in `outbox/`), `idempotency.rs`, `nonces.rs`: one trait impl per concern;
//! - `idem_index.rs`: the in-process index that finds idempotency records;
//! - `tests.rs`: what only this backend does (the contract every backend keeps is in
//!   `store/tests.rs`).

mod batch;
mod changes;
mod clients;
mod files;
mod idem_index;
mod idempotency;
mod nonces;
mod outbox;
mod rows;
mod schema;
#[cfg(test)]
mod tests;
mod tokens;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, Transaction, TransactionBehavior};

use self::batch::{Batch, Batcher, Pending, RESTART_WAIT, WAL_SIZE_LIMIT, checkpoint_forever};
use self::changes::Watch;
use self::files::{create_parent, private_files};
use self::idem_index::IdemIndex;
use self::rows::db;
pub use self::schema::schema_version;
use self::schema::{configure, migrate};
use super::{Durability, Health, StoreError, StoreOptions};

/// Where the database lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    File(PathBuf),
    /// A private in-memory database: one connection, gone on drop. For tests.
    Memory,
}

impl Location {
    /// Parses `sqlite://path`, `sqlite:path`, `sqlite::memory:`, `:memory:` or a plain path.
    /// Never echoes the URL in an error: another scheme's URL may carry a password.
    pub fn parse(url: &str) -> Result<Self, StoreError> {
        let path = if let Some(rest) = url.strip_prefix("sqlite://") {
            strip_query(rest)
        } else if let Some(rest) = url.strip_prefix("sqlite:") {
            strip_query(rest)
        } else if let Some((scheme, _)) = url.split_once("://") {
            return Err(StoreError::UnsupportedScheme {
                scheme: scheme.chars().take(32).collect(),
            });
        } else {
            url
        };
        match path {
            "" => Err(StoreError::EmptyPath),
            ":memory:" => Ok(Self::Memory),
            path => Ok(Self::File(PathBuf::from(path))),
        }
    }
}

/// Drops a `?mode=rwc`-style query, as sqlx-style URLs carry one.
fn strip_query(rest: &str) -> &str {
    rest.split_once('?').map_or(rest, |(path, _)| path)
}

/// The SQLite store.
///
/// One writer connection behind a mutex: SQLite admits one writer at a time anyway, so more
/// writer connections would only trade the mutex for `SQLITE_BUSY` retries. Beside it a few
/// read-only connections ([`StoreOptions::readers`]): in WAL mode they read while a write is in
/// progress, so token lookups on a cache miss never queue behind issuance. Every lock is taken and
/// released inside one `spawn_blocking` closure, never across an `.await`.
pub struct SqliteStore {
    inner: Arc<Inner>,
    /// The per-request idempotency writes, committed in groups (see [`Batcher`]).
    batch: Batcher,
}

struct Inner {
    writer: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
    /// Asked for `PRAGMA data_version` on every authenticated request: it changes whenever
    /// another connection (our writer, or another process) commits. `None` in memory.
    watch: Option<Mutex<Watch>>,
    /// `store.busy_timeout`, restored after a batch that would not wait.
    busy_timeout: Duration,
    /// `store.durability = "full"`: commits fsync, so group commits leave the runtime.
    fsync_every_commit: bool,
    /// Where each idempotency key's record is; used only while holding `writer`.
    idem: Mutex<IdemIndex>,
    /// Write latencies, when metrics are on.
    timing: Option<crate::store::StoreTiming>,
}

impl SqliteStore {
    /// Opens (creating it and its parent directories if needed) and migrates the database.
    pub async fn open(url: &str, options: StoreOptions) -> Result<Self, StoreError> {
        let location = Location::parse(url)?;
        run_blocking("open", move || Self::open_blocking(&location, &options)).await
    }

    /// [`SqliteStore::open`] for callers outside a runtime.
    pub fn open_blocking(location: &Location, options: &StoreOptions) -> Result<Self, StoreError> {
        const OP: &str = "open";
        let (mut writer, readers) = match location {
            Location::Memory => {
                let conn = Connection::open_in_memory().map_err(db(OP))?;
                configure(&conn, options, false)?;
                (conn, 0)
            }
            Location::File(path) => {
                create_parent(path)?;
                private_files(path)?;
                let conn = Connection::open(path).map_err(db(OP))?;
                configure(&conn, options, false)?;
                // journal_mode is persistent and cannot change inside a transaction: set it first.
                let mode: String = conn
                    .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
                    .map_err(db(OP))?;
                if !mode.eq_ignore_ascii_case("wal") {
                    return Err(StoreError::Corrupt {
                        op: OP,
                        detail: format!("journal_mode is {mode}, wanted wal"),
                    });
                }
                (conn, options.readers)
            }
        };
        migrate(&mut writer)?;
        // Loaded here, off the runtime: the first reservation must not scan the table on it.
        let idem = IdemIndex::load(&writer)?;
        let mut checkpointer = None;
        let mut reader_conns = Vec::with_capacity(readers);
        let mut watch = None;
        if let Location::File(path) = location {
            for _ in 0..readers {
                let conn = Connection::open(path).map_err(db(OP))?;
                configure(&conn, options, true)?;
                reader_conns.push(Mutex::new(conn));
            }
            let conn = Connection::open(path).map_err(db(OP))?;
            configure(&conn, options, true)?;
            watch = Some(Mutex::new(Watch {
                conn,
                data_version: None,
                seq: 0,
            }));
        }
        if let Location::File(path) = location {
            // SQLite gives the -wal and -shm files the database's mode; make sure of it.
            private_files(path)?;
            // Checkpoints run on a thread of their own, not inside whichever commit crosses
            // the threshold: that commit may be a group commit on the runtime.
            writer
                .pragma_update(None, "wal_autocheckpoint", 0)
                .map_err(db(OP))?;
            // After a checkpoint lets the WAL start over, a file grown past this is truncated.
            writer
                .pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)
                .map_err(db(OP))?;
            let conn = Connection::open(path).map_err(db(OP))?;
            configure(&conn, options, false)?;
            // Only a RESTART checkpoint waits (PASSIVE never does), and while it waits for
            // readers every writer waits behind it: not for `store.busy_timeout`.
            conn.busy_timeout(RESTART_WAIT).map_err(db(OP))?;
            checkpointer = Some(conn);
        }
        let inner = Arc::new(Inner {
            writer: Mutex::new(writer),
            readers: reader_conns,
            next_reader: AtomicUsize::new(0),
            watch,
            busy_timeout: options.busy_timeout,
            fsync_every_commit: options.durability == Durability::Full,
            idem: Mutex::new(idem),
            timing: options.timing.clone(),
        });
        if let Some(conn) = checkpointer {
            let weak = Arc::downgrade(&inner);
            std::thread::Builder::new()
                .name("warden-store-checkpoint".to_owned())
                .spawn(move || checkpoint_forever(&conn, &weak))
                .map_err(|e| StoreError::Task {
                    op: OP,
                    detail: format!("cannot start the checkpointer: {e}"),
                })?;
        }
        Ok(Self {
            batch: Batcher::start(Arc::clone(&inner))?,
            inner,
        })
    }

    /// Runs `f` in the next group commit of the batch writer and answers once that group is
    /// committed: as durable as [`SqliteStore::write`], but under load one commit and one thread
    /// hand-off serve many callers.
    ///
    /// `f` gets no savepoint of its own (the two statements it took were ~4% of a fresh-key
    /// request): if it fails half-way, what it already wrote commits with the batch. So `f`
    /// orders its writes so that the store is consistent after each of them.
    async fn batched<T, F>(&self, op: &'static str, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Batch<'_, '_>) -> Result<T, StoreError> + Send + 'static,
    {
        let stopped = || StoreError::Task {
            op,
            detail: "the batch writer stopped".to_owned(),
        };
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.batch
            .send(Box::new(Pending {
                op,
                f: Some(f),
                result: None,
                reply,
            }))
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Runs `f` in one IMMEDIATE transaction on the writer and commits before returning; an error
    /// from `f` rolls back. IMMEDIATE takes the write lock up front, so a transaction never fails
    /// half-way on a lock held by another process (e.g. an admin command on the same file).
    async fn write<T, F>(&self, op: &'static str, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        run_blocking(op, move || {
            let mut conn = lock(&inner.writer);
            let started = std::time::Instant::now();
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db(op))?;
            // An error drops `tx`, which rolls back.
            let out = f(&tx)?;
            tx.commit().map_err(db(op))?;
            if let Some(timing) = &inner.timing {
                timing.observe(op, started);
            }
            Ok(out)
        })
        .await
    }

    /// Runs `f` on a reader connection (the writer when there are none).
    async fn read<T, F>(&self, op: &'static str, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        run_blocking(op, move || f(&inner.reader())).await
    }
}

impl Inner {
    /// A free reader if there is one, else waits for the next in turn.
    fn reader(&self) -> MutexGuard<'_, Connection> {
        let count = self.readers.len();
        if count == 0 {
            return lock(&self.writer);
        }
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed);
        for i in 0..count {
            match self.readers[(start + i) % count].try_lock() {
                Ok(guard) => return guard,
                Err(TryLockError::Poisoned(poisoned)) => return poisoned.into_inner(),
                Err(TryLockError::WouldBlock) => {}
            }
        }
        lock(&self.readers[start % count])
    }
}

/// A panic while a guard was held dropped its transaction (rolled back), so the connection is
/// still sound: recover it rather than fail every later call.
fn lock(mutex: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn run_blocking<T, F>(op: &'static str, f: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Task {
            op,
            detail: e.to_string(),
        })?
}

#[async_trait]
impl Health for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        const OP: &str = "ping";
        self.read(OP, |conn| {
            conn.query_row("PRAGMA user_version", [], |row| row.get::<_, i64>(0))
                .map(drop)
                .map_err(db(OP))
        })
        .await
    }
}
