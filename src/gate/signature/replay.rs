//! Replay protection: each verified signature's nonce is remembered (in memory, and claimed in
//! the store when nonces are shared) through the last second the signature passes, signatures
//! from before the restart fence are refused, and the store's lapsed claims are swept.

use std::sync::atomic::Ordering;

use super::{Failure, SignatureGate};
use crate::gate::nonce::{self, Seen};
use crate::httpsig;
use crate::problem::{Problem, SignatureRefusal};
use crate::store::StoreError;

/// How many batches of `signatures.nonce_sweep_batch` lapsed claims one sweep deletes at most,
/// so one sweep never holds the store for long (the next sweep takes the rest).
const NONCE_SWEEP_ROUNDS: usize = 100;

impl SignatureGate {
    /// Whether nonces are claimed in the store (so every process on it refuses a nonce used
    /// at any of them).
    pub fn claims_nonces_in_store(&self) -> bool {
        self.claims_in_store && self.store.is_some()
    }

    /// Refuses, from now on, signatures with a nonce created before `started` (unix seconds):
    /// their nonce may have been used before this process began remembering nonces. Called once
    /// at start (after [`Self::with_store`]), so a request captured before a restart cannot be
    /// replayed after it. Not needed, so not set, when nonces are claimed in a store that keeps
    /// every committed claim across a restart: it still holds the nonces used before.
    pub fn fence_nonces(&self, started: i64) {
        if self.claims_nonces_in_store() && self.store_durable {
            return;
        }
        self.nonces_since.store(started, Ordering::Relaxed);
    }

    /// Deletes the store's lapsed nonce claims at `now` in bounded batches; returns how many.
    pub async fn sweep_nonces(&self, now: i64) -> Result<u64, StoreError> {
        let Some(store) = &self.store else {
            return Ok(0);
        };
        let mut total = 0;
        let batch = self.cfg.nonce_sweep_batch;
        for _ in 0..NONCE_SWEEP_ROUNDS {
            let n = store.sweep_nonces(now, batch).await?;
            total += n;
            if n < u64::from(batch) {
                break;
            }
            tokio::task::yield_now().await;
        }
        Ok(total)
    }

    /// The last second (unix, inclusive) in which a signature with `params` passes the time
    /// checks at `now` or later: `created + max_age`, and `expires + clock_skew` when sooner
    /// (whole seconds, as [`httpsig::check_times`] compares them).
    pub(super) fn last_second(&self, params: &httpsig::SignatureParams, now: i64) -> i64 {
        let max_age = i64::try_from(self.cfg.max_age.as_secs()).unwrap_or(i64::MAX);
        let skew = i64::try_from(self.cfg.clock_skew.as_secs()).unwrap_or(i64::MAX);
        let by_age = match params.created() {
            Some(created) => created.saturating_add(max_age),
            None => now.saturating_add(skew).saturating_add(max_age),
        };
        match params.expires() {
            Some(expires) => by_age.min(expires.saturating_add(skew)),
            None => by_age,
        }
    }

    /// Records the nonce of a verified signature, live through second `last`; refuses a nonce
    /// already used, and one that cannot be remembered (the cache, or the client's share of
    /// it, is full of live nonces: forgetting one would make its request replayable).
    ///
    /// With nonces in the store, a nonce fresh to this process's memory is then claimed in the
    /// store, which refuses one another process used; one this process saw is refused from
    /// memory without a store trip. A store that does not answer refuses the request (503
    /// `store_unavailable`): a nonce that could not be claimed may be in use elsewhere.
    pub(super) async fn remember(
        &self,
        client_id: &str,
        key_id: &str,
        nonce: &str,
        now: i64,
        last: i64,
    ) -> Result<(), Failure> {
        let Some(cache) = &self.nonces else {
            return Ok(());
        };
        let last = last.max(now);
        let entry = nonce::entry(client_id, key_id, nonce);
        let replayed = || {
            Failure::Refused(
                SignatureRefusal::Replayed,
                "this signature's nonce was already used; sign the request again with a new nonce"
                    .into(),
            )
        };
        match cache.check_entry(entry, client_id, now, last) {
            Seen::Fresh => {
                let Some(store) = self.store.as_ref().filter(|_| self.claims_in_store) else {
                    return Ok(());
                };
                match store.claim_nonce(&entry, now, last).await {
                    Ok(true) => Ok(()),
                    Ok(false) => Err(replayed()),
                    Err(e) => {
                        // Not used here: a retry once the store answers is not a replay.
                        cache.forget(&entry, client_id, now, last);
                        tracing::error!(error = %e, "store failed while claiming a signature nonce");
                        Err(Failure::Unavailable(Problem::StoreUnavailable))
                    }
                }
            }
            Seen::Replayed => Err(replayed()),
            Seen::ClientFull { retry_after } => {
                // At most one line a second, however many are refused.
                if self.nonce_warned.fetch_max(now, Ordering::Relaxed) < now {
                    tracing::warn!(
                        client_id,
                        limit = self.cfg.nonce_cache_per_client,
                        "signature nonces refused: a client holds its share of the nonce cache"
                    );
                }
                Err(Failure::Unavailable(Problem::NonceQuotaExceeded {
                    limit: self.cfg.nonce_cache_per_client,
                    retry_after,
                }))
            }
            Seen::Full { retry_after } => {
                if self.nonce_warned.fetch_max(now, Ordering::Relaxed) < now {
                    tracing::warn!(
                        capacity = self.cfg.nonce_cache_capacity,
                        "signature nonces refused: the nonce cache is full of live nonces"
                    );
                }
                Err(Failure::Unavailable(Problem::NonceCacheFull {
                    retry_after,
                }))
            }
        }
    }
}
