//! The clock every expiry decision reads: unix seconds, with an adjustable offset so tests can
//! move time forward without sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock unix seconds plus an offset (zero in production).
#[derive(Debug, Clone, Default)]
pub struct Clock {
    offset: Arc<AtomicI64>,
    /// The wall-clock second this clock stands at, once [`Clock::freeze`]d (0: it follows the
    /// wall clock).
    frozen: Arc<AtomicI64>,
}

impl Clock {
    /// Unix seconds now.
    pub fn now(&self) -> i64 {
        let frozen = self.frozen.load(Ordering::Relaxed);
        let wall = if frozen != 0 {
            frozen
        } else {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0)
        };
        wall + self.offset.load(Ordering::Relaxed)
    }

    /// Moves this clock (and every clone of it) forward by `secs`.
    pub fn advance(&self, secs: i64) {
        self.offset.fetch_add(secs, Ordering::Relaxed);
    }

    /// Stops this clock (and every clone of it) at the current second: from then on it moves
    /// only by [`Clock::advance`]. For tests whose margins are a second, which a real second
    /// ticking between two steps would break.
    pub fn freeze(&self) {
        let now = self.now() - self.offset.load(Ordering::Relaxed);
        self.frozen.store(now, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frozen_clock_moves_only_when_advanced() {
        let clock = Clock::default();
        clock.advance(10);
        clock.freeze();
        let at = clock.now();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        assert_eq!(clock.clone().now(), at);
        clock.advance(5);
        assert_eq!(clock.now(), at + 5);
    }
}
