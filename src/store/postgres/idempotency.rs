//! Idempotency records under the primary key `(client_id, idem_key)`: a reservation is one
//! `INSERT … ON CONFLICT` (the unique key makes it exactly-once across replicas); completion
//! and release are fenced by the holder's lease.

use async_trait::async_trait;

use super::PostgresStore;
use super::rows::{db, get, hash};
use crate::store::idempotency::{decode_headers, encode_headers};
use crate::store::{
    Hash, IdempotencyRecord, IdempotencyState, IdempotencyStore, Reservation, StoreError,
    StoredResponse,
};

/// Takes the key when it is absent, expired, or in flight under a lease that ran out.
const RESERVE: &str = "INSERT INTO idempotency (client_id, idem_key, fingerprint, lease_until, \
     created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6) \
     ON CONFLICT (client_id, idem_key) DO UPDATE SET fingerprint = excluded.fingerprint, \
     lease_until = excluded.lease_until, status = NULL, headers = NULL, body = NULL, \
     created_at = excluded.created_at, expires_at = excluded.expires_at \
     WHERE idempotency.expires_at <= $5 \
     OR (idempotency.status IS NULL AND idempotency.lease_until <= $5) \
     RETURNING 1";

const SELECT: &str = "SELECT fingerprint, lease_until, status, headers, body, created_at, \
     expires_at FROM idempotency WHERE client_id = $1 AND idem_key = $2";

#[async_trait]
impl IdempotencyStore for PostgresStore {
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
        let client = self.client(OP).await?;
        let reserve = client.prepare_cached(RESERVE).await.map_err(db(OP))?;
        let select = client.prepare_cached(SELECT).await.map_err(db(OP))?;
        let fp = fingerprint.as_slice();
        // A row that is live answers; one deleted between the two statements (released or
        // swept by another replica) is tried again.
        for _ in 0..8 {
            let taken = client
                .query_opt(
                    &reserve,
                    &[&client_id, &key, &fp, &lease_until, &now, &expires_at],
                )
                .await
                .map_err(db(OP))?;
            if taken.is_some() {
                return Ok(Reservation::Reserved);
            }
            let Some(row) = client
                .query_opt(&select, &[&client_id, &key])
                .await
                .map_err(db(OP))?
            else {
                continue;
            };
            let record = record_from_row(&row, client_id, key)?;
            if let Some(answer) = record.live_answer(&fingerprint, now) {
                return Ok(answer);
            }
            // It lapsed in between: take it on the next round.
        }
        Err(StoreError::Task {
            op: OP,
            detail: "the key kept changing under concurrent reservations".to_owned(),
        })
    }

    async fn complete_idempotency(
        &self,
        client_id: &str,
        key: &str,
        lease_until: i64,
        response: StoredResponse,
    ) -> Result<bool, StoreError> {
        const OP: &str = "complete_idempotency";
        let client = self.client(OP).await?;
        let stmt = client
            .prepare_cached(
                "UPDATE idempotency SET status = $4, headers = $5, body = $6 \
                 WHERE client_id = $1 AND idem_key = $2 AND lease_until = $3 \
                 AND status IS NULL",
            )
            .await
            .map_err(db(OP))?;
        let n = client
            .execute(
                &stmt,
                &[
                    &client_id,
                    &key,
                    &lease_until,
                    &i32::from(response.status),
                    &encode_headers(&response.headers),
                    &response.body,
                ],
            )
            .await
            .map_err(db(OP))?;
        Ok(n > 0)
    }

    async fn release_idempotency(
        &self,
        client_id: &str,
        key: &str,
        lease_until: i64,
    ) -> Result<bool, StoreError> {
        const OP: &str = "release_idempotency";
        let client = self.client(OP).await?;
        let stmt = client
            .prepare_cached(
                "DELETE FROM idempotency WHERE client_id = $1 AND idem_key = $2 \
                 AND lease_until = $3 AND status IS NULL",
            )
            .await
            .map_err(db(OP))?;
        let n = client
            .execute(&stmt, &[&client_id, &key, &lease_until])
            .await
            .map_err(db(OP))?;
        Ok(n > 0)
    }

    async fn sweep_idempotency(&self, now: i64, limit: u32) -> Result<u64, StoreError> {
        const OP: &str = "sweep_idempotency";
        let client = self.client(OP).await?;
        client
            .execute(
                "DELETE FROM idempotency WHERE ctid = ANY (ARRAY(SELECT ctid FROM idempotency \
                 WHERE expires_at <= $1 LIMIT $2))",
                &[&now, &i64::from(limit)],
            )
            .await
            .map_err(db(OP))
    }
}

fn record_from_row(
    row: &tokio_postgres::Row,
    client_id: &str,
    key: &str,
) -> Result<IdempotencyRecord, StoreError> {
    const OP: &str = "reserve_idempotency";
    let status: Option<i32> = get(row, 2, OP)?;
    let state = match status {
        None => IdempotencyState::InFlight {
            lease_until: get(row, 1, OP)?,
        },
        Some(status) => {
            let headers: Option<Vec<u8>> = get(row, 3, OP)?;
            let body: Option<Vec<u8>> = get(row, 4, OP)?;
            let corrupt = |detail: &str| StoreError::Corrupt {
                op: OP,
                detail: detail.to_owned(),
            };
            IdempotencyState::Done(StoredResponse {
                status: u16::try_from(status).map_err(|_| corrupt("status out of range"))?,
                headers: decode_headers(&headers.unwrap_or_default())
                    .ok_or_else(|| corrupt("truncated header block"))?,
                body: body.unwrap_or_default(),
            })
        }
    };
    Ok(IdempotencyRecord {
        client_id: client_id.to_owned(),
        key: key.to_owned(),
        fingerprint: hash(row, 0, OP)?,
        state,
        created_at: get(row, 5, OP)?,
        expires_at: get(row, 6, OP)?,
    })
}
