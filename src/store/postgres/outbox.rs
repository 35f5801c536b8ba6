//! Webhook subscriptions and the outbox: events fanned out into deliveries in the statement
//! that writes the change they report, and deliveries claimed under a lease (`FOR UPDATE SKIP
//! LOCKED`, so replicas claiming at once never share one).

use std::sync::LazyLock;

use async_trait::async_trait;
use tokio_postgres::types::ToSql;

use super::PostgresStore;
use super::rows::{
    db, delivery_columns, delivery_from_row, get, subscription_columns, subscription_from_row,
};
use crate::store::{
    AttemptOutcome, ClaimedDelivery, ClientSource, Delivery, DeliveryFilter, DeliveryState,
    NewEvent, Outbox, StoreError, WebhookEvent, WebhookSubscription,
};

/// The parameters of [`event_ctes`], all NULL for no event.
pub(super) struct EventParams {
    id: Option<String>,
    event_type: Option<String>,
    account: Option<String>,
    payload: Option<String>,
    created_at: Option<i64>,
    domain: Option<String>,
}

impl EventParams {
    pub(super) fn of(event: Option<&NewEvent>) -> Self {
        match event {
            None => Self {
                id: None,
                event_type: None,
                account: None,
                payload: None,
                created_at: None,
                domain: None,
            },
            Some(e) => {
                let domain = e
                    .event_type
                    .split_once('.')
                    .map_or(e.event_type.as_str(), |(d, _)| d);
                Self {
                    id: Some(e.id.clone()),
                    event_type: Some(e.event_type.clone()),
                    account: Some(e.account.clone()),
                    payload: Some(e.payload.clone()),
                    created_at: Some(e.created_at),
                    domain: Some(format!("{domain}.*")),
                }
            }
        }
    }

    /// The six parameters, in the order [`event_ctes`] numbers them.
    pub(super) fn params(&self) -> [&(dyn ToSql + Sync); 6] {
        [
            &self.id,
            &self.event_type,
            &self.account,
            &self.payload,
            &self.created_at,
            &self.domain,
        ]
    }
}

/// Two CTEs (`e`, `d`) that write an event (parameters `$base` to `$base + 5`, see
/// [`EventParams`]) and its deliveries when `gate` (a CTE or table) has a row, the event's id
/// is not NULL, and a subscription wants it (enabled, of its account or of every account, with
/// a pattern that is its type, its domain's `.*`, or `*`).
pub(super) fn event_ctes(base: usize, gate: &str) -> String {
    let (id, ty, account, payload, at, domain) =
        (base, base + 1, base + 2, base + 3, base + 4, base + 5);
    let wanting = format!(
        "s.enabled AND (s.account IS NULL OR s.account = ${account}::text) \
         AND s.events && ARRAY[${ty}::text, ${domain}::text, '*'::text]"
    );
    format!(
        "e AS (INSERT INTO webhook_events (id, event_type, account, payload, created_at) \
         SELECT ${id}::text, ${ty}::text, ${account}::text, ${payload}::text, ${at}::bigint \
         FROM {gate} WHERE ${id}::text IS NOT NULL \
         AND EXISTS (SELECT 1 FROM webhook_subscriptions s WHERE {wanting}) RETURNING seq), \
         d AS (INSERT INTO webhook_deliveries (event_seq, subscription_id, state, \
         next_attempt_at) SELECT e.seq, s.id, 'pending', ${at}::bigint \
         FROM e, webhook_subscriptions s WHERE {wanting} RETURNING 1)"
    )
}

static INSERT_EVENT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH w AS (SELECT 1), {} SELECT (SELECT count(*) FROM e)",
        event_ctes(1, "w")
    )
});

/// Writes `event` (if any) and its deliveries in the caller's transaction: one statement.
pub(super) async fn insert_event(
    tx: &deadpool_postgres::Transaction<'_>,
    op: &'static str,
    event: Option<&NewEvent>,
) -> Result<(), StoreError> {
    if event.is_none() {
        return Ok(());
    }
    let params = EventParams::of(event);
    let stmt = tx.prepare_cached(&INSERT_EVENT).await.map_err(db(op))?;
    tx.query_one(&stmt, &params.params())
        .await
        .map_err(db(op))?;
    Ok(())
}

const INSERT_SUBSCRIPTION: &str = concat!(
    "INSERT INTO webhook_subscriptions (",
    subscription_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
);

fn subscription_params(s: &WebhookSubscription) -> [&(dyn ToSql + Sync); 11] {
    [
        &s.id,
        &s.account,
        &s.url,
        &s.events,
        &s.description,
        &s.sealed_secrets,
        &s.enabled,
        &s.disabled_reason,
        s.source.as_str_ref(),
        &s.created_at,
        &s.updated_at,
    ]
}

impl ClientSource {
    /// [`ClientSource::as_str`] as a SQL parameter.
    fn as_str_ref(&self) -> &'static (dyn ToSql + Sync) {
        match self {
            ClientSource::Config => &"config",
            ClientSource::Managed => &"managed",
        }
    }
}

#[async_trait]
impl Outbox for PostgresStore {
    async fn insert_subscription(
        &self,
        s: WebhookSubscription,
        max_per_account: u32,
    ) -> Result<bool, StoreError> {
        const OP: &str = "insert_subscription";
        let mut conn = self.client(OP).await?;
        let tx = conn.transaction().await.map_err(db(OP))?;
        // Two inserts for one account at once must not both pass the count.
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtext('warden:subscriptions:' || \
             coalesce($1::text, '')))",
            &[&s.account],
        )
        .await
        .map_err(db(OP))?;
        let row = tx
            .query_one(
                "SELECT count(*) FROM webhook_subscriptions WHERE account IS NOT DISTINCT FROM $1",
                &[&s.account],
            )
            .await
            .map_err(db(OP))?;
        let count: i64 = get(&row, 0, OP)?;
        if count >= i64::from(max_per_account) {
            return Ok(false);
        }
        tx.execute(INSERT_SUBSCRIPTION, &subscription_params(&s))
            .await
            .map_err(db(OP))?;
        tx.commit().await.map_err(db(OP))?;
        Ok(true)
    }

    async fn put_config_subscription(&self, s: WebhookSubscription) -> Result<bool, StoreError> {
        const OP: &str = "put_config_subscription";
        let client = self.client(OP).await?;
        // Inserted, or updated if it is an operator one; a managed one is left alone.
        let sql = concat!(
            "INSERT INTO webhook_subscriptions (",
            subscription_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT (id) DO UPDATE SET account = excluded.account, url = excluded.url, \
             events = excluded.events, description = excluded.description, \
             secrets = excluded.secrets, enabled = excluded.enabled, \
             disabled_reason = excluded.disabled_reason, updated_at = excluded.updated_at \
             WHERE webhook_subscriptions.source = 'config'"
        );
        let n = client
            .execute(sql, &subscription_params(&s))
            .await
            .map_err(db(OP))?;
        Ok(n > 0)
    }

    async fn get_subscription(&self, id: &str) -> Result<Option<WebhookSubscription>, StoreError> {
        const OP: &str = "get_subscription";
        let client = self.client(OP).await?;
        let row = client
            .query_opt(
                concat!(
                    "SELECT ",
                    subscription_columns!(),
                    " FROM webhook_subscriptions WHERE id = $1"
                ),
                &[&id],
            )
            .await
            .map_err(db(OP))?;
        row.map(|row| subscription_from_row(&row, OP)).transpose()
    }

    async fn list_subscriptions(
        &self,
        account: Option<&str>,
    ) -> Result<Vec<WebhookSubscription>, StoreError> {
        const OP: &str = "list_subscriptions";
        let client = self.client(OP).await?;
        let rows = client
            .query(
                concat!(
                    "SELECT ",
                    subscription_columns!(),
                    " FROM webhook_subscriptions WHERE $1::text IS NULL OR account = $1 \
                     ORDER BY created_at, id"
                ),
                &[&account],
            )
            .await
            .map_err(db(OP))?;
        rows.iter()
            .map(|row| subscription_from_row(row, OP))
            .collect()
    }

    async fn set_subscription_enabled(
        &self,
        id: &str,
        enabled: bool,
        reason: Option<String>,
        now: i64,
    ) -> Result<bool, StoreError> {
        const OP: &str = "set_subscription_enabled";
        let reason = if enabled { None } else { reason };
        let client = self.client(OP).await?;
        let n = client
            .execute(
                "UPDATE webhook_subscriptions SET enabled = $2, disabled_reason = $3, \
                 updated_at = $4 WHERE id = $1",
                &[&id, &enabled, &reason, &now],
            )
            .await
            .map_err(db(OP))?;
        Ok(n > 0)
    }

    async fn set_subscription_secrets(
        &self,
        id: &str,
        sealed: Vec<u8>,
        now: i64,
    ) -> Result<bool, StoreError> {
        const OP: &str = "set_subscription_secrets";
        let client = self.client(OP).await?;
        let n = client
            .execute(
                "UPDATE webhook_subscriptions SET secrets = $2, updated_at = $3 WHERE id = $1",
                &[&id, &sealed, &now],
            )
            .await
            .map_err(db(OP))?;
        Ok(n > 0)
    }

    async fn delete_subscription(&self, id: &str) -> Result<bool, StoreError> {
        const OP: &str = "delete_subscription";
        let client = self.client(OP).await?;
        let n = client
            .execute("DELETE FROM webhook_subscriptions WHERE id = $1", &[&id])
            .await
            .map_err(db(OP))?;
        Ok(n > 0)
    }

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
        let mut chosen: Vec<i64> = Vec::new();
        for row in &candidates {
            if chosen.len() as u32 >= limit {
                break;
            }
            let subscription: String = get(row, 1, OP)?;
            let held = busy.entry(subscription).or_insert(0);
            if *held >= per_subscription {
                continue;
            }
            *held += 1;
            chosen.push(get(row, 0, OP)?);
        }
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
            let sub = subscription_columns_at(row, 7)?;
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
        let (state, next, finished, status, error, disable) = match outcome {
            AttemptOutcome::Delivered { status } => (
                DeliveryState::Delivered,
                None,
                Some(now),
                Some(status),
                None,
                None,
            ),
            AttemptOutcome::Failed {
                status,
                error,
                retry_at: Some(at),
                disable_subscription,
            } => (
                DeliveryState::Pending,
                Some(at),
                None,
                status,
                Some(error),
                disable_subscription,
            ),
            AttemptOutcome::Failed {
                status,
                error,
                retry_at: None,
                disable_subscription,
            } => (
                DeliveryState::Dead,
                None,
                Some(now),
                status,
                Some(error),
                disable_subscription,
            ),
        };
        let status = status.map(i32::from);
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
                    &state.as_str(),
                    &next,
                    &finished,
                    &status,
                    &error,
                    &disable,
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

/// A subscription whose columns start at `first` (in [`subscription_columns!`] order).
fn subscription_columns_at(
    row: &tokio_postgres::Row,
    first: usize,
) -> Result<WebhookSubscription, StoreError> {
    const OP: &str = "claim_deliveries";
    let source: String = get(row, first + 8, OP)?;
    Ok(WebhookSubscription {
        id: get(row, first, OP)?,
        account: get(row, first + 1, OP)?,
        url: get(row, first + 2, OP)?,
        events: get(row, first + 3, OP)?,
        description: get(row, first + 4, OP)?,
        sealed_secrets: get(row, first + 5, OP)?,
        enabled: get(row, first + 6, OP)?,
        disabled_reason: get(row, first + 7, OP)?,
        source: ClientSource::parse(&source).ok_or_else(|| StoreError::Corrupt {
            op: OP,
            detail: format!("unknown source {source:?}"),
        })?,
        created_at: get(row, first + 9, OP)?,
        updated_at: get(row, first + 10, OP)?,
    })
}
