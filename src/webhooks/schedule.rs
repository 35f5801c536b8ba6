//! When a failed delivery is tried again: the retry schedule (`webhook_delivery.retry_schedule`),
//! jittered so that deliveries failed together do not come back together, and a receiver's
//! `Retry-After`, honoured up to `webhook_delivery.max_retry_after`.

use std::time::Duration;

/// The default delays after each failed attempt: 5s, 5m, 30m, 2h, 5h, then 10h seven times.
/// Thirteen attempts over about 3.2 days (77 h 35 min before jitter), as Svix and Stripe spread
/// theirs: quick retries for a blip, then a receiver down for a weekend still gets its events.
pub const DEFAULT_DELAYS: [&str; 12] = [
    "5s", "5m", "30m", "2h", "5h", "10h", "10h", "10h", "10h", "10h", "10h", "10h",
];

/// How much a delay may move either way: ±20%.
const JITTER: f64 = 0.2;

/// The delays after each failed attempt; the last failure that has no delay left is final.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule {
    delays: Vec<Duration>,
}

impl Default for RetrySchedule {
    fn default() -> Self {
        Self {
            delays: DEFAULT_DELAYS
                .iter()
                .filter_map(|d| humantime::parse_duration(d).ok())
                .collect(),
        }
    }
}

impl RetrySchedule {
    /// A schedule of these delays (each at least a second: times are kept in whole seconds).
    pub fn new(delays: Vec<Duration>) -> Result<Self, String> {
        if delays.iter().any(|d| *d < Duration::from_secs(1)) {
            return Err("every delay must be at least 1s".into());
        }
        if delays.len() > 100 {
            return Err("at most 100 retries".into());
        }
        Ok(Self { delays })
    }

    /// Attempts in all: the first and one per delay.
    pub fn attempts(&self) -> u32 {
        self.delays.len() as u32 + 1
    }

    /// The delays as configured.
    pub fn delays(&self) -> &[Duration] {
        &self.delays
    }

    /// How long to wait after failed attempt number `attempt` (the first is 1), jittered by
    /// `unit` (uniform in [0, 1): ±20%); `None` when it was the last.
    pub fn after(&self, attempt: u32, unit: f64) -> Option<Duration> {
        let delay = *self
            .delays
            .get(usize::try_from(attempt).ok()?.checked_sub(1)?)?;
        Some(jittered(delay, unit))
    }
}

/// `delay` moved by up to ±20%: `unit` (in [0, 1)) picks where.
pub fn jittered(delay: Duration, unit: f64) -> Duration {
    let factor = 1.0 - JITTER + 2.0 * JITTER * unit.clamp(0.0, 1.0);
    delay.mul_f64(factor)
}

/// Whole seconds, rounded up, at least 1: store times are unix seconds.
pub fn ceil_secs(d: Duration) -> i64 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    i64::try_from(secs.max(1)).unwrap_or(i64::MAX)
}

/// A `Retry-After` value (RFC 9110 §10.2.3): delay-seconds, or an HTTP date, as a wait from
/// `now` (unix seconds). `None` for anything else; a date in the past is no wait.
pub fn retry_after(value: &[u8], now: i64) -> Option<Duration> {
    let text = std::str::from_utf8(value).ok()?.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Duration::from_secs(text.parse::<u64>().unwrap_or(u64::MAX)));
    }
    let at = httpdate::parse_http_date(text).ok()?;
    let at = at
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs()
        .try_into()
        .ok()?;
    Some(Duration::from_secs(
        u64::try_from(at - now.min(at)).unwrap_or(0),
    ))
}

/// When the next attempt is due after a failure at `now`: the schedule's delay, or the
/// receiver's `Retry-After` (bounded by `max_retry_after`) when that is later.
pub fn next_attempt_at(
    now: i64,
    scheduled: Duration,
    asked: Option<Duration>,
    max_retry_after: Duration,
) -> i64 {
    let wait = match asked {
        Some(asked) => scheduled.max(asked.min(max_retry_after)),
        None => scheduled,
    };
    now.saturating_add(ceil_secs(wait))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_schedule_spans_about_three_days_in_thirteen_attempts() {
        let s = RetrySchedule::default();
        assert_eq!(s.attempts(), 13);
        let total: Duration = s.delays().iter().sum();
        assert_eq!(total, Duration::from_secs(77 * 3600 + 35 * 60 + 5));
        assert_eq!(s.after(1, 0.5), Some(Duration::from_secs(5)));
        assert_eq!(s.after(2, 0.5), Some(Duration::from_secs(300)));
        assert_eq!(s.after(12, 0.5), Some(Duration::from_secs(36_000)));
        assert_eq!(s.after(13, 0.5), None, "the thirteenth failure is final");
        assert_eq!(s.after(0, 0.5), None);
    }

    #[test]
    fn jitter_stays_within_a_fifth_either_way() {
        let d = Duration::from_secs(100);
        assert_eq!(jittered(d, 0.0), Duration::from_secs(80));
        assert_eq!(jittered(d, 0.5), Duration::from_secs(100));
        assert!(jittered(d, 0.999_999) <= Duration::from_secs(120));
        assert_eq!(jittered(d, 7.0), Duration::from_secs(120), "clamped");
        assert_eq!(ceil_secs(Duration::from_millis(800)), 1);
        assert_eq!(ceil_secs(Duration::from_millis(1001)), 2);
        assert_eq!(ceil_secs(Duration::ZERO), 1);
    }

    #[test]
    fn schedules_need_whole_seconds() {
        assert!(RetrySchedule::new(vec![Duration::from_millis(500)]).is_err());
        let s = RetrySchedule::new(vec![Duration::from_secs(1); 2]).unwrap();
        assert_eq!(s.attempts(), 3);
        assert_eq!(RetrySchedule::new(vec![]).unwrap().attempts(), 1);
    }

    #[test]
    fn retry_after_reads_seconds_and_dates_and_is_bounded() {
        let now = 1_700_000_000;
        assert_eq!(retry_after(b"120", now), Some(Duration::from_secs(120)));
        assert_eq!(retry_after(b" 7 ", now), Some(Duration::from_secs(7)));
        let date =
            httpdate::fmt_http_date(std::time::UNIX_EPOCH + Duration::from_secs(now as u64 + 90));
        assert_eq!(
            retry_after(date.as_bytes(), now),
            Some(Duration::from_secs(90))
        );
        let past = httpdate::fmt_http_date(std::time::UNIX_EPOCH + Duration::from_secs(10));
        assert_eq!(retry_after(past.as_bytes(), now), Some(Duration::ZERO));
        assert_eq!(retry_after(b"soon", now), None);
        assert_eq!(retry_after(b"-5", now), None);
        assert_eq!(retry_after(b"\xff", now), None);
        let hour = Duration::from_secs(3600);
        let five = Duration::from_secs(5);
        assert_eq!(next_attempt_at(now, five, None, hour), now + 5);
        assert_eq!(
            next_attempt_at(now, five, Some(Duration::from_secs(60)), hour),
            now + 60
        );
        assert_eq!(
            next_attempt_at(now, five, Some(Duration::from_secs(1)), hour),
            now + 5
        );
        assert_eq!(
            next_attempt_at(now, five, Some(Duration::from_secs(86_400)), hour),
            now + 3600,
            "a receiver cannot hold its deliveries past the bound"
        );
    }
}
