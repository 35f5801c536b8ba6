//! `[store.postgres]`: the pool, timeouts and TLS roots of a PostgreSQL store
//! (`store.url = "postgres://…"`); ignored for SQLite.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, invalid};
use crate::store::postgres::PostgresOptions;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawPostgres {
    /// Connections in each replica's pool; default 16.
    pub pool_size: usize,
    /// How long opening a connection may take; default 5s.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// How long a store call waits for a free pooled connection; default 5s.
    #[serde(with = "humantime_serde")]
    pub acquire_timeout: Duration,
    /// `statement_timeout` of each connection; default 10s, 0 = none.
    #[serde(with = "humantime_serde")]
    pub statement_timeout: Duration,
    /// How often the change feed is polled besides LISTEN/NOTIFY; default 1s.
    #[serde(with = "humantime_serde")]
    pub fallback_poll_interval: Duration,
    /// PEM CA certificates for the server's certificate (`sslmode=require`); "" = web PKI roots.
    pub ca_file: String,
    /// The most issued tokens one transaction writes (group commit); default 64.
    pub issue_batch_max: usize,
    /// Group-commit transactions of issued tokens written at once; default 4.
    pub issue_batches_in_flight: usize,
}

impl Default for RawPostgres {
    fn default() -> Self {
        let d = PostgresOptions::default();
        Self {
            pool_size: d.pool_size,
            connect_timeout: d.connect_timeout,
            acquire_timeout: d.acquire_timeout,
            statement_timeout: d.statement_timeout,
            fallback_poll_interval: d.fallback_poll_interval,
            ca_file: d.ca_file,
            issue_batch_max: d.issue_batch_max,
            issue_batches_in_flight: d.issue_batches_in_flight,
        }
    }
}

impl RawPostgres {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.pool_size == 0 || self.pool_size > 1000 {
            return Err(invalid(
                "store.postgres.pool_size",
                "must be between 1 and 1000",
            ));
        }
        if self.issue_batch_max == 0 || self.issue_batch_max > 1000 {
            return Err(invalid(
                "store.postgres.issue_batch_max",
                "must be between 1 and 1000",
            ));
        }
        if self.issue_batches_in_flight == 0 || self.issue_batches_in_flight > 1000 {
            return Err(invalid(
                "store.postgres.issue_batches_in_flight",
                "must be between 1 and 1000 (more than pool_size is capped at pool_size)",
            ));
        }
        for (key, value) in [
            ("store.postgres.connect_timeout", self.connect_timeout),
            ("store.postgres.acquire_timeout", self.acquire_timeout),
            (
                "store.postgres.fallback_poll_interval",
                self.fallback_poll_interval,
            ),
        ] {
            if value.is_zero() {
                return Err(invalid(key, "must be more than 0"));
            }
        }
        Ok(())
    }

    /// The store's options.
    pub fn options(&self) -> PostgresOptions {
        PostgresOptions {
            pool_size: self.pool_size,
            connect_timeout: self.connect_timeout,
            acquire_timeout: self.acquire_timeout,
            statement_timeout: self.statement_timeout,
            fallback_poll_interval: self.fallback_poll_interval,
            ca_file: self.ca_file.clone(),
            issue_batch_max: self.issue_batch_max,
            // Each batch holds a pooled connection while it commits.
            issue_batches_in_flight: self.issue_batches_in_flight.min(self.pool_size),
        }
    }
}
