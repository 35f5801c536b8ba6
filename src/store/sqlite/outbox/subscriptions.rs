//! Webhook subscriptions: [`SubscriptionStore`] for SQLite.

use async_trait::async_trait;
use rusqlite::types::Type;
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};

use crate::store::sqlite::SqliteStore;
use crate::store::sqlite::rows::{db, execute, json_list, malformed, to_json};
use crate::store::{ClientSource, StoreError, SubscriptionStore, WebhookSubscription};

macro_rules! subscription_columns {
    () => {
        "id, account, url, events, description, secrets, enabled, disabled_reason, source, \
         created_at, updated_at"
    };
}

fn subscription_from_row(row: &Row<'_>) -> rusqlite::Result<WebhookSubscription> {
    let source: String = row.get(8)?;
    Ok(WebhookSubscription {
        id: row.get(0)?,
        account: row.get(1)?,
        url: row.get(2)?,
        events: json_list(row, 3)?,
        description: row.get(4)?,
        sealed_secrets: row.get(5)?,
        enabled: row.get(6)?,
        disabled_reason: row.get(7)?,
        source: ClientSource::parse(&source)
            .ok_or_else(|| malformed(8, Type::Text, format!("unknown source {source:?}")))?,
        created_at: row.get(9)?,
        updated_at: row.get(10)?,
    })
}

pub(super) fn get_subscription_tx(
    conn: &Connection,
    op: &'static str,
    id: &str,
) -> Result<Option<WebhookSubscription>, StoreError> {
    conn.prepare_cached(concat!(
        "SELECT ",
        subscription_columns!(),
        " FROM webhook_subscriptions WHERE id = ?1"
    ))
    .and_then(|mut stmt| stmt.query_row([id], subscription_from_row).optional())
    .map_err(db(op))
}

fn insert_subscription_tx(
    tx: &Transaction<'_>,
    op: &'static str,
    s: &WebhookSubscription,
) -> Result<(), StoreError> {
    tx.prepare_cached(concat!(
        "INSERT INTO webhook_subscriptions (",
        subscription_columns!(),
        ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
    ))
    .and_then(|mut stmt| {
        stmt.execute(params![
            s.id,
            s.account,
            s.url,
            to_json(&s.events),
            s.description,
            s.sealed_secrets,
            s.enabled,
            s.disabled_reason,
            s.source.as_str(),
            s.created_at,
            s.updated_at,
        ])
    })
    .map_err(db(op))?;
    Ok(())
}

#[async_trait]
impl SubscriptionStore for SqliteStore {
    async fn insert_subscription(
        &self,
        s: WebhookSubscription,
        max_per_account: u32,
    ) -> Result<bool, StoreError> {
        const OP: &str = "insert_subscription";
        self.write(OP, move |tx| {
            let count: i64 = tx
                .prepare_cached("SELECT count(*) FROM webhook_subscriptions WHERE account IS ?1")
                .and_then(|mut stmt| stmt.query_row([&s.account], |row| row.get(0)))
                .map_err(db(OP))?;
            if count >= i64::from(max_per_account) {
                return Ok(false);
            }
            insert_subscription_tx(tx, OP, &s)?;
            Ok(true)
        })
        .await
    }

    async fn put_config_subscription(&self, s: WebhookSubscription) -> Result<bool, StoreError> {
        const OP: &str = "put_config_subscription";
        self.write(OP, move |tx| {
            match get_subscription_tx(tx, OP, &s.id)? {
                None => insert_subscription_tx(tx, OP, &s)?,
                Some(old) if old.source != ClientSource::Config => return Ok(false),
                Some(_) => {
                    execute(
                        tx,
                        OP,
                        "UPDATE webhook_subscriptions SET account = ?2, url = ?3, events = ?4, \
                         description = ?5, secrets = ?6, enabled = ?7, disabled_reason = ?8, \
                         updated_at = ?9 WHERE id = ?1",
                        params![
                            s.id,
                            s.account,
                            s.url,
                            to_json(&s.events),
                            s.description,
                            s.sealed_secrets,
                            s.enabled,
                            s.disabled_reason,
                            s.updated_at
                        ],
                    )?;
                }
            }
            Ok(true)
        })
        .await
    }

    async fn get_subscription(&self, id: &str) -> Result<Option<WebhookSubscription>, StoreError> {
        const OP: &str = "get_subscription";
        let id = id.to_owned();
        self.read(OP, move |conn| get_subscription_tx(conn, OP, &id))
            .await
    }

    async fn list_subscriptions(
        &self,
        account: Option<&str>,
    ) -> Result<Vec<WebhookSubscription>, StoreError> {
        const OP: &str = "list_subscriptions";
        let account = account.map(str::to_owned);
        self.read(OP, move |conn| {
            conn.prepare_cached(concat!(
                "SELECT ",
                subscription_columns!(),
                " FROM webhook_subscriptions WHERE ?1 IS NULL OR account = ?1 \
                 ORDER BY created_at, id"
            ))
            .and_then(|mut stmt| {
                stmt.query_map([&account], subscription_from_row)?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(db(OP))
        })
        .await
    }

    async fn set_subscription_enabled(
        &self,
        id: &str,
        enabled: bool,
        reason: Option<String>,
        now: i64,
    ) -> Result<bool, StoreError> {
        const OP: &str = "set_subscription_enabled";
        let id = id.to_owned();
        let reason = crate::store::kept_reason(enabled, reason);
        self.write(OP, move |tx| {
            let n = execute(
                tx,
                OP,
                "UPDATE webhook_subscriptions SET enabled = ?2, disabled_reason = ?3, \
                 updated_at = ?4 WHERE id = ?1",
                params![id, enabled, reason, now],
            )?;
            Ok(n > 0)
        })
        .await
    }

    async fn set_subscription_secrets(
        &self,
        id: &str,
        sealed: Vec<u8>,
        now: i64,
    ) -> Result<bool, StoreError> {
        const OP: &str = "set_subscription_secrets";
        let id = id.to_owned();
        self.write(OP, move |tx| {
            let n = execute(
                tx,
                OP,
                "UPDATE webhook_subscriptions SET secrets = ?2, updated_at = ?3 WHERE id = ?1",
                params![id, sealed, now],
            )?;
            Ok(n > 0)
        })
        .await
    }

    async fn delete_subscription(&self, id: &str) -> Result<bool, StoreError> {
        const OP: &str = "delete_subscription";
        let id = id.to_owned();
        self.write(OP, move |tx| {
            // The deliveries go with it (ON DELETE CASCADE); their events are purged later.
            let n = execute(
                tx,
                OP,
                "DELETE FROM webhook_subscriptions WHERE id = ?1",
                [&id],
            )?;
            Ok(n > 0)
        })
        .await
    }
}
