//! Clients, with their secrets and signing keys (read in one statement, as arrays).

use async_trait::async_trait;
use tokio_postgres::Row;

use super::PostgresStore;
use super::outbox::insert_event;
use super::rows::{db, get};
use crate::store::{
    ClientRecord, ClientSource, ClientStore, NewEvent, SecretHash, SigningKey, StoreError,
};

const SELECT_CLIENTS: &str = "SELECT c.id, c.name, c.account, c.trusted_ips, c.scopes, \
     c.enabled, c.source, c.created_at, c.updated_at, \
     coalesce(s.hashes, '{}'), coalesce(s.created, '{}'), coalesce(s.expires, '{}'), \
     coalesce(k.ids, '{}'), coalesce(k.algs, '{}'), coalesce(k.keys, '{}') \
     FROM clients c \
     LEFT JOIN LATERAL (SELECT array_agg(hash ORDER BY n) AS hashes, \
         array_agg(created_at ORDER BY n) AS created, array_agg(expires_at ORDER BY n) AS expires \
         FROM client_secrets WHERE client_id = c.id) s ON true \
     LEFT JOIN LATERAL (SELECT array_agg(key_id ORDER BY n) AS ids, \
         array_agg(alg ORDER BY n) AS algs, array_agg(public_key ORDER BY n) AS keys \
         FROM client_keys WHERE client_id = c.id) k ON true";

fn client_from_row(row: &Row) -> Result<ClientRecord, StoreError> {
    const OP: &str = "load_client";
    let source: String = get(row, 6, OP)?;
    let hashes: Vec<Vec<u8>> = get(row, 9, OP)?;
    let created: Vec<i64> = get(row, 10, OP)?;
    let expires: Vec<Option<i64>> = get(row, 11, OP)?;
    let ids: Vec<String> = get(row, 12, OP)?;
    let algs: Vec<String> = get(row, 13, OP)?;
    let keys: Vec<Vec<u8>> = get(row, 14, OP)?;
    let corrupt = |detail: String| StoreError::Corrupt { op: OP, detail };
    let secrets = hashes
        .into_iter()
        .zip(created)
        .zip(expires)
        .map(|((hash, created_at), expires_at)| {
            Ok(SecretHash {
                hash: hash
                    .as_slice()
                    .try_into()
                    .map_err(|_| corrupt(format!("a secret hash of {} bytes", hash.len())))?,
                created_at,
                expires_at,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    let keys = ids
        .into_iter()
        .zip(algs)
        .zip(keys)
        .map(|((key_id, alg), public_key)| SigningKey {
            key_id,
            alg,
            public_key,
        })
        .collect();
    Ok(ClientRecord {
        id: get(row, 0, OP)?,
        name: get(row, 1, OP)?,
        account: get(row, 2, OP)?,
        secrets,
        keys,
        trusted_ips: get(row, 3, OP)?,
        scopes: get(row, 4, OP)?,
        enabled: get(row, 5, OP)?,
        source: ClientSource::parse(&source)
            .ok_or_else(|| corrupt(format!("unknown client source {source:?}")))?,
        created_at: get(row, 7, OP)?,
        updated_at: get(row, 8, OP)?,
    })
}

const INSERT_SECRET: &str =
    "INSERT INTO client_secrets (client_id, hash, created_at, expires_at) VALUES ($1, $2, $3, $4)";

#[async_trait]
impl ClientStore for PostgresStore {
    async fn upsert_client(&self, client: ClientRecord) -> Result<(), StoreError> {
        const OP: &str = "upsert_client";
        let mut conn = self.client(OP).await?;
        let tx = conn.transaction().await.map_err(db(OP))?;
        let updated = tx
            .query_one(
                "INSERT INTO clients (id, name, account, trusted_ips, scopes, enabled, source, \
                 created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 ON CONFLICT (id) DO UPDATE SET name = excluded.name, \
                 account = excluded.account, trusted_ips = excluded.trusted_ips, \
                 scopes = excluded.scopes, enabled = excluded.enabled, \
                 source = excluded.source, updated_at = excluded.updated_at \
                 RETURNING (xmax <> 0)",
                &[
                    &client.id,
                    &client.name,
                    &client.account,
                    &client.trusted_ips,
                    &client.scopes,
                    &client.enabled,
                    &client.source.as_str(),
                    &client.created_at,
                    &client.updated_at,
                ],
            )
            .await
            .map_err(db(OP))?;
        tx.execute(
            "DELETE FROM client_secrets WHERE client_id = $1",
            &[&client.id],
        )
        .await
        .map_err(db(OP))?;
        let insert = tx.prepare_cached(INSERT_SECRET).await.map_err(db(OP))?;
        for s in &client.secrets {
            tx.execute(
                &insert,
                &[&client.id, &s.hash.as_slice(), &s.created_at, &s.expires_at],
            )
            .await
            .map_err(db(OP))?;
        }
        tx.execute(
            "DELETE FROM client_keys WHERE client_id = $1",
            &[&client.id],
        )
        .await
        .map_err(db(OP))?;
        for key in &client.keys {
            tx.execute(
                "INSERT INTO client_keys (client_id, key_id, alg, public_key) \
                 VALUES ($1, $2, $3, $4)",
                &[&client.id, &key.key_id, &key.alg, &key.public_key],
            )
            .await
            .map_err(db(OP))?;
        }
        tx.commit().await.map_err(db(OP))?;
        if updated.try_get::<_, bool>(0).unwrap_or(true) {
            self.changed();
        }
        Ok(())
    }

    async fn get_client(&self, id: &str) -> Result<Option<ClientRecord>, StoreError> {
        const OP: &str = "get_client";
        let client = self.client(OP).await?;
        let stmt = client
            .prepare_cached(&format!("{SELECT_CLIENTS} WHERE c.id = $1"))
            .await
            .map_err(db(OP))?;
        let row = client.query_opt(&stmt, &[&id]).await.map_err(db(OP))?;
        row.as_ref().map(client_from_row).transpose()
    }

    async fn list_clients(&self) -> Result<Vec<ClientRecord>, StoreError> {
        const OP: &str = "list_clients";
        let client = self.client(OP).await?;
        let rows = client
            .query(&format!("{SELECT_CLIENTS} ORDER BY c.id"), &[])
            .await
            .map_err(db(OP))?;
        rows.iter().map(client_from_row).collect()
    }

    async fn set_client_enabled(
        &self,
        id: &str,
        enabled: bool,
        now: i64,
    ) -> Result<bool, StoreError> {
        const OP: &str = "set_client_enabled";
        let client = self.client(OP).await?;
        let n = client
            .execute(
                "UPDATE clients SET enabled = $2, updated_at = $3 WHERE id = $1",
                &[&id, &enabled, &now],
            )
            .await
            .map_err(db(OP))?;
        if n > 0 {
            self.changed();
        }
        Ok(n > 0)
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
        let mut conn = self.client(OP).await?;
        let tx = conn.transaction().await.map_err(db(OP))?;
        let found = tx
            .execute(
                "UPDATE clients SET updated_at = $2 WHERE id = $1",
                &[&id, &now],
            )
            .await
            .map_err(db(OP))?;
        if found == 0 {
            return Ok(false);
        }
        if let Some(end) = old_secrets_expire_at {
            tx.execute(
                "UPDATE client_secrets SET expires_at = $2 \
                 WHERE client_id = $1 AND (expires_at IS NULL OR expires_at > $2)",
                &[&id, &end],
            )
            .await
            .map_err(db(OP))?;
        }
        tx.execute(
            "DELETE FROM client_secrets \
             WHERE client_id = $1 AND expires_at IS NOT NULL AND expires_at <= $2",
            &[&id, &now],
        )
        .await
        .map_err(db(OP))?;
        tx.execute(
            INSERT_SECRET,
            &[
                &id,
                &secret.hash.as_slice(),
                &secret.created_at,
                &secret.expires_at,
            ],
        )
        .await
        .map_err(db(OP))?;
        insert_event(&tx, OP, event.as_ref()).await?;
        tx.commit().await.map_err(db(OP))?;
        self.changed();
        Ok(true)
    }

    async fn prune_expired_secrets(&self, now: i64) -> Result<u64, StoreError> {
        const OP: &str = "prune_expired_secrets";
        let client = self.client(OP).await?;
        client
            .execute(
                "DELETE FROM client_secrets WHERE expires_at IS NOT NULL AND expires_at <= $1",
                &[&now],
            )
            .await
            .map_err(db(OP))
    }
}
