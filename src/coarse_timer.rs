//! A coarse timer for the per-request deadlines: hyper's header-read timeout and the upstream
//! timeout.
//!
//! Every request used to arm two tokio timers (one `Sleep` for hyper's header-read timeout,
//! one `tokio::time::timeout` around the upstream exchange), and registering and cancelling a
//! tokio timer entry cost about as much as the rest of Warden's own work on a request (see
//! `docs/benchmarks.md`). These deadlines are seconds long and nobody needs them to the
//! millisecond, so this timer keeps them in a slab behind one mutex and a single task looks at
//! them every [`CoarseTimer::tick`]: arming or moving a deadline is a lock and a store, and a
//! deadline fires between its time and one tick later (plus one tick of clock lag).
//!
//! Deadlines that move at every poll (the idle time between two frames of a request body, an
//! HTTP/2 connection's idle time) use an [`Alarm`], which reads the coarse clock instead of
//! taking the lock on each poll.
//!
//! The ticker task holds only a weak reference: it ends when the last handle is dropped.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use slab::Slab;

/// How often the ticker looks at the deadlines.
pub const DEFAULT_TICK: Duration = Duration::from_millis(50);

/// A cheap-to-clone handle on the timer.
#[derive(Clone)]
pub struct CoarseTimer {
    shared: Arc<Shared>,
}

struct Shared {
    origin: Instant,
    /// Milliseconds since `origin`, as of the last tick.
    now_ms: AtomicU64,
    entries: Mutex<Slab<Entry>>,
    tick: Duration,
}

struct Entry {
    at_ms: u64,
    fired: bool,
    waker: Option<Waker>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Slab<Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `at` in milliseconds since `origin`, rounded up.
    fn ms_of(&self, at: Instant) -> u64 {
        let d = at.saturating_duration_since(self.origin);
        d.as_millis() as u64 + u64::from(d.subsec_nanos() % 1_000_000 != 0)
    }

    /// The deadline `d` from now, on the coarse clock. `now_ms` may be up to a tick old, so a
    /// tick is added: the deadline is never early.
    fn after(&self, d: Duration) -> u64 {
        self.ms_after(self.now_ms.load(Ordering::Relaxed), d)
    }

    /// `d` after the coarse reading `from_ms`, plus a tick (see [`Shared::after`]).
    fn ms_after(&self, from_ms: u64, d: Duration) -> u64 {
        let d = d.as_millis().min(u128::from(u64::MAX / 4)) as u64;
        let tick = self.tick.as_millis() as u64 + 1;
        from_ms.saturating_add(d).saturating_add(tick)
    }

    fn register(&self, at_ms: u64, waker: Option<Waker>) -> usize {
        self.lock().insert(Entry {
            at_ms,
            fired: false,
            waker,
        })
    }

    /// Fires every entry that is due; returns their wakers to be woken outside the lock.
    fn fire_due(&self, now_ms: u64) -> Vec<Waker> {
        let mut due = Vec::new();
        for (_, entry) in self.lock().iter_mut() {
            if !entry.fired && entry.at_ms <= now_ms {
                entry.fired = true;
                if let Some(w) = entry.waker.take() {
                    due.push(w);
                }
            }
        }
        due
    }

    /// Whether entry `key` has fired; if not, it will wake `cx` when it does.
    fn poll_entry(&self, key: usize, cx: &mut Context<'_>) -> Poll<()> {
        let mut entries = self.lock();
        let Some(entry) = entries.get_mut(key) else {
            return Poll::Ready(());
        };
        if entry.fired {
            return Poll::Ready(());
        }
        match &entry.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => entry.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl CoarseTimer {
    /// Starts the timer and its ticker task (on the current tokio runtime).
    pub fn start(tick: Duration) -> Self {
        let shared = Arc::new(Shared {
            origin: Instant::now(),
            now_ms: AtomicU64::new(0),
            entries: Mutex::new(Slab::new()),
            tick,
        });
        tokio::spawn(ticker(Arc::downgrade(&shared)));
        Self { shared }
    }

    /// How often deadlines are looked at.
    pub fn tick(&self) -> Duration {
        self.shared.tick
    }

    /// A sleep that ends at `at_ms` on the coarse clock.
    fn sleep_at(&self, at_ms: u64) -> CoarseSleep {
        CoarseSleep {
            shared: Arc::clone(&self.shared),
            key: self.shared.register(at_ms, None),
        }
    }

    /// Runs `fut` for at most `limit` (give or take a tick). No deadline is registered if `fut`
    /// completes on its first poll.
    pub fn timeout<F: Future>(&self, limit: Duration, fut: F) -> Timeout<F> {
        Timeout {
            fut,
            shared: Arc::clone(&self.shared),
            limit: Limit::After(limit),
            key: None,
        }
    }

    /// The coarse clock: milliseconds since the timer started, as of the last tick (up to a
    /// tick old). An atomic load.
    pub fn now_ms(&self) -> u64 {
        self.shared.now_ms.load(Ordering::Relaxed)
    }

    /// The coarse time `d` after `from_ms` (a reading of [`CoarseTimer::now_ms`]), padded by a
    /// tick so that a deadline computed from a reading that lagged is never early.
    pub fn ms_after(&self, from_ms: u64, d: Duration) -> u64 {
        self.shared.ms_after(from_ms, d)
    }

    /// How many deadlines are registered (armed or fired, not yet dropped).
    #[cfg(test)]
    pub(crate) fn registered(&self) -> usize {
        self.shared.lock().len()
    }

    /// An [`Alarm`]: a deadline its owner may move at every poll without taking the lock.
    pub fn alarm(&self) -> Alarm {
        Alarm {
            shared: Arc::clone(&self.shared),
            entry: None,
            waker: None,
        }
    }

    /// Runs `fut` until `deadline` at most (give or take a tick), as [`CoarseTimer::timeout`].
    pub fn timeout_at<F: Future>(&self, deadline: Instant, fut: F) -> Timeout<F> {
        Timeout {
            fut,
            shared: Arc::clone(&self.shared),
            limit: Limit::At(deadline),
            key: None,
        }
    }
}

async fn ticker(shared: Weak<Shared>) {
    let tick = match shared.upgrade() {
        Some(s) => s.tick,
        None => return,
    };
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let now_ms = shared.ms_of(Instant::now());
        shared.now_ms.store(now_ms, Ordering::Relaxed);
        for waker in shared.fire_due(now_ms) {
            waker.wake();
        }
    }
}

/// A deadline of the coarse timer; usable as hyper's `Sleep`.
pub struct CoarseSleep {
    shared: Arc<Shared>,
    key: usize,
}

impl CoarseSleep {
    fn reset(&mut self, at_ms: u64) {
        if let Some(entry) = self.shared.lock().get_mut(self.key) {
            entry.at_ms = at_ms;
            entry.fired = false;
        }
    }
}

impl Future for CoarseSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.shared.poll_entry(self.key, cx)
    }
}

impl Drop for CoarseSleep {
    fn drop(&mut self) {
        self.shared.lock().try_remove(self.key);
    }
}

impl hyper::rt::Sleep for CoarseSleep {}

impl hyper::rt::Timer for CoarseTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(self.sleep_at(self.shared.after(duration)))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(self.sleep_at(self.shared.ms_of(deadline)))
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn hyper::rt::Sleep>>, new_deadline: Instant) {
        let at_ms = self.shared.ms_of(new_deadline);
        match sleep.as_mut().downcast_mut_pin::<CoarseSleep>() {
            Some(ours) => ours.get_mut().reset(at_ms),
            None => *sleep = Box::pin(self.sleep_at(at_ms)),
        }
    }
}

/// A deadline for a poll-based owner (a body, a connection) that moves it often: each poll
/// says when it is due ([`Alarm::poll_at`]). Whether it is due is read from the coarse clock, an
/// atomic load; the timer's lock is taken only to register the entry that wakes the owner, and
/// again only when that entry has fired or would wake the owner too late. An owner that moves
/// its deadline later at every poll (a body between frames) is woken early once in a while,
/// finds it is not due, and re-arms: about one lock a deadline's length, not one a poll.
pub struct Alarm {
    shared: Arc<Shared>,
    /// The slab entry and the coarse time it is set for.
    entry: Option<(usize, u64)>,
    /// The waker the entry holds, to see whether the owner moved to another task.
    waker: Option<Waker>,
}

impl Alarm {
    /// [`CoarseTimer::now_ms`].
    pub fn now_ms(&self) -> u64 {
        self.shared.now_ms.load(Ordering::Relaxed)
    }

    /// [`CoarseTimer::ms_after`].
    pub fn ms_after(&self, from_ms: u64, d: Duration) -> u64 {
        self.shared.ms_after(from_ms, d)
    }

    /// `Ready` once the coarse clock has reached `at_ms`; otherwise `cx` is woken at `at_ms` (up
    /// to a tick later), or before it, in which case the owner polls again.
    pub fn poll_at(&mut self, at_ms: u64, cx: &mut Context<'_>) -> Poll<()> {
        let now = self.shared.now_ms.load(Ordering::Relaxed);
        if now >= at_ms {
            return Poll::Ready(());
        }
        let same_task = self.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker()));
        if let Some((_, set)) = self.entry {
            // Set in the future (so not fired yet), not later than needed, for this task.
            if set > now && set <= at_ms && same_task {
                return Poll::Pending;
            }
        }
        let waker = cx.waker().clone();
        let mut entries = self.shared.lock();
        let key = match self
            .entry
            .and_then(|(key, _)| entries.get_mut(key).map(|e| (key, e)))
        {
            Some((key, entry)) => {
                entry.at_ms = at_ms;
                entry.fired = false;
                entry.waker = Some(waker.clone());
                key
            }
            None => entries.insert(Entry {
                at_ms,
                fired: false,
                waker: Some(waker.clone()),
            }),
        };
        drop(entries);
        self.entry = Some((key, at_ms));
        self.waker = Some(waker);
        Poll::Pending
    }
}

impl Drop for Alarm {
    fn drop(&mut self) {
        if let Some((key, _)) = self.entry {
            self.shared.lock().try_remove(key);
        }
    }
}

/// The deadline passed.
#[derive(Debug, PartialEq, Eq)]
pub struct Elapsed;

/// When a [`Timeout`] ends: so long after its first pending poll, or at an instant.
enum Limit {
    After(Duration),
    At(Instant),
}

pin_project_lite::pin_project! {
    /// [`CoarseTimer::timeout`]'s future.
    pub struct Timeout<F> {
        #[pin]
        fut: F,
        shared: Arc<Shared>,
        limit: Limit,
        key: Option<usize>,
    }

    impl<F> PinnedDrop for Timeout<F> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(key) = this.key {
                this.shared.lock().try_remove(key);
            }
        }
    }
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(out) = this.fut.poll(cx) {
            return Poll::Ready(Ok(out));
        }
        match *this.key {
            None => {
                let at = match *this.limit {
                    Limit::After(limit) => this.shared.after(limit),
                    Limit::At(deadline) => this.shared.ms_of(deadline),
                };
                *this.key = Some(this.shared.register(at, Some(cx.waker().clone())));
                Poll::Pending
            }
            Some(key) => match this.shared.poll_entry(key, cx) {
                Poll::Ready(()) => Poll::Ready(Err(Elapsed)),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::rt::Timer;

    const TICK: Duration = Duration::from_millis(10);

    #[tokio::test]
    async fn a_future_that_finishes_in_time_is_not_cut() {
        let timer = CoarseTimer::start(TICK);
        let out = timer
            .timeout(Duration::from_millis(500), async {
                tokio::time::sleep(Duration::from_millis(20)).await;
                7
            })
            .await;
        assert_eq!(out, Ok(7));
        assert!(timer.shared.lock().is_empty(), "the deadline was removed");
    }

    #[tokio::test]
    async fn a_future_that_never_finishes_is_cut_about_on_time() {
        let timer = CoarseTimer::start(TICK);
        let start = Instant::now();
        let out = timer
            .timeout(Duration::from_millis(100), std::future::pending::<()>())
            .await;
        let took = start.elapsed();
        assert_eq!(out, Err(Elapsed));
        assert!(took >= Duration::from_millis(90), "fired early: {took:?}");
        assert!(took < Duration::from_secs(2), "fired late: {took:?}");
        assert!(timer.shared.lock().is_empty());
    }

    #[tokio::test]
    async fn a_deadline_cuts_at_its_instant_never_before() {
        let timer = CoarseTimer::start(TICK);
        let start = Instant::now();
        let deadline = start + Duration::from_millis(100);
        let out = timer
            .timeout_at(deadline, std::future::pending::<()>())
            .await;
        assert_eq!(out, Err(Elapsed));
        assert!(Instant::now() >= deadline, "fired early");
        assert!(start.elapsed() < Duration::from_secs(2), "fired late");
        assert!(timer.shared.lock().is_empty());
        // A deadline already past cuts at once.
        let out = timer.timeout_at(start, std::future::pending::<()>()).await;
        assert_eq!(out, Err(Elapsed));
    }

    #[tokio::test]
    async fn a_ready_future_registers_nothing() {
        let timer = CoarseTimer::start(TICK);
        let out = timer.timeout(Duration::from_secs(1), async { 1 }).await;
        assert_eq!(out, Ok(1));
        assert!(timer.shared.lock().is_empty());
    }

    #[tokio::test]
    async fn hyper_sleeps_fire_and_can_be_moved() {
        let timer = CoarseTimer::start(TICK);
        let start = Instant::now();
        let mut sleep = timer.sleep_until(start + Duration::from_millis(50));
        // Moved further out before it fires, as hyper does for each new request head.
        timer.reset(&mut sleep, start + Duration::from_millis(150));
        sleep.as_mut().await;
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(140), "fired early: {took:?}");
        assert!(took < Duration::from_secs(2), "fired late: {took:?}");
        // Re-armed after firing, it fires again.
        let again = Instant::now();
        timer.reset(&mut sleep, again + Duration::from_millis(30));
        sleep.as_mut().await;
        assert!(again.elapsed() >= Duration::from_millis(20));
        drop(sleep);
        assert!(timer.shared.lock().is_empty());
    }

    #[tokio::test]
    async fn an_alarm_fires_at_its_time_and_moves_without_the_lock() {
        let timer = CoarseTimer::start(TICK);
        let mut alarm = timer.alarm();
        let start = Instant::now();
        let at = timer.ms_after(timer.now_ms(), Duration::from_millis(100));
        std::future::poll_fn(|cx| alarm.poll_at(at, cx)).await;
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(90), "fired early: {took:?}");
        assert!(took < Duration::from_secs(2), "fired late: {took:?}");
        assert!(timer.now_ms() >= at);
        // Moved later: the fired entry is re-armed, and fires again.
        let again = Instant::now();
        let at = timer.ms_after(timer.now_ms(), Duration::from_millis(60));
        std::future::poll_fn(|cx| alarm.poll_at(at, cx)).await;
        assert!(again.elapsed() >= Duration::from_millis(50));
        assert_eq!(timer.shared.lock().len(), 1, "one entry, re-used");
        drop(alarm);
        assert!(timer.shared.lock().is_empty());
    }

    #[tokio::test]
    async fn an_alarm_moved_later_while_waiting_wakes_its_owner_in_time() {
        let timer = CoarseTimer::start(TICK);
        let mut alarm = timer.alarm();
        let start = Instant::now();
        let first = timer.ms_after(timer.now_ms(), Duration::from_millis(50));
        let later = timer.ms_after(timer.now_ms(), Duration::from_millis(200));
        let mut polls = 0;
        std::future::poll_fn(|cx| {
            polls += 1;
            // The first poll arms the earlier time; every later poll asks for the later one.
            let at = if polls == 1 { first } else { later };
            alarm.poll_at(at, cx)
        })
        .await;
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(190), "fired early: {took:?}");
        assert!(took < Duration::from_secs(2), "fired late: {took:?}");
        assert!(
            polls >= 3,
            "woken at the first time, re-armed, woken again: {polls}"
        );
    }

    #[tokio::test]
    async fn the_ticker_stops_with_the_last_handle() {
        let timer = CoarseTimer::start(TICK);
        let weak = Arc::downgrade(&timer.shared);
        drop(timer);
        tokio::time::sleep(TICK * 3).await;
        assert!(weak.upgrade().is_none());
    }
}
