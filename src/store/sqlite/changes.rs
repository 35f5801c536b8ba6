//! The change feed: which tokens and clients changed (rows written by triggers, migration 2),
//! and the cheap marker that says whether to look.

use std::sync::PoisonError;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::SqliteStore;
use super::rows::{db, execute};
use crate::store::{Change, ChangeFeedSource, StoreError};

/// The connection that watches for commits, and what it saw last.
pub(super) struct Watch {
    pub(super) conn: Connection,
    pub(super) data_version: Option<i64>,
    /// The change feed's high-water mark (`sqlite_sequence` of `changes`) at `data_version`.
    pub(super) seq: u64,
}

#[async_trait]
impl ChangeFeedSource for SqliteStore {
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
}
