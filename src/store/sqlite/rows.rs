//! Row codecs and statement helpers shared by the per-concern files: rusqlite errors as
//! [`StoreError`]s, JSON lists, header blocks, and the token and idempotency rows.

use rusqlite::types::Type;
use rusqlite::{Row, Transaction};

use crate::store::idempotency::decode_headers;
use crate::store::{
    IdempotencyRecord, IdempotencyState, StoreError, StoredResponse, TokenKind, TokenRecord,
};

/// Maps a rusqlite error to a [`StoreError`] for operation `op`.
pub(super) fn db(op: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
    move |error| match error {
        rusqlite::Error::SqliteFailure(ref e, _)
            if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
        {
            StoreError::Conflict { op }
        }
        rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::IntegralValueOutOfRange(..) => StoreError::Corrupt {
            op,
            detail: error.to_string(),
        },
        error => StoreError::Database {
            op,
            source: Box::new(error),
        },
    }
}

/// Why a stored value could not be decoded.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Malformed(String);

pub(super) fn malformed(column: usize, ty: Type, detail: impl Into<String>) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(column, ty, Box::new(Malformed(detail.into())))
}

pub(super) fn to_json(list: &[String]) -> String {
    // Serialising strings cannot fail; fall back to an empty list rather than panic.
    serde_json::to_string(list).unwrap_or_else(|_| "[]".to_owned())
}

pub(super) fn json_list(row: &Row<'_>, column: usize) -> rusqlite::Result<Vec<String>> {
    let text: String = row.get(column)?;
    serde_json::from_str(&text).map_err(|e| malformed(column, Type::Text, e.to_string()))
}

/// `SELECT` list matching [`token_from_row`]; a macro so `concat!` can build constant SQL.
macro_rules! token_columns {
    () => {
        "id, hash, kind, client_id, account, name, user_name, audience, scopes, trusted_ips, \
         created_at, updated_at, expires_at, enabled, disabled_reason, revoked_at, replaced_by"
    };
}
pub(super) use token_columns;

pub(super) fn token_from_row(row: &Row<'_>) -> rusqlite::Result<TokenRecord> {
    let kind: String = row.get(2)?;
    Ok(TokenRecord {
        id: row.get(0)?,
        hash: row.get(1)?,
        kind: TokenKind::parse(&kind)
            .ok_or_else(|| malformed(2, Type::Text, format!("unknown token kind {kind:?}")))?,
        client_id: row.get(3)?,
        account: row.get(4)?,
        name: row.get(5)?,
        user: row.get(6)?,
        audience: row.get(7)?,
        scopes: json_list(row, 8)?,
        trusted_ips: json_list(row, 9)?,
        created_at: row.get(10)?,
        updated_at: row.get(11)?,
        expires_at: row.get(12)?,
        enabled: row.get(13)?,
        disabled_reason: row.get(14)?,
        revoked_at: row.get(15)?,
        replaced_by: row.get(16)?,
    })
}

/// Runs one cached statement and returns how many rows it changed.
pub(super) fn execute(
    tx: &Transaction<'_>,
    op: &'static str,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<u64, StoreError> {
    tx.prepare_cached(sql)
        .and_then(|mut stmt| stmt.execute(params))
        .map(|n| n as u64)
        .map_err(db(op))
}

pub(super) fn idempotency_from_row(
    row: &Row<'_>,
    client_id: &str,
    key: &str,
) -> rusqlite::Result<IdempotencyRecord> {
    let state: String = row.get(1)?;
    let state = match state.as_str() {
        "in_flight" => IdempotencyState::InFlight {
            lease_until: row.get(2)?,
        },
        "done" => {
            let headers: Vec<u8> = row.get(4)?;
            IdempotencyState::Done(StoredResponse {
                status: row.get(3)?,
                headers: decode_headers(&headers)
                    .ok_or_else(|| malformed(4, Type::Blob, "truncated header block"))?,
                body: row.get(5)?,
            })
        }
        other => {
            return Err(malformed(
                1,
                Type::Text,
                format!("unknown idempotency state {other:?}"),
            ));
        }
    };
    Ok(IdempotencyRecord {
        client_id: client_id.to_owned(),
        key: key.to_owned(),
        fingerprint: row.get(0)?,
        state,
        created_at: row.get(6)?,
        expires_at: row.get(7)?,
    })
}
