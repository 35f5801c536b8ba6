//! A client's signing keys, parsed once, and the bounded cache of them the gate reads before
//! the store, kept current by the change feed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use moka::sync::Cache;

use crate::httpsig::{self, VerificationKey};
use crate::policy::SignatureMode;
use crate::store::feed::{Follower, Subscriber};
use crate::store::{Change, ClientRecord, Store, StoreError};

/// One registered key, parsed once.
#[derive(Debug)]
pub(super) struct RegisteredKey {
    pub(super) id: String,
    pub(super) key: VerificationKey,
}

/// The HMAC secrets of config clients by (client id, key id): held in memory only, never in
/// the store, whose rows for them carry no bytes.
pub type HmacSecrets = HashMap<(String, String), VerificationKey>;

/// A client's signing keys, parsed, and its own signature mode (`clients[].signature`).
#[derive(Debug)]
pub struct ClientKeys {
    pub(super) mode: SignatureMode,
    pub(super) keys: Vec<RegisteredKey>,
}

impl ClientKeys {
    /// Parses the keys of a stored client, of any algorithm; an `hmac-sha256` key takes its
    /// secret from `secrets`. A key that is not usable is skipped (and logged): nothing it
    /// would verify can be trusted.
    pub fn from_record(record: &ClientRecord, mode: SignatureMode, secrets: &HmacSecrets) -> Self {
        let mut keys = Vec::with_capacity(record.keys.len());
        for k in &record.keys {
            let parsed = match httpsig::Algorithm::from_name(&k.alg) {
                Some(alg) if alg.is_symmetric() => secrets
                    .get(&(record.id.clone(), k.key_id.clone()))
                    .cloned()
                    .ok_or("its secret is not in this instance's config"),
                Some(alg) => httpsig::stored_verification_key(alg, &k.public_key)
                    .map_err(|_| "its stored public key does not parse"),
                None => Err("its algorithm is unknown"),
            };
            match parsed {
                Ok(key) => keys.push(RegisteredKey {
                    id: k.key_id.clone(),
                    key,
                }),
                Err(why) => {
                    tracing::warn!(client_id = %record.id, key_id = %k.key_id, alg = %k.alg, why, "unusable signing key skipped")
                }
            }
        }
        Self { mode, keys }
    }

    /// A client with no keys (unknown to the store, or keyless).
    pub fn none(mode: SignatureMode) -> Self {
        Self {
            mode,
            keys: Vec::new(),
        }
    }

    /// Whether the client registered any usable key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub(super) fn find(&self, key_id: &str) -> Option<&RegisteredKey> {
        self.keys.iter().find(|k| k.id == key_id)
    }
}

/// Parsed keys by client id, bounded, dropped for a client the store's change feed says changed
/// (the feed is caught up before every lookup, at most every `tokens.change_check_interval`)
/// and at most every `ttl`.
pub(super) struct KeyCache {
    inner: Cache<String, Arc<ClientKeys>>,
    /// Bumped on every invalidation, so a lookup that raced one does not insert stale keys.
    generation: AtomicU64,
    /// The process's feed follower, once [`SignatureGate::follow`] subscribed this cache.
    pub(super) feed: OnceLock<Arc<Follower>>,
    /// The HMAC secrets the stored `hmac-sha256` keys take.
    pub(super) secrets: HmacSecrets,
    /// `warden_cache_lookups_total{cache="signature_key"}`, once metrics attach it.
    pub(super) lookups: crate::cache::Lookups,
}

impl KeyCache {
    pub(super) fn new(capacity: u64, ttl: Duration, secrets: HmacSecrets) -> Self {
        Self {
            secrets,
            inner: Cache::builder()
                .max_capacity(capacity)
                .time_to_live(ttl.max(Duration::from_secs(1)))
                .build(),
            generation: AtomicU64::new(0),
            feed: OnceLock::new(),
            lookups: crate::cache::Lookups::default(),
        }
    }

    pub(super) async fn get(
        &self,
        store: &dyn Store,
        client_id: &str,
        mode: SignatureMode,
    ) -> Result<Arc<ClientKeys>, StoreError> {
        if let Some(feed) = self.feed.get() {
            feed.catch_up().await?;
        }
        if let Some(keys) = self.inner.get(client_id) {
            self.lookups.hit();
            return Ok(keys);
        }
        self.lookups.miss();
        let load = Box::pin(self.load(store, client_id, mode));
        load.await
    }

    async fn load(
        &self,
        store: &dyn Store,
        client_id: &str,
        mode: SignatureMode,
    ) -> Result<Arc<ClientKeys>, StoreError> {
        let seen = self.generation.load(Ordering::Acquire);
        let keys = Arc::new(match store.get_client(client_id).await? {
            Some(record) => ClientKeys::from_record(&record, mode, &self.secrets),
            None => ClientKeys::none(mode),
        });
        if self.generation.load(Ordering::Acquire) == seen {
            self.inner.insert(client_id.to_owned(), keys.clone());
        }
        Ok(keys)
    }
}

/// A changed client's keys are read again on its next request.
impl Subscriber for KeyCache {
    fn changed(&self, change: &Change) {
        if let Some(id) = &change.client_id {
            self.generation.fetch_add(1, Ordering::AcqRel);
            self.inner.invalidate(id);
        }
    }
}
