//! Housekeeping: the store's periodic sweep, and how long the change feed is kept.

use super::Issuer;
use crate::store::StoreError;

impl Issuer {
    /// Housekeeping, run every `store.sweep_interval`: deletes tokens expired or revoked longer
    /// than `retention` ago, client secrets past their overlap, and old change-feed entries.
    pub async fn sweep(&self, retention: std::time::Duration) -> Result<(), StoreError> {
        let now = self.clock.now();
        let purged = self
            .store
            .purge_expired_tokens(now - retention.as_secs() as i64)
            .await?;
        let secrets = self.store.prune_expired_secrets(now).await?;
        let keep = feed_retention(self.cfg.cache_ttl);
        let keep = i64::try_from(keep.as_secs()).unwrap_or(i64::MAX);
        let changes = self.store.prune_changes(keep).await?;
        if purged + secrets + changes > 0 {
            tracing::debug!(purged, secrets, changes, "store swept");
        }
        Ok(())
    }
}

/// How long change-feed entries are kept. An instance that has not read the feed for longer
/// (idle: it reads it on requests) misses the changes pruned meanwhile, which is harmless only
/// if every cached decision such a change concerns has aged out by then. Those decisions were
/// cached before the change (give or take one store read, which the margin covers) and live at
/// most `tokens.cache_ttl` (the token cache, and the signature gate's keys), so the feed is
/// kept that long plus a margin, and at least an hour.
pub fn feed_retention(cache_ttl: std::time::Duration) -> std::time::Duration {
    const FLOOR: std::time::Duration = std::time::Duration::from_secs(3600);
    const MARGIN: std::time::Duration = std::time::Duration::from_secs(600);
    FLOOR.max(cache_ttl.saturating_add(MARGIN))
}
