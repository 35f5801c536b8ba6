//! Webhook events, fanned out into deliveries in the statement that writes the change they
//! report (this file); subscriptions and the outbox's deliveries beside it:
//! - `subscriptions.rs`: [`SubscriptionStore`](crate::store::SubscriptionStore);
//! - `deliveries.rs`: [`Outbox`](crate::store::Outbox), claimed under a lease (`FOR UPDATE SKIP
//!   LOCKED`, so replicas claiming at once never share one).

mod deliveries;
mod subscriptions;

use std::sync::LazyLock;

use tokio_postgres::types::ToSql;

use super::rows::db;
use crate::store::{NewEvent, StoreError};

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
            Some(e) => Self {
                id: Some(e.id.clone()),
                event_type: Some(e.event_type.clone()),
                account: Some(e.account.clone()),
                payload: Some(e.payload.clone()),
                created_at: Some(e.created_at),
                domain: Some(e.domain_pattern()),
            },
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
