//! Signature nonces: a claim is one `INSERT … ON CONFLICT` on the primary key, so of two
//! replicas claiming one nonce at once exactly one succeeds; the sweep deletes lapsed claims.

use async_trait::async_trait;

use super::PostgresStore;
use super::rows::db;
use crate::store::{Hash, NonceStore, StoreError};

/// Inserts the entry, or takes over one that lapsed before `now` ($3); changes no row when a
/// live claim holds it.
const CLAIM: &str = "INSERT INTO nonces (entry, live_until) VALUES ($1, $2) \
     ON CONFLICT (entry) DO UPDATE SET live_until = excluded.live_until \
     WHERE nonces.live_until < $3";

#[async_trait]
impl NonceStore for PostgresStore {
    async fn claim_nonce(
        &self,
        entry: &Hash,
        now: i64,
        live_until: i64,
    ) -> Result<bool, StoreError> {
        const OP: &str = "claim_nonce";
        let client = self.client(OP).await?;
        let stmt = client.prepare_cached(CLAIM).await.map_err(db(OP))?;
        let n = client
            .execute(&stmt, &[&entry.as_slice(), &live_until, &now])
            .await
            .map_err(db(OP))?;
        Ok(n > 0)
    }

    async fn sweep_nonces(&self, now: i64, limit: u32) -> Result<u64, StoreError> {
        const OP: &str = "sweep_nonces";
        let client = self.client(OP).await?;
        client
            .execute(
                "DELETE FROM nonces WHERE ctid = ANY (ARRAY(SELECT ctid FROM nonces \
                 WHERE live_until < $1 LIMIT $2))",
                &[&now, &i64::from(limit)],
            )
            .await
            .map_err(db(OP))
    }
}
