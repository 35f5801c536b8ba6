//! The PostgreSQL backend of [`Store`](super::Store), for several Warden replicas on one
//! database (`store.url = "postgres://user:pass@host/db?sslmode=require"`).
//!
//! Every call is one transaction, committed before it returns; most are one statement, so one
//! round trip (issuance included: the token, its outbox event and the event's deliveries are
//! one `WITH … INSERT` statement). Statements are prepared once per pooled connection.
//!
//! Replicas learn of each other's changes through the change feed (`changes`, written by
//! triggers as in SQLite) and are told of them at once by `NOTIFY` from the same triggers:
//! `listen.rs` keeps one connection per replica listening, and a fallback poll of the feed's head
//! covers a listener that lost its connection. Issuance never notifies (only updates and deletes
//! of tokens and clients do).
//!
//! Beside this file:
//! - `schema.rs`: the migrations (append only), run under an advisory lock at start;
//! - `listen.rs`: the listener connection and the fallback poll;
//! - `rows.rs`: error mapping and row codecs;
//! - `changes.rs`, `clients.rs`, `tokens.rs`, `idempotency.rs`, `outbox.rs`, `nonces.rs`: the
//!   operations, one concern each;
//! - `tests.rs`: the contract suite run against a server named by `TEST_WARDEN_PG_URL`.

mod changes;
mod clients;
mod idempotency;
mod listen;
mod nonces;
mod outbox;
mod rows;
mod schema;
#[cfg(test)]
pub(crate) mod tests;
mod tokens;

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use tokio::task::JoinHandle;
use tokio_postgres::config::SslMode;

use self::rows::{db, pool_error};
use super::{Health, StoreError, StoreOptions};

pub use self::schema::schema_version;

/// Settings of a PostgreSQL store beyond its URL (`[store.postgres]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostgresOptions {
    /// Connections in the pool. Default 16.
    pub pool_size: usize,
    /// How long opening a connection (TCP, TLS, authentication) may take. Default 5 s.
    pub connect_timeout: Duration,
    /// How long a call waits for a free pooled connection. Default 5 s.
    pub acquire_timeout: Duration,
    /// `statement_timeout` of every pooled connection; 0: none. Default 10 s.
    pub statement_timeout: Duration,
    /// How often the change feed's head is polled, in case a notification was missed (the
    /// listener's connection lost): the longest a change by another replica can go unseen.
    /// Default 1 s.
    pub fallback_poll_interval: Duration,
    /// A PEM file of CA certificates that sign the server's certificate (`sslmode=require`);
    /// empty: the public web PKI roots.
    pub ca_file: String,
    /// The most issued tokens one transaction writes (group commit). Default 64.
    pub issue_batch_max: usize,
    /// Group-commit transactions of issued tokens being written at once, each on a pooled
    /// connection of its own (at most `pool_size` take effect). Default 4.
    pub issue_batches_in_flight: usize,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            pool_size: 16,
            connect_timeout: Duration::from_secs(5),
            acquire_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(10),
            fallback_poll_interval: Duration::from_secs(1),
            ca_file: String::new(),
            issue_batch_max: 64,
            issue_batches_in_flight: 4,
        }
    }
}

/// Whether `url` names a PostgreSQL database.
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// How connections are made: plain, or TLS through rustls.
#[derive(Clone)]
pub(super) enum Tls {
    Plain,
    Rustls(tokio_postgres_rustls::MakeRustlsConnect),
}

/// The PostgreSQL store.
pub struct PostgresStore {
    pool: Pool,
    /// Moves whenever the change feed may have grown: a notification, a fallback poll that saw
    /// a new head, a (re)connected listener, or a change written through this handle.
    marker: Arc<AtomicU64>,
    /// The listener and the fallback poll; stopped when the store is dropped.
    tasks: Vec<JoinHandle<()>>,
    /// Issuance and revocation latencies, when metrics are on.
    pub(super) timing: Option<crate::store::StoreTiming>,
    /// Group commit of issued tokens (`tokens.rs`).
    inserts: tokens::InsertQueue,
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl PostgresStore {
    /// Connects, migrates (under an advisory lock, so replicas starting together are safe) and
    /// starts listening for changes; returns once the listener listens.
    pub async fn open(url: &str, options: StoreOptions) -> Result<Self, StoreError> {
        const OP: &str = "open";
        let pg = &options.postgres;
        // Never echo the URL: it may carry a password.
        let mut config =
            tokio_postgres::Config::from_str(url).map_err(|e| StoreError::Corrupt {
                op: OP,
                detail: format!("store.url is not a valid PostgreSQL URL: {}", redact(&e)),
            })?;
        if config.get_application_name().is_none() {
            config.application_name("warden");
        }
        config.connect_timeout(pg.connect_timeout);
        let timeout_ms = pg.statement_timeout.as_millis();
        if timeout_ms > 0 {
            let options = config.get_options().map(str::to_owned).unwrap_or_default();
            config.options(format!("{options} -c statement_timeout={timeout_ms}").trim());
        }
        let tls = tls_for(&config, &pg.ca_file)?;
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match &tls {
            Tls::Plain => {
                Manager::from_config(config.clone(), tokio_postgres::NoTls, manager_config)
            }
            Tls::Rustls(make) => Manager::from_config(config.clone(), make.clone(), manager_config),
        };
        let pool = Pool::builder(manager)
            .max_size(pg.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(pg.acquire_timeout))
            .create_timeout(Some(pg.connect_timeout))
            .recycle_timeout(Some(pg.connect_timeout))
            .build()
            .map_err(|e| StoreError::Task {
                op: OP,
                detail: format!("cannot build the connection pool: {e}"),
            })?;
        {
            let mut client = pool.get().await.map_err(pool_error(OP))?;
            schema::migrate(&mut client).await?;
        }
        let marker = Arc::new(AtomicU64::new(0));
        let channel = {
            let client = pool.get().await.map_err(pool_error(OP))?;
            let row = client
                .query_one("SELECT current_schema()::text", &[])
                .await
                .map_err(db(OP))?;
            schema::channel(&row.try_get::<_, String>(0).map_err(db(OP))?)
        };
        let (listening, listener) = listen::start(
            config.clone(),
            tls.clone(),
            channel,
            Arc::clone(&marker),
            pg.connect_timeout,
        );
        let poll = listen::poll_head(pool.clone(), Arc::clone(&marker), pg.fallback_poll_interval);
        let store = Self {
            inserts: tokens::InsertQueue::start(
                pool.clone(),
                pg.issue_batch_max,
                pg.issue_batches_in_flight.min(pg.pool_size),
            ),
            pool,
            marker,
            tasks: vec![listener, poll],
            timing: options.timing.clone(),
        };
        match tokio::time::timeout(pg.connect_timeout.max(Duration::from_secs(1)), listening).await
        {
            Ok(Ok(())) => Ok(store),
            _ => Err(StoreError::Task {
                op: OP,
                detail:
                    "the change listener could not LISTEN within store.postgres.connect_timeout"
                        .to_owned(),
            }),
        }
    }

    /// A pooled connection.
    pub(super) async fn client(&self, op: &'static str) -> Result<Object, StoreError> {
        self.pool.get().await.map_err(pool_error(op))
    }

    /// Records that this handle wrote a change: its own marker moves at once, before the
    /// notification comes back.
    pub(super) fn changed(&self) {
        self.marker.fetch_add(1, Ordering::AcqRel);
    }
}

/// A tokio-postgres error's text, which never holds the password but may hold the whole URL
/// when it failed to parse: only its kind is kept.
fn redact(error: &tokio_postgres::Error) -> String {
    let text = error.to_string();
    if text.contains('@') || text.contains("password") {
        "malformed URL".to_owned()
    } else {
        text
    }
}

/// The TLS connector `sslmode` asks for: none for `disable`, rustls (verifying the server's
/// certificate against `ca_file` or the web PKI roots) for `prefer` and `require`.
fn tls_for(config: &tokio_postgres::Config, ca_file: &str) -> Result<Tls, StoreError> {
    const OP: &str = "open";
    if config.get_ssl_mode() == SslMode::Disable {
        return Ok(Tls::Plain);
    }
    let mut roots = rustls::RootCertStore::empty();
    if ca_file.trim().is_empty() {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    } else {
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject;
        let certs = CertificateDer::pem_file_iter(ca_file.trim())
            .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
            .map_err(|e| StoreError::Corrupt {
                op: OP,
                detail: format!("store.postgres.ca_file {}: {e}", ca_file.trim()),
            })?;
        let (added, _) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(StoreError::Corrupt {
                op: OP,
                detail: format!(
                    "store.postgres.ca_file {} holds no usable certificate",
                    ca_file.trim()
                ),
            });
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Task {
            op: OP,
            detail: format!("TLS: {e}"),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Tls::Rustls(tokio_postgres_rustls::MakeRustlsConnect::new(
        tls,
    )))
}

#[async_trait]
impl Health for PostgresStore {
    async fn ping(&self) -> Result<(), StoreError> {
        const OP: &str = "ping";
        let client = self.client(OP).await?;
        client.simple_query("SELECT 1").await.map_err(db(OP))?;
        Ok(())
    }
}
