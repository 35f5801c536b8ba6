//! Signature nonces: a claim is one upsert in the next group commit (the write lock makes it
//! atomic against every other claim, in this process or another on the same file); the sweep
//! deletes lapsed claims.

use async_trait::async_trait;
use rusqlite::params;

use super::SqliteStore;
use super::rows::db;
use crate::store::{Hash, NonceStore, StoreError};

#[async_trait]
impl NonceStore for SqliteStore {
    async fn claim_nonce(
        &self,
        entry: &Hash,
        now: i64,
        live_until: i64,
    ) -> Result<bool, StoreError> {
        const OP: &str = "claim_nonce";
        let entry = *entry;
        self.batched(OP, move |batch| {
            // Inserts, or takes over a claim that lapsed before `now`; a live one changes nothing.
            let n = batch.execute(
                OP,
                "INSERT INTO nonces (entry, live_until) VALUES (?1, ?2) \
                 ON CONFLICT (entry) DO UPDATE SET live_until = excluded.live_until \
                 WHERE nonces.live_until < ?3",
                params![entry.as_slice(), live_until, now],
            )?;
            Ok(n > 0)
        })
        .await
    }

    async fn sweep_nonces(&self, now: i64, limit: u32) -> Result<u64, StoreError> {
        const OP: &str = "sweep_nonces";
        self.write(OP, move |tx| {
            tx.prepare_cached(
                "DELETE FROM nonces WHERE entry IN \
                 (SELECT entry FROM nonces WHERE live_until < ?1 LIMIT ?2)",
            )
            .and_then(|mut stmt| stmt.execute(params![now, limit]))
            .map(|n| n as u64)
            .map_err(db(OP))
        })
        .await
    }
}
