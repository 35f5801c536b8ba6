//! The contract suite (`store/tests.rs`) against a PostgreSQL server, and what only this
//! backend does (notifications, the listener's reconnection, migrations of replicas starting
//! at once). Each test gets a schema of its own, dropped at the end.
//!
//! The server is named by `TEST_WARDEN_PG_URL` (`.ci/with-postgres` starts a throw-away one
//! and sets it). Without it every test here prints why it did not run and returns: `cargo
//! test` on a machine without PostgreSQL still passes, and says so.

use std::sync::Arc;
use std::time::Duration;

use crate::store::tests::Backend;
use crate::store::{Store, StoreOptions, open};

/// The variable that names the test server.
pub(crate) const URL_VAR: &str = "TEST_WARDEN_PG_URL";

/// The test server's URL, or `None` after printing why the test is skipped.
pub(crate) fn server_url(test: &str) -> Option<String> {
    match std::env::var(URL_VAR) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            println!("{test}: skipped: {URL_VAR} not set (run under .ci/with-postgres)");
            None
        }
    }
}

/// `url` with the connection's search path set to `schema`.
pub(crate) fn url_with_schema(url: &str, schema: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}options=-csearch_path%3D{schema}")
}

/// A schema of its own on the test server; `None` when there is no server.
pub(crate) struct FreshSchema {
    url: Option<String>,
    schema: String,
}

impl FreshSchema {
    pub(crate) async fn create(test: &str) -> Self {
        let schema = format!("t_{}", hex::encode(rand::random::<[u8; 8]>()));
        let Some(url) = server_url(test) else {
            return Self { url: None, schema };
        };
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .expect("connect to TEST_WARDEN_PG_URL");
        tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE SCHEMA {schema}"))
            .await
            .expect("create schema");
        Self {
            url: Some(url_with_schema(&url, &schema)),
            schema,
        }
    }

    pub(crate) fn url(&self) -> Option<&str> {
        self.url.as_deref()
    }

    pub(crate) fn options() -> StoreOptions {
        let mut options = StoreOptions::default();
        options.postgres.pool_size = 4;
        options.postgres.fallback_poll_interval = Duration::from_millis(200);
        options
    }
}

impl Drop for FreshSchema {
    fn drop(&mut self) {
        let (Some(url), schema) = (self.url.take(), self.schema.clone()) else {
            return;
        };
        // A thread of its own, not joined: the store's connections (run by the test's runtime,
        // which this drop may be blocking) may still hold locks until their rollback is sent.
        // A schema left behind lives only as long as the throw-away server.
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(runtime) = runtime {
                runtime.block_on(async move {
                    if let Ok((client, connection)) =
                        tokio_postgres::connect(&url, tokio_postgres::NoTls).await
                    {
                        tokio::spawn(connection);
                        let _ = client
                            .batch_execute(&format!(
                                "SET lock_timeout = '10s'; DROP SCHEMA {schema} CASCADE"
                            ))
                            .await;
                    }
                });
            }
        });
    }
}

/// The contract suite's backend. Without a server, `empty` cannot make one: the suite's tests
/// are wrapped so that they return before calling it (see [`contract`]).
pub(crate) struct PgSchema(FreshSchema);

impl Backend for PgSchema {
    async fn empty() -> Self {
        Self(FreshSchema::create("contract").await)
    }

    async fn connect(&self) -> Arc<dyn Store> {
        let url = self.0.url().expect("a server (checked before the test)");
        open(url, FreshSchema::options())
            .await
            .expect("open postgres store")
    }
}

/// The contract suite, each test skipped (and saying so) without a server.
mod contract {
    crate::store::tests::contract_suite!(super::PgSchema, |test: &str| {
        super::server_url(test).is_some()
    });
}

/// Opens a store on `schema` whose fallback poll never runs within a test, so only the
/// listener can move its marker.
async fn listener_only(schema: &FreshSchema) -> Arc<dyn Store> {
    let mut options = FreshSchema::options();
    options.postgres.fallback_poll_interval = Duration::from_secs(3600);
    open(schema.url().expect("server"), options)
        .await
        .expect("open")
}

/// Waits (bounded) until `store`'s marker differs from `marker`.
async fn marker_moves(store: &dyn Store, marker: u64, why: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while store.change_marker().expect("marker") == marker {
        assert!(std::time::Instant::now() < deadline, "{why}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn revocable(id: &str) -> crate::store::TokenRecord {
    crate::store::tests::token(id, crate::store::TokenKind::Access)
}

#[tokio::test]
async fn a_revocation_by_another_replica_is_notified_without_the_poll() {
    let schema = FreshSchema::create("a_revocation_by_another_replica_is_notified").await;
    if schema.url().is_none() {
        return;
    }
    let b = listener_only(&schema).await;
    let a = listener_only(&schema).await;
    a.insert_token(revocable("t1"), None).await.expect("insert");
    let marker = b.change_marker().expect("marker");
    assert!(a.revoke_token("t1", 1, None).await.expect("revoke"));
    marker_moves(b.as_ref(), marker, "B never heard of A's revocation").await;
    let changes = b.changes_since(0, 10).await.expect("changes");
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].token_hash, Some(revocable("t1").hash));
}

#[tokio::test]
async fn a_killed_listener_reconnects_and_resyncs_what_it_missed() {
    let schema = FreshSchema::create("a_killed_listener_reconnects_and_resyncs").await;
    let Some(url) = schema.url() else {
        return;
    };
    let b = listener_only(&schema).await;
    let a = listener_only(&schema).await;
    a.insert_token(revocable("t1"), None).await.expect("insert");
    // Kill B's (and A's) listener connections, as a network cut or a failover would.
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    let killed = client
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = $1 AND query LIKE $2",
            &[
                &super::listen::LISTENER_APPLICATION_NAME,
                &format!("LISTEN \"warden:{}\"%", schema.schema),
            ],
        )
        .await
        .expect("terminate");
    assert!(killed.len() >= 2, "listeners found: {}", killed.len());
    // Revoked while the listeners may be down: the notification may be lost, but the
    // reconnection listens again and then moves the marker (the resync).
    let marker = b.change_marker().expect("marker");
    assert!(a.revoke_token("t1", 1, None).await.expect("revoke"));
    marker_moves(
        b.as_ref(),
        marker,
        "B never resynced after its listener was killed",
    )
    .await;
    let changes = b.changes_since(0, 10).await.expect("changes");
    assert_eq!(changes.len(), 1);
}
