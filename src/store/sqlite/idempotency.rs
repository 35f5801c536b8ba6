//! Idempotency records: reservation, completion and release in group commits (fenced by the
//! holder's lease), and the sweep. Records are found through the in-process index
//! ([`super::idem_index`]).

use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::SqliteStore;
use super::batch::Batch;
use super::idem_index::{idem_index, idem_slot};
use super::rows::{db, idempotency_from_row};
use crate::store::idempotency::encode_headers;
use crate::store::{
    Hash, IdempotencyRecord, IdempotencyStore, Reservation, StoreError, StoredResponse,
};

#[async_trait]
impl IdempotencyStore for SqliteStore {
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
                    if let Some(answer) = existing.live_answer(&fingerprint, now) {
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
}

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

/// The record `id`, if it exists and is the one of `(client_id, key)`.
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
