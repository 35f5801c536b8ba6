//! The schema: ordered, append-only migrations counted by `PRAGMA user_version`, and the
//! per-connection settings every connection is opened with.

use rusqlite::{Connection, TransactionBehavior};

use super::rows::db;
use crate::store::{Durability, StoreError, StoreOptions};

/// Ordered schema migrations; `PRAGMA user_version` counts how many have run. Append only: never
/// edit one that has shipped.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: the initial schema. Lists are JSON text; hashes and keys are blobs.
    r#"
    CREATE TABLE clients (
        id          TEXT PRIMARY KEY NOT NULL,
        name        TEXT NOT NULL,
        account     TEXT NOT NULL,
        trusted_ips TEXT NOT NULL,
        scopes      TEXT NOT NULL,
        enabled     INTEGER NOT NULL,
        source      TEXT NOT NULL CHECK (source IN ('config', 'managed')),
        created_at  INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE client_secrets (
        client_id  TEXT NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
        hash       BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER,
        UNIQUE (client_id, hash)
    ) STRICT;
    CREATE TABLE client_keys (
        client_id  TEXT NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
        key_id     TEXT NOT NULL,
        alg        TEXT NOT NULL,
        public_key BLOB NOT NULL,
        UNIQUE (client_id, key_id)
    ) STRICT;
    -- No foreign key to clients: a token outlives its client's removal from the config,
    -- so its audit trail stays.
    CREATE TABLE tokens (
        id              TEXT PRIMARY KEY NOT NULL,
        hash            BLOB NOT NULL UNIQUE,
        kind            TEXT NOT NULL CHECK (kind IN ('access', 'api_key', 'managed')),
        client_id       TEXT NOT NULL,
        account         TEXT NOT NULL,
        name            TEXT,
        user_name       TEXT,
        audience        TEXT,
        scopes          TEXT NOT NULL,
        trusted_ips     TEXT NOT NULL,
        created_at      INTEGER NOT NULL,
        updated_at      INTEGER NOT NULL,
        expires_at      INTEGER,
        enabled         INTEGER NOT NULL,
        disabled_reason TEXT,
        revoked_at      INTEGER,
        replaced_by     TEXT
    ) STRICT;
    CREATE INDEX tokens_by_account ON tokens (account, kind, created_at);
    CREATE INDEX tokens_by_expiry ON tokens (expires_at) WHERE expires_at IS NOT NULL;
    CREATE INDEX tokens_by_revocation ON tokens (revoked_at) WHERE revoked_at IS NOT NULL;
    CREATE TABLE idempotency (
        client_id   TEXT NOT NULL,
        idem_key    TEXT NOT NULL,
        fingerprint BLOB NOT NULL,
        state       TEXT NOT NULL CHECK (state IN ('in_flight', 'done')),
        lease_until INTEGER,
        status      INTEGER,
        headers     BLOB,
        body        BLOB,
        created_at  INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL,
        expires_at  INTEGER NOT NULL,
        UNIQUE (client_id, idem_key)
    ) STRICT;
    CREATE INDEX idempotency_by_expiry ON idempotency (expires_at);
    -- AUTOINCREMENT: an id is never reused after a purge, so receivers can deduplicate on it.
    CREATE TABLE webhook_outbox (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        event_type      TEXT NOT NULL,
        payload         TEXT NOT NULL,
        created_at      INTEGER NOT NULL,
        delivered_at    INTEGER,
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX webhook_outbox_pending ON webhook_outbox (next_attempt_at)
        WHERE delivered_at IS NULL;
    CREATE INDEX webhook_outbox_delivered ON webhook_outbox (delivered_at)
        WHERE delivered_at IS NOT NULL;
    "#,
    // 2: the change feed. Triggers record every change to a token or client, whoever made it
    // (this process or an admin command in another), so every Warden on this file can drop
    // what it cached about them before the next request.
    r#"
    CREATE TABLE changes (
        seq        INTEGER PRIMARY KEY AUTOINCREMENT,
        token_hash BLOB,
        client_id  TEXT,
        at         INTEGER NOT NULL DEFAULT (unixepoch())
    ) STRICT;
    CREATE INDEX changes_by_time ON changes (at);
    CREATE TRIGGER tokens_changed AFTER UPDATE ON tokens
        BEGIN INSERT INTO changes (token_hash) VALUES (OLD.hash); END;
    CREATE TRIGGER tokens_deleted AFTER DELETE ON tokens
        BEGIN INSERT INTO changes (token_hash) VALUES (OLD.hash); END;
    CREATE TRIGGER clients_changed AFTER UPDATE ON clients
        BEGIN INSERT INTO changes (client_id) VALUES (OLD.id); END;
    CREATE TRIGGER clients_deleted AFTER DELETE ON clients
        BEGIN INSERT INTO changes (client_id) VALUES (OLD.id); END;
    "#,
    // 3: idempotency records without a unique index on (client_id, idem_key). Keys are random,
    // so every new key dirtied a random page of that index: a 4 KiB WAL frame, then a checkpoint
    // write, per request. Keys are now appended in `id` order and found through an index kept
    // in each process (see `IdemIndex`), which follows other processes' appends by `id`:
    // AUTOINCREMENT so an id is never reused and that tail never misses a row. A response is
    // appended to a table of its own under the same id (a record is done when it has one), so
    // storing it does not grow a row in place, and loading the index reads only the keys.
    r#"
    CREATE TABLE idempotency_keys (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        client_id   TEXT NOT NULL,
        idem_key    TEXT NOT NULL,
        fingerprint BLOB NOT NULL,
        lease_until INTEGER NOT NULL,
        created_at  INTEGER NOT NULL,
        expires_at  INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX idempotency_keys_by_expiry ON idempotency_keys (expires_at);
    CREATE TABLE idempotency_responses (
        id      INTEGER PRIMARY KEY,
        status  INTEGER NOT NULL,
        headers BLOB NOT NULL,
        body    BLOB NOT NULL
    ) STRICT;
    -- Deletions, so that every process can drop what another one released or swept from its
    -- in-process index (else those entries would stay in its memory for good).
    CREATE TABLE idempotency_deleted (
        seq       INTEGER PRIMARY KEY AUTOINCREMENT,
        id        INTEGER NOT NULL,
        client_id TEXT NOT NULL,
        idem_key  TEXT NOT NULL,
        at        INTEGER NOT NULL DEFAULT (unixepoch())
    ) STRICT;
    CREATE TRIGGER idempotency_keys_deleted AFTER DELETE ON idempotency_keys
        BEGIN
            DELETE FROM idempotency_responses WHERE id = OLD.id;
            INSERT INTO idempotency_deleted (id, client_id, idem_key)
                VALUES (OLD.id, OLD.client_id, OLD.idem_key);
        END;
    INSERT INTO idempotency_keys (client_id, idem_key, fingerprint, lease_until, created_at,
        expires_at)
        SELECT client_id, idem_key, fingerprint, coalesce(lease_until, 0), created_at, expires_at
        FROM idempotency ORDER BY rowid;
    INSERT INTO idempotency_responses (id, status, headers, body)
        SELECT k.id, o.status, coalesce(o.headers, x''), coalesce(o.body, x'')
        FROM idempotency o JOIN idempotency_keys k
        ON k.client_id = o.client_id AND k.idem_key = o.idem_key
        WHERE o.state = 'done';
    DROP TABLE idempotency;
    "#,
    // 4: `idempotency_keys` without AUTOINCREMENT and without its expiry index. Every group
    // commit wrote both a `sqlite_sequence` page and an index page besides the rows themselves
    // (with the WAL write and the checkpoint's copy of each); they were a quarter of the
    // store's CPU a fresh-key request (`idem_rate`, `IDEM_BODY=5`: 6.9 → 5.2 µs a pair). Ids
    // must still never be reused, or another process's tail (`IdemIndex::sync`) would miss a
    // row: the highest row is now never deleted (a release ends the lease in place, a takeover
    // appends the new row before deleting the old one, the sweep leaves the last row), so
    // `max(id) + 1`, which SQLite assigns, only grows. The sweep walks the oldest rows by id
    // instead of the index. If the sequence had passed the last row (its row deleted), a
    // placeholder holds its id.
    r#"
    DROP TRIGGER idempotency_keys_deleted;
    CREATE TABLE idempotency_keys_4 (
        id          INTEGER PRIMARY KEY,
        client_id   TEXT NOT NULL,
        idem_key    TEXT NOT NULL,
        fingerprint BLOB NOT NULL,
        lease_until INTEGER NOT NULL,
        created_at  INTEGER NOT NULL,
        expires_at  INTEGER NOT NULL
    ) STRICT;
    INSERT INTO idempotency_keys_4 (id, client_id, idem_key, fingerprint, lease_until,
        created_at, expires_at)
        SELECT id, client_id, idem_key, fingerprint, lease_until, created_at, expires_at
        FROM idempotency_keys ORDER BY id;
    INSERT INTO idempotency_keys_4 (id, client_id, idem_key, fingerprint, lease_until,
        created_at, expires_at)
        SELECT seq, '', '', x'', 0, 0, 0 FROM sqlite_sequence
        WHERE name = 'idempotency_keys'
        AND seq > (SELECT coalesce(max(id), 0) FROM idempotency_keys);
    DROP TABLE idempotency_keys;
    ALTER TABLE idempotency_keys_4 RENAME TO idempotency_keys;
    CREATE TRIGGER idempotency_keys_deleted AFTER DELETE ON idempotency_keys
        BEGIN
            DELETE FROM idempotency_responses WHERE id = OLD.id;
            INSERT INTO idempotency_deleted (id, client_id, idem_key)
                VALUES (OLD.id, OLD.client_id, OLD.idem_key);
        END;
    "#,
    // 5: webhooks. Subscriptions, and the outbox as events plus one delivery per (event,
    // subscription), fanned out in the transaction that writes the event. An event has a
    // unique text id (its `webhook-id`) and the account it concerns; `seq` orders events and is
    // never reused. `webhook_outbox` (one delivery state per event, never written by a
    // release) gives its rows over as events of no account.
    r#"
    CREATE TABLE webhook_events (
        seq        INTEGER PRIMARY KEY AUTOINCREMENT,
        id         TEXT NOT NULL UNIQUE,
        event_type TEXT NOT NULL,
        account    TEXT NOT NULL,
        payload    TEXT NOT NULL,
        created_at INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX webhook_events_by_time ON webhook_events (created_at);
    INSERT INTO webhook_events (id, event_type, account, payload, created_at)
        SELECT 'evt_' || lower(hex(randomblob(16))), event_type, '', payload, created_at
        FROM webhook_outbox ORDER BY id;
    DROP TABLE webhook_outbox;
    -- account NULL: an operator subscription (config file), for every account's events.
    -- events: a JSON list of patterns. secrets: sealed by Warden, opaque here.
    CREATE TABLE webhook_subscriptions (
        id              TEXT PRIMARY KEY NOT NULL,
        account         TEXT,
        url             TEXT NOT NULL,
        events          TEXT NOT NULL,
        description     TEXT,
        secrets         BLOB NOT NULL,
        enabled         INTEGER NOT NULL,
        disabled_reason TEXT,
        source          TEXT NOT NULL CHECK (source IN ('config', 'managed')),
        created_at      INTEGER NOT NULL,
        updated_at      INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX webhook_subscriptions_by_account ON webhook_subscriptions (account);
    -- lease_until 0: no lease. attempts counts claims, so an attempt a crash cut short counts.
    CREATE TABLE webhook_deliveries (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        event_seq       INTEGER NOT NULL REFERENCES webhook_events (seq) ON DELETE CASCADE,
        subscription_id TEXT NOT NULL
            REFERENCES webhook_subscriptions (id) ON DELETE CASCADE,
        state           TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'dead')),
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL,
        lease_owner     TEXT,
        lease_until     INTEGER NOT NULL DEFAULT 0,
        last_status     INTEGER,
        last_error      TEXT,
        finished_at     INTEGER,
        UNIQUE (event_seq, subscription_id)
    ) STRICT;
    CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
        WHERE state = 'pending';
    CREATE INDEX webhook_deliveries_finished ON webhook_deliveries (finished_at)
        WHERE state != 'pending';
    CREATE INDEX webhook_deliveries_by_subscription
        ON webhook_deliveries (subscription_id, state);
    -- The live leases, per subscription at claim time: only rows ever claimed are in it.
    CREATE INDEX webhook_deliveries_leased ON webhook_deliveries (lease_until)
        WHERE lease_until > 0;
    "#,
    // 6: signature nonces claimed through the store (`signatures.nonce_store`): the hash of
    // (client, keyid, nonce), live through second `live_until`.
    r#"
    CREATE TABLE nonces (
        entry      BLOB PRIMARY KEY NOT NULL,
        live_until INTEGER NOT NULL
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX nonces_by_expiry ON nonces (live_until);
    "#,
];

/// Distinct statements a connection keeps prepared (rusqlite's default of 16 is too few).
const STATEMENT_CACHE_CAPACITY: usize = 64;

pub(super) fn configure(
    conn: &Connection,
    options: &StoreOptions,
    reader: bool,
) -> Result<(), StoreError> {
    const OP: &str = "open";
    conn.busy_timeout(options.busy_timeout).map_err(db(OP))?;
    let synchronous = match options.durability {
        Durability::Normal => "NORMAL",
        Durability::Full => "FULL",
    };
    conn.pragma_update(None, "synchronous", synchronous)
        .map_err(db(OP))?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(db(OP))?;
    if reader {
        conn.pragma_update(None, "query_only", "ON")
            .map_err(db(OP))?;
    }
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE_CAPACITY);
    Ok(())
}

/// Brings the schema to the latest version in one transaction; refuses a newer schema.
pub(super) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    const OP: &str = "migrate";
    // Re-read the version under the write lock: another process may be migrating the same file.
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db(OP))?;
    let found: i64 = tx
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(db(OP))?;
    let supported = schema_version();
    if found > supported {
        return Err(StoreError::SchemaTooNew { found, supported });
    }
    for migration in MIGRATIONS.iter().skip(usize::try_from(found).unwrap_or(0)) {
        tx.execute_batch(migration).map_err(db(OP))?;
    }
    if found < supported {
        tx.pragma_update(None, "user_version", supported)
            .map_err(db(OP))?;
    }
    tx.commit().map_err(db(OP))
}

/// The schema version this build writes.
pub fn schema_version() -> i64 {
    MIGRATIONS.len() as i64
}
