//! The webhook outbox: events written in the same transaction as the change they report.

use rusqlite::{Transaction, params};

use super::SqliteStore;
use super::rows::{db, execute};
use crate::store::{NewEvent, StoreError, WebhookEvent};

pub(super) fn insert_event(
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

impl SqliteStore {
    pub(super) async fn pending_events(
        &self,
        now: i64,
        limit: u32,
    ) -> Result<Vec<WebhookEvent>, StoreError> {
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

    pub(super) async fn mark_event_delivered(&self, id: i64, now: i64) -> Result<bool, StoreError> {
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

    pub(super) async fn mark_event_failed(
        &self,
        id: i64,
        next_attempt_at: i64,
    ) -> Result<bool, StoreError> {
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

    pub(super) async fn purge_delivered_events(
        &self,
        before: i64,
        limit: u32,
    ) -> Result<u64, StoreError> {
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
