//! The batch writer: group commit of the per-request idempotency writes (on the runtime, or on
//! the blocking pool when it must wait), and the WAL checkpointer thread.

use std::cell::RefCell;
use std::sync::{Arc, TryLockError};
use std::time::Duration;

use rusqlite::{Connection, Transaction, TransactionBehavior};

use super::idem_index::idem_index;
use super::rows::{db, execute};
use super::{Inner, lock};
use crate::store::StoreError;

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
pub(super) struct Batcher {
    jobs: JobSender,
}

enum JobSender {
    Task(tokio::sync::mpsc::UnboundedSender<Box<dyn Job>>),
    Thread(std::sync::mpsc::Sender<Box<dyn Job>>),
}

impl Batcher {
    pub(super) fn send(&self, job: Box<dyn Job>) -> Result<(), ()> {
        match &self.jobs {
            JobSender::Task(tx) => tx.send(job).map_err(|_| ()),
            JobSender::Thread(tx) => tx.send(job).map_err(|_| ()),
        }
    }
}

/// The most jobs one group commit takes.
const MAX_BATCH: usize = 256;

impl Batcher {
    pub(super) fn start(inner: Arc<Inner>) -> Result<Self, StoreError> {
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
pub(super) const WAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

/// How often the WAL is checkpointed into the database file (PASSIVE: never blocks readers
/// or the writer), in place of SQLite's automatic checkpoint inside a commit.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// A WAL holding more frames than this at a checkpoint is made to start over (~17 MB).
const WAL_RESTART_FRAMES: i64 = 4096;

/// The longest a RESTART checkpoint waits for the writer lock, then for readers to leave the
/// WAL (writers wait behind it meanwhile). Past it, the checkpoint ends as a passive one and
/// the next tries again.
pub(super) const RESTART_WAIT: Duration = Duration::from_millis(100);

pub(super) fn checkpoint_forever(conn: &Connection, store: &std::sync::Weak<Inner>) {
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
pub(super) fn checkpoint(conn: &Connection, restart_frames: i64) -> rusqlite::Result<()> {
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
    let started = std::time::Instant::now();
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
    if let (None, Some(timing)) = (&failed, &inner.timing) {
        timing.observe("batch", started);
    }
    idem_index(inner).committed(failed.is_none());
    jobs.into_iter().for_each(|job| job.answer(failed.as_ref()));
    None
}

/// The transaction of a group commit, as its jobs see it: the transaction itself (`Deref`),
/// and the statements they ran through [`Batch::execute`], kept prepared until the batch ends.
/// rusqlite's statement cache hashes a statement's SQL to take it out and again to put it
/// back, on every use; here a batch takes each statement out once (`idem_rate` under
/// callgrind: 32.6k → 29.9k instructions a reservation + completion, `docs/benchmarks.md`).
pub(super) struct Batch<'t, 'c> {
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
    pub(super) fn execute(
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

pub(super) trait Job: Send {
    /// Runs in the batch's transaction (no savepoint of its own: see
    /// [`SqliteStore::batched`](super::SqliteStore::batched)).
    fn run(&mut self, batch: &Batch<'_, '_>);
    /// Answers once the batch committed, or failed to (`failed`); a job that did not run
    /// answers that the batch could not start.
    fn answer(self: Box<Self>, failed: Option<&StoreError>);
}

pub(super) struct Pending<T, F> {
    pub(super) op: &'static str,
    pub(super) f: Option<F>,
    pub(super) result: Option<Result<T, StoreError>>,
    pub(super) reply: tokio::sync::oneshot::Sender<Result<T, StoreError>>,
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
