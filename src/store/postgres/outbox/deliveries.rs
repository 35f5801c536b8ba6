//! Deliveries: [`Outbox`] for PostgreSQL, claimed under a lease and finished fenced by it.

use async_trait::async_trait;

use crate::store::outbox::within_share;
use crate::store::postgres::PostgresStore;
use crate::store::postgres::rows::{db, delivery_columns, delivery_from_row, get, subscription_at};
use crate::store::{
    AttemptOutcome, ClaimedDelivery, Delivery, DeliveryFilter, DeliveryState, Outbox, StoreError,
    WebhookEvent,
};

#[async_trait]
impl Outbox for PostgresStore {
    async fn claim_deliveries(
        &self,
        owner: &str,
        now: i64,
        lease_until: i64,
        limit: u32,
        per_subscription: u32,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        const OP: &str = "claim_deliveries";
        let mut conn = self.client(OP).await?;
        let due = conn
            .query_opt(
                "SELECT 1 FROM webhook_deliveries d \
                 JOIN webhook_subscriptions s ON s.id = d.subscription_id \
                 WHERE d.state = 'pending' AND d.next_attempt_at <= $1 \
                 AND d.lease_until <= $1 AND s.enabled LIMIT 1",
                &[&now],
            )
            .await
            .map_err(db(OP))?;
        if due.is_none() {
            return Ok(Vec::new());
        }
        let tx = conn.transaction().await.map_err(db(OP))?;
        // One claimer at a time: the per-subscription share counts every owner's leases.
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtext('warden:claim:' || current_schema()))",
            &[],
        )
        .await
        .map_err(db(OP))?;
        let busy_rows = tx
            .query(
                "SELECT subscription_id, count(*) FROM webhook_deliveries \
                 WHERE lease_until > $1 AND state = 'pending' GROUP BY subscription_id",
                &[&now],
            )
            .await
            .map_err(db(OP))?;
        let mut busy = std::collections::HashMap::<String, u32>::new();
        for row in &busy_rows {
            let n: i64 = get(row, 1, OP)?;
            busy.insert(get(row, 0, OP)?, u32::try_from(n).unwrap_or(u32::MAX));
        }
        let window = i64::from(limit.saturating_mul(4).max(limit));
        let candidates = tx
            .query(
                "SELECT d.id, d.subscription_id FROM webhook_deliveries d \
                 JOIN webhook_subscriptions s ON s.id = d.subscription_id \
                 WHERE d.state = 'pending' AND d.next_attempt_at <= $1 \
                 AND d.lease_until <= $1 AND s.enabled \
                 ORDER BY d.next_attempt_at, d.id LIMIT $2",
                &[&now, &window],
            )
            .await
            .map_err(db(OP))?;
        let candidates = candidates
            .iter()
            .map(|row| Ok((get(row, 0, OP)?, get(row, 1, OP)?)))
            .collect::<Result<Vec<(i64, String)>, StoreError>>()?;
        let chosen = within_share(busy, candidates, limit, per_subscription);
        if chosen.is_empty() {
            tx.commit().await.map_err(db(OP))?;
            return Ok(Vec::new());
        }
        let rows = tx
            .query(
                concat!(
                    "WITH c AS (UPDATE webhook_deliveries \
                     SET lease_owner = $2, lease_until = $3, attempts = attempts + 1 \
                     WHERE id = ANY($1) RETURNING id, attempts, event_seq, subscription_id) \
                     SELECT c.id, c.attempts, e.id, e.event_type, e.account, e.payload, \
                     e.created_at, ",
                    "s.id, s.account, s.url, s.events, s.description, s.secrets, s.enabled, \
                     s.disabled_reason, s.source, s.created_at, s.updated_at \
                     FROM c JOIN webhook_events e ON e.seq = c.event_seq \
                     JOIN webhook_subscriptions s ON s.id = c.subscription_id"
                ),
                &[&chosen, &owner, &lease_until],
            )
            .await
            .map_err(db(OP))?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let attempt: i32 = get(row, 1, OP)?;
            let sub = subscription_at(row, 7, OP)?;
            out.push(ClaimedDelivery {
                id: get(row, 0, OP)?,
                attempt: u32::try_from(attempt).unwrap_or(0),
                lease_until,
                event: WebhookEvent {
                    id: get(row, 2, OP)?,
                    event_type: get(row, 3, OP)?,
                    account: get(row, 4, OP)?,
                    payload: get(row, 5, OP)?,
                    created_at: get(row, 6, OP)?,
                },
                subscription: sub,
            });
        }
        tx.commit().await.map_err(db(OP))?;
        // In the order they were chosen (due first).
        out.sort_by_key(|c| chosen.iter().position(|id| *id == c.id));
        Ok(out)
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
        let c = outcome.columns(now);
        let status = c.last_status.map(i32::from);
        let client = self.client(OP).await?;
        let row = client
            .query_opt(
                "WITH f AS (UPDATE webhook_deliveries SET state = $4, \
                 next_attempt_at = coalesce($5, next_attempt_at), finished_at = $6, \
                 last_status = $7, last_error = $8, lease_owner = NULL, lease_until = 0 \
                 WHERE id = $1 AND lease_owner = $2 AND lease_until = $3 \
                 AND state = 'pending' RETURNING subscription_id), \
                 g AS (UPDATE webhook_subscriptions SET enabled = false, disabled_reason = $9, \
                 updated_at = $10 WHERE $9::text IS NOT NULL AND id IN (SELECT subscription_id \
                 FROM f)) \
                 SELECT 1 FROM f",
                &[
                    &id,
                    &owner,
                    &lease_until,
                    &c.state.as_str(),
                    &c.next_attempt_at,
                    &c.finished_at,
                    &status,
                    &c.last_error,
                    &c.disable_subscription,
                    &now,
                ],
            )
            .await
            .map_err(db(OP))?;
        Ok(row.is_some())
    }

    async fn get_delivery(&self, id: i64) -> Result<Option<Delivery>, StoreError> {
        const OP: &str = "get_delivery";
        let client = self.client(OP).await?;
        let row = client
            .query_opt(
                concat!("SELECT ", delivery_columns!(), " WHERE d.id = $1"),
                &[&id],
            )
            .await
            .map_err(db(OP))?;
        row.map(|row| delivery_from_row(&row, OP)).transpose()
    }

    async fn list_deliveries(&self, filter: DeliveryFilter) -> Result<Vec<Delivery>, StoreError> {
        const OP: &str = "list_deliveries";
        let client = self.client(OP).await?;
        let rows = client
            .query(
                concat!(
                    "SELECT ",
                    delivery_columns!(),
                    " WHERE ($1::text IS NULL OR d.subscription_id = $1) \
                     AND ($2::text IS NULL OR d.state = $2) \
                     AND ($3::bigint IS NULL OR d.id < $3) ORDER BY d.id DESC LIMIT $4"
                ),
                &[
                    &filter.subscription,
                    &filter.state.map(DeliveryState::as_str),
                    &filter.before,
                    &i64::from(filter.limit),
                ],
            )
            .await
            .map_err(db(OP))?;
        rows.iter().map(|row| delivery_from_row(row, OP)).collect()
    }

    async fn replay_delivery(&self, id: i64, now: i64) -> Result<bool, StoreError> {
        const OP: &str = "replay_delivery";
        let client = self.client(OP).await?;
        let n = client
            .execute(
                "UPDATE webhook_deliveries SET state = 'pending', attempts = 0, \
                 next_attempt_at = $2, finished_at = NULL, lease_owner = NULL, lease_until = 0 \
                 WHERE id = $1 AND (state != 'pending' OR lease_until <= $2)",
                &[&id, &now],
            )
            .await
            .map_err(db(OP))?;
        Ok(n > 0)
    }

    async fn replay_dead_deliveries(
        &self,
        since: i64,
        subscription: Option<&str>,
        now: i64,
    ) -> Result<u64, StoreError> {
        const OP: &str = "replay_dead_deliveries";
        let client = self.client(OP).await?;
        client
            .execute(
                "UPDATE webhook_deliveries SET state = 'pending', attempts = 0, \
                 next_attempt_at = $3, finished_at = NULL, lease_owner = NULL, lease_until = 0 \
                 WHERE state = 'dead' AND finished_at >= $1 \
                 AND ($2::text IS NULL OR subscription_id = $2)",
                &[&since, &subscription, &now],
            )
            .await
            .map_err(db(OP))
    }

    async fn purge_webhooks(&self, before: i64, limit: u32) -> Result<u64, StoreError> {
        const OP: &str = "purge_webhooks";
        let limit = i64::from(limit);
        let mut conn = self.client(OP).await?;
        let tx = conn.transaction().await.map_err(db(OP))?;
        let deliveries = tx
            .execute(
                "DELETE FROM webhook_deliveries WHERE id IN (SELECT id FROM webhook_deliveries \
                 WHERE state != 'pending' AND finished_at < $1 LIMIT $2)",
                &[&before, &limit],
            )
            .await
            .map_err(db(OP))?;
        let events = tx
            .execute(
                "DELETE FROM webhook_events WHERE seq IN (SELECT e.seq FROM webhook_events e \
                 WHERE e.created_at < $1 AND NOT EXISTS \
                 (SELECT 1 FROM webhook_deliveries d WHERE d.event_seq = e.seq) LIMIT $2)",
                &[&before, &limit],
            )
            .await
            .map_err(db(OP))?;
        tx.commit().await.map_err(db(OP))?;
        Ok(deliveries + events)
    }
}
