//! Deliveries: [`Outbox`] for SQLite, claimed under a lease and finished fenced by it.

use async_trait::async_trait;
use rusqlite::types::Type;
use rusqlite::{OptionalExtension, Row, params};

use super::subscriptions::get_subscription_tx;
use crate::store::outbox::within_share;
use crate::store::sqlite::SqliteStore;
use crate::store::sqlite::rows::{db, execute, malformed};
use crate::store::{
    AttemptOutcome, ClaimedDelivery, Delivery, DeliveryFilter, DeliveryState, Outbox, StoreError,
    WebhookEvent,
};

macro_rules! delivery_columns {
    () => {
        "d.id, e.id, e.event_type, e.account, d.subscription_id, d.state, d.attempts, \
         d.next_attempt_at, d.last_status, d.last_error, e.created_at, d.finished_at \
         FROM webhook_deliveries d JOIN webhook_events e ON e.seq = d.event_seq"
    };
}

fn delivery_from_row(row: &Row<'_>) -> rusqlite::Result<Delivery> {
    let state: String = row.get(5)?;
    Ok(Delivery {
        id: row.get(0)?,
        event_id: row.get(1)?,
        event_type: row.get(2)?,
        account: row.get(3)?,
        subscription_id: row.get(4)?,
        state: DeliveryState::parse(&state)
            .ok_or_else(|| malformed(5, Type::Text, format!("unknown state {state:?}")))?,
        attempts: row.get(6)?,
        next_attempt_at: row.get(7)?,
        last_status: row.get(8)?,
        last_error: row.get(9)?,
        created_at: row.get(10)?,
        finished_at: row.get(11)?,
    })
}

#[async_trait]
impl Outbox for SqliteStore {
    async fn claim_deliveries(
        &self,
        owner: &str,
        now: i64,
        lease_until: i64,
        limit: u32,
        per_subscription: u32,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        const OP: &str = "claim_deliveries";
        // Most polls find nothing due: a read says so without taking the write lock, which
        // every Warden on the file would otherwise take every poll interval.
        let due = self
            .read(OP, move |conn| {
                conn.prepare_cached(
                    "SELECT 1 FROM webhook_deliveries d \
                     JOIN webhook_subscriptions s ON s.id = d.subscription_id \
                     WHERE d.state = 'pending' AND d.next_attempt_at <= ?1 \
                     AND d.lease_until <= ?1 AND s.enabled = 1",
                )
                .and_then(|mut stmt| stmt.exists([now]))
                .map_err(db(OP))
            })
            .await?;
        if !due {
            return Ok(Vec::new());
        }
        let owner = owner.to_owned();
        self.write(OP, move |tx| {
            // Under the write lock: no other process claims between the choice and the update.
            // Live leases per subscription (few: the attempts in flight, all processes).
            let busy: std::collections::HashMap<String, u32> = tx
                .prepare_cached(
                    "SELECT subscription_id, count(*) FROM webhook_deliveries \
                     WHERE lease_until > ?1 AND state = 'pending' GROUP BY subscription_id",
                )
                .and_then(|mut stmt| {
                    stmt.query_map([now], |row| Ok((row.get(0)?, row.get(1)?)))?
                        .collect::<rusqlite::Result<_>>()
                })
                .map_err(db(OP))?;
            // Due deliveries, oldest first, of subscriptions below their share; the window is
            // wider than `limit` so that one subscription's backlog does not fill it alone.
            let candidates: Vec<(i64, String)> = tx
                .prepare_cached(
                    "SELECT d.id, d.subscription_id FROM webhook_deliveries d \
                     JOIN webhook_subscriptions s ON s.id = d.subscription_id \
                     WHERE d.state = 'pending' AND d.next_attempt_at <= ?1 \
                     AND d.lease_until <= ?1 AND s.enabled = 1 \
                     AND d.subscription_id NOT IN (SELECT subscription_id \
                       FROM webhook_deliveries WHERE lease_until > ?1 AND state = 'pending' \
                       GROUP BY subscription_id HAVING count(*) >= ?2) \
                     ORDER BY d.next_attempt_at, d.id LIMIT ?3",
                )
                .and_then(|mut stmt| {
                    let window = limit.saturating_mul(4).max(limit);
                    stmt.query_map(params![now, per_subscription, window], |row| {
                        Ok((row.get(0)?, row.get(1)?))
                    })?
                    .collect::<rusqlite::Result<_>>()
                })
                .map_err(db(OP))?;
            let mut claimed: Vec<(i64, u32, i64, String)> = Vec::new();
            for id in within_share(busy, candidates, limit, per_subscription) {
                let row = tx
                    .prepare_cached(
                        "UPDATE webhook_deliveries \
                         SET lease_owner = ?2, lease_until = ?3, attempts = attempts + 1 \
                         WHERE id = ?1 RETURNING id, attempts, event_seq, subscription_id",
                    )
                    .and_then(|mut stmt| {
                        stmt.query_row(params![id, owner, lease_until], |row| {
                            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
                        })
                    })
                    .map_err(db(OP))?;
                claimed.push(row);
            }
            let mut out = Vec::with_capacity(claimed.len());
            for (id, attempt, seq, subscription) in claimed {
                let event = tx
                    .prepare_cached(
                        "SELECT id, event_type, account, payload, created_at \
                         FROM webhook_events WHERE seq = ?1",
                    )
                    .and_then(|mut stmt| {
                        stmt.query_row([seq], |row| {
                            Ok(WebhookEvent {
                                id: row.get(0)?,
                                event_type: row.get(1)?,
                                account: row.get(2)?,
                                payload: row.get(3)?,
                                created_at: row.get(4)?,
                            })
                        })
                    })
                    .map_err(db(OP))?;
                let subscription =
                    get_subscription_tx(tx, OP, &subscription)?.ok_or_else(|| {
                        StoreError::Corrupt {
                            op: OP,
                            detail: format!("delivery {id} names no subscription"),
                        }
                    })?;
                out.push(ClaimedDelivery {
                    id,
                    attempt,
                    lease_until,
                    event,
                    subscription,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn finish_attempt(
        &self,
        id: i64,
        owner: &str,
        lease_until: i64,
        outcome: AttemptOutcome,
        now: i64,
    ) -> Result<bool, StoreError> {
        const OP: &str = "finish_attempt";
        let owner = owner.to_owned();
        self.write(OP, move |tx| {
            let c = outcome.columns(now);
            let subscription: Option<String> = tx
                .prepare_cached(
                    "UPDATE webhook_deliveries SET state = ?4, \
                     next_attempt_at = coalesce(?5, next_attempt_at), finished_at = ?6, \
                     last_status = ?7, last_error = ?8, lease_owner = NULL, lease_until = 0 \
                     WHERE id = ?1 AND lease_owner = ?2 AND lease_until = ?3 \
                     AND state = 'pending' RETURNING subscription_id",
                )
                .and_then(|mut stmt| {
                    stmt.query_row(
                        params![
                            id,
                            owner,
                            lease_until,
                            c.state.as_str(),
                            c.next_attempt_at,
                            c.finished_at,
                            c.last_status,
                            c.last_error
                        ],
                        |row| row.get(0),
                    )
                    .optional()
                })
                .map_err(db(OP))?;
            let Some(subscription) = subscription else {
                return Ok(false);
            };
            if let Some(reason) = c.disable_subscription {
                execute(
                    tx,
                    OP,
                    "UPDATE webhook_subscriptions SET enabled = 0, disabled_reason = ?2, \
                     updated_at = ?3 WHERE id = ?1",
                    params![subscription, reason, now],
                )?;
            }
            Ok(true)
        })
        .await
    }

    async fn get_delivery(&self, id: i64) -> Result<Option<Delivery>, StoreError> {
        const OP: &str = "get_delivery";
        self.read(OP, move |conn| {
            conn.prepare_cached(concat!("SELECT ", delivery_columns!(), " WHERE d.id = ?1"))
                .and_then(|mut stmt| stmt.query_row([id], delivery_from_row).optional())
                .map_err(db(OP))
        })
        .await
    }

    async fn list_deliveries(&self, filter: DeliveryFilter) -> Result<Vec<Delivery>, StoreError> {
        const OP: &str = "list_deliveries";
        self.read(OP, move |conn| {
            conn.prepare_cached(concat!(
                "SELECT ",
                delivery_columns!(),
                " WHERE (?1 IS NULL OR d.subscription_id = ?1) AND (?2 IS NULL OR d.state = ?2) \
                 AND (?3 IS NULL OR d.id < ?3) ORDER BY d.id DESC LIMIT ?4"
            ))
            .and_then(|mut stmt| {
                stmt.query_map(
                    params![
                        filter.subscription,
                        filter.state.map(DeliveryState::as_str),
                        filter.before,
                        filter.limit
                    ],
                    delivery_from_row,
                )?
                .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(db(OP))
        })
        .await
    }

    async fn replay_delivery(&self, id: i64, now: i64) -> Result<bool, StoreError> {
        const OP: &str = "replay_delivery";
        self.write(OP, move |tx| {
            let n = execute(
                tx,
                OP,
                "UPDATE webhook_deliveries SET state = 'pending', attempts = 0, \
                 next_attempt_at = ?2, finished_at = NULL, lease_owner = NULL, lease_until = 0 \
                 WHERE id = ?1 AND (state != 'pending' OR lease_until <= ?2)",
                params![id, now],
            )?;
            Ok(n > 0)
        })
        .await
    }

    async fn replay_dead_deliveries(
        &self,
        since: i64,
        subscription: Option<&str>,
        now: i64,
    ) -> Result<u64, StoreError> {
        const OP: &str = "replay_dead_deliveries";
        let subscription = subscription.map(str::to_owned);
        self.write(OP, move |tx| {
            execute(
                tx,
                OP,
                "UPDATE webhook_deliveries SET state = 'pending', attempts = 0, \
                 next_attempt_at = ?3, finished_at = NULL, lease_owner = NULL, lease_until = 0 \
                 WHERE state = 'dead' AND finished_at >= ?1 \
                 AND (?2 IS NULL OR subscription_id = ?2)",
                params![since, subscription, now],
            )
        })
        .await
    }

    async fn purge_webhooks(&self, before: i64, limit: u32) -> Result<u64, StoreError> {
        const OP: &str = "purge_webhooks";
        self.write(OP, move |tx| {
            let deliveries = execute(
                tx,
                OP,
                "DELETE FROM webhook_deliveries WHERE id IN (SELECT id FROM webhook_deliveries \
                 WHERE state != 'pending' AND finished_at < ?1 LIMIT ?2)",
                params![before, limit],
            )?;
            let events = execute(
                tx,
                OP,
                "DELETE FROM webhook_events WHERE seq IN (SELECT e.seq FROM webhook_events e \
                 WHERE e.created_at < ?1 AND NOT EXISTS \
                 (SELECT 1 FROM webhook_deliveries d WHERE d.event_seq = e.seq) LIMIT ?2)",
                params![before, limit],
            )?;
            Ok(deliveries + events)
        })
        .await
    }
}
