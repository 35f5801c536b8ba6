//! The change feed: which tokens and clients changed (rows written by the trigger of
//! migration 1), and the marker that the listener moves.

use std::sync::atomic::Ordering;

use async_trait::async_trait;

use super::PostgresStore;
use super::rows::{db, get};
use crate::store::{Change, ChangeFeedSource, StoreError};

#[async_trait]
impl ChangeFeedSource for PostgresStore {
    /// Moved by a notification, by the fallback poll, by a (re)connected listener and by this
    /// handle's own changes; never reads the database.
    fn change_marker(&self) -> Result<u64, StoreError> {
        Ok(self.marker.load(Ordering::Acquire))
    }

    async fn changes_since(&self, seq: i64, limit: u32) -> Result<Vec<Change>, StoreError> {
        const OP: &str = "changes_since";
        let client = self.client(OP).await?;
        let stmt = client
            .prepare_cached(
                "SELECT seq, token_hash, client_id FROM changes WHERE seq > $1 \
                 ORDER BY seq LIMIT $2",
            )
            .await
            .map_err(db(OP))?;
        let rows = client
            .query(&stmt, &[&seq, &i64::from(limit)])
            .await
            .map_err(db(OP))?;
        rows.iter()
            .map(|row| {
                let token_hash: Option<Vec<u8>> = get(row, 1, OP)?;
                Ok(Change {
                    seq: get(row, 0, OP)?,
                    token_hash: token_hash
                        .map(|h| {
                            h.as_slice().try_into().map_err(|_| StoreError::Corrupt {
                                op: OP,
                                detail: format!("a hash of {} bytes", h.len()),
                            })
                        })
                        .transpose()?,
                    client_id: get(row, 2, OP)?,
                })
            })
            .collect()
    }

    async fn latest_change(&self) -> Result<i64, StoreError> {
        const OP: &str = "latest_change";
        let client = self.client(OP).await?;
        let row = client
            .query_one("SELECT coalesce(max(seq), 0) FROM changes", &[])
            .await
            .map_err(db(OP))?;
        get(&row, 0, OP)
    }

    async fn prune_changes(&self, older_than_secs: i64) -> Result<u64, StoreError> {
        const OP: &str = "prune_changes";
        let client = self.client(OP).await?;
        // `at` is stamped by the database, so the cut-off is the database's too.
        client
            .execute(
                "DELETE FROM changes WHERE at < extract(epoch FROM now())::bigint - $1",
                &[&older_than_secs],
            )
            .await
            .map_err(db(OP))
    }
}
