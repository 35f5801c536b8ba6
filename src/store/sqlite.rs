//! The SQLite backend of [`Store`]: schema, migrations, and one transaction per call.
//! Blocking calls run on tokio's blocking pool; it knows nothing of HTTP or of policy.
//!
//! Durability: WAL with `synchronous=NORMAL` ([`Durability::Normal`]) by default. A call returns
//! only after its transaction committed to the WAL, so it survives `kill -9` of the process; a power
//! loss or OS crash may lose the last transactions. [`Durability::Full`] (`synchronous=FULL`)
//! closes that gap at the cost of an fsync per commit.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::types::Type;
use rusqlite::{Connection, OptionalExtension, Row, Transaction, TransactionBehavior, params};

use super::{
    ClientRecord, ClientSource, Durability, Hash, IdempotencyRecord, IdempotencyState, NewEvent,
    Reservation, SecretHash, SigningKey, Store, StoreError, StoreOptions, StoredResponse,
    TokenKind, TokenRecord, WebhookEvent,
};
use crate::store::Change;

/// Ordered schema migrations; `PRAGMA user_version` counts how many have run. Append only: never
/// edit one that has shipped.
const MIGRATIONS: &[&str] = &[
    // 1: the initial schema. Lists are JSON text; hashes and keys are blobs.
    r#"
    CREATE TABLE clients (
        id          TEXT PRIMARY KEY NOT NULL,
        name        TEXT NOT NULL,
        account     TEXT NOT NULL,
        trusted_ips TEXT NOT NULL,
        scopes      TEXT NOT NULL,
        enabled     INTEGER NOT NULL,
        source      TEXT NOT NULL CHECK (source IN ('config', 'managed')),
        created_at  INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE client_secrets (
        client_id  TEXT NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
        hash       BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER,
        UNIQUE (client_id, hash)
    ) STRICT;
    CREATE TABLE client_keys (
        client_id  TEXT NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
        key_id     TEXT NOT NULL,
        alg        TEXT NOT NULL,
        public_key BLOB NOT NULL,
        UNIQUE (client_id, key_id)
    ) STRICT;
    -- No foreign key to clients: a token outlives its client's removal from the config,
    -- so its audit trail stays.
    CREATE TABLE tokens (
        id              TEXT PRIMARY KEY NOT NULL,
        hash            BLOB NOT NULL UNIQUE,
        kind            TEXT NOT NULL CHECK (kind IN ('access', 'api_key', 'managed')),
        client_id       TEXT NOT NULL,
        account         TEXT NOT NULL,
        name            TEXT,
        user_name       TEXT,
        audience        TEXT,
        scopes          TEXT NOT NULL,
        trusted_ips     TEXT NOT NULL,
        created_at      INTEGER NOT NULL,
        updated_at      INTEGER NOT NULL,
        expires_at      INTEGER,
        enabled         INTEGER NOT NULL,
        disabled_reason TEXT,
        revoked_at      INTEGER,
        replaced_by     TEXT
    ) STRICT;
    CREATE INDEX tokens_by_account ON tokens (account, kind, created_at);
    CREATE INDEX tokens_by_expiry ON tokens (expires_at) WHERE expires_at IS NOT NULL;
    CREATE INDEX tokens_by_revocation ON tokens (revoked_at) WHERE revoked_at IS NOT NULL;
    CREATE TABLE idempotency (
        client_id   TEXT NOT NULL,
        idem_key    TEXT NOT NULL,
        fingerprint BLOB NOT NULL,
        state       TEXT NOT NULL CHECK (state IN ('in_flight', 'done')),
        lease_until INTEGER,
        status      INTEGER,
        headers     BLOB,
        body        BLOB,
        created_at  INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL,
        expires_at  INTEGER NOT NULL,
        UNIQUE (client_id, idem_key)
    ) STRICT;
    CREATE INDEX idempotency_by_expiry ON idempotency (expires_at);
    -- AUTOINCREMENT: an id is never reused after a purge, so receivers can deduplicate on it.
    CREATE TABLE webhook_outbox (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        event_type      TEXT NOT NULL,
        payload         TEXT NOT NULL,
        created_at      INTEGER NOT NULL,
        delivered_at    INTEGER,
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX webhook_outbox_pending ON webhook_outbox (next_attempt_at)
        WHERE delivered_at IS NULL;
    CREATE INDEX webhook_outbox_delivered ON webhook_outbox (delivered_at)
        WHERE delivered_at IS NOT NULL;
    "#,
    // 2: the change feed. Triggers record every change to a token or client, whoever made it
    // (this process or an admin command in another), so every Warden on this file can drop
    // what it cached about them before the next request.
    r#"
    CREATE TABLE changes (
        seq        INTEGER PRIMARY KEY AUTOINCREMENT,
        token_hash BLOB,
        client_id  TEXT,
        at         INTEGER NOT NULL DEFAULT (unixepoch())
    ) STRICT;
    CREATE INDEX changes_by_time ON changes (at);
    CREATE TRIGGER tokens_changed AFTER UPDATE ON tokens
        BEGIN INSERT INTO changes (token_hash) VALUES (OLD.hash); END;
    CREATE TRIGGER tokens_deleted AFTER DELETE ON tokens
        BEGIN INSERT INTO changes (token_hash) VALUES (OLD.hash); END;
    CREATE TRIGGER clients_changed AFTER UPDATE ON clients
        BEGIN INSERT INTO changes (client_id) VALUES (OLD.id); END;
    CREATE TRIGGER clients_deleted AFTER DELETE ON clients
        BEGIN INSERT INTO changes (client_id) VALUES (OLD.id); END;
    "#,
    // 3: idempotency records without a unique index on (client_id, idem_key). Keys are random,
    // so every new key dirtied a random page of that index: a 4 KiB WAL frame, then a checkpoint
    // write, per request. Keys are now appended in `id` order and found through an index kept
    // in each process (see `IdemIndex`), which follows other processes' appends by `id`:
    // AUTOINCREMENT so an id is never reused and that tail never misses a row. A response is
    // appended to a table of its own under the same id (a record is done when it has one), so
    // storing it does not grow a row in place, and loading the index reads only the keys.
    r#"
    CREATE TABLE idempotency_keys (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        client_id   TEXT NOT NULL,
        idem_key    TEXT NOT NULL,
        fingerprint BLOB NOT NULL,
        lease_until INTEGER NOT NULL,
        created_at  INTEGER NOT NULL,
        expires_at  INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX idempotency_keys_by_expiry ON idempotency_keys (expires_at);
    CREATE TABLE idempotency_responses (
        id      INTEGER PRIMARY KEY,
        status  INTEGER NOT NULL,
        headers BLOB NOT NULL,
        body    BLOB NOT NULL
    ) STRICT;
    -- Deletions, so that every process can drop what another one released or swept from its
    -- in-process index (else those entries would stay in its memory for good).
    CREATE TABLE idempotency_deleted (
        seq       INTEGER PRIMARY KEY AUTOINCREMENT,
        id        INTEGER NOT NULL,
        client_id TEXT NOT NULL,
        idem_key  TEXT NOT NULL,
        at        INTEGER NOT NULL DEFAULT (unixepoch())
    ) STRICT;
    CREATE TRIGGER idempotency_keys_deleted AFTER DELETE ON idempotency_keys
        BEGIN
            DELETE FROM idempotency_responses WHERE id = OLD.id;
            INSERT INTO idempotency_deleted (id, client_id, idem_key)
                VALUES (OLD.id, OLD.client_id, OLD.idem_key);
        END;
    INSERT INTO idempotency_keys (client_id, idem_key, fingerprint, lease_until, created_at,
        expires_at)
        SELECT client_id, idem_key, fingerprint, coalesce(lease_until, 0), created_at, expires_at
        FROM idempotency ORDER BY rowid;
    INSERT INTO idempotency_responses (id, status, headers, body)
        SELECT k.id, o.status, coalesce(o.headers, x''), coalesce(o.body, x'')
        FROM idempotency o JOIN idempotency_keys k
        ON k.client_id = o.client_id AND k.idem_key = o.idem_key
        WHERE o.state = 'done';
    DROP TABLE idempotency;
    "#,
    // 4: `idempotency_keys` without AUTOINCREMENT and without its expiry index. Every group
    // commit wrote both a `sqlite_sequence` page and an index page besides the rows themselves
    // (with the WAL write and the checkpoint's copy of each); they were a quarter of the
    // store's CPU a fresh-key request (`idem_rate`, `IDEM_BODY=5`: 6.9 → 5.2 µs a pair). Ids
    // must still never be reused, or another process's tail (`IdemIndex::sync`) would miss a
    // row: the highest row is now never deleted (a release ends the lease in place, a takeover
    // appends the new row before deleting the old one, the sweep leaves the last row), so
    // `max(id) + 1`, which SQLite assigns, only grows. The sweep walks the oldest rows by id
    // instead of the index. If the sequence had passed the last row (its row deleted), a
    // placeholder holds its id.
    r#"
    DROP TRIGGER idempotency_keys_deleted;
    CREATE TABLE idempotency_keys_4 (
        id          INTEGER PRIMARY KEY,
        client_id   TEXT NOT NULL,
        idem_key    TEXT NOT NULL,
        fingerprint BLOB NOT NULL,
        lease_until INTEGER NOT NULL,
        created_at  INTEGER NOT NULL,
        expires_at  INTEGER NOT NULL
    ) STRICT;
    INSERT INTO idempotency_keys_4 (id, client_id, idem_key, fingerprint, lease_until,
        created_at, expires_at)
        SELECT id, client_id, idem_key, fingerprint, lease_until, created_at, expires_at
        FROM idempotency_keys ORDER BY id;
    INSERT INTO idempotency_keys_4 (id, client_id, idem_key, fingerprint, lease_until,
        created_at, expires_at)
        SELECT seq, '', '', x'', 0, 0, 0 FROM sqlite_sequence
        WHERE name = 'idempotency_keys'
        AND seq > (SELECT coalesce(max(id), 0) FROM idempotency_keys);
    DROP TABLE idempotency_keys;
    ALTER TABLE idempotency_keys_4 RENAME TO idempotency_keys;
    CREATE TRIGGER idempotency_keys_deleted AFTER DELETE ON idempotency_keys
        BEGIN
            DELETE FROM idempotency_responses WHERE id = OLD.id;
            INSERT INTO idempotency_deleted (id, client_id, idem_key)
                VALUES (OLD.id, OLD.client_id, OLD.idem_key);
        END;
    "#,
];

/// Distinct statements a connection keeps prepared (rusqlite's default of 16 is too few).
const STATEMENT_CACHE_CAPACITY: usize = 64;

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
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db(op))?;
            // An error drops `tx`, which rolls back.
            let out = f(&tx)?;
            tx.commit().map_err(db(op))?;
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

/// The connection that watches for commits, and what it saw last.
struct Watch {
    conn: Connection,
    data_version: Option<i64>,
    /// The change feed's high-water mark (`sqlite_sequence` of `changes`) at `data_version`.
    seq: u64,
}

/// Group commit: every queued job (up to [`MAX_BATCH`] at a time) runs inside one IMMEDIATE
/// transaction on the writer connection, the transaction commits once, and only then is each
/// job answered. A job that fails answers its error, and keeps any write it made before (jobs
/// are written so that is consistent); a failed commit fails them all.
///
/// Inside a tokio runtime the batches run on a task of the runtime itself, not on a thread of
/// their own: with the writes of one turn of the event loop gathered (the task yields once
/// before it drains the queue), a batch is a few tens of microseconds of SQLite work, and
/// handing it to another thread and back cost more than that (two context switches per
/// request on a single core; `docs/benchmarks.md`). The runtime never waits on a lock for it:
/// when the writer is busy in this process (token issuance) or the database is locked by
/// another (an admin command), the batch goes to the blocking pool, which waits as
/// `store.busy_timeout` allows. The WAL is checkpointed by a background thread, never inside
/// a commit on the runtime. Outside a runtime (the CLI), a thread runs the batches.
struct Batcher {
    jobs: JobSender,
}

enum JobSender {
    Task(tokio::sync::mpsc::UnboundedSender<Box<dyn Job>>),
    Thread(std::sync::mpsc::Sender<Box<dyn Job>>),
}

impl Batcher {
    fn send(&self, job: Box<dyn Job>) -> Result<(), ()> {
        match &self.jobs {
            JobSender::Task(tx) => tx.send(job).map_err(|_| ()),
            JobSender::Thread(tx) => tx.send(job).map_err(|_| ()),
        }
    }
}

/// The most jobs one group commit takes.
const MAX_BATCH: usize = 256;

impl Batcher {
    fn start(inner: Arc<Inner>) -> Result<Self, StoreError> {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (jobs, queue) = tokio::sync::mpsc::unbounded_channel::<Box<dyn Job>>();
            runtime.spawn(run_batches_on_runtime(inner, queue));
            return Ok(Self {
                jobs: JobSender::Task(jobs),
            });
        }
        let (jobs, queue) = std::sync::mpsc::channel::<Box<dyn Job>>();
        std::thread::Builder::new()
            .name("warden-store-batch".to_owned())
            .spawn(move || {
                while let Ok(first) = queue.recv() {
                    let mut jobs = vec![first];
                    while jobs.len() < MAX_BATCH {
                        match queue.try_recv() {
                            Ok(job) => jobs.push(job),
                            Err(_) => break,
                        }
                    }
                    run_batch(&inner, &mut lock(&inner.writer), jobs, None);
                }
            })
            .map_err(|e| StoreError::Task {
                op: "open",
                detail: format!("cannot start the batch writer: {e}"),
            })?;
        Ok(Self {
            jobs: JobSender::Thread(jobs),
        })
    }
}

async fn run_batches_on_runtime(
    inner: Arc<Inner>,
    mut queue: tokio::sync::mpsc::UnboundedReceiver<Box<dyn Job>>,
) {
    while let Some(first) = queue.recv().await {
        // Let the requests made ready in this turn of the event loop queue their writes too.
        tokio::task::yield_now().await;
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let now = Some(inner.busy_timeout);
        // With `store.durability = "full"` every commit waits for fsync: never on the runtime.
        let left = match inner.writer.try_lock() {
            Ok(_) if inner.fsync_every_commit => Some(jobs),
            Ok(mut conn) => run_batch(&inner, &mut conn, jobs, now),
            Err(TryLockError::Poisoned(p)) => run_batch(&inner, &mut p.into_inner(), jobs, now),
            Err(TryLockError::WouldBlock) => Some(jobs),
        };
        if let Some(jobs) = left {
            let inner = Arc::clone(&inner);
            let _ = tokio::task::spawn_blocking(move || {
                run_batch(&inner, &mut lock(&inner.writer), jobs, None);
            })
            .await;
        }
    }
}

/// The size the WAL file is cut back to once a checkpoint lets it start over (bytes).
const WAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

/// How often the WAL is checkpointed into the database file (PASSIVE: never blocks readers
/// or the writer), in place of SQLite's automatic checkpoint inside a commit.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// A WAL holding more frames than this at a checkpoint is made to start over (~17 MB).
const WAL_RESTART_FRAMES: i64 = 4096;

/// The longest a RESTART checkpoint waits for the writer lock, then for readers to leave the
/// WAL (writers wait behind it meanwhile). Past it, the checkpoint ends as a passive one and
/// the next tries again.
const RESTART_WAIT: Duration = Duration::from_millis(100);

fn checkpoint_forever(conn: &Connection, store: &std::sync::Weak<Inner>) {
    loop {
        std::thread::sleep(CHECKPOINT_EVERY);
        if store.strong_count() == 0 {
            return;
        }
        if let Err(e) = checkpoint(conn, WAL_RESTART_FRAMES) {
            tracing::warn!(error = %e, "WAL checkpoint failed");
        }
    }
}

/// Copies the WAL into the database file without blocking anyone (PASSIVE); then, if the WAL
/// holds more than `restart_frames`, makes the next writer start it over (RESTART).
///
/// The WAL starts over only when a writer begins while every frame has been copied. Under
/// steady writes a passive checkpoint never leaves it so: commits land while it copies. So the
/// file grew for as long as the load lasted (110 MB in 5 s of fresh-key requests), every
/// frame appended to it, and `journal_size_limit` never applied. RESTART waits for the writer
/// lock (the group commit then waits its turn, off the runtime), copies what came since the
/// passive pass (little), and waits for readers to leave the WAL, each wait at most
/// [`RESTART_WAIT`] (the connection's busy timeout).
fn checkpoint(conn: &Connection, restart_frames: i64) -> rusqlite::Result<()> {
    let frames: i64 = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| row.get(1))?;
    if frames > restart_frames {
        conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(()))?;
    }
    Ok(())
}

/// Runs `jobs` as one group commit. With `no_wait` (the connection's busy timeout, restored
/// after) it does not wait for another process's lock: the jobs come back untouched, for a
/// caller that may wait.
fn run_batch(
    inner: &Inner,
    conn: &mut Connection,
    jobs: Vec<Box<dyn Job>>,
    no_wait: Option<Duration>,
) -> Option<Vec<Box<dyn Job>>> {
    const OP: &str = "batch";
    // A panicking job drops the transaction (rolled back) and every answer with it: its
    // callers get an error, and the next batch is served.
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let begun = match no_wait {
            None => conn.transaction_with_behavior(TransactionBehavior::Immediate),
            Some(busy_timeout) => {
                // SQLITE_BUSY at once rather than a wait of up to busy_timeout on the runtime.
                let _ = conn.busy_timeout(Duration::ZERO);
                let busy = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
                    Ok(tx) => {
                        let _ = tx.busy_timeout(busy_timeout);
                        return run_jobs(inner, tx, jobs);
                    }
                    Err(rusqlite::Error::SqliteFailure(e, _))
                        if e.code == rusqlite::ErrorCode::DatabaseBusy =>
                    {
                        None
                    }
                    Err(e) => Some(e),
                };
                let _ = conn.busy_timeout(busy_timeout);
                match busy {
                    None => return Some(jobs),
                    Some(e) => Err(e),
                }
            }
        };
        match begun {
            Ok(tx) => run_jobs(inner, tx, jobs),
            Err(e) => {
                let e = db(OP)(e);
                jobs.into_iter().for_each(|job| job.answer(Some(&e)));
                None
            }
        }
    }));
    outcome.unwrap_or(None)
}

fn run_jobs(
    inner: &Inner,
    tx: Transaction<'_>,
    mut jobs: Vec<Box<dyn Job>>,
) -> Option<Vec<Box<dyn Job>>> {
    // A batch that panicked never reached `committed`: forget what it appended.
    idem_index(inner).begin_batch();
    {
        let batch = Batch {
            tx: &tx,
            statements: RefCell::new(Vec::new()),
        };
        jobs.iter_mut().for_each(|job| job.run(&batch));
    }
    let failed = tx.commit().map_err(db("batch")).err();
    idem_index(inner).committed(failed.is_none());
    jobs.into_iter().for_each(|job| job.answer(failed.as_ref()));
    None
}

/// The transaction of a group commit, as its jobs see it: the transaction itself (`Deref`),
/// and the statements they ran through [`Batch::execute`], kept prepared until the batch ends.
/// rusqlite's statement cache hashes a statement's SQL to take it out and again to put it
/// back, on every use; here a batch takes each statement out once (`idem_rate` under
/// callgrind: 32.6k → 29.9k instructions a reservation + completion, `docs/benchmarks.md`).
struct Batch<'t, 'c> {
    tx: &'t Transaction<'c>,
    statements: RefCell<Vec<(&'static str, rusqlite::CachedStatement<'t>)>>,
}

impl<'c> std::ops::Deref for Batch<'_, 'c> {
    type Target = Transaction<'c>;
    fn deref(&self) -> &Transaction<'c> {
        self.tx
    }
}

impl Batch<'_, '_> {
    /// Runs `sql`, prepared once a batch; returns the number of rows changed.
    fn execute(
        &self,
        op: &'static str,
        sql: &'static str,
        params: impl rusqlite::Params,
    ) -> Result<u64, StoreError> {
        // A job runs one statement at a time, so this is never borrowed twice; were it, the
        // statement would go through the cache as before.
        let Ok(mut statements) = self.statements.try_borrow_mut() else {
            return execute(self.tx, op, sql, params);
        };
        let at = match statements.iter().position(|(s, _)| *s == sql) {
            Some(at) => at,
            None => {
                statements.push((sql, self.tx.prepare_cached(sql).map_err(db(op))?));
                statements.len() - 1
            }
        };
        statements[at]
            .1
            .execute(params)
            .map(|n| n as u64)
            .map_err(db(op))
    }
}

trait Job: Send {
    /// Runs in the batch's transaction (no savepoint of its own: see [`SqliteStore::batched`]).
    fn run(&mut self, batch: &Batch<'_, '_>);
    /// Answers once the batch committed, or failed to (`failed`); a job that did not run
    /// answers that the batch could not start.
    fn answer(self: Box<Self>, failed: Option<&StoreError>);
}

struct Pending<T, F> {
    op: &'static str,
    f: Option<F>,
    result: Option<Result<T, StoreError>>,
    reply: tokio::sync::oneshot::Sender<Result<T, StoreError>>,
}

fn batch_failed(op: &'static str, e: &StoreError) -> StoreError {
    StoreError::Task {
        op,
        detail: format!("group commit failed: {e}"),
    }
}

impl<T, F> Job for Pending<T, F>
where
    T: Send + 'static,
    F: FnOnce(&Batch<'_, '_>) -> Result<T, StoreError> + Send + 'static,
{
    fn run(&mut self, batch: &Batch<'_, '_>) {
        if let Some(f) = self.f.take() {
            self.result = Some(f(batch));
        }
    }

    fn answer(self: Box<Self>, failed: Option<&StoreError>) {
        let Pending {
            op, result, reply, ..
        } = *self;
        let answer = match (failed, result) {
            (Some(e), _) => Err(batch_failed(op, e)),
            (None, Some(result)) => result,
            // Every job of a committed batch ran; kept total all the same.
            (None, None) => Err(StoreError::Task {
                op,
                detail: "the job did not run".to_owned(),
            }),
        };
        let _ = reply.send(answer);
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

/// Creates the database's missing parent directories, readable by their owner only (0700).
/// Existing directories are left as they are: one may be the working directory, or shared.
fn create_parent(path: &Path) -> Result<(), StoreError> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => {
            let mut builder = std::fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
            builder.create(dir).map_err(|source| StoreError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })
        }
        _ => Ok(()),
    }
}

/// The database file and the files SQLite keeps beside it.
fn database_files(path: &Path) -> [PathBuf; 4] {
    let with = |suffix: &str| {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    [
        path.to_path_buf(),
        with("-wal"),
        with("-shm"),
        with("-journal"),
    ]
}

/// Makes the database readable and writable by its owner only (0600): creates the file so
/// when it does not exist yet (an empty file is an empty database to SQLite, which then
/// gives its -wal and -shm files the same mode), and narrows an existing one, or one of its
/// companions, that others may read (logged). The process umask is left alone: changing it
/// would change it for every thread. A file Warden may not change (another owner) is logged
/// and left as it is.
fn private_files(path: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true).mode(0o600);
        match options.open(path) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(source) => {
                return Err(StoreError::File {
                    path: path.to_path_buf(),
                    source,
                });
            }
        }
        for file in database_files(path) {
            let Ok(meta) = std::fs::metadata(&file) else {
                continue;
            };
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 == 0 {
                continue;
            }
            let narrowed = mode & 0o700;
            match std::fs::set_permissions(&file, std::fs::Permissions::from_mode(narrowed)) {
                Ok(()) => tracing::warn!(
                    path = %file.display(),
                    was = format!("{mode:o}"),
                    now = format!("{narrowed:o}"),
                    "store file was readable by others; narrowed to its owner"
                ),
                Err(e) => tracing::warn!(
                    path = %file.display(),
                    mode = format!("{mode:o}"),
                    error = %e,
                    "store file is readable by others and could not be narrowed"
                ),
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

fn configure(conn: &Connection, options: &StoreOptions, reader: bool) -> Result<(), StoreError> {
    const OP: &str = "open";
    conn.busy_timeout(options.busy_timeout).map_err(db(OP))?;
    let synchronous = match options.durability {
        Durability::Normal => "NORMAL",
        Durability::Full => "FULL",
    };
    conn.pragma_update(None, "synchronous", synchronous)
        .map_err(db(OP))?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(db(OP))?;
    if reader {
        conn.pragma_update(None, "query_only", "ON")
            .map_err(db(OP))?;
    }
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE_CAPACITY);
    Ok(())
}

/// Brings the schema to the latest version in one transaction; refuses a newer schema.
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    const OP: &str = "migrate";
    // Re-read the version under the write lock: another process may be migrating the same file.
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db(OP))?;
    let found: i64 = tx
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(db(OP))?;
    let supported = schema_version();
    if found > supported {
        return Err(StoreError::SchemaTooNew { found, supported });
    }
    for migration in MIGRATIONS.iter().skip(usize::try_from(found).unwrap_or(0)) {
        tx.execute_batch(migration).map_err(db(OP))?;
    }
    if found < supported {
        tx.pragma_update(None, "user_version", supported)
            .map_err(db(OP))?;
    }
    tx.commit().map_err(db(OP))
}

/// The schema version this build writes.
pub fn schema_version() -> i64 {
    MIGRATIONS.len() as i64
}

/// Maps a rusqlite error to a [`StoreError`] for operation `op`.
fn db(op: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
    move |error| match error {
        rusqlite::Error::SqliteFailure(ref e, _)
            if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
        {
            StoreError::Conflict { op }
        }
        rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::IntegralValueOutOfRange(..) => StoreError::Corrupt {
            op,
            detail: error.to_string(),
        },
        error => StoreError::Database {
            op,
            source: Box::new(error),
        },
    }
}

/// Why a stored value could not be decoded.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Malformed(String);

fn malformed(column: usize, ty: Type, detail: impl Into<String>) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(column, ty, Box::new(Malformed(detail.into())))
}

fn to_json(list: &[String]) -> String {
    // Serialising strings cannot fail; fall back to an empty list rather than panic.
    serde_json::to_string(list).unwrap_or_else(|_| "[]".to_owned())
}

fn json_list(row: &Row<'_>, column: usize) -> rusqlite::Result<Vec<String>> {
    let text: String = row.get(column)?;
    serde_json::from_str(&text).map_err(|e| malformed(column, Type::Text, e.to_string()))
}

/// Headers as a blob: for each, u32-be name length, name, u32-be value length, value.
fn encode_headers(headers: &[(String, Vec<u8>)]) -> Vec<u8> {
    let size = headers.iter().map(|(n, v)| 8 + n.len() + v.len()).sum();
    let mut out = Vec::with_capacity(size);
    for (name, value) in headers {
        for part in [name.as_bytes(), value.as_slice()] {
            // A header longer than 4 GiB never gets this far (bounded by the server's limits).
            out.extend_from_slice(&u32::try_from(part.len()).unwrap_or(u32::MAX).to_be_bytes());
            out.extend_from_slice(part);
        }
    }
    out
}

fn decode_headers(mut blob: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
    fn take<'a>(blob: &mut &'a [u8]) -> Option<&'a [u8]> {
        let (len, rest) = blob.split_first_chunk::<4>()?;
        let len = usize::try_from(u32::from_be_bytes(*len)).ok()?;
        if rest.len() < len {
            return None;
        }
        let (part, rest) = rest.split_at(len);
        *blob = rest;
        Some(part)
    }
    let mut headers = Vec::new();
    while !blob.is_empty() {
        let name = String::from_utf8(take(&mut blob)?.to_vec()).ok()?;
        let value = take(&mut blob)?.to_vec();
        headers.push((name, value));
    }
    Some(headers)
}

/// `SELECT` list matching [`token_from_row`]; a macro so `concat!` can build constant SQL.
macro_rules! token_columns {
    () => {
        "id, hash, kind, client_id, account, name, user_name, audience, scopes, trusted_ips, \
         created_at, updated_at, expires_at, enabled, disabled_reason, revoked_at, replaced_by"
    };
}

fn token_from_row(row: &Row<'_>) -> rusqlite::Result<TokenRecord> {
    let kind: String = row.get(2)?;
    Ok(TokenRecord {
        id: row.get(0)?,
        hash: row.get(1)?,
        kind: TokenKind::parse(&kind)
            .ok_or_else(|| malformed(2, Type::Text, format!("unknown token kind {kind:?}")))?,
        client_id: row.get(3)?,
        account: row.get(4)?,
        name: row.get(5)?,
        user: row.get(6)?,
        audience: row.get(7)?,
        scopes: json_list(row, 8)?,
        trusted_ips: json_list(row, 9)?,
        created_at: row.get(10)?,
        updated_at: row.get(11)?,
        expires_at: row.get(12)?,
        enabled: row.get(13)?,
        disabled_reason: row.get(14)?,
        revoked_at: row.get(15)?,
        replaced_by: row.get(16)?,
    })
}

fn insert_token_tx(
    tx: &Transaction<'_>,
    op: &'static str,
    t: &TokenRecord,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO tokens (id, hash, kind, client_id, account, name, user_name, audience, \
         scopes, trusted_ips, created_at, updated_at, expires_at, enabled, disabled_reason, \
         revoked_at, replaced_by) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            t.id,
            t.hash,
            t.kind.as_str(),
            t.client_id,
            t.account,
            t.name,
            t.user,
            t.audience,
            to_json(&t.scopes),
            to_json(&t.trusted_ips),
            t.created_at,
            t.updated_at,
            t.expires_at,
            t.enabled,
            t.disabled_reason,
            t.revoked_at,
            t.replaced_by,
        ])
    })
    .map_err(db(op))?;
    Ok(())
}

fn insert_event(
    tx: &Transaction<'_>,
    op: &'static str,
    event: Option<NewEvent>,
) -> Result<(), StoreError> {
    let Some(event) = event else {
        return Ok(());
    };
    tx.prepare_cached(
        "INSERT INTO webhook_outbox (event_type, payload, created_at, next_attempt_at) \
         VALUES (?1, ?2, ?3, ?3)",
    )
    .and_then(|mut stmt| stmt.execute(params![event.event_type, event.payload, event.created_at]))
    .map_err(db(op))?;
    Ok(())
}

fn query_token(
    conn: &Connection,
    op: &'static str,
    sql: &str,
    key: &dyn rusqlite::ToSql,
) -> Result<Option<TokenRecord>, StoreError> {
    conn.prepare_cached(sql)
        .and_then(|mut stmt| stmt.query_row([key], token_from_row).optional())
        .map_err(db(op))
}

/// Reads clients (one, or all when `id` is `None`) with their secrets and keys, in one read
/// transaction so the three queries see the same snapshot.
fn load_clients(
    conn: &Connection,
    op: &'static str,
    id: Option<&str>,
) -> Result<Vec<ClientRecord>, StoreError> {
    // Two shapes of each query rather than `?1 IS NULL OR id = ?1`, which would defeat the index.
    let (client_filter, child_filter) = match id {
        Some(_) => ("id = ?1", "client_id = ?1"),
        None => ("?1 IS NULL", "?1 IS NULL"),
    };
    let tx = conn.unchecked_transaction().map_err(db(op))?;
    let mut clients = {
        let mut stmt = tx
            .prepare_cached(&format!(
                "SELECT id, name, account, trusted_ips, scopes, enabled, source, created_at, \
                 updated_at FROM clients WHERE {client_filter} ORDER BY id"
            ))
            .map_err(db(op))?;
        let rows = stmt
            .query_map([id], |row| {
                let source: String = row.get(6)?;
                Ok(ClientRecord {
                    id: row.get(0)?,
                    name: row.get(1)?,
                    account: row.get(2)?,
                    secrets: Vec::new(),
                    keys: Vec::new(),
                    trusted_ips: json_list(row, 3)?,
                    scopes: json_list(row, 4)?,
                    enabled: row.get(5)?,
                    source: ClientSource::parse(&source).ok_or_else(|| {
                        malformed(6, Type::Text, format!("unknown client source {source:?}"))
                    })?,
                    created_at: row.get(7)?,
                    updated_at: row.get(8)?,
                })
            })
            .map_err(db(op))?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db(op))?
    };
    let position: std::collections::HashMap<String, usize> = clients
        .iter()
        .enumerate()
        .map(|(i, c)| (c.id.clone(), i))
        .collect();
    {
        let mut stmt = tx
            .prepare_cached(&format!(
                "SELECT client_id, hash, created_at, expires_at FROM client_secrets \
                 WHERE {child_filter} ORDER BY rowid"
            ))
            .map_err(db(op))?;
        let rows = stmt
            .query_map([id], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    SecretHash {
                        hash: row.get(1)?,
                        created_at: row.get(2)?,
                        expires_at: row.get(3)?,
                    },
                ))
            })
            .map_err(db(op))?;
        for row in rows {
            let (client_id, secret) = row.map_err(db(op))?;
            if let Some(&i) = position.get(&client_id) {
                clients[i].secrets.push(secret);
            }
        }
    }
    {
        let mut stmt = tx
            .prepare_cached(&format!(
                "SELECT client_id, key_id, alg, public_key FROM client_keys \
                 WHERE {child_filter} ORDER BY rowid"
            ))
            .map_err(db(op))?;
        let rows = stmt
            .query_map([id], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    SigningKey {
                        key_id: row.get(1)?,
                        alg: row.get(2)?,
                        public_key: row.get(3)?,
                    },
                ))
            })
            .map_err(db(op))?;
        for row in rows {
            let (client_id, key) = row.map_err(db(op))?;
            if let Some(&i) = position.get(&client_id) {
                clients[i].keys.push(key);
            }
        }
    }
    Ok(clients)
}

fn insert_secret(
    tx: &Transaction<'_>,
    op: &'static str,
    client_id: &str,
    secret: &SecretHash,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO client_secrets (client_id, hash, created_at, expires_at) \
         VALUES (?1, ?2, ?3, ?4)",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            client_id,
            secret.hash,
            secret.created_at,
            secret.expires_at
        ])
    })
    .map_err(db(op))?;
    Ok(())
}

/// Runs one cached statement and returns how many rows it changed.
fn execute(
    tx: &Transaction<'_>,
    op: &'static str,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<u64, StoreError> {
    tx.prepare_cached(sql)
        .and_then(|mut stmt| stmt.execute(params))
        .map(|n| n as u64)
        .map_err(db(op))
}

#[async_trait]
impl Store for SqliteStore {
    fn change_marker(&self) -> Result<u64, StoreError> {
        const OP: &str = "change_marker";
        let Some(watch) = &self.inner.watch else {
            return Ok(0);
        };
        let mut watch = watch.lock().unwrap_or_else(PoisonError::into_inner);
        // `data_version` moves with every commit of any other connection, idempotency records
        // included; only a new row in `changes` matters to the caches. So the feed's high-water
        // mark is read when, and only when, something was committed.
        let version = watch
            .conn
            .prepare_cached("PRAGMA data_version")
            .and_then(|mut stmt| stmt.query_row([], |row| row.get::<_, i64>(0)))
            .map_err(db(OP))?;
        if watch.data_version == Some(version) {
            return Ok(watch.seq);
        }
        let seq = watch
            .conn
            .prepare_cached("SELECT seq FROM sqlite_sequence WHERE name = 'changes'")
            .and_then(|mut stmt| stmt.query_row([], |row| row.get::<_, i64>(0)).optional())
            .map_err(db(OP))?
            .unwrap_or(0);
        watch.data_version = Some(version);
        watch.seq = seq as u64;
        Ok(watch.seq)
    }

    async fn changes_since(&self, seq: i64, limit: u32) -> Result<Vec<Change>, StoreError> {
        const OP: &str = "changes_since";
        self.read(OP, move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT seq, token_hash, client_id FROM changes WHERE seq > ?1 \
                     ORDER BY seq LIMIT ?2",
                )
                .map_err(db(OP))?;
            let rows = stmt
                .query_map(params![seq, limit], |row| {
                    Ok(Change {
                        seq: row.get(0)?,
                        token_hash: row.get(1)?,
                        client_id: row.get(2)?,
                    })
                })
                .map_err(db(OP))?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db(OP))
        })
        .await
    }

    async fn latest_change(&self) -> Result<i64, StoreError> {
        const OP: &str = "latest_change";
        self.read(OP, |conn| {
            conn.query_row("SELECT coalesce(max(seq), 0) FROM changes", [], |row| {
                row.get(0)
            })
            .map_err(db(OP))
        })
        .await
    }

    async fn prune_changes(&self, older_than_secs: i64) -> Result<u64, StoreError> {
        const OP: &str = "prune_changes";
        // `at` is stamped by the database (a trigger has no caller clock), so the cut-off is
        // computed by the database too.
        self.write(OP, move |tx| {
            execute(
                tx,
                OP,
                "DELETE FROM changes WHERE at < unixepoch() - ?1",
                params![older_than_secs],
            )
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        const OP: &str = "ping";
        self.read(OP, |conn| {
            conn.query_row("PRAGMA user_version", [], |row| row.get::<_, i64>(0))
                .map(drop)
                .map_err(db(OP))
        })
        .await
    }

    async fn upsert_client(&self, client: ClientRecord) -> Result<(), StoreError> {
        const OP: &str = "upsert_client";
        self.write(OP, move |tx| {
            execute(
                tx,
                OP,
                "INSERT INTO clients (id, name, account, trusted_ips, scopes, enabled, source, \
                 created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
                 ON CONFLICT (id) DO UPDATE SET name = excluded.name, \
                 account = excluded.account, trusted_ips = excluded.trusted_ips, \
                 scopes = excluded.scopes, enabled = excluded.enabled, \
                 source = excluded.source, updated_at = excluded.updated_at",
                params![
                    client.id,
                    client.name,
                    client.account,
                    to_json(&client.trusted_ips),
                    to_json(&client.scopes),
                    client.enabled,
                    client.source.as_str(),
                    client.created_at,
                    client.updated_at,
                ],
            )?;
            execute(
                tx,
                OP,
                "DELETE FROM client_secrets WHERE client_id = ?1",
                [&client.id],
            )?;
            for secret in &client.secrets {
                insert_secret(tx, OP, &client.id, secret)?;
            }
            execute(
                tx,
                OP,
                "DELETE FROM client_keys WHERE client_id = ?1",
                [&client.id],
            )?;
            for key in &client.keys {
                execute(
                    tx,
                    OP,
                    "INSERT INTO client_keys (client_id, key_id, alg, public_key) \
                     VALUES (?1, ?2, ?3, ?4)",
                    params![client.id, key.key_id, key.alg, key.public_key],
                )?;
            }
            Ok(())
        })
        .await
    }

    async fn get_client(&self, id: &str) -> Result<Option<ClientRecord>, StoreError> {
        const OP: &str = "get_client";
        let id = id.to_owned();
        self.read(OP, move |conn| {
            Ok(load_clients(conn, OP, Some(&id))?.into_iter().next())
        })
        .await
    }

    async fn list_clients(&self) -> Result<Vec<ClientRecord>, StoreError> {
        const OP: &str = "list_clients";
        self.read(OP, |conn| load_clients(conn, OP, None)).await
    }

    async fn set_client_enabled(
        &self,
        id: &str,
        enabled: bool,
        now: i64,
    ) -> Result<bool, StoreError> {
        const OP: &str = "set_client_enabled";
        let id = id.to_owned();
        self.write(OP, move |tx| {
            let n = execute(
                tx,
                OP,
                "UPDATE clients SET enabled = ?2, updated_at = ?3 WHERE id = ?1",
                params![id, enabled, now],
            )?;
            Ok(n > 0)
        })
        .await
    }

    async fn add_client_secret(
        &self,
        id: &str,
        secret: SecretHash,
        old_secrets_expire_at: Option<i64>,
        now: i64,
    ) -> Result<bool, StoreError> {
        const OP: &str = "add_client_secret";
        let id = id.to_owned();
        self.write(OP, move |tx| {
            let found = execute(
                tx,
                OP,
                "UPDATE clients SET updated_at = ?2 WHERE id = ?1",
                params![id, now],
            )?;
            if found == 0 {
                return Ok(false);
            }
            if let Some(end) = old_secrets_expire_at {
                execute(
                    tx,
                    OP,
                    "UPDATE client_secrets SET expires_at = ?2 \
                     WHERE client_id = ?1 AND (expires_at IS NULL OR expires_at > ?2)",
                    params![id, end],
                )?;
            }
            // After the overlap end is set, so an end at or before `now` drops the old ones here.
            execute(
                tx,
                OP,
                "DELETE FROM client_secrets \
                 WHERE client_id = ?1 AND expires_at IS NOT NULL AND expires_at <= ?2",
                params![id, now],
            )?;
            insert_secret(tx, OP, &id, &secret)?;
            Ok(true)
        })
        .await
    }

    async fn prune_expired_secrets(&self, now: i64) -> Result<u64, StoreError> {
        const OP: &str = "prune_expired_secrets";
        self.write(OP, move |tx| {
            execute(
                tx,
                OP,
                "DELETE FROM client_secrets WHERE expires_at IS NOT NULL AND expires_at <= ?1",
                [now],
            )
        })
        .await
    }

    async fn insert_token(
        &self,
        token: TokenRecord,
        event: Option<NewEvent>,
    ) -> Result<(), StoreError> {
        const OP: &str = "insert_token";
        self.write(OP, move |tx| {
            insert_token_tx(tx, OP, &token)?;
            insert_event(tx, OP, event)
        })
        .await
    }

    async fn token_by_hash(&self, hash: &Hash) -> Result<Option<TokenRecord>, StoreError> {
        const OP: &str = "token_by_hash";
        const SQL: &str = concat!("SELECT ", token_columns!(), " FROM tokens WHERE hash = ?1");
        let hash = *hash;
        self.read(OP, move |conn| query_token(conn, OP, SQL, &hash))
            .await
    }

    async fn get_token(&self, id: &str) -> Result<Option<TokenRecord>, StoreError> {
        const OP: &str = "get_token";
        const SQL: &str = concat!("SELECT ", token_columns!(), " FROM tokens WHERE id = ?1");
        let id = id.to_owned();
        self.read(OP, move |conn| query_token(conn, OP, SQL, &id))
            .await
    }

    async fn list_tokens(
        &self,
        account: &str,
        kind: Option<TokenKind>,
    ) -> Result<Vec<TokenRecord>, StoreError> {
        const OP: &str = "list_tokens";
        let account = account.to_owned();
        self.read(OP, move |conn| {
            const SQL: &str = concat!(
                "SELECT ",
                token_columns!(),
                " FROM tokens WHERE account = ?1 AND (?2 IS NULL OR kind = ?2) \
                 ORDER BY created_at, id"
            );
            conn.prepare_cached(SQL)
                .and_then(|mut stmt| {
                    stmt.query_map(
                        params![account, kind.map(TokenKind::as_str)],
                        token_from_row,
                    )?
                    .collect::<rusqlite::Result<Vec<_>>>()
                })
                .map_err(db(OP))
        })
        .await
    }

    async fn revoke_token(
        &self,
        id: &str,
        now: i64,
        event: Option<NewEvent>,
    ) -> Result<bool, StoreError> {
        const OP: &str = "revoke_token";
        let id = id.to_owned();
        self.write(OP, move |tx| {
            let revoked = execute(
                tx,
                OP,
                "UPDATE tokens SET revoked_at = ?2, updated_at = ?2 \
                 WHERE id = ?1 AND revoked_at IS NULL",
                params![id, now],
            )?;
            if revoked > 0 {
                insert_event(tx, OP, event)?;
                return Ok(true);
            }
            tx.prepare_cached("SELECT 1 FROM tokens WHERE id = ?1")
                .and_then(|mut stmt| stmt.exists([&id]))
                .map_err(db(OP))
        })
        .await
    }

    async fn set_token_enabled(
        &self,
        id: &str,
        enabled: bool,
        reason: Option<String>,
        now: i64,
    ) -> Result<bool, StoreError> {
        const OP: &str = "set_token_enabled";
        let id = id.to_owned();
        let reason = if enabled { None } else { reason };
        self.write(OP, move |tx| {
            let n = execute(
                tx,
                OP,
                "UPDATE tokens SET enabled = ?2, disabled_reason = ?3, updated_at = ?4 \
                 WHERE id = ?1",
                params![id, enabled, reason, now],
            )?;
            Ok(n > 0)
        })
        .await
    }

    async fn rename_token(&self, id: &str, name: String, now: i64) -> Result<bool, StoreError> {
        const OP: &str = "rename_token";
        let id = id.to_owned();
        self.write(OP, move |tx| {
            let n = execute(
                tx,
                OP,
                "UPDATE tokens SET name = ?2, updated_at = ?3 WHERE id = ?1",
                params![id, name, now],
            )?;
            Ok(n > 0)
        })
        .await
    }

    async fn delete_token(&self, id: &str, event: Option<NewEvent>) -> Result<bool, StoreError> {
        const OP: &str = "delete_token";
        let id = id.to_owned();
        self.write(OP, move |tx| {
            let n = execute(tx, OP, "DELETE FROM tokens WHERE id = ?1", [&id])?;
            if n > 0 {
                insert_event(tx, OP, event)?;
            }
            Ok(n > 0)
        })
        .await
    }

    async fn replace_api_key(
        &self,
        old_id: &str,
        new: TokenRecord,
        now: i64,
        event: Option<NewEvent>,
    ) -> Result<bool, StoreError> {
        const OP: &str = "replace_api_key";
        let old_id = old_id.to_owned();
        self.write(OP, move |tx| {
            let revoked = execute(
                tx,
                OP,
                "UPDATE tokens SET revoked_at = ?2, updated_at = ?2, replaced_by = ?3 \
                 WHERE id = ?1 AND revoked_at IS NULL",
                params![old_id, now, new.id],
            )?;
            if revoked == 0 {
                return Ok(false);
            }
            // A conflict here returns before the commit, so the revocation rolls back with it.
            insert_token_tx(tx, OP, &new)?;
            insert_event(tx, OP, event)?;
            Ok(true)
        })
        .await
    }

    async fn purge_expired_tokens(&self, before: i64) -> Result<u64, StoreError> {
        const OP: &str = "purge_expired_tokens";
        self.write(OP, move |tx| {
            execute(
                tx,
                OP,
                "DELETE FROM tokens WHERE (expires_at IS NOT NULL AND expires_at < ?1) \
                 OR (revoked_at IS NOT NULL AND revoked_at < ?1)",
                [before],
            )
        })
        .await
    }

    async fn reserve_idempotency(
        &self,
        client_id: &str,
        key: &str,
        fingerprint: Hash,
        now: i64,
        lease_until: i64,
        expires_at: i64,
    ) -> Result<Reservation, StoreError> {
        const OP: &str = "reserve_idempotency";
        let client_id = client_id.to_owned();
        let key = key.to_owned();
        let inner = Arc::clone(&self.inner);
        self.batched(OP, move |batch| {
            // The write lock is held from this lookup to the commit, so the check and the
            // insert or takeover below are atomic against every other reservation, in this
            // process or another one (whose appends `sync` reads first).
            let mut index = idem_index(&inner);
            index.sync_once(batch)?;
            let slot = idem_slot(&client_id, &key);
            if let Some(id) = index.by_key.get(slot) {
                if let Some(existing) = select_idempotency(batch, id, &client_id, &key)? {
                    if let Some(answer) = live_answer(existing, &fingerprint, now) {
                        return Ok(answer);
                    }
                    // Expired, or a lapsed or released lease: the record is replaced by a new
                    // row, appended before the old one (and its response, by trigger) is
                    // deleted, so the highest id is never the one deleted (see migration 4)
                    // and rows stay in the order of their reservations, which the sweep
                    // relies on. One transaction: stopped half-way, nothing changed.
                    let new_id = append_key(
                        batch,
                        &client_id,
                        &key,
                        &fingerprint,
                        now,
                        lease_until,
                        expires_at,
                    )?;
                    batch.execute(
                        OP,
                        "DELETE FROM idempotency_keys WHERE id = ?1",
                        params![id],
                    )?;
                    index.let_go(slot, id);
                    index.appended(slot, new_id);
                    index.hold(slot, new_id, lease_until);
                    return Ok(Reservation::Reserved);
                }
            }
            let new_id = append_key(
                batch,
                &client_id,
                &key,
                &fingerprint,
                now,
                lease_until,
                expires_at,
            )?;
            index.appended(slot, new_id);
            index.hold(slot, new_id, lease_until);
            Ok(Reservation::Reserved)
        })
        .await
    }

    async fn complete_idempotency(
        &self,
        client_id: &str,
        key: &str,
        lease_until: i64,
        response: StoredResponse,
    ) -> Result<bool, StoreError> {
        const OP: &str = "complete_idempotency";
        let client_id = client_id.to_owned();
        let key = key.to_owned();
        let inner = Arc::clone(&self.inner);
        self.batched(OP, move |batch| {
            let mut index = idem_index(&inner);
            // Another process's takeover or sweep of the row is read here, before `holds`.
            index.sync_once(batch)?;
            // The guard (still this holder's reservation, under the lease it reserved with),
            // then the insert, a response already there being a conflict. The guard is known
            // in the process for a reservation it made (`IdemIndex::held`; `idem_rate`: ~0.5 µs
            // a pair), else looked up. Two single-row statements rather than one
            // `INSERT … SELECT`: SQLite gives a statement that may write several rows a
            // statement journal (a copy of each page it touches), which cost more than the
            // lookup (`idem_rate`: 7.5–8.4 → 6.8–7.9 µs a pair).
            let slot = idem_slot(&client_id, &key);
            let id = match index.holds(slot, lease_until) {
                Some(id) => id,
                None => {
                    let Some(id) = index.by_key.get(slot) else {
                        return Ok(false);
                    };
                    let held = batch
                        .prepare_cached(
                            "SELECT 1 FROM idempotency_keys WHERE id = ?1 AND client_id = ?2 \
                             AND idem_key = ?3 AND lease_until = ?4",
                        )
                        .and_then(|mut stmt| stmt.exists(params![id, client_id, key, lease_until]))
                        .map_err(db(OP))?;
                    if !held {
                        return Ok(false);
                    }
                    id
                }
            };
            index.let_go(slot, id);
            let n = batch.execute(
                OP,
                "INSERT INTO idempotency_responses (id, status, headers, body) \
                 VALUES (?1, ?2, ?3, ?4) ON CONFLICT (id) DO NOTHING",
                params![
                    id,
                    response.status,
                    encode_headers(&response.headers),
                    response.body,
                ],
            )?;
            Ok(n > 0)
        })
        .await
    }

    async fn release_idempotency(
        &self,
        client_id: &str,
        key: &str,
        lease_until: i64,
    ) -> Result<bool, StoreError> {
        const OP: &str = "release_idempotency";
        let client_id = client_id.to_owned();
        let key = key.to_owned();
        let inner = Arc::clone(&self.inner);
        self.batched(OP, move |batch| {
            let mut index = idem_index(&inner);
            let slot = idem_slot(&client_id, &key);
            let Some(id) = index.by_key.get(slot) else {
                return Ok(false);
            };
            // The lease ends now: the next reservation of the key takes the row over, as it
            // would an orphaned one. Not deleted: the row may be the highest (migration 4).
            let n = batch.execute(
                OP,
                "UPDATE idempotency_keys SET lease_until = 0 WHERE id = ?1 AND client_id = ?2 \
                 AND idem_key = ?3 AND lease_until = ?4 \
                 AND NOT EXISTS (SELECT 1 FROM idempotency_responses WHERE id = ?1)",
                params![id, client_id, key, lease_until],
            )?;
            if n > 0 {
                index.let_go(slot, id);
            }
            Ok(n > 0)
        })
        .await
    }

    async fn sweep_idempotency(&self, now: i64, limit: u32) -> Result<u64, StoreError> {
        const OP: &str = "sweep_idempotency";
        let inner = Arc::clone(&self.inner);
        self.write(OP, move |tx| {
            let mut index = idem_index(&inner);
            let mut stmt = tx
                .prepare_cached(
                    // The oldest `limit` rows by id (the order of their reservations), not a
                    // scan for expired ones: that would read the whole table whenever fewer
                    // than `limit` are due. The highest row stays (migration 4).
                    "DELETE FROM idempotency_keys WHERE id IN \
                     (SELECT id FROM \
                      (SELECT id, expires_at FROM idempotency_keys ORDER BY id LIMIT ?2) \
                      WHERE expires_at <= ?1 \
                      AND id < (SELECT max(id) FROM idempotency_keys)) \
                     RETURNING id, client_id, idem_key",
                )
                .map_err(db(OP))?;
            let mut rows = stmt.query(params![now, limit]).map_err(db(OP))?;
            let mut n = 0;
            while let Some(row) = rows.next().map_err(db(OP))? {
                let id: i64 = row.get(0).map_err(db(OP))?;
                let client_id: String = row.get(1).map_err(db(OP))?;
                let key: String = row.get(2).map_err(db(OP))?;
                index.removed(idem_slot(&client_id, &key), id);
                n += 1;
            }
            drop(rows);
            drop(stmt);
            index.forget_deleted(tx, now)?;
            Ok(n)
        })
        .await
    }

    async fn pending_events(&self, now: i64, limit: u32) -> Result<Vec<WebhookEvent>, StoreError> {
        const OP: &str = "pending_events";
        self.read(OP, move |conn| {
            conn.prepare_cached(
                "SELECT id, event_type, payload, created_at, delivered_at, attempts, \
                 next_attempt_at FROM webhook_outbox \
                 WHERE delivered_at IS NULL AND next_attempt_at <= ?1 \
                 ORDER BY next_attempt_at, id LIMIT ?2",
            )
            .and_then(|mut stmt| {
                stmt.query_map(params![now, limit], |row| {
                    Ok(WebhookEvent {
                        id: row.get(0)?,
                        event_type: row.get(1)?,
                        payload: row.get(2)?,
                        created_at: row.get(3)?,
                        delivered_at: row.get(4)?,
                        attempts: row.get(5)?,
                        next_attempt_at: row.get(6)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(db(OP))
        })
        .await
    }

    async fn mark_event_delivered(&self, id: i64, now: i64) -> Result<bool, StoreError> {
        const OP: &str = "mark_event_delivered";
        self.write(OP, move |tx| {
            let n = execute(
                tx,
                OP,
                "UPDATE webhook_outbox SET delivered_at = ?2, attempts = attempts + 1 \
                 WHERE id = ?1 AND delivered_at IS NULL",
                params![id, now],
            )?;
            Ok(n > 0)
        })
        .await
    }

    async fn mark_event_failed(&self, id: i64, next_attempt_at: i64) -> Result<bool, StoreError> {
        const OP: &str = "mark_event_failed";
        self.write(OP, move |tx| {
            let n = execute(
                tx,
                OP,
                "UPDATE webhook_outbox SET attempts = attempts + 1, next_attempt_at = ?2 \
                 WHERE id = ?1 AND delivered_at IS NULL",
                params![id, next_attempt_at],
            )?;
            Ok(n > 0)
        })
        .await
    }

    async fn purge_delivered_events(&self, before: i64, limit: u32) -> Result<u64, StoreError> {
        const OP: &str = "purge_delivered_events";
        self.write(OP, move |tx| {
            execute(
                tx,
                OP,
                "DELETE FROM webhook_outbox WHERE id IN \
                 (SELECT id FROM webhook_outbox \
                  WHERE delivered_at IS NOT NULL AND delivered_at < ?1 LIMIT ?2)",
                params![before, limit],
            )
        })
        .await
    }
}

/// The record `id`, if it exists and is the one of `(client_id, key)`.
/// Appends a reservation's row and returns its id.
fn append_key(
    batch: &Batch<'_, '_>,
    client_id: &str,
    key: &str,
    fingerprint: &Hash,
    now: i64,
    lease_until: i64,
    expires_at: i64,
) -> Result<i64, StoreError> {
    batch.execute(
        "reserve_idempotency",
        "INSERT INTO idempotency_keys (client_id, idem_key, fingerprint, lease_until, \
         created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![client_id, key, fingerprint, lease_until, now, expires_at],
    )?;
    Ok(batch.last_insert_rowid())
}

fn select_idempotency(
    conn: &Connection,
    id: i64,
    client_id: &str,
    key: &str,
) -> Result<Option<IdempotencyRecord>, StoreError> {
    const OP: &str = "reserve_idempotency";
    conn.prepare_cached(
        "SELECT k.fingerprint, CASE WHEN r.id IS NULL THEN 'in_flight' ELSE 'done' END, \
         k.lease_until, r.status, r.headers, r.body, k.created_at, k.expires_at \
         FROM idempotency_keys k LEFT JOIN idempotency_responses r ON r.id = k.id \
         WHERE k.id = ?1 AND k.client_id = ?2 AND k.idem_key = ?3",
    )
    .and_then(|mut stmt| {
        stmt.query_row(params![id, client_id, key], |row| {
            idempotency_from_row(row, client_id, key)
        })
        .optional()
    })
    .map_err(db(OP))
}

/// The in-process index of idempotency records: `(client_id, key)` → the row `id` holding it.
///
/// The table has no unique index on the key (see migration 3); this map is what finds a record,
/// and it is only read or changed while holding the writer connection, inside the transaction
/// that acts on what it found. It is a hint, never the truth: every row it points at is read
/// back with its `client_id` and key compared, so a stale entry (a row released or swept by
/// another process, or an id of a rolled-back batch) only ever reads as "no record".
///
/// Other processes writing the same file (a second Warden during a rolling restart) append rows
/// too; [`IdemIndex::sync`] reads every row past the last id seen, under the write lock, before
/// a reservation looks anything up. Ids only grow, as the highest row is never deleted
/// (migration 4), so the tail misses nothing. Memory: 25 bytes an entry, 30 to 60 a live record
/// as the maps double ([`KeyMap`]), plus [`IdemIndex::held`] for the reservations this process
/// has running.
struct IdemIndex {
    /// Every row with an id up to this one is in `by_key` (committed rows only).
    seen: i64,
    /// The highest id this process appended in the batch being committed.
    appended: i64,
    /// The last entry of the deletion log already applied to `by_key`.
    deleted_seen: i64,
    /// Whether the batch being run has read the tail yet: once is enough, as no other process
    /// can append while the batch holds the write lock.
    synced: bool,
    /// The writer's `PRAGMA data_version` at the last batch that looked: it changes whenever
    /// another connection (another process) has committed since, and only then. Unchanged,
    /// the tail and the deletion log hold nothing this process has not already applied, and a
    /// batch skips reading them (two statements a group commit). `None`: read them.
    writer_version: Option<i64>,
    by_key: KeyMap,
    /// Rows this process reserved and has not completed or released: slot → (id,
    /// `lease_until`). Such a row changes only through this process (its release, its
    /// completion) or by being deleted (a takeover or a sweep, in this process or, read from
    /// the deletion log at each batch, another one), and every one of those drops the entry.
    /// So a completion whose lease is here needs no lookup of the row to know it still holds
    /// it, nor a probe of `by_key` (large, so rarely in the CPU cache): this map holds only
    /// the requests running. A hint only in the other direction: an entry missing (a restart,
    /// a failed batch) means "look it up".
    held: std::collections::HashMap<Slot, (i64, i64), std::hash::BuildHasherDefault<SlotHasher>>,
    /// The entries this batch added to `held`, taken back if it fails to commit.
    held_in_batch: Vec<(Slot, i64)>,
}

impl IdemIndex {
    /// Reads every record's key; done once, when the store opens.
    fn load(conn: &Connection) -> Result<Self, StoreError> {
        const OP: &str = "idempotency_index";
        let started = std::time::Instant::now();
        let mut index = Self {
            seen: 0,
            appended: 0,
            synced: false,
            writer_version: None,
            // Rows deleted before this load are not in the map: start past them.
            held: Default::default(),
            held_in_batch: Vec::new(),
            deleted_seen: conn
                .query_row(
                    "SELECT coalesce(max(seq), 0) FROM idempotency_deleted",
                    [],
                    |row| row.get(0),
                )
                .map_err(db(OP))?,
            by_key: KeyMap::new(),
        };
        index.sync(conn)?;
        tracing::info!(
            records = index.by_key.len(),
            took_ms = started.elapsed().as_millis() as u64,
            "idempotency index loaded"
        );
        Ok(index)
    }

    /// Reads the rows appended since the last call.
    fn sync(&mut self, conn: &Connection) -> Result<(), StoreError> {
        const OP: &str = "idempotency_index";
        let mut stmt = conn
            .prepare_cached(
                "SELECT id, client_id, idem_key FROM idempotency_keys WHERE id > ?1 ORDER BY id",
            )
            .map_err(db(OP))?;
        // Rows past `appended` are this batch's own, already in the map; none can be another
        // process's, which cannot write while this transaction holds the lock.
        let mut rows = stmt.query([self.seen.max(self.appended)]).map_err(db(OP))?;
        while let Some(row) = rows.next().map_err(db(OP))? {
            let id: i64 = row.get(0).map_err(db(OP))?;
            let client_id: String = row.get(1).map_err(db(OP))?;
            let key: String = row.get(2).map_err(db(OP))?;
            self.by_key.insert(idem_slot(&client_id, &key), id);
            self.seen = id;
        }
        Ok(())
    }

    /// [`IdemIndex::sync`] and [`IdemIndex::read_deleted`], unless this batch did already.
    /// Unless no other connection has committed since the last batch (see
    /// [`IdemIndex::writer_version`]).
    fn sync_once(&mut self, tx: &Transaction<'_>) -> Result<(), StoreError> {
        const OP: &str = "idempotency_index";
        if self.synced {
            return Ok(());
        }
        let version = tx
            .prepare_cached("PRAGMA data_version")
            .and_then(|mut stmt| stmt.query_row([], |row| row.get::<_, i64>(0)))
            .map_err(db(OP))?;
        if self.writer_version != Some(version) {
            self.sync(tx)?;
            self.read_deleted(tx)?;
            self.writer_version = Some(version);
        }
        self.synced = true;
        Ok(())
    }

    /// At the start of a group commit (its write lock is held from here to its end).
    fn begin_batch(&mut self) {
        self.appended = 0;
        self.synced = false;
        self.held_in_batch.clear();
    }

    /// Notes that this process now holds row `id` of `slot` under `lease_until`.
    fn hold(&mut self, slot: Slot, id: i64, lease_until: i64) {
        self.held.insert(slot, (id, lease_until));
        self.held_in_batch.push((slot, id));
    }

    /// The row of `slot` this process holds under `lease_until`, if it does (see
    /// [`IdemIndex::held`]).
    fn holds(&self, slot: Slot, lease_until: i64) -> Option<i64> {
        self.held
            .get(&slot)
            .filter(|(_, lease)| *lease == lease_until)
            .map(|(id, _)| *id)
    }

    /// Row `id` of `slot` is no longer running here: completed, released or deleted.
    fn let_go(&mut self, slot: Slot, id: i64) {
        if self.held.get(&slot).is_some_and(|(held, _)| *held == id) {
            self.held.remove(&slot);
        }
    }

    /// Drops the entries of rows deleted since the last call, by this process or another, and
    /// prunes the deletion log of what every process has had [`DELETED_KEPT_SECS`] to read.
    fn forget_deleted(&mut self, tx: &Transaction<'_>, now: i64) -> Result<(), StoreError> {
        const OP: &str = "idempotency_index";
        self.read_deleted(tx)?;
        execute(
            tx,
            OP,
            "DELETE FROM idempotency_deleted WHERE at < ?1",
            params![now - DELETED_KEPT_SECS],
        )?;
        Ok(())
    }

    /// Drops the entries of rows deleted since the last call, by this process or another.
    fn read_deleted(&mut self, tx: &Transaction<'_>) -> Result<(), StoreError> {
        const OP: &str = "idempotency_index";
        let mut stmt = tx
            .prepare_cached(
                "SELECT seq, id, client_id, idem_key FROM idempotency_deleted \
                 WHERE seq > ?1 ORDER BY seq",
            )
            .map_err(db(OP))?;
        let mut rows = stmt.query([self.deleted_seen]).map_err(db(OP))?;
        while let Some(row) = rows.next().map_err(db(OP))? {
            let seq: i64 = row.get(0).map_err(db(OP))?;
            let id: i64 = row.get(1).map_err(db(OP))?;
            let client_id: String = row.get(2).map_err(db(OP))?;
            let key: String = row.get(3).map_err(db(OP))?;
            self.removed(idem_slot(&client_id, &key), id);
            self.deleted_seen = seq;
        }
        Ok(())
    }

    fn appended(&mut self, slot: Slot, id: i64) {
        self.by_key.insert(slot, id);
        self.appended = self.appended.max(id);
    }

    fn removed(&mut self, slot: Slot, id: i64) {
        if self.by_key.get(slot) == Some(id) {
            self.by_key.remove(slot);
        }
        self.let_go(slot, id);
    }

    /// After a group commit: this process's appends need not be read back, unless the commit
    /// failed (then their ids may be reused by another process, and the tail must read them).
    fn committed(&mut self, ok: bool) {
        if ok && self.appended > self.seen {
            self.seen = self.appended;
        }
        if !ok {
            // Its appends are not in the table: the next batch reads the tail again.
            self.writer_version = None;
            for (slot, id) in std::mem::take(&mut self.held_in_batch) {
                self.let_go(slot, id);
            }
        }
        self.appended = 0;
    }
}

/// How long the idempotency deletion log keeps an entry for other processes to read (their
/// sweeps, which read it, run every `store.sweep_interval`, far more often).
const DELETED_KEPT_SECS: i64 = 24 * 3600;

fn idem_index(inner: &Inner) -> MutexGuard<'_, IdemIndex> {
    inner.idem.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Where `(client_id, key)` sits in the index: 128 bits of SHA-256, so two live keys never
/// share one. Two `u64`s rather than a `u128`, whose 16-byte alignment would pad every entry
/// of the map from 24 to 32 bytes.
type Slot = (u64, u64);

fn idem_slot(client_id: &str, key: &str) -> Slot {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(client_id.as_bytes());
    h.update([0]);
    h.update(key.as_bytes());
    let digest = h.finalize();
    let word = |i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&digest[i..i + 8]);
        u64::from_le_bytes(w)
    };
    (word(0), word(8))
}

/// How many maps [`KeyMap`] splits the index into.
const KEY_MAP_SHARDS: usize = 256;

/// `slot → id` for every record, split by the slot's top byte into [`KEY_MAP_SHARDS`] maps, so
/// that growing one is never a stall. A map grows by moving every entry into a table twice the
/// size, inside the insert that fills it, and this one is filled inside a group commit on the
/// runtime: as one map, the insert that took it past 0.9 M records took 36 ms, past 7.3 M
/// 278 ms, every request on the runtime waiting meanwhile (a throwaway timing loop, the same
/// map and hasher, `docs/benchmarks.md`). A shard holds 1/256th: at 7 M records, about 1 ms.
/// (The same holds for the rehash in place that clears the tombstones of deleted entries.)
struct KeyMap {
    shards: Vec<std::collections::HashMap<Slot, i64, std::hash::BuildHasherDefault<SlotHasher>>>,
}

impl KeyMap {
    fn new() -> Self {
        Self {
            shards: (0..KEY_MAP_SHARDS).map(|_| Default::default()).collect(),
        }
    }

    fn shard(&self, slot: Slot) -> usize {
        // The slot is SHA-256 output: its top byte is as uniform as any.
        (slot.1 >> 56) as usize % KEY_MAP_SHARDS
    }

    fn get(&self, slot: Slot) -> Option<i64> {
        self.shards.get(self.shard(slot))?.get(&slot).copied()
    }

    fn insert(&mut self, slot: Slot, id: i64) {
        let shard = self.shard(slot);
        if let Some(map) = self.shards.get_mut(shard) {
            map.insert(slot, id);
        }
    }

    fn remove(&mut self, slot: Slot) {
        let shard = self.shard(slot);
        if let Some(map) = self.shards.get_mut(shard) {
            map.remove(&slot);
        }
    }

    fn len(&self) -> usize {
        self.shards.iter().map(|map| map.len()).sum()
    }
}

/// Slots are already uniformly distributed: the map hashes them by mixing their two words, not
/// with SipHash.
#[derive(Default)]
struct SlotHasher(u64);

impl std::hash::Hasher for SlotHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = self.0.rotate_left(29) ^ n;
    }
}

/// How a record answers a reservation at `now` while it is live (not expired, and not an
/// in-flight reservation whose lease ran out); `None` when it no longer counts.
fn live_answer(record: IdempotencyRecord, fingerprint: &Hash, now: i64) -> Option<Reservation> {
    let live = now < record.expires_at
        && match record.state {
            IdempotencyState::InFlight { lease_until } => now < lease_until,
            IdempotencyState::Done(_) => true,
        };
    if !live {
        return None;
    }
    if record.fingerprint != *fingerprint {
        return Some(Reservation::Mismatch);
    }
    Some(match record.state {
        IdempotencyState::InFlight { lease_until } => Reservation::InFlight { lease_until },
        IdempotencyState::Done(_) => Reservation::Done(Box::new(record)),
    })
}

fn idempotency_from_row(
    row: &Row<'_>,
    client_id: &str,
    key: &str,
) -> rusqlite::Result<IdempotencyRecord> {
    let state: String = row.get(1)?;
    let state = match state.as_str() {
        "in_flight" => IdempotencyState::InFlight {
            lease_until: row.get(2)?,
        },
        "done" => {
            let headers: Vec<u8> = row.get(4)?;
            IdempotencyState::Done(StoredResponse {
                status: row.get(3)?,
                headers: decode_headers(&headers)
                    .ok_or_else(|| malformed(4, Type::Blob, "truncated header block"))?,
                body: row.get(5)?,
            })
        }
        other => {
            return Err(malformed(
                1,
                Type::Text,
                format!("unknown idempotency state {other:?}"),
            ));
        }
    };
    Ok(IdempotencyRecord {
        client_id: client_id.to_owned(),
        key: key.to_owned(),
        fingerprint: row.get(0)?,
        state,
        created_at: row.get(6)?,
        expires_at: row.get(7)?,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use proptest::prelude::*;
    use sha2::{Digest, Sha256};

    use super::*;

    fn temp_file() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("warden.db");
        (dir, path)
    }

    fn pragma(conn: &Connection, name: &str) -> String {
        conn.query_row(&format!("PRAGMA {name}"), [], |row| {
            row.get::<_, rusqlite::types::Value>(0)
        })
        .map(|value| format!("{value:?}"))
        .expect("pragma")
    }

    fn sample_token(i: usize) -> TokenRecord {
        TokenRecord {
            id: format!("tok_{i:08}"),
            hash: Sha256::digest(i.to_be_bytes()).into(),
            kind: TokenKind::Access,
            client_id: "bench".to_owned(),
            account: "acme".to_owned(),
            name: None,
            user: None,
            audience: None,
            scopes: vec!["read".to_owned(), "write".to_owned()],
            trusted_ips: vec!["127.0.0.1/32".to_owned()],
            created_at: 1_700_000_000,
            updated_at: 1_700_000_000,
            expires_at: Some(1_700_003_600),
            enabled: true,
            disabled_reason: None,
            revoked_at: None,
            replaced_by: None,
        }
    }

    #[test]
    fn the_key_map_spreads_records_over_its_shards() {
        let mut map = KeyMap::new();
        let slots: Vec<Slot> = (0..20_000)
            .map(|i| idem_slot("client", &format!("key-{i}")))
            .collect();
        for (id, slot) in slots.iter().enumerate() {
            map.insert(*slot, id as i64);
        }
        assert_eq!(map.len(), slots.len());
        // ~78 a shard: none empty, none holding a large share (a growth is a shard's rehash).
        let largest = map.shards.iter().map(|m| m.len()).max().unwrap_or(0);
        assert!(map.shards.iter().all(|m| !m.is_empty()));
        assert!(largest < 200, "largest shard {largest}");
        for (id, slot) in slots.iter().enumerate() {
            assert_eq!(map.get(*slot), Some(id as i64));
        }
        map.remove(slots[7]);
        assert_eq!(map.get(slots[7]), None);
        assert_eq!(map.len(), slots.len() - 1);
    }

    #[test]
    fn store_urls_and_plain_paths_parse_to_a_location() {
        let file = |p: &str| Some(Location::File(PathBuf::from(p)));
        let parse = |url: &str| Location::parse(url).ok();
        assert_eq!(parse("sqlite://data/warden.db"), file("data/warden.db"));
        assert_eq!(parse("sqlite:data/warden.db"), file("data/warden.db"));
        assert_eq!(parse("sqlite:///var/lib/w.db"), file("/var/lib/w.db"));
        assert_eq!(parse("sqlite://data/w.db?mode=rwc"), file("data/w.db"));
        assert_eq!(parse("data/warden.db"), file("data/warden.db"));
        assert_eq!(parse("sqlite::memory:"), Some(Location::Memory));
        assert_eq!(parse(":memory:"), Some(Location::Memory));
        assert!(matches!(Location::parse(""), Err(StoreError::EmptyPath)));
        assert!(matches!(
            Location::parse("sqlite://"),
            Err(StoreError::EmptyPath)
        ));
        let err = Location::parse("postgres://warden:hunter2@db/warden").map(|_| ());
        let Err(err) = err else {
            panic!("postgres is not supported yet");
        };
        let message = err.to_string();
        assert!(message.contains("\"postgres\""), "{message}");
        assert!(
            !message.contains("hunter2"),
            "the url's password leaked: {message}"
        );
    }

    #[test]
    fn a_fresh_file_is_created_migrated_and_opened_in_wal_mode() {
        let (dir, _) = temp_file();
        let path = dir.path().join("a").join("b").join("warden.db");
        let store = SqliteStore::open_blocking(&Location::File(path.clone()), &Default::default())
            .expect("open");
        assert!(path.exists());
        let conn = lock(&store.inner.writer);
        assert_eq!(
            pragma(&conn, "user_version"),
            format!("Integer({})", schema_version())
        );
        assert_eq!(pragma(&conn, "journal_mode"), "Text(\"wal\")");
        assert_eq!(pragma(&conn, "synchronous"), "Integer(1)", "NORMAL");
        assert_eq!(pragma(&conn, "foreign_keys"), "Integer(1)");
        assert_eq!(pragma(&conn, "busy_timeout"), "Integer(5000)");
        assert_eq!(store.inner.readers.len(), StoreOptions::default().readers);
        let reader = store.inner.reader();
        assert_eq!(pragma(&reader, "query_only"), "Integer(1)");
        assert_eq!(pragma(&reader, "synchronous"), "Integer(1)");
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o777
    }

    #[cfg(unix)]
    #[test]
    fn a_new_store_its_directories_and_files_are_its_owners_only() {
        // Review finding 17: under the usual umask (022) they came out 0755 and 0644.
        let (dir, _) = temp_file();
        let path = dir.path().join("a").join("b").join("warden.db");
        let store = SqliteStore::open_blocking(&Location::File(path.clone()), &Default::default())
            .expect("open");
        let [db, wal, shm, _] = database_files(&path);
        assert!(wal.exists() && shm.exists());
        for file in [&db, &wal, &shm] {
            assert_eq!(mode(file), 0o600, "{}", file.display());
        }
        for made in [dir.path().join("a"), dir.path().join("a").join("b")] {
            assert_eq!(mode(&made), 0o700, "{}", made.display());
        }
        drop(store);
    }

    #[cfg(unix)]
    #[test]
    fn existing_store_files_others_may_read_are_narrowed_at_open() {
        use std::os::unix::fs::PermissionsExt;
        let (dir, path) = temp_file();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let store = SqliteStore::open_blocking(&Location::File(path.clone()), &Default::default())
            .expect("open");
        let files = database_files(&path);
        for file in files.iter().filter(|f| f.exists()) {
            std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o664)).unwrap();
        }
        let again = SqliteStore::open_blocking(&Location::File(path.clone()), &Default::default())
            .expect("reopen");
        for file in files.iter().filter(|f| f.exists()) {
            assert_eq!(mode(file), 0o600, "{}", file.display());
        }
        assert_eq!(
            mode(dir.path()),
            0o755,
            "an existing directory is left alone"
        );
        drop((store, again));
    }

    #[test]
    fn full_durability_sets_synchronous_full() {
        let (_dir, path) = temp_file();
        let options = StoreOptions {
            durability: Durability::Full,
            ..Default::default()
        };
        let store = SqliteStore::open_blocking(&Location::File(path), &options).expect("open");
        assert_eq!(
            pragma(&lock(&store.inner.writer), "synchronous"),
            "Integer(2)"
        );
    }

    #[test]
    fn reopening_an_existing_file_keeps_its_schema_and_data() {
        let (_dir, path) = temp_file();
        let location = Location::File(path.clone());
        {
            let store = SqliteStore::open_blocking(&location, &Default::default()).expect("open");
            lock(&store.inner.writer)
                .execute(
                    "INSERT INTO webhook_outbox (event_type, payload, created_at, next_attempt_at) \
                     VALUES ('E', '{}', 1, 1)",
                    [],
                )
                .expect("insert");
        }
        let store = SqliteStore::open_blocking(&location, &Default::default()).expect("reopen");
        let conn = lock(&store.inner.writer);
        assert_eq!(
            pragma(&conn, "user_version"),
            format!("Integer({})", schema_version())
        );
        let count: i64 = conn
            .query_row("SELECT count(*) FROM webhook_outbox", [], |row| row.get(0))
            .expect("count");
        assert_eq!(count, 1);
    }

    #[tokio::test]
    async fn idempotency_records_of_schema_2_survive_the_migration() {
        let (_dir, path) = temp_file();
        {
            let conn = Connection::open(&path).expect("open");
            for migration in &MIGRATIONS[..2] {
                conn.execute_batch(migration).expect("old schema");
            }
            conn.pragma_update(None, "user_version", 2)
                .expect("version");
            conn.execute(
                "INSERT INTO idempotency (client_id, idem_key, fingerprint, state, status, \
                 headers, body, created_at, updated_at, expires_at) \
                 VALUES ('c1', 'done', ?1, 'done', 201, ?2, x'6f6b', 10, 11, 4000000000)",
                params![
                    [7u8; 32],
                    encode_headers(&[("a".to_owned(), b"b".to_vec())])
                ],
            )
            .expect("done record");
            conn.execute(
                "INSERT INTO idempotency (client_id, idem_key, fingerprint, state, lease_until, \
                 created_at, updated_at, expires_at) \
                 VALUES ('c1', 'running', ?1, 'in_flight', 3999999999, 10, 10, 4000000000)",
                params![[7u8; 32]],
            )
            .expect("in-flight record");
        }
        let store = SqliteStore::open(path.to_str().expect("utf-8"), Default::default())
            .await
            .expect("migrate");
        let now = 1_000;
        let r = store
            .reserve_idempotency("c1", "done", [7u8; 32], now, now + 30, now + 60)
            .await
            .expect("reserve");
        let Reservation::Done(record) = r else {
            panic!("expected Done, got {r:?}");
        };
        assert_eq!(
            record.state,
            IdempotencyState::Done(StoredResponse {
                status: 201,
                headers: vec![("a".to_owned(), b"b".to_vec())],
                body: b"ok".to_vec(),
            })
        );
        let r = store
            .reserve_idempotency("c1", "running", [7u8; 32], now, now + 30, now + 60)
            .await
            .expect("reserve");
        assert_eq!(
            r,
            Reservation::InFlight {
                lease_until: 3_999_999_999
            }
        );
        // The old table and its unique index are gone: keys are found in the process.
        let indexes: i64 = lock(&store.inner.writer)
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'idempotency' \
                 OR (type = 'index' AND tbl_name LIKE 'idempotency%' \
                 AND name LIKE 'sqlite_autoindex%')",
                [],
                |row| row.get(0),
            )
            .expect("count");
        assert_eq!(indexes, 0);
    }

    /// Schema 3 to 4: records keep their ids, and ids never go back below the old sequence,
    /// even when the row that reached it had been deleted.
    #[tokio::test]
    async fn idempotency_records_of_schema_3_keep_their_ids_and_the_sequence() {
        let (_dir, path) = temp_file();
        {
            let conn = Connection::open(&path).expect("open");
            for migration in &MIGRATIONS[..3] {
                conn.execute_batch(migration).expect("old schema");
            }
            conn.pragma_update(None, "user_version", 3)
                .expect("version");
            for key in ["a", "b", "c"] {
                conn.execute(
                    "INSERT INTO idempotency_keys (client_id, idem_key, fingerprint, lease_until, \
                     created_at, expires_at) VALUES ('c1', ?1, ?2, 3999999999, 10, 4000000000)",
                    params![key, [7u8; 32]],
                )
                .expect("record");
            }
            conn.execute("DELETE FROM idempotency_keys WHERE idem_key = 'c'", [])
                .expect("delete the highest");
        }
        let store = SqliteStore::open(path.to_str().expect("utf-8"), Default::default())
            .await
            .expect("migrate");
        let now = 1_000;
        let r = store
            .reserve_idempotency("c1", "b", [7u8; 32], now, now + 30, now + 60)
            .await
            .expect("reserve");
        assert_eq!(
            r,
            Reservation::InFlight {
                lease_until: 3_999_999_999
            }
        );
        let r = store
            .reserve_idempotency("c1", "new", [7u8; 32], now, now + 30, now + 60)
            .await
            .expect("reserve");
        assert_eq!(r, Reservation::Reserved);
        let conn = lock(&store.inner.writer);
        let id_of = |key: &str| -> i64 {
            conn.query_row(
                "SELECT id FROM idempotency_keys WHERE client_id = 'c1' AND idem_key = ?1",
                [key],
                |row| row.get(0),
            )
            .expect("id")
        };
        assert_eq!((id_of("a"), id_of("b")), (1, 2));
        assert_eq!(id_of("new"), 4, "id 3 was handed out before the migration");
        let left: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name IN \
                 ('idempotency_keys_by_expiry', 'idempotency_keys_4') \
                 OR (name = 'sqlite_sequence' AND sql LIKE '%idempotency_keys%')",
                [],
                |row| row.get(0),
            )
            .expect("count");
        assert_eq!(left, 0);
        let sequenced: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_sequence WHERE name = 'idempotency_keys'",
                [],
                |row| row.get(0),
            )
            .expect("count");
        assert_eq!(sequenced, 0, "no AUTOINCREMENT any more");
    }

    /// Without AUTOINCREMENT, SQLite hands out `max(id) + 1`: were the highest row deleted,
    /// its id would come back, and a process that had already read it would never read the new
    /// row, and would reserve the same key a second time.
    #[tokio::test]
    async fn a_released_highest_row_keeps_its_id_from_coming_back() {
        let (_dir, _url, a, b) = two_stores().await;
        let fp = [1u8; 32];
        let t0 = 1_000;
        for (store, key) in [(&a, "k1"), (&a, "k2"), (&b, "b1")] {
            let r = store
                .reserve_idempotency("c1", key, fp, t0, t0 + 30, t0 + 100)
                .await;
            assert_eq!(r.expect("reserve"), Reservation::Reserved, "{key}");
        }
        // B has read A's rows (its reservation synced the tail past k2). B releases b1, the
        // highest row; then A appends k3.
        assert!(
            b.release_idempotency("c1", "b1", t0 + 30)
                .await
                .expect("release")
        );
        let r = a
            .reserve_idempotency("c1", "k3", fp, t0 + 1, t0 + 31, t0 + 100)
            .await;
        assert_eq!(r.expect("reserve"), Reservation::Reserved);
        // B must find A's k3 in flight, not reserve it again.
        let r = b
            .reserve_idempotency("c1", "k3", fp, t0 + 2, t0 + 32, t0 + 100)
            .await;
        assert_eq!(
            r.expect("reserve"),
            Reservation::InFlight {
                lease_until: t0 + 31
            }
        );
        // The released key is free again, for either process.
        let r = a
            .reserve_idempotency("c1", "b1", fp, t0 + 3, t0 + 33, t0 + 100)
            .await;
        assert_eq!(r.expect("reserve"), Reservation::Reserved);
    }

    /// A completion trusts what the process knows of its own reservations (`IdemIndex::held`)
    /// only after reading what other processes deleted: a row another Warden swept must not get
    /// a response (it would belong to no record, and never be swept).
    #[tokio::test]
    async fn a_row_another_process_swept_takes_no_response() {
        let (_dir, _url, a, b) = two_stores().await;
        let fp = [1u8; 32];
        let t0 = 1_000;
        for (key, expires_at) in [("k1", t0 + 40), ("k2", t0 + 5_000)] {
            let r = a
                .reserve_idempotency("c1", key, fp, t0, t0 + 30, expires_at)
                .await;
            assert_eq!(r.expect("reserve"), Reservation::Reserved, "{key}");
        }
        assert_eq!(b.sweep_idempotency(t0 + 50, 100).await.expect("sweep"), 1);
        let late = a
            .complete_idempotency("c1", "k1", t0 + 30, crate::store::tests::response(201))
            .await;
        assert!(!late.expect("complete"), "k1's row is gone");
        assert!(
            a.complete_idempotency("c1", "k2", t0 + 30, crate::store::tests::response(201))
                .await
                .expect("complete")
        );
        let orphans: i64 = lock(&a.inner.writer)
            .query_row(
                "SELECT count(*) FROM idempotency_responses \
                 WHERE id NOT IN (SELECT id FROM idempotency_keys)",
                [],
                |row| row.get(0),
            )
            .expect("count");
        assert_eq!(orphans, 0);
    }

    /// Two stores on one file, standing for two Wardens.
    async fn two_stores() -> (tempfile::TempDir, String, SqliteStore, SqliteStore) {
        let (dir, path) = temp_file();
        let url = path.to_str().expect("utf-8").to_owned();
        let a = SqliteStore::open(&url, Default::default())
            .await
            .expect("open a");
        let b = SqliteStore::open(&url, Default::default())
            .await
            .expect("open b");
        (dir, url, a, b)
    }

    /// Two Wardens on one file both sweep: entries for rows the other one deleted must leave
    /// this process's index too, or its memory grows for good.
    #[tokio::test]
    async fn rows_another_process_deletes_leave_this_process_index() {
        let (_dir, url, a, b) = two_stores().await;
        let fp = [1u8; 32];
        let t0 = 1_000;
        for key in ["k1", "k2", "k3"] {
            let r = a
                .reserve_idempotency("c1", key, fp, t0, t0 + 30, t0 + 100)
                .await;
            assert_eq!(r.expect("reserve"), Reservation::Reserved);
        }
        // B reads A's rows into its index on its next reservation.
        let r = b
            .reserve_idempotency("c1", "b1", fp, t0, t0 + 30, t0 + 5_000)
            .await;
        assert_eq!(r.expect("reserve"), Reservation::Reserved);
        let size = |s: &SqliteStore| idem_index(&s.inner).by_key.len();
        assert_eq!(size(&b), 4);
        assert!(
            a.release_idempotency("c1", "k2", t0 + 30)
                .await
                .expect("release")
        );
        // k2's release ended its lease in place; the sweep takes it with k1 and k3.
        assert_eq!(a.sweep_idempotency(t0 + 100, 100).await.expect("sweep"), 3);
        assert_eq!(size(&a), 0, "a's own deletions (it never read b's row)");
        assert_eq!(size(&b), 4, "b has not swept yet");
        // B's sweep finds nothing of its own to delete, and reads what A deleted.
        assert_eq!(b.sweep_idempotency(t0 + 100, 100).await.expect("sweep"), 0);
        assert_eq!(size(&b), 1);
        // A new process starts past the old deletions, and the log is pruned after a day.
        let c = SqliteStore::open(&url, Default::default())
            .await
            .expect("open c");
        assert_eq!(size(&c), 1);
        let log = |s: &SqliteStore| -> i64 {
            lock(&s.inner.writer)
                .query_row("SELECT count(*) FROM idempotency_deleted", [], |row| {
                    row.get(0)
                })
                .expect("count")
        };
        assert_eq!(log(&c), 3);
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        let later = i64::try_from(wall).expect("secs") + DELETED_KEPT_SECS + 1;
        // b1 has expired too, but the highest row stays (migration 4).
        assert_eq!(c.sweep_idempotency(later, 100).await.expect("sweep"), 0);
        assert_eq!(log(&c), 0);
        assert_eq!(size(&c), 1);
    }

    /// Under writes that never pause, the WAL still starts over once it passes the threshold.
    /// With passive checkpoints alone this file grew to all the frames ever written (~25 MB).
    #[test]
    fn a_wal_under_steady_writes_starts_over() {
        test_wal_stays_bounded(64, 8 * 1024 * 1024);
    }

    fn test_wal_stays_bounded(restart_frames: i64, bound: u64) {
        let (_dir, path) = temp_file();
        let open = || {
            let conn = Connection::open(&path).expect("open");
            conn.busy_timeout(Duration::from_secs(10)).expect("busy");
            conn.pragma_update(None, "journal_mode", "WAL")
                .expect("wal");
            conn.pragma_update(None, "synchronous", "NORMAL")
                .expect("sync");
            conn.pragma_update(None, "wal_autocheckpoint", 0)
                .expect("no auto");
            conn
        };
        let writer = open();
        writer
            .execute_batch("CREATE TABLE t (b BLOB NOT NULL)")
            .expect("table");
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop = Arc::clone(&done);
        let writes = std::thread::spawn(move || {
            // Commits with short gaps between them, as group commits come.
            for _ in 0..3000 {
                writer
                    .execute("INSERT INTO t (b) VALUES (randomblob(3000))", [])
                    .expect("insert");
                std::thread::sleep(Duration::from_micros(100));
            }
            stop.store(true, std::sync::atomic::Ordering::Release);
        });
        let checkpointer = open();
        checkpointer.busy_timeout(RESTART_WAIT).expect("busy");
        let mut largest = 0;
        while !done.load(std::sync::atomic::Ordering::Acquire) {
            checkpoint(&checkpointer, restart_frames).expect("checkpoint");
            let wal = path.with_extension("db-wal");
            largest = largest.max(std::fs::metadata(&wal).map_or(0, |m| m.len()));
            std::thread::sleep(Duration::from_millis(2));
        }
        writes.join().expect("writer");
        assert!(largest < bound, "the WAL reached {largest} bytes");
    }

    #[test]
    fn an_index_entry_is_24_bytes() {
        assert_eq!(std::mem::size_of::<(Slot, i64)>(), 24);
        assert_ne!(idem_slot("a", "bc"), idem_slot("ab", "c"));
    }

    #[test]
    fn a_schema_newer_than_this_build_is_refused() {
        let (_dir, path) = temp_file();
        Connection::open(&path)
            .and_then(|conn| conn.pragma_update(None, "user_version", schema_version() + 1))
            .expect("set version");
        let result = SqliteStore::open_blocking(&Location::File(path), &Default::default());
        assert!(
            matches!(result, Err(StoreError::SchemaTooNew { found, supported })
                if found == schema_version() + 1 && supported == schema_version()),
            "{:?}",
            result.err()
        );
    }

    #[tokio::test]
    async fn malformed_rows_are_reported_as_corrupt_not_a_panic() {
        let (_dir, path) = temp_file();
        let store = SqliteStore::open(path.to_str().expect("utf-8"), Default::default())
            .await
            .expect("open");
        let t = sample_token(1);
        store.insert_token(t.clone(), None).await.expect("insert");
        lock(&store.inner.writer)
            .execute("UPDATE tokens SET scopes = 'not json'", [])
            .expect("corrupt");
        let err = store.token_by_hash(&t.hash).await;
        assert!(matches!(err, Err(StoreError::Corrupt { .. })), "{err:?}");
        lock(&store.inner.writer)
            .execute("UPDATE tokens SET scopes = '[]', hash = x'0102'", [])
            .expect("corrupt");
        let err = store.get_token(&t.id).await;
        assert!(matches!(err, Err(StoreError::Corrupt { .. })), "{err:?}");
    }

    #[test]
    fn header_blocks_round_trip_and_truncation_is_detected() {
        let headers = vec![
            ("a".to_owned(), b"1".to_vec()),
            ("".to_owned(), Vec::new()),
            ("set-cookie".to_owned(), vec![0, 255]),
        ];
        let blob = encode_headers(&headers);
        assert_eq!(decode_headers(&blob), Some(headers));
        assert_eq!(decode_headers(&[]), Some(Vec::new()));
        assert_eq!(decode_headers(&blob[..blob.len() - 1]), None);
        assert_eq!(decode_headers(&[0, 0, 0, 1]), None);
    }

    proptest! {
        #[test]
        fn decoding_any_header_blob_never_panics(blob in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_headers(&blob);
        }

        #[test]
        fn any_header_list_round_trips(
            headers in proptest::collection::vec((".{0,8}", proptest::collection::vec(any::<u8>(), 0..16)), 0..6)
        ) {
            prop_assert_eq!(decode_headers(&encode_headers(&headers)), Some(headers));
        }
    }

    /// Issuance throughput: `cargo test --release --lib store::sqlite::tests::insert_rate --
    /// --ignored --nocapture`. One current-thread runtime, so one core drives it.
    #[test]
    #[ignore = "measurement, not a check"]
    fn insert_rate() {
        const COUNT: usize = 5_000;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        for durability in [Durability::Normal, Durability::Full] {
            let (_dir, path) = temp_file();
            let options = StoreOptions {
                durability,
                ..Default::default()
            };
            runtime.block_on(async {
                let store = SqliteStore::open(path.to_str().expect("utf-8"), options)
                    .await
                    .expect("open");
                let started = Instant::now();
                for i in 0..COUNT {
                    let event = NewEvent {
                        event_type: "AUTH.CREATED".to_owned(),
                        payload: format!(r#"{{"accessTokenId":"tok_{i:08}"}}"#),
                        created_at: 1_700_000_000,
                    };
                    store
                        .insert_token(sample_token(i), Some(event))
                        .await
                        .expect("insert");
                }
                let elapsed = started.elapsed();
                println!(
                    "{durability:?}: {COUNT} insert_token (+ outbox event) in {elapsed:?}: {:.0}/s",
                    COUNT as f64 / elapsed.as_secs_f64()
                );
                let started = Instant::now();
                for i in 0..COUNT {
                    let hash: Hash = Sha256::digest(i.to_be_bytes()).into();
                    store.token_by_hash(&hash).await.expect("lookup");
                }
                let elapsed = started.elapsed();
                println!(
                    "{durability:?}: {COUNT} token_by_hash in {elapsed:?}: {:.0}/s",
                    COUNT as f64 / elapsed.as_secs_f64()
                );
            });
        }
    }
}

#[cfg(test)]
mod idem_rate {
    use super::*;

    /// This process's CPU time so far (user + system, all threads), from `/proc/self/stat`.
    fn cpu_secs() -> f64 {
        let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
        // Fields after the command name, which is in parentheses and may hold spaces.
        let after = stat.rsplit(')').next().expect("stat fields");
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks = |i: usize| fields[i].parse::<f64>().expect("clock ticks");
        // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
        (ticks(11) + ticks(12)) / 100.0
    }

    /// The store's share of a fresh-key request: CPU for one reservation and one completion
    /// (1 KiB body), 32 at a time on one thread as under `wrk -c64`, group commits included.
    /// `IDEM_URL=sqlite::memory:` leaves the file I/O out; `IDEM_BODY=5` stores a 5-byte body
    /// (what `bench/compare.sh idempotent`'s upstream answers) instead of 1 KiB.
    /// `cargo test --release --lib idem_rate -- --ignored --nocapture`
    #[test]
    #[ignore = "a measurement, not a check"]
    fn idempotency_pair_cpu() {
        const TASKS: usize = 32;
        const EACH: usize = 12_000;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::tempdir().expect("dir");
        let url = std::env::var("IDEM_URL")
            .unwrap_or_else(|_| format!("sqlite://{}", dir.path().join("w.db").display()));
        runtime.block_on(async {
            let store = Arc::new(
                SqliteStore::open(&url, StoreOptions::default())
                    .await
                    .expect("open"),
            );
            let body_len = std::env::var("IDEM_BODY")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(1024);
            let (cpu, wall) = (cpu_secs(), std::time::Instant::now());
            let tasks: Vec<_> = (0..TASKS)
                .map(|t| {
                    let store = store.clone();
                    tokio::spawn(async move {
                        for i in 0..EACH {
                            let key = format!("{:016x}-{t}-{i}", rand::random::<u64>());
                            let r = store
                                .reserve_idempotency("bench", &key, [7; 32], 1000, 1060, 90_000)
                                .await;
                            assert_eq!(r.expect("reserve"), Reservation::Reserved);
                            let response = StoredResponse {
                                status: 201,
                                headers: vec![("content-type".to_owned(), b"text/plain".to_vec())],
                                body: vec![b'x'; body_len],
                            };
                            let done = store
                                .complete_idempotency("bench", &key, 1060, response)
                                .await;
                            assert!(done.expect("complete"));
                        }
                    })
                })
                .collect();
            for task in tasks {
                task.await.expect("task");
            }
            let pairs = (TASKS * EACH) as f64;
            println!(
                "{url}: {pairs} pairs, CPU {:.2} us a pair, wall {:.2} us",
                (cpu_secs() - cpu) * 1e6 / pairs,
                wall.elapsed().as_secs_f64() * 1e6 / pairs
            );
        });
    }
}
