//! The one follower of the store's change feed in a process: it reads the change marker at most
//! once per `tokens.change_check_interval` and, when the marker moved, reads the new changes once
//! and hands each to every subscriber (the token cache, the signature gate's keys), so each
//! drops what changed. What a change means to a cache is the subscriber's business.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use super::{Change, Store, StoreError};

/// How many changes one catch-up reads at most (it loops until done).
const FEED_BATCH: u32 = 1000;

/// A cache that drops what the change feed says changed.
pub trait Subscriber: Send + Sync {
    /// One change, in feed order. Called with the follower's lock held: no I/O, nothing slow.
    fn changed(&self, change: &Change);
}

/// Follows the change feed of one store for every subscriber.
pub struct Follower {
    store: Arc<dyn Store>,
    /// Nanoseconds between two reads of the marker at most; 0: every catch-up reads it.
    interval: u64,
    epoch: Instant,
    /// When the marker was last read, in nanoseconds since `epoch`.
    checked: AtomicU64,
    /// The store's change marker when the feed was last read.
    marker: AtomicU64,
    /// The last change applied; the lock makes one caller at a time catch up.
    seq: tokio::sync::Mutex<i64>,
    subscribers: RwLock<Vec<Arc<dyn Subscriber>>>,
}

impl Follower {
    /// A follower of `store`'s feed that reads the marker at most once per `interval`.
    pub fn new(store: Arc<dyn Store>, interval: Duration) -> Self {
        Self {
            store,
            interval: u64::try_from(interval.as_nanos()).unwrap_or(u64::MAX),
            epoch: Instant::now(),
            checked: AtomicU64::new(0),
            marker: AtomicU64::new(u64::MAX),
            seq: tokio::sync::Mutex::new(0),
            subscribers: RwLock::new(Vec::new()),
        }
    }

    /// Hands every change applied from now on to `subscriber` too.
    pub fn subscribe(&self, subscriber: Arc<dyn Subscriber>) {
        self.subscribers
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push(subscriber);
    }

    /// Starts following the feed from now: earlier changes concern nothing cached yet.
    pub async fn start(&self) -> Result<(), StoreError> {
        let mut seq = self.seq.lock().await;
        let marker = self.store.change_marker()?;
        *seq = self.store.latest_change().await?;
        self.marker.store(marker, Ordering::Release);
        Ok(())
    }

    /// Hands every subscriber the changes made by any writer (this process, an admin command,
    /// another replica on the same store) since the last look. Cheap when nothing changed: one
    /// marker read, at most once per interval.
    pub async fn catch_up(&self) -> Result<(), StoreError> {
        // Reading the marker costs most of a cache hit, so under load it is read at most once
        // per interval: a change by another process is seen within it.
        if self.interval > 0 {
            let now = self.epoch.elapsed().as_nanos() as u64;
            let last = self.checked.load(Ordering::Relaxed);
            if now.saturating_sub(last) < self.interval
                || self
                    .checked
                    .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
                    .is_err()
            {
                return Ok(());
            }
        }
        if self.store.change_marker()? == self.marker.load(Ordering::Acquire) {
            return Ok(());
        }
        // Rare: boxed so the common path's future stays small.
        let apply = Box::pin(self.apply_changes());
        apply.await
    }

    async fn apply_changes(&self) -> Result<(), StoreError> {
        let mut seq = self.seq.lock().await;
        // Read the marker before the changes: a commit after this read moves the marker again.
        let marker = self.store.change_marker()?;
        if marker == self.marker.load(Ordering::Acquire) {
            return Ok(());
        }
        loop {
            let changes = self.store.changes_since(*seq, FEED_BATCH).await?;
            let full = changes.len() as u32 == FEED_BATCH;
            {
                let subscribers = self
                    .subscribers
                    .read()
                    .unwrap_or_else(PoisonError::into_inner);
                for change in &changes {
                    for subscriber in subscribers.iter() {
                        subscriber.changed(change);
                    }
                    *seq = change.seq;
                }
            }
            if !full {
                break;
            }
        }
        self.marker.store(marker, Ordering::Release);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::store::tests::{T0, client, token};
    use crate::store::{StoreOptions, TokenKind};

    /// Records what it is handed.
    #[derive(Default)]
    struct Seen(Mutex<Vec<(Option<crate::store::Hash>, Option<String>)>>);

    impl Subscriber for Seen {
        fn changed(&self, change: &Change) {
            let mut seen = self.0.lock().unwrap();
            seen.push((change.token_hash, change.client_id.clone()));
        }
    }

    #[tokio::test]
    async fn every_subscriber_is_handed_each_change_once_and_none_made_before_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("warden.db");
        let store = crate::store::open(path.to_str().unwrap(), StoreOptions::default())
            .await
            .unwrap();
        let t1 = token("t1", TokenKind::Access);
        store.insert_token(t1.clone(), None).await.unwrap();
        store.upsert_client(client("c1")).await.unwrap();
        store.revoke_token("t1", T0, None).await.unwrap();
        let feed = Follower::new(store.clone(), Duration::ZERO);
        let (tokens, keys) = (Arc::new(Seen::default()), Arc::new(Seen::default()));
        feed.subscribe(tokens.clone());
        feed.subscribe(keys.clone());
        feed.start().await.unwrap();
        feed.catch_up().await.unwrap();
        assert!(tokens.0.lock().unwrap().is_empty(), "changes before start");

        store
            .set_token_enabled("t1", false, None, T0, None)
            .await
            .unwrap();
        store.set_client_enabled("c1", false, T0).await.unwrap();
        feed.catch_up().await.unwrap();
        feed.catch_up().await.unwrap();
        let want = vec![(Some(t1.hash), None), (None, Some("c1".to_owned()))];
        assert_eq!(*tokens.0.lock().unwrap(), want);
        assert_eq!(*keys.0.lock().unwrap(), want, "the same changes, read once");
    }
}
