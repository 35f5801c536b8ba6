//! Issued tokens. Issuance and revocation are one statement each (the token and its outbox
//! event together), so one round trip; issuance fires no trigger, so it never notifies.
//! Concurrent issuances share a transaction ([`InsertQueue`]): one commit for many tokens.

use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use deadpool_postgres::{GenericClient, Pool};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_postgres::types::ToSql;

use super::PostgresStore;
use super::outbox::{EventParams, event_ctes, insert_event};
use super::rows::{db, get, pool_error, token_columns, token_from_row};
use crate::store::{Hash, NewEvent, StoreError, TokenKind, TokenRecord, TokenStore};

const INSERT_TOKEN: &str = "INSERT INTO tokens (id, hash, kind, client_id, account, name, \
     user_name, audience, scopes, trusted_ips, created_at, updated_at, expires_at, enabled, \
     disabled_reason, revoked_at, replaced_by) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)";

/// Records a write of `op` that began at `started` (`warden_store_write_duration_seconds`).
fn timed(store: &PostgresStore, op: &'static str, started: std::time::Instant) {
    if let Some(timing) = &store.timing {
        timing.observe(op, started);
    }
}

/// The token and, in the same statement, its event and deliveries.
static INSERT_TOKEN_WITH_EVENT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH t AS ({INSERT_TOKEN} RETURNING 1), {} SELECT (SELECT count(*) FROM e)",
        event_ctes(18, "t")
    )
});

/// Revokes once; the event goes with the revocation that happened. Answers (revoked now,
/// exists).
static REVOKE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH t AS (UPDATE tokens SET revoked_at = $2, updated_at = $2 \
         WHERE id = $1 AND revoked_at IS NULL RETURNING 1), {} \
         SELECT EXISTS (SELECT 1 FROM t), EXISTS (SELECT 1 FROM tokens WHERE id = $1)",
        event_ctes(3, "t")
    )
});

fn token_params_with<'a>(t: &'a TokenRecord, hash: &'a &'a [u8]) -> [&'a (dyn ToSql + Sync); 17] {
    [
        &t.id,
        hash,
        t.kind.as_sql(),
        &t.client_id,
        &t.account,
        &t.name,
        &t.user,
        &t.audience,
        &t.scopes,
        &t.trusted_ips,
        &t.created_at,
        &t.updated_at,
        &t.expires_at,
        &t.enabled,
        &t.disabled_reason,
        &t.revoked_at,
        &t.replaced_by,
    ]
}

impl TokenKind {
    /// [`TokenKind::as_str`] as a SQL parameter.
    fn as_sql(&self) -> &'static (dyn ToSql + Sync) {
        match self {
            TokenKind::Access => &"access",
            TokenKind::ApiKey => &"api_key",
            TokenKind::Managed => &"managed",
        }
    }
}

impl PostgresStore {
    async fn query_token(
        &self,
        op: &'static str,
        sql: &'static str,
        key: &(dyn ToSql + Sync),
    ) -> Result<Option<TokenRecord>, StoreError> {
        let client = self.client(op).await?;
        let stmt = client.prepare_cached(sql).await.map_err(db(op))?;
        let row = client.query_opt(&stmt, &[key]).await.map_err(db(op))?;
        row.map(|row| token_from_row(&row, op)).transpose()
    }
}

#[async_trait]
impl TokenStore for PostgresStore {
    async fn insert_token(
        &self,
        token: TokenRecord,
        event: Option<NewEvent>,
    ) -> Result<(), StoreError> {
        // Timed from the caller's side: the wait for its group commit included.
        let started = std::time::Instant::now();
        let outcome = self.inserts.insert(token, event).await;
        if outcome.is_ok() {
            timed(self, "insert_token", started);
        }
        outcome
    }

    async fn token_by_hash(&self, hash: &Hash) -> Result<Option<TokenRecord>, StoreError> {
        const SQL: &str = concat!("SELECT ", token_columns!(), " FROM tokens WHERE hash = $1");
        self.query_token("token_by_hash", SQL, &hash.as_slice())
            .await
    }

    async fn get_token(&self, id: &str) -> Result<Option<TokenRecord>, StoreError> {
        const SQL: &str = concat!("SELECT ", token_columns!(), " FROM tokens WHERE id = $1");
        self.query_token("get_token", SQL, &id).await
    }

    async fn list_tokens(
        &self,
        account: &str,
        kind: Option<TokenKind>,
    ) -> Result<Vec<TokenRecord>, StoreError> {
        const OP: &str = "list_tokens";
        const SQL: &str = concat!(
            "SELECT ",
            token_columns!(),
            " FROM tokens WHERE account = $1 AND ($2::text IS NULL OR kind = $2) \
             ORDER BY created_at, id"
        );
        let client = self.client(OP).await?;
        let rows = client
            .query(SQL, &[&account, &kind.map(TokenKind::as_str)])
            .await
            .map_err(db(OP))?;
        rows.iter().map(|row| token_from_row(row, OP)).collect()
    }

    async fn revoke_token(
        &self,
        id: &str,
        now: i64,
        event: Option<NewEvent>,
    ) -> Result<bool, StoreError> {
        const OP: &str = "revoke_token";
        let client = self.client(OP).await?;
        let started = std::time::Instant::now();
        let event = EventParams::of(event.as_ref());
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&id, &now];
        params.extend_from_slice(&event.params());
        let stmt = client.prepare_cached(&REVOKE).await.map_err(db(OP))?;
        let row = client.query_one(&stmt, &params).await.map_err(db(OP))?;
        timed(self, OP, started);
        let revoked: bool = get(&row, 0, OP)?;
        if revoked {
            self.changed();
        }
        get(&row, 1, OP)
    }

    async fn set_token_enabled(
        &self,
        id: &str,
        enabled: bool,
        reason: Option<String>,
        now: i64,
        event: Option<NewEvent>,
    ) -> Result<bool, StoreError> {
        const OP: &str = "set_token_enabled";
        let reason = crate::store::kept_reason(enabled, reason);
        let mut conn = self.client(OP).await?;
        let tx = conn.transaction().await.map_err(db(OP))?;
        let was = tx
            .query_opt(
                "SELECT enabled FROM tokens WHERE id = $1 FOR UPDATE",
                &[&id],
            )
            .await
            .map_err(db(OP))?;
        let Some(was) = was else {
            return Ok(false);
        };
        let was: bool = get(&was, 0, OP)?;
        tx.execute(
            "UPDATE tokens SET enabled = $2, disabled_reason = $3, updated_at = $4 WHERE id = $1",
            &[&id, &enabled, &reason, &now],
        )
        .await
        .map_err(db(OP))?;
        if was != enabled {
            insert_event(&tx, OP, event.as_ref()).await?;
        }
        tx.commit().await.map_err(db(OP))?;
        self.changed();
        Ok(true)
    }

    async fn rename_token(
        &self,
        id: &str,
        name: String,
        now: i64,
        event: Option<NewEvent>,
    ) -> Result<bool, StoreError> {
        const OP: &str = "rename_token";
        let mut conn = self.client(OP).await?;
        let tx = conn.transaction().await.map_err(db(OP))?;
        let was = tx
            .query_opt("SELECT name FROM tokens WHERE id = $1 FOR UPDATE", &[&id])
            .await
            .map_err(db(OP))?;
        let Some(was) = was else {
            return Ok(false);
        };
        let was: Option<String> = get(&was, 0, OP)?;
        tx.execute(
            "UPDATE tokens SET name = $2, updated_at = $3 WHERE id = $1",
            &[&id, &name, &now],
        )
        .await
        .map_err(db(OP))?;
        if was.as_deref() != Some(name.as_str()) {
            insert_event(&tx, OP, event.as_ref()).await?;
        }
        tx.commit().await.map_err(db(OP))?;
        self.changed();
        Ok(true)
    }

    async fn delete_token(&self, id: &str, event: Option<NewEvent>) -> Result<bool, StoreError> {
        const OP: &str = "delete_token";
        let mut conn = self.client(OP).await?;
        let tx = conn.transaction().await.map_err(db(OP))?;
        let n = tx
            .execute("DELETE FROM tokens WHERE id = $1", &[&id])
            .await
            .map_err(db(OP))?;
        if n > 0 {
            insert_event(&tx, OP, event.as_ref()).await?;
        }
        tx.commit().await.map_err(db(OP))?;
        if n > 0 {
            self.changed();
        }
        Ok(n > 0)
    }

    async fn replace_api_key(
        &self,
        old_id: &str,
        new: TokenRecord,
        now: i64,
        events: Vec<NewEvent>,
    ) -> Result<bool, StoreError> {
        const OP: &str = "replace_api_key";
        let mut conn = self.client(OP).await?;
        let tx = conn.transaction().await.map_err(db(OP))?;
        let revoked = tx
            .execute(
                "UPDATE tokens SET revoked_at = $2, updated_at = $2, replaced_by = $3 \
                 WHERE id = $1 AND revoked_at IS NULL",
                &[&old_id, &now, &new.id],
            )
            .await
            .map_err(db(OP))?;
        if revoked == 0 {
            return Ok(false);
        }
        let hash = new.hash.as_slice();
        tx.execute(INSERT_TOKEN, &token_params_with(&new, &hash))
            .await
            .map_err(db(OP))?;
        for event in &events {
            insert_event(&tx, OP, Some(event)).await?;
        }
        tx.commit().await.map_err(db(OP))?;
        self.changed();
        Ok(true)
    }

    async fn purge_expired_tokens(&self, before: i64) -> Result<u64, StoreError> {
        const OP: &str = "purge_expired_tokens";
        let client = self.client(OP).await?;
        let n = client
            .execute(
                "DELETE FROM tokens WHERE (expires_at IS NOT NULL AND expires_at < $1) \
                 OR (revoked_at IS NOT NULL AND revoked_at < $1)",
                &[&before],
            )
            .await
            .map_err(db(OP))?;
        if n > 0 {
            self.changed();
        }
        Ok(n)
    }
}

/// Group commit of issued tokens. With one commit per token, PostgreSQL itself caps issuance
/// on a small machine (`docs/benchmarks.md`: `pgbench`, 16 clients, ~2,000 one-row
/// transactions/s against ~16,000 rows/s in 16-row ones); so the tokens issued concurrently
/// are written in one transaction, their statements pipelined on one connection, and each
/// caller is answered only after that transaction has committed (durable as before: nothing is
/// answered before its commit). A token that arrives alone is written alone, as before. If a
/// batch fails (one token's statement, the commit, the connection), every token in it is
/// written again on its own, so each caller gets its own token's outcome.
pub(super) struct InsertQueue {
    jobs: mpsc::UnboundedSender<Insert>,
}

struct Insert {
    token: TokenRecord,
    event: Option<NewEvent>,
    done: oneshot::Sender<Result<(), StoreError>>,
}

impl InsertQueue {
    /// Starts the writer (a task that ends when the store is dropped).
    /// `max_batch`: the most tokens one transaction writes (`store.postgres.issue_batch_max`);
    /// `in_flight`: batches written at once, each on a pooled connection of its own
    /// (`store.postgres.issue_batches_in_flight`). While they commit, new issuances queue up
    /// and go together in the next one.
    pub(super) fn start(pool: Pool, max_batch: usize, in_flight: usize) -> Self {
        let (jobs, queue) = mpsc::unbounded_channel();
        tokio::spawn(write_batches(
            pool,
            queue,
            max_batch.max(1),
            in_flight.max(1),
        ));
        Self { jobs }
    }

    async fn insert(&self, token: TokenRecord, event: Option<NewEvent>) -> Result<(), StoreError> {
        const OP: &str = "insert_token";
        let gone = || StoreError::Task {
            op: OP,
            detail: "the token writer stopped".to_owned(),
        };
        let (done, answer) = oneshot::channel();
        self.jobs
            .send(Insert { token, event, done })
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

async fn write_batches(
    pool: Pool,
    mut queue: mpsc::UnboundedReceiver<Insert>,
    max_batch: usize,
    in_flight: usize,
) {
    let slots = Arc::new(Semaphore::new(in_flight));
    while let Some(first) = queue.recv().await {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        // Whatever queued while the slot was awaited goes in this batch.
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let pool = pool.clone();
        tokio::spawn(async move {
            write_batch(&pool, batch).await;
            drop(slot);
        });
    }
}

async fn write_batch(pool: &Pool, batch: Vec<Insert>) {
    if batch.len() > 1 && insert_together(pool, &batch).await.is_ok() {
        for job in batch {
            let _ = job.done.send(Ok(()));
        }
        return;
    }
    for job in batch {
        let outcome = insert_alone(pool, &job.token, job.event.as_ref()).await;
        let _ = job.done.send(outcome);
    }
}

/// One token and its event: one statement, committed on its own.
async fn insert_alone(
    pool: &Pool,
    token: &TokenRecord,
    event: Option<&NewEvent>,
) -> Result<(), StoreError> {
    const OP: &str = "insert_token";
    let client = pool.get().await.map_err(pool_error(OP))?;
    insert_statement(&client, token, event).await
}

/// Every token of `batch` in one transaction, the statements pipelined.
async fn insert_together(pool: &Pool, batch: &[Insert]) -> Result<(), StoreError> {
    const OP: &str = "insert_token";
    let mut client = pool.get().await.map_err(pool_error(OP))?;
    let tx = client.transaction().await.map_err(db(OP))?;
    let writes = batch
        .iter()
        .map(|job| insert_statement(&tx, &job.token, job.event.as_ref()));
    futures_util::future::try_join_all(writes).await?;
    tx.commit().await.map_err(db(OP))
}

async fn insert_statement<C: GenericClient>(
    client: &C,
    token: &TokenRecord,
    event: Option<&NewEvent>,
) -> Result<(), StoreError> {
    const OP: &str = "insert_token";
    let hash = token.hash.as_slice();
    let mut params: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(23);
    let base = token_params_with(token, &hash);
    params.extend_from_slice(&base);
    if event.is_none() {
        let stmt = client.prepare_cached(INSERT_TOKEN).await.map_err(db(OP))?;
        client.execute(&stmt, &params).await.map_err(db(OP))?;
        return Ok(());
    }
    let event = EventParams::of(event);
    params.extend_from_slice(&event.params());
    let stmt = client
        .prepare_cached(&INSERT_TOKEN_WITH_EVENT)
        .await
        .map_err(db(OP))?;
    client.query_one(&stmt, &params).await.map_err(db(OP))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::tests::FreshSchema;
    use crate::store::tests::token;
    use crate::store::{StoreError, TokenKind, open};

    /// Tokens issued at once share a transaction; one that cannot be stored (its id is taken)
    /// fails alone, and every other one is stored.
    #[tokio::test]
    async fn concurrent_issuances_are_stored_together_and_fail_alone() {
        let schema = FreshSchema::create("concurrent_issuances").await;
        let Some(url) = schema.url() else { return };
        let store = open(url, FreshSchema::options()).await.unwrap();
        store
            .insert_token(token("taken", TokenKind::Access), None)
            .await
            .unwrap();
        let mut again = token("taken", TokenKind::Access);
        again.hash = [7; 32];
        let fresh: Vec<_> = (0..40)
            .map(|i| {
                let mut t = token(&format!("tok_{i}"), TokenKind::Access);
                t.hash = [i as u8; 32];
                t.hash[31] = 0xAA;
                t
            })
            .collect();
        let writes = fresh
            .iter()
            .cloned()
            .chain([again])
            .map(|t| store.insert_token(t, None));
        let outcomes = futures_util::future::join_all(writes).await;
        let (taken, stored) = outcomes.split_last().unwrap();
        assert!(
            matches!(taken, Err(StoreError::Conflict { .. })),
            "the taken id: {taken:?}"
        );
        for (t, outcome) in fresh.iter().zip(stored) {
            assert!(outcome.is_ok(), "{}: {outcome:?}", t.id);
            let read = store.get_token(&t.id).await.unwrap();
            assert_eq!(read.map(|r| r.hash), Some(t.hash), "{} is stored", t.id);
        }
    }
}
