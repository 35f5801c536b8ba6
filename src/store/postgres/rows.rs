//! Error mapping and row codecs shared by the per-concern files.

use tokio_postgres::Row;
use tokio_postgres::error::SqlState;

use crate::store::{
    ClientSource, Delivery, DeliveryState, Hash, StoreError, TokenKind, TokenRecord,
    WebhookSubscription,
};

/// Maps a tokio-postgres error to a [`StoreError`] for operation `op`.
pub(super) fn db(op: &'static str) -> impl Fn(tokio_postgres::Error) -> StoreError {
    move |error| {
        if error.code() == Some(&SqlState::UNIQUE_VIOLATION) {
            return StoreError::Conflict { op };
        }
        if error.to_string().starts_with("error deserializing column") {
            return StoreError::Corrupt {
                op,
                detail: error.to_string(),
            };
        }
        StoreError::Database {
            op,
            source: Box::new(error),
        }
    }
}

/// Maps a pool error (no connection to be had in time, or none could be made).
pub(super) fn pool_error(op: &'static str) -> impl Fn(deadpool_postgres::PoolError) -> StoreError {
    move |error| match error {
        deadpool_postgres::PoolError::Backend(e) => db(op)(e),
        other => StoreError::Database {
            op,
            source: Box::new(other),
        },
    }
}

fn corrupt(op: &'static str, detail: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        op,
        detail: detail.into(),
    }
}

/// A `bytea` column holding a SHA-256 digest.
pub(super) fn hash(row: &Row, column: usize, op: &'static str) -> Result<Hash, StoreError> {
    let bytes: Vec<u8> = row.try_get(column).map_err(db(op))?;
    Hash::try_from(bytes.as_slice())
        .map_err(|_| corrupt(op, format!("a hash of {} bytes", bytes.len())))
}

/// A column that may not be read as its type is corrupt.
pub(super) fn get<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a Row,
    column: usize,
    op: &'static str,
) -> Result<T, StoreError> {
    row.try_get(column).map_err(db(op))
}

/// `SELECT` list matching [`token_from_row`].
macro_rules! token_columns {
    () => {
        "id, hash, kind, client_id, account, name, user_name, audience, scopes, trusted_ips, \
         created_at, updated_at, expires_at, enabled, disabled_reason, revoked_at, replaced_by"
    };
}
pub(super) use token_columns;

pub(super) fn token_from_row(row: &Row, op: &'static str) -> Result<TokenRecord, StoreError> {
    let kind: String = get(row, 2, op)?;
    Ok(TokenRecord {
        id: get(row, 0, op)?,
        hash: hash(row, 1, op)?,
        kind: TokenKind::parse(&kind)
            .ok_or_else(|| corrupt(op, format!("unknown token kind {kind:?}")))?,
        client_id: get(row, 3, op)?,
        account: get(row, 4, op)?,
        name: get(row, 5, op)?,
        user: get(row, 6, op)?,
        audience: get(row, 7, op)?,
        scopes: get(row, 8, op)?,
        trusted_ips: get(row, 9, op)?,
        created_at: get(row, 10, op)?,
        updated_at: get(row, 11, op)?,
        expires_at: get(row, 12, op)?,
        enabled: get(row, 13, op)?,
        disabled_reason: get(row, 14, op)?,
        revoked_at: get(row, 15, op)?,
        replaced_by: get(row, 16, op)?,
    })
}

macro_rules! subscription_columns {
    () => {
        "id, account, url, events, description, secrets, enabled, disabled_reason, source, \
         created_at, updated_at"
    };
}
pub(super) use subscription_columns;

pub(super) fn subscription_from_row(
    row: &Row,
    op: &'static str,
) -> Result<WebhookSubscription, StoreError> {
    subscription_at(row, 0, op)
}

/// A subscription whose columns start at `first` (in [`subscription_columns!`] order), as in a
/// join that selects other columns first.
pub(super) fn subscription_at(
    row: &Row,
    first: usize,
    op: &'static str,
) -> Result<WebhookSubscription, StoreError> {
    let source: String = get(row, first + 8, op)?;
    Ok(WebhookSubscription {
        id: get(row, first, op)?,
        account: get(row, first + 1, op)?,
        url: get(row, first + 2, op)?,
        events: get(row, first + 3, op)?,
        description: get(row, first + 4, op)?,
        sealed_secrets: get(row, first + 5, op)?,
        enabled: get(row, first + 6, op)?,
        disabled_reason: get(row, first + 7, op)?,
        source: ClientSource::parse(&source)
            .ok_or_else(|| corrupt(op, format!("unknown source {source:?}")))?,
        created_at: get(row, first + 9, op)?,
        updated_at: get(row, first + 10, op)?,
    })
}

macro_rules! delivery_columns {
    () => {
        "d.id, e.id, e.event_type, e.account, d.subscription_id, d.state, d.attempts, \
         d.next_attempt_at, d.last_status, d.last_error, e.created_at, d.finished_at \
         FROM webhook_deliveries d JOIN webhook_events e ON e.seq = d.event_seq"
    };
}
pub(super) use delivery_columns;

pub(super) fn delivery_from_row(row: &Row, op: &'static str) -> Result<Delivery, StoreError> {
    let state: String = get(row, 5, op)?;
    let attempts: i32 = get(row, 6, op)?;
    let last_status: Option<i32> = get(row, 8, op)?;
    Ok(Delivery {
        id: get(row, 0, op)?,
        event_id: get(row, 1, op)?,
        event_type: get(row, 2, op)?,
        account: get(row, 3, op)?,
        subscription_id: get(row, 4, op)?,
        state: DeliveryState::parse(&state)
            .ok_or_else(|| corrupt(op, format!("unknown state {state:?}")))?,
        attempts: u32::try_from(attempts).map_err(|_| corrupt(op, "negative attempts"))?,
        next_attempt_at: get(row, 7, op)?,
        last_status: last_status
            .map(|s| u16::try_from(s).map_err(|_| corrupt(op, format!("status {s}"))))
            .transpose()?,
        last_error: get(row, 9, op)?,
        created_at: get(row, 10, op)?,
        finished_at: get(row, 11, op)?,
    })
}
