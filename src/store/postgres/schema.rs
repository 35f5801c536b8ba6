//! The schema: ordered, append-only migrations counted in `warden_schema`, run at start under
//! a session advisory lock so that replicas starting at once migrate one after the other.

use super::rows::db;
use crate::store::StoreError;

/// Ordered schema migrations. Append only: never edit one that has shipped.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: the schema of SQLite's five migrations, at once. Lists are text[]; hashes, keys and
    // sealed secrets are bytea; times are unix seconds.
    r#"
    CREATE TABLE clients (
        id          text PRIMARY KEY,
        name        text NOT NULL,
        account     text NOT NULL,
        trusted_ips text[] NOT NULL,
        scopes      text[] NOT NULL,
        enabled     boolean NOT NULL,
        source      text NOT NULL CHECK (source IN ('config', 'managed')),
        created_at  bigint NOT NULL,
        updated_at  bigint NOT NULL
    );
    CREATE TABLE client_secrets (
        n          bigserial PRIMARY KEY,
        client_id  text NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
        hash       bytea NOT NULL,
        created_at bigint NOT NULL,
        expires_at bigint,
        UNIQUE (client_id, hash)
    );
    CREATE TABLE client_keys (
        n          bigserial PRIMARY KEY,
        client_id  text NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
        key_id     text NOT NULL,
        alg        text NOT NULL,
        public_key bytea NOT NULL,
        UNIQUE (client_id, key_id)
    );
    -- No foreign key to clients: a token outlives its client's removal from the config.
    CREATE TABLE tokens (
        id              text PRIMARY KEY,
        hash            bytea NOT NULL UNIQUE,
        kind            text NOT NULL CHECK (kind IN ('access', 'api_key', 'managed')),
        client_id       text NOT NULL,
        account         text NOT NULL,
        name            text,
        user_name       text,
        audience        text,
        scopes          text[] NOT NULL,
        trusted_ips     text[] NOT NULL,
        created_at      bigint NOT NULL,
        updated_at      bigint NOT NULL,
        expires_at      bigint,
        enabled         boolean NOT NULL,
        disabled_reason text,
        revoked_at      bigint,
        replaced_by     text
    );
    CREATE INDEX tokens_by_account ON tokens (account, kind, created_at);
    CREATE INDEX tokens_by_expiry ON tokens (expires_at) WHERE expires_at IS NOT NULL;
    CREATE INDEX tokens_by_revocation ON tokens (revoked_at) WHERE revoked_at IS NOT NULL;

    -- The change feed. `seq` is taken under a transaction-scoped advisory lock held to the
    -- commit, so rows become visible in `seq` order: a reader that has seen `seq` n never
    -- sees a smaller one appear later. The notification (no payload: the listener reads the
    -- feed) goes out at commit; identical ones in one transaction are sent once.
    CREATE TABLE changes (
        seq        bigserial PRIMARY KEY,
        token_hash bytea,
        client_id  text,
        at         bigint NOT NULL DEFAULT extract(epoch FROM now())::bigint
    );
    CREATE INDEX changes_by_time ON changes (at);
    CREATE FUNCTION warden_record_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_advisory_xact_lock(hashtext('warden:changes:' || TG_TABLE_SCHEMA));
        IF TG_TABLE_NAME = 'tokens' THEN
            INSERT INTO changes (token_hash) VALUES (OLD.hash);
        ELSE
            INSERT INTO changes (client_id) VALUES (OLD.id);
        END IF;
        PERFORM pg_notify('warden:' || TG_TABLE_SCHEMA, '');
        RETURN NULL;
    END $$;
    CREATE TRIGGER tokens_changed AFTER UPDATE OR DELETE ON tokens
        FOR EACH ROW EXECUTE FUNCTION warden_record_change();
    CREATE TRIGGER clients_changed AFTER UPDATE OR DELETE ON clients
        FOR EACH ROW EXECUTE FUNCTION warden_record_change();

    -- Done when status is set (0: the not-replayable marker).
    CREATE TABLE idempotency (
        client_id   text NOT NULL,
        idem_key    text NOT NULL,
        fingerprint bytea NOT NULL,
        lease_until bigint NOT NULL,
        status      integer,
        headers     bytea,
        body        bytea,
        created_at  bigint NOT NULL,
        expires_at  bigint NOT NULL,
        PRIMARY KEY (client_id, idem_key)
    );
    CREATE INDEX idempotency_by_expiry ON idempotency (expires_at);

    CREATE TABLE webhook_events (
        seq        bigserial PRIMARY KEY,
        id         text NOT NULL UNIQUE,
        event_type text NOT NULL,
        account    text NOT NULL,
        payload    text NOT NULL,
        created_at bigint NOT NULL
    );
    CREATE INDEX webhook_events_by_time ON webhook_events (created_at);
    CREATE TABLE webhook_subscriptions (
        id              text PRIMARY KEY,
        account         text,
        url             text NOT NULL,
        events          text[] NOT NULL,
        description     text,
        secrets         bytea NOT NULL,
        enabled         boolean NOT NULL,
        disabled_reason text,
        source          text NOT NULL CHECK (source IN ('config', 'managed')),
        created_at      bigint NOT NULL,
        updated_at      bigint NOT NULL
    );
    CREATE INDEX webhook_subscriptions_by_account ON webhook_subscriptions (account);
    CREATE TABLE webhook_deliveries (
        id              bigserial PRIMARY KEY,
        event_seq       bigint NOT NULL REFERENCES webhook_events (seq) ON DELETE CASCADE,
        subscription_id text NOT NULL
            REFERENCES webhook_subscriptions (id) ON DELETE CASCADE,
        state           text NOT NULL CHECK (state IN ('pending', 'delivered', 'dead')),
        attempts        integer NOT NULL DEFAULT 0,
        next_attempt_at bigint NOT NULL,
        lease_owner     text,
        lease_until     bigint NOT NULL DEFAULT 0,
        last_status     integer,
        last_error      text,
        finished_at     bigint,
        UNIQUE (event_seq, subscription_id)
    );
    CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
        WHERE state = 'pending';
    CREATE INDEX webhook_deliveries_finished ON webhook_deliveries (finished_at)
        WHERE state != 'pending';
    CREATE INDEX webhook_deliveries_by_subscription
        ON webhook_deliveries (subscription_id, state);
    CREATE INDEX webhook_deliveries_by_event ON webhook_deliveries (event_seq);
    CREATE INDEX webhook_deliveries_leased ON webhook_deliveries (lease_until)
        WHERE lease_until > 0;
    "#,
    // 2: signature nonces claimed by any replica (`NonceStore`): the hash of (client, keyid,
    // nonce), live through second `live_until`. A logged table: an unlogged one is emptied by
    // a server crash, which would make the requests it remembered replayable.
    r#"
    CREATE TABLE nonces (
        entry      bytea PRIMARY KEY,
        live_until bigint NOT NULL
    );
    CREATE INDEX nonces_by_expiry ON nonces (live_until);
    "#,
];

/// The schema version this build writes.
pub fn schema_version() -> i64 {
    MIGRATIONS.len() as i64
}

/// The notification channel of the schema `schema` (replicas on other schemas of the same
/// database do not hear it).
pub(super) fn channel(schema: &str) -> String {
    format!("warden:{schema}")
}

/// Brings the schema up to date; refuses a newer one. The session advisory lock makes a
/// replica that starts while another migrates wait for it, then find nothing left to do.
pub(super) async fn migrate(client: &mut deadpool_postgres::Object) -> Result<(), StoreError> {
    const OP: &str = "migrate";
    let lock = "SELECT pg_advisory_lock(hashtext('warden:migrate:' || current_schema()))";
    let unlock = "SELECT pg_advisory_unlock(hashtext('warden:migrate:' || current_schema()))";
    client.simple_query(lock).await.map_err(db(OP))?;
    let result = migrate_locked(client).await;
    // On a lost connection the lock went with the session.
    let _ = client.simple_query(unlock).await;
    result
}

async fn migrate_locked(client: &mut deadpool_postgres::Object) -> Result<(), StoreError> {
    const OP: &str = "migrate";
    client
        .simple_query("CREATE TABLE IF NOT EXISTS warden_schema (version bigint NOT NULL)")
        .await
        .map_err(db(OP))?;
    let found: i64 = client
        .query_opt("SELECT version FROM warden_schema", &[])
        .await
        .map_err(db(OP))?
        .map(|row| row.try_get(0))
        .transpose()
        .map_err(db(OP))?
        .unwrap_or(0);
    let supported = schema_version();
    if found > supported {
        return Err(StoreError::SchemaTooNew { found, supported });
    }
    if found == supported {
        return Ok(());
    }
    let tx = client.transaction().await.map_err(db(OP))?;
    for migration in MIGRATIONS.iter().skip(usize::try_from(found).unwrap_or(0)) {
        tx.batch_execute(migration).await.map_err(db(OP))?;
    }
    tx.execute("DELETE FROM warden_schema", &[])
        .await
        .map_err(db(OP))?;
    tx.execute(
        "INSERT INTO warden_schema (version) VALUES ($1)",
        &[&supported],
    )
    .await
    .map_err(db(OP))?;
    tx.commit().await.map_err(db(OP))
}
