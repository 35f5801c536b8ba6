//! `[store]` (and `[store.postgres]`, in `postgres.rs`): where records are kept.

use super::{ConfigError, RawStore, invalid};
use crate::store::{StoreOptions, StoreSettings};

pub(super) fn validate_store(s: &RawStore) -> Result<StoreSettings, ConfigError> {
    if s.url.trim().is_empty() {
        return Err(invalid(
            "store.url",
            "must name a database, e.g. sqlite://data/warden.db",
        ));
    }
    let postgres = crate::store::postgres::is_postgres_url(&s.url);
    if !s.url.starts_with("sqlite:") && s.url.contains("://") && !postgres {
        return Err(invalid(
            "store.url",
            "only sqlite:// and postgres:// stores are supported by this build",
        ));
    }
    if postgres {
        s.postgres.validate()?;
        if s.seal_key_file.trim().is_empty() {
            return Err(invalid(
                "store.seal_key_file",
                "must name a key file when store.url is postgres://: every replica must seal \
                 with the same key (e.g. a Kubernetes Secret made with `openssl rand -hex 32`)",
            ));
        }
    }
    if s.sweep_interval.is_zero() {
        return Err(invalid("store.sweep_interval", "must be more than 0"));
    }
    Ok(StoreSettings {
        url: s.url.clone(),
        options: StoreOptions {
            durability: s.durability,
            postgres: s.postgres.options(),
            ..StoreOptions::default()
        },
        sweep_interval: s.sweep_interval,
        token_retention: s.token_retention,
        seal_key_file: s.seal_key_file.clone(),
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::Durability;
    use crate::config::load::raw;

    fn refused(toml: &str) -> String {
        validate_store(&raw(toml).store).unwrap_err().to_string()
    }

    #[test]
    fn defaults() {
        let s = validate_store(&RawStore::default()).unwrap();
        assert_eq!(s.url, "sqlite://data/warden.db");
        assert_eq!(s.options.durability, Durability::Normal);
        assert_eq!(s.sweep_interval, Duration::from_secs(60));
        assert_eq!(s.token_retention, Duration::from_secs(7 * 24 * 3600));
        assert_eq!(s.seal_key_file, "");
        assert_eq!(
            s.options.postgres,
            crate::store::postgres::PostgresOptions::default()
        );
        // What the store opens with is the config's durability and pool, nothing else.
        let full = validate_store(&raw("[store]\ndurability = \"full\"\n").store).unwrap();
        assert_eq!(full.options.durability, Durability::Full);
        assert_eq!(full.options.timing, None);
    }

    #[test]
    fn each_bad_value_is_refused_by_its_key() {
        for (toml, key) in [
            ("url = \" \"", "store.url"),
            ("url = \"mysql://db/warden\"", "store.url"),
            ("sweep_interval = \"0s\"", "store.sweep_interval"),
            ("url = \"postgres://db/warden\"", "store.seal_key_file"),
            (
                "url = \"postgres://db/warden\"\nseal_key_file = \"/k\"\npostgres = { pool_size = 0 }",
                "store.postgres.pool_size",
            ),
            (
                "url = \"postgres://db/warden\"\nseal_key_file = \"/k\"\npostgres = { acquire_timeout = \"0s\" }",
                "store.postgres.acquire_timeout",
            ),
            (
                "url = \"postgres://db/warden\"\nseal_key_file = \"/k\"\npostgres = { issue_batch_max = 0 }",
                "store.postgres.issue_batch_max",
            ),
            (
                "url = \"postgres://db/warden\"\nseal_key_file = \"/k\"\npostgres = { issue_batches_in_flight = 0 }",
                "store.postgres.issue_batches_in_flight",
            ),
        ] {
            let e = refused(&format!("[store]\n{toml}\n"));
            assert!(e.starts_with(&format!("{key}: ")), "{toml}: {e}");
        }
    }

    #[test]
    fn postgres_settings_are_checked_only_for_a_postgres_url() {
        validate_store(&raw("[store]\npostgres = { pool_size = 0 }\n").store).unwrap();
        let s = validate_store(
            &raw("[store]\nurl = \"postgres://db/warden\"\nseal_key_file = \"/k\"\n").store,
        )
        .unwrap();
        assert_eq!(s.seal_key_file, "/k");
        validate_store(&raw("[store]\nurl = \"sqlite::memory:\"\n").store).unwrap();
    }
}
