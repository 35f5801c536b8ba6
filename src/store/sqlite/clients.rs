//! Clients, with their secrets and signing keys (two child tables).

use async_trait::async_trait;
use rusqlite::types::Type;
use rusqlite::{Connection, Row, Transaction, params};

use super::SqliteStore;
use super::outbox::insert_event;
use super::rows::{db, execute, json_list, malformed, to_json};
use crate::store::{
    ClientRecord, ClientSource, ClientStore, NewEvent, SecretHash, SigningKey, StoreError,
};

/// Reads clients (one, or all when `id` is `None`) with their secrets and keys, in one read
/// transaction so the three queries see the same snapshot.
fn load_clients(
    conn: &Connection,
    op: &'static str,
    id: Option<&str>,
) -> Result<Vec<ClientRecord>, StoreError> {
    // Two shapes of each query rather than `?1 IS NULL OR id = ?1`, which would defeat the index.
    let (client_filter, child_filter) = match id {
        Some(_) => ("id = ?1", "client_id = ?1"),
        None => ("?1 IS NULL", "?1 IS NULL"),
    };
    let tx = conn.unchecked_transaction().map_err(db(op))?;
    let mut clients = {
        let mut stmt = tx
            .prepare_cached(&format!(
                "SELECT id, name, account, trusted_ips, scopes, enabled, source, created_at, \
                 updated_at FROM clients WHERE {client_filter} ORDER BY id"
            ))
            .map_err(db(op))?;
        let rows = stmt
            .query_map([id], |row| {
                let source: String = row.get(6)?;
                Ok(ClientRecord {
                    id: row.get(0)?,
                    name: row.get(1)?,
                    account: row.get(2)?,
                    secrets: Vec::new(),
                    keys: Vec::new(),
                    trusted_ips: json_list(row, 3)?,
                    scopes: json_list(row, 4)?,
                    enabled: row.get(5)?,
                    source: ClientSource::parse(&source).ok_or_else(|| {
                        malformed(6, Type::Text, format!("unknown client source {source:?}"))
                    })?,
                    created_at: row.get(7)?,
                    updated_at: row.get(8)?,
                })
            })
            .map_err(db(op))?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db(op))?
    };
    let position: std::collections::HashMap<String, usize> = clients
        .iter()
        .enumerate()
        .map(|(i, c)| (c.id.clone(), i))
        .collect();
    load_children(
        &tx,
        op,
        &format!(
            "SELECT client_id, hash, created_at, expires_at FROM client_secrets \
             WHERE {child_filter} ORDER BY rowid"
        ),
        id,
        |row| {
            Ok(SecretHash {
                hash: row.get(1)?,
                created_at: row.get(2)?,
                expires_at: row.get(3)?,
            })
        },
        |client_id, secret| {
            if let Some(&i) = position.get(client_id) {
                clients[i].secrets.push(secret);
            }
        },
    )?;
    load_children(
        &tx,
        op,
        &format!(
            "SELECT client_id, key_id, alg, public_key FROM client_keys \
             WHERE {child_filter} ORDER BY rowid"
        ),
        id,
        |row| {
            Ok(SigningKey {
                key_id: row.get(1)?,
                alg: row.get(2)?,
                public_key: row.get(3)?,
            })
        },
        |client_id, key| {
            if let Some(&i) = position.get(client_id) {
                clients[i].keys.push(key);
            }
        },
    )?;
    Ok(clients)
}

/// Reads a child table's rows (`sql` selects `client_id` first, then what `from_row` reads) in
/// order, and hands each to `put` with its client's id.
fn load_children<T>(
    conn: &Connection,
    op: &'static str,
    sql: &str,
    id: Option<&str>,
    from_row: impl Fn(&Row<'_>) -> rusqlite::Result<T>,
    mut put: impl FnMut(&str, T),
) -> Result<(), StoreError> {
    let mut stmt = conn.prepare_cached(sql).map_err(db(op))?;
    let rows = stmt
        .query_map([id], |row| Ok((row.get::<_, String>(0)?, from_row(row)?)))
        .map_err(db(op))?;
    for row in rows {
        let (client_id, child) = row.map_err(db(op))?;
        put(&client_id, child);
    }
    Ok(())
}

fn insert_secret(
    tx: &Transaction<'_>,
    op: &'static str,
    client_id: &str,
    secret: &SecretHash,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO client_secrets (client_id, hash, created_at, expires_at) \
         VALUES (?1, ?2, ?3, ?4)",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            client_id,
            secret.hash,
            secret.created_at,
            secret.expires_at
        ])
    })
    .map_err(db(op))?;
    Ok(())
}

#[async_trait]
impl ClientStore for SqliteStore {
    async fn upsert_client(&self, client: ClientRecord) -> Result<(), StoreError> {
        const OP: &str = "upsert_client";
        self.write(OP, move |tx| {
            execute(
                tx,
                OP,
                "INSERT INTO clients (id, name, account, trusted_ips, scopes, enabled, source, \
                 created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
                 ON CONFLICT (id) DO UPDATE SET name = excluded.name, \
                 account = excluded.account, trusted_ips = excluded.trusted_ips, \
                 scopes = excluded.scopes, enabled = excluded.enabled, \
                 source = excluded.source, updated_at = excluded.updated_at",
                params![
                    client.id,
                    client.name,
                    client.account,
                    to_json(&client.trusted_ips),
                    to_json(&client.scopes),
                    client.enabled,
                    client.source.as_str(),
                    client.created_at,
                    client.updated_at,
                ],
            )?;
            execute(
                tx,
                OP,
                "DELETE FROM client_secrets WHERE client_id = ?1",
                [&client.id],
            )?;
            for secret in &client.secrets {
                insert_secret(tx, OP, &client.id, secret)?;
            }
            execute(
                tx,
                OP,
                "DELETE FROM client_keys WHERE client_id = ?1",
                [&client.id],
            )?;
            for key in &client.keys {
                execute(
                    tx,
                    OP,
                    "INSERT INTO client_keys (client_id, key_id, alg, public_key) \
                     VALUES (?1, ?2, ?3, ?4)",
                    params![client.id, key.key_id, key.alg, key.public_key],
                )?;
            }
            Ok(())
        })
        .await
    }

    async fn get_client(&self, id: &str) -> Result<Option<ClientRecord>, StoreError> {
        const OP: &str = "get_client";
        let id = id.to_owned();
        self.read(OP, move |conn| {
            Ok(load_clients(conn, OP, Some(&id))?.into_iter().next())
        })
        .await
    }

    async fn list_clients(&self) -> Result<Vec<ClientRecord>, StoreError> {
        const OP: &str = "list_clients";
        self.read(OP, |conn| load_clients(conn, OP, None)).await
    }

    async fn set_client_enabled(
        &self,
        id: &str,
        enabled: bool,
        now: i64,
    ) -> Result<bool, StoreError> {
        const OP: &str = "set_client_enabled";
        let id = id.to_owned();
        self.write(OP, move |tx| {
            let n = execute(
                tx,
                OP,
                "UPDATE clients SET enabled = ?2, updated_at = ?3 WHERE id = ?1",
                params![id, enabled, now],
            )?;
            Ok(n > 0)
        })
        .await
    }

    async fn add_client_secret(
        &self,
        id: &str,
        secret: SecretHash,
        old_secrets_expire_at: Option<i64>,
        now: i64,
        event: Option<NewEvent>,
    ) -> Result<bool, StoreError> {
        const OP: &str = "add_client_secret";
        let id = id.to_owned();
        self.write(OP, move |tx| {
            let found = execute(
                tx,
                OP,
                "UPDATE clients SET updated_at = ?2 WHERE id = ?1",
                params![id, now],
            )?;
            if found == 0 {
                return Ok(false);
            }
            if let Some(end) = old_secrets_expire_at {
                execute(
                    tx,
                    OP,
                    "UPDATE client_secrets SET expires_at = ?2 \
                     WHERE client_id = ?1 AND (expires_at IS NULL OR expires_at > ?2)",
                    params![id, end],
                )?;
            }
            // After the overlap end is set, so an end at or before `now` drops the old ones here.
            execute(
                tx,
                OP,
                "DELETE FROM client_secrets \
                 WHERE client_id = ?1 AND expires_at IS NOT NULL AND expires_at <= ?2",
                params![id, now],
            )?;
            insert_secret(tx, OP, &id, &secret)?;
            insert_event(tx, OP, event)?;
            Ok(true)
        })
        .await
    }

    async fn prune_expired_secrets(&self, now: i64) -> Result<u64, StoreError> {
        const OP: &str = "prune_expired_secrets";
        self.write(OP, move |tx| {
            execute(
                tx,
                OP,
                "DELETE FROM client_secrets WHERE expires_at IS NOT NULL AND expires_at <= ?1",
                [now],
            )
        })
        .await
    }
}
