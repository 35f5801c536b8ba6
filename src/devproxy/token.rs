//! The dev proxy's access token: obtained from the API's token endpoint with the developer's
//! client id and secret, refreshed before it expires (at `refresh_at` of its lifetime) and once
//! on a 401 `invalid_token`; one refresh at a time however many requests need it.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Mutex;

use crate::clock::Clock;

/// A token and when to replace it.
#[derive(Clone)]
pub struct Token {
    pub value: String,
    /// Unix second from which the token is refreshed before use (`None`: it does not expire).
    pub refresh_after: Option<i64>,
    /// Counts the tokens obtained; a 401 names the one it refused, so concurrent 401s of the
    /// same token refresh it once.
    pub generation: u64,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("refresh_after", &self.refresh_after)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

/// What a token endpoint answered: the token and its lifetime in seconds (0: none given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    pub value: String,
    pub expires_in: u64,
}

/// The current token, behind an async lock held while a new one is fetched: callers that need
/// a token during a refresh wait for it instead of fetching their own (single flight).
pub struct TokenCache {
    current: Mutex<Option<Token>>,
    clock: Clock,
    /// Fraction of `expires_in` after which the token is refreshed.
    refresh_at: f64,
    fetched: AtomicU64,
}

impl TokenCache {
    pub fn new(clock: Clock, refresh_at: f64) -> Self {
        Self {
            current: Mutex::new(None),
            clock,
            refresh_at,
            fetched: AtomicU64::new(0),
        }
    }

    /// How many tokens were obtained so far.
    pub fn fetched(&self) -> u64 {
        self.fetched.load(Ordering::Relaxed)
    }

    /// A usable token: the current one unless it is due for refresh or `stale` names it (it
    /// was refused), else one from `fetch`. One caller fetches; the others wait and share it.
    pub async fn get<F, Fut, E>(&self, stale: Option<u64>, fetch: F) -> Result<Token, E>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Issued, E>>,
    {
        let mut current = self.current.lock().await;
        if let Some(token) = current.as_ref() {
            let due = token.refresh_after.is_some_and(|at| self.clock.now() >= at);
            if !due && stale != Some(token.generation) {
                return Ok(token.clone());
            }
        }
        let obtained_at = self.clock.now();
        let issued = fetch().await?;
        let generation = self.fetched.fetch_add(1, Ordering::Relaxed) + 1;
        let refresh_after = (issued.expires_in > 0).then(|| {
            let lifetime = (issued.expires_in as f64 * self.refresh_at).floor() as i64;
            obtained_at.saturating_add(lifetime.max(0))
        });
        let token = Token {
            value: issued.value,
            refresh_after,
            generation,
        };
        *current = Some(token.clone());
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    use super::*;

    fn issue(
        n: &AtomicUsize,
        expires_in: u64,
    ) -> impl std::future::Future<Output = Result<Issued, ()>> {
        let i = n.fetch_add(1, Ordering::SeqCst);
        async move {
            tokio::task::yield_now().await;
            Ok(Issued {
                value: format!("t{i}"),
                expires_in,
            })
        }
    }

    #[tokio::test]
    async fn a_token_is_reused_until_its_refresh_point_then_replaced() {
        let clock = Clock::default();
        clock.freeze();
        let cache = TokenCache::new(clock.clone(), 0.8);
        let n = AtomicUsize::new(0);
        let a = cache.get(None, || issue(&n, 100)).await.unwrap();
        assert_eq!(a.value, "t0");
        clock.advance(79);
        assert_eq!(
            cache.get(None, || issue(&n, 100)).await.unwrap().value,
            "t0"
        );
        clock.advance(1);
        assert_eq!(
            cache.get(None, || issue(&n, 100)).await.unwrap().value,
            "t1"
        );
        assert_eq!(cache.fetched(), 2);
    }

    #[tokio::test]
    async fn a_refused_token_is_replaced_once_however_many_requests_saw_it_refused() {
        let clock = Clock::default();
        let cache = Arc::new(TokenCache::new(clock, 0.8));
        let n = Arc::new(AtomicUsize::new(0));
        let first = cache.get(None, || issue(&n, 0)).await.unwrap();
        assert_eq!(
            first.refresh_after, None,
            "no expiry: never refreshed ahead"
        );
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (cache, n) = (cache.clone(), n.clone());
            let generation = first.generation;
            tasks.push(tokio::spawn(async move {
                cache
                    .get(Some(generation), || issue(&n, 0))
                    .await
                    .unwrap()
                    .value
            }));
        }
        for task in tasks {
            assert_eq!(task.await.unwrap(), "t1");
        }
        assert_eq!(n.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_failed_fetch_leaves_no_token_and_the_next_caller_tries_again() {
        let cache = TokenCache::new(Clock::default(), 0.8);
        let failed: Result<Token, &str> = cache.get(None, || async { Err("down") }).await;
        assert!(failed.is_err());
        let n = AtomicUsize::new(0);
        assert_eq!(cache.get(None, || issue(&n, 60)).await.unwrap().value, "t0");
    }
}
