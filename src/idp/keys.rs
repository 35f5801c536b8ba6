//! An issuer's signing keys fetched from its `jwks_uri`: used for `jwks_cache_ttl`, fetched
//! again early when a token names a `kid` the set lacks, but never more often than once per
//! `jwks_refetch_min_interval`, by one fetch that every waiting request shares; the last good
//! set is served while fetches fail.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use http::{Request, Uri, header};
use http_body_util::Full;

use super::fetch::Fetcher;
use super::jwk::{self, KeySet};
use crate::clock::Clock;

/// The fetched key set of one issuer.
pub struct Jwks {
    issuer: String,
    uri: Uri,
    fetcher: Arc<Fetcher>,
    clock: Clock,
    /// `jwks_cache_ttl`, seconds.
    ttl: i64,
    /// `jwks_refetch_min_interval`, seconds.
    min_interval: i64,
    set: RwLock<Option<Arc<KeySet>>>,
    /// When the set was last fetched successfully (clock seconds).
    fetched_at: AtomicI64,
    /// When the last fetch began, successful or not (`i64::MIN`: never).
    attempted_at: AtomicI64,
    /// The fetch under way, which every request needing it awaits.
    inflight: Mutex<Option<Shared<BoxFuture<'static, ()>>>>,
    fetches: AtomicU64,
}

impl Jwks {
    pub fn new(
        issuer: &str,
        uri: Uri,
        fetcher: Arc<Fetcher>,
        clock: Clock,
        ttl: std::time::Duration,
        min_interval: std::time::Duration,
    ) -> Self {
        let secs = |d: std::time::Duration| d.as_secs().min(i64::MAX as u64) as i64;
        Self {
            issuer: issuer.to_string(),
            uri,
            fetcher,
            clock,
            ttl: secs(ttl),
            min_interval: secs(min_interval),
            set: RwLock::new(None),
            fetched_at: AtomicI64::new(i64::MIN),
            attempted_at: AtomicI64::new(i64::MIN),
            inflight: Mutex::new(None),
            fetches: AtomicU64::new(0),
        }
    }

    /// Fetches begun so far.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    fn loaded(&self) -> Option<Arc<KeySet>> {
        self.set.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The key set to verify with: the cached one while it is younger than the TTL, else
    /// (when the refetch interval allows) a fresh one, else the last good one. `None`: no set
    /// was ever fetched, and none can be now.
    pub async fn current(self: &Arc<Self>) -> Option<Arc<KeySet>> {
        let fetched_at = self.fetched_at.load(Ordering::Acquire);
        if let Some(set) = self.loaded() {
            if self.clock.now().saturating_sub(fetched_at) < self.ttl {
                return Some(set);
            }
        }
        self.refresh().await;
        self.loaded()
    }

    /// Fetches the set again, unless a fetch began less than the refetch interval ago; joins
    /// the fetch under way if there is one. Returns when that fetch has ended (or at once).
    pub async fn refresh(self: &Arc<Self>) {
        let fetch = {
            let mut inflight = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
            match inflight.as_ref() {
                Some(f) => f.clone(),
                None => {
                    let now = self.clock.now();
                    let last = self.attempted_at.load(Ordering::Acquire);
                    if last != i64::MIN && now.saturating_sub(last) < self.min_interval {
                        return;
                    }
                    self.attempted_at.store(now, Ordering::Release);
                    self.fetches.fetch_add(1, Ordering::Relaxed);
                    // A task of its own: a request that gives up does not cut the fetch short
                    // for the others waiting on it.
                    let this = self.clone();
                    let task = tokio::spawn(async move {
                        this.fetch(now).await;
                        *this.inflight.lock().unwrap_or_else(|e| e.into_inner()) = None;
                    });
                    let f = async move {
                        let _ = task.await;
                    }
                    .boxed()
                    .shared();
                    *inflight = Some(f.clone());
                    f
                }
            }
        };
        fetch.await;
    }

    async fn fetch(&self, now: i64) {
        let req = Request::get(self.uri.clone())
            .header(header::ACCEPT, "application/jwk-set+json, application/json")
            .body(Full::new(Bytes::new()));
        let result = match req {
            Ok(req) => self.fetcher.send(req).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let parsed = result.and_then(|body| jwk::parse_set(&body).map_err(|e| e.to_string()));
        match parsed {
            Ok((set, skipped)) => {
                for why in &skipped {
                    tracing::debug!(issuer = %self.issuer, "jwks key skipped: {why}");
                }
                tracing::info!(issuer = %self.issuer, keys = set.len(), skipped = skipped.len(), "jwks fetched");
                *self.set.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(set));
                self.fetched_at.store(now, Ordering::Release);
            }
            Err(error) => match self.loaded() {
                Some(_) => {
                    let age = now.saturating_sub(self.fetched_at.load(Ordering::Acquire));
                    tracing::warn!(issuer = %self.issuer, uri = %self.uri, %error, age_secs = age, "jwks fetch failed; serving the last keys fetched");
                }
                None => {
                    tracing::error!(issuer = %self.issuer, uri = %self.uri, %error, "jwks fetch failed and no keys were ever fetched; this issuer's tokens are refused (503) until a fetch succeeds");
                }
            },
        }
    }
}
