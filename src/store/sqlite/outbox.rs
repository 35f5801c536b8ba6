//! Webhooks: subscriptions, and the outbox. An event is written in the transaction of the
//! change it reports and fanned out there into one delivery per subscription that wants it
//! (this file); deliveries are claimed under a lease, their attempts recorded fenced by it.
//! - `subscriptions.rs`: [`SubscriptionStore`](crate::store::SubscriptionStore);
//! - `deliveries.rs`: [`Outbox`](crate::store::Outbox).

mod deliveries;
mod subscriptions;

use rusqlite::{Transaction, params};

use super::rows::db;
use crate::store::{NewEvent, StoreError};

/// The subscriptions an event of type `?2` (domain wildcard `?3`) for account `?1` goes to.
macro_rules! wanting {
    () => {
        "s.enabled = 1 AND (s.account IS NULL OR s.account = ?1) \
         AND EXISTS (SELECT 1 FROM json_each(s.events) AS p WHERE p.value IN (?2, ?3, '*'))"
    };
}

/// Writes `event` and its deliveries, if any subscription wants it.
pub(super) fn insert_event(
    tx: &Transaction<'_>,
    op: &'static str,
    event: Option<NewEvent>,
) -> Result<(), StoreError> {
    let Some(e) = event else {
        return Ok(());
    };
    let domain = e.domain_pattern();
    let kept = tx
        .prepare_cached(concat!(
            "INSERT INTO webhook_events (id, event_type, account, payload, created_at) \
             SELECT ?4, ?2, ?1, ?5, ?6 WHERE EXISTS \
             (SELECT 1 FROM webhook_subscriptions s WHERE ",
            wanting!(),
            ")"
        ))
        .and_then(|mut stmt| {
            stmt.execute(params![
                e.account,
                e.event_type,
                domain,
                e.id,
                e.payload,
                e.created_at
            ])
        })
        .map_err(db(op))?;
    if kept == 0 {
        return Ok(());
    }
    let seq = tx.last_insert_rowid();
    tx.prepare_cached(concat!(
        "INSERT INTO webhook_deliveries (event_seq, subscription_id, state, next_attempt_at) \
         SELECT ?4, s.id, 'pending', ?5 FROM webhook_subscriptions s WHERE ",
        wanting!()
    ))
    .and_then(|mut stmt| stmt.execute(params![e.account, e.event_type, domain, seq, e.created_at]))
    .map_err(db(op))?;
    Ok(())
}

/// Writes each of `events` ([`insert_event`]).
pub(super) fn insert_events(
    tx: &Transaction<'_>,
    op: &'static str,
    events: Vec<NewEvent>,
) -> Result<(), StoreError> {
    for e in events {
        insert_event(tx, op, Some(e))?;
    }
    Ok(())
}
