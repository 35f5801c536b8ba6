//! Tokens: issued credentials, kept by the hash of their value.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::SqliteStore;
use super::outbox::{insert_event, insert_events};
use super::rows::{db, execute, to_json, token_columns, token_from_row};
use crate::store::{Hash, NewEvent, StoreError, TokenKind, TokenRecord, TokenStore};

fn insert_token_tx(
    tx: &Transaction<'_>,
    op: &'static str,
    t: &TokenRecord,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO tokens (id, hash, kind, client_id, account, name, user_name, audience, \
         scopes, trusted_ips, created_at, updated_at, expires_at, enabled, disabled_reason, \
         revoked_at, replaced_by) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            t.id,
            t.hash,
            t.kind.as_str(),
            t.client_id,
            t.account,
            t.name,
            t.user,
            t.audience,
            to_json(&t.scopes),
            to_json(&t.trusted_ips),
            t.created_at,
            t.updated_at,
            t.expires_at,
            t.enabled,
            t.disabled_reason,
            t.revoked_at,
            t.replaced_by,
        ])
    })
    .map_err(db(op))?;
    Ok(())
}

fn query_token(
    conn: &Connection,
    op: &'static str,
    sql: &str,
    key: &dyn rusqlite::ToSql,
) -> Result<Option<TokenRecord>, StoreError> {
    conn.prepare_cached(sql)
        .and_then(|mut stmt| stmt.query_row([key], token_from_row).optional())
        .map_err(db(op))
}

#[async_trait]
impl TokenStore for SqliteStore {
    async fn insert_token(
        &self,
        token: TokenRecord,
        event: Option<NewEvent>,
    ) -> Result<(), StoreError> {
        const OP: &str = "insert_token";
        self.write(OP, move |tx| {
            insert_token_tx(tx, OP, &token)?;
            insert_event(tx, OP, event)
        })
        .await
    }

    async fn token_by_hash(&self, hash: &Hash) -> Result<Option<TokenRecord>, StoreError> {
        const OP: &str = "token_by_hash";
        const SQL: &str = concat!("SELECT ", token_columns!(), " FROM tokens WHERE hash = ?1");
        let hash = *hash;
        self.read(OP, move |conn| query_token(conn, OP, SQL, &hash))
            .await
    }

    async fn get_token(&self, id: &str) -> Result<Option<TokenRecord>, StoreError> {
        const OP: &str = "get_token";
        const SQL: &str = concat!("SELECT ", token_columns!(), " FROM tokens WHERE id = ?1");
        let id = id.to_owned();
        self.read(OP, move |conn| query_token(conn, OP, SQL, &id))
            .await
    }

    async fn list_tokens(
        &self,
        account: &str,
        kind: Option<TokenKind>,
    ) -> Result<Vec<TokenRecord>, StoreError> {
        const OP: &str = "list_tokens";
        let account = account.to_owned();
        self.read(OP, move |conn| {
            const SQL: &str = concat!(
                "SELECT ",
                token_columns!(),
                " FROM tokens WHERE account = ?1 AND (?2 IS NULL OR kind = ?2) \
                 ORDER BY created_at, id"
            );
            conn.prepare_cached(SQL)
                .and_then(|mut stmt| {
                    stmt.query_map(
                        params![account, kind.map(TokenKind::as_str)],
                        token_from_row,
                    )?
                    .collect::<rusqlite::Result<Vec<_>>>()
                })
                .map_err(db(OP))
        })
        .await
    }

    async fn revoke_token(
        &self,
        id: &str,
        now: i64,
        event: Option<NewEvent>,
    ) -> Result<bool, StoreError> {
        const OP: &str = "revoke_token";
        let id = id.to_owned();
        self.write(OP, move |tx| {
            let revoked = execute(
                tx,
                OP,
                "UPDATE tokens SET revoked_at = ?2, updated_at = ?2 \
                 WHERE id = ?1 AND revoked_at IS NULL",
                params![id, now],
            )?;
            if revoked > 0 {
                insert_event(tx, OP, event)?;
                return Ok(true);
            }
            tx.prepare_cached("SELECT 1 FROM tokens WHERE id = ?1")
                .and_then(|mut stmt| stmt.exists([&id]))
                .map_err(db(OP))
        })
        .await
    }

    async fn set_token_enabled(
        &self,
        id: &str,
        enabled: bool,
        reason: Option<String>,
        now: i64,
        event: Option<NewEvent>,
    ) -> Result<bool, StoreError> {
        const OP: &str = "set_token_enabled";
        let id = id.to_owned();
        let reason = crate::store::kept_reason(enabled, reason);
        self.write(OP, move |tx| {
            let was: Option<bool> = tx
                .prepare_cached("SELECT enabled FROM tokens WHERE id = ?1")
                .and_then(|mut stmt| stmt.query_row([&id], |row| row.get(0)).optional())
                .map_err(db(OP))?;
            let Some(was) = was else {
                return Ok(false);
            };
            execute(
                tx,
                OP,
                "UPDATE tokens SET enabled = ?2, disabled_reason = ?3, updated_at = ?4 \
                 WHERE id = ?1",
                params![id, enabled, reason, now],
            )?;
            if was != enabled {
                insert_event(tx, OP, event)?;
            }
            Ok(true)
        })
        .await
    }

    async fn rename_token(
        &self,
        id: &str,
        name: String,
        now: i64,
        event: Option<NewEvent>,
    ) -> Result<bool, StoreError> {
        const OP: &str = "rename_token";
        let id = id.to_owned();
        self.write(OP, move |tx| {
            let was: Option<Option<String>> = tx
                .prepare_cached("SELECT name FROM tokens WHERE id = ?1")
                .and_then(|mut stmt| stmt.query_row([&id], |row| row.get(0)).optional())
                .map_err(db(OP))?;
            let Some(was) = was else {
                return Ok(false);
            };
            execute(
                tx,
                OP,
                "UPDATE tokens SET name = ?2, updated_at = ?3 WHERE id = ?1",
                params![id, name, now],
            )?;
            if was.as_deref() != Some(name.as_str()) {
                insert_event(tx, OP, event)?;
            }
            Ok(true)
        })
        .await
    }

    async fn delete_token(&self, id: &str, event: Option<NewEvent>) -> Result<bool, StoreError> {
        const OP: &str = "delete_token";
        let id = id.to_owned();
        self.write(OP, move |tx| {
            let n = execute(tx, OP, "DELETE FROM tokens WHERE id = ?1", [&id])?;
            if n > 0 {
                insert_event(tx, OP, event)?;
            }
            Ok(n > 0)
        })
        .await
    }

    async fn replace_api_key(
        &self,
        old_id: &str,
        new: TokenRecord,
        now: i64,
        events: Vec<NewEvent>,
    ) -> Result<bool, StoreError> {
        const OP: &str = "replace_api_key";
        let old_id = old_id.to_owned();
        self.write(OP, move |tx| {
            let revoked = execute(
                tx,
                OP,
                "UPDATE tokens SET revoked_at = ?2, updated_at = ?2, replaced_by = ?3 \
                 WHERE id = ?1 AND revoked_at IS NULL",
                params![old_id, now, new.id],
            )?;
            if revoked == 0 {
                return Ok(false);
            }
            // A conflict here returns before the commit, so the revocation rolls back with it.
            insert_token_tx(tx, OP, &new)?;
            insert_events(tx, OP, events)?;
            Ok(true)
        })
        .await
    }

    async fn purge_expired_tokens(&self, before: i64) -> Result<u64, StoreError> {
        const OP: &str = "purge_expired_tokens";
        self.write(OP, move |tx| {
            execute(
                tx,
                OP,
                "DELETE FROM tokens WHERE (expires_at IS NOT NULL AND expires_at < ?1) \
                 OR (revoked_at IS NOT NULL AND revoked_at < ?1)",
                [before],
            )
        })
        .await
    }
}
