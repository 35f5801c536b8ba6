//! Webhook subscriptions: [`SubscriptionStore`] for PostgreSQL.

use async_trait::async_trait;
use tokio_postgres::types::ToSql;

use crate::store::postgres::PostgresStore;
use crate::store::postgres::rows::{db, get, subscription_columns, subscription_from_row};
use crate::store::{ClientSource, StoreError, SubscriptionStore, WebhookSubscription};

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
impl SubscriptionStore for PostgresStore {
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
        let reason = crate::store::kept_reason(enabled, reason);
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
}
