//! The time source of the GCRA limiters: tokio's clock, read as nanoseconds since a fixed
//! origin, so budgets obey `tokio::time::pause()` and `advance` in tests exactly as they obey
//! real time in production.

use std::time::Duration;

use governor::clock::Clock;
use governor::nanos::Nanos;
use tokio::time::Instant;

/// The longest span this module adds to an instant: longer than any wait or pause worth
/// honouring, short enough that adding it never overflows.
const HORIZON: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// `now + span`, with `span` capped at a year so the sum cannot overflow.
pub(crate) fn after(now: Instant, span: Duration) -> Instant {
    now.checked_add(span.min(HORIZON)).unwrap_or(now)
}

/// A [`governor::clock::Clock`] over [`tokio::time::Instant`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct TokioClock {
    origin: Instant,
}

impl TokioClock {
    /// A clock whose zero is now.
    pub(crate) fn new() -> Self {
        Self {
            origin: Instant::now(),
        }
    }

    /// The clock reading at `instant` (zero before the origin; saturating far in the future).
    pub(crate) fn reading_at(&self, instant: Instant) -> Nanos {
        let since = instant.saturating_duration_since(self.origin).as_nanos();
        Nanos::new(u64::try_from(since).unwrap_or(u64::MAX))
    }
}

impl Clock for TokioClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        self.reading_at(Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use governor::{Quota, RateLimiter};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn after_caps_huge_spans() {
        let now = Instant::now();
        assert_eq!(
            after(now, Duration::from_secs(5)) - now,
            Duration::from_secs(5)
        );
        assert_eq!(after(now, Duration::MAX) - now, HORIZON);
    }

    #[tokio::test(start_paused = true)]
    async fn reading_follows_paused_tokio_time() {
        let clock = TokioClock::new();
        assert_eq!(clock.now(), Nanos::new(0));
        tokio::time::advance(Duration::from_millis(1500)).await;
        assert_eq!(clock.now(), Nanos::from(Duration::from_millis(1500)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_governor_limiter_replenishes_only_when_tokio_time_advances() {
        let quota = Quota::per_second(NonZeroU32::MIN);
        let limiter = RateLimiter::direct_with_clock(quota, TokioClock::new());
        assert!(limiter.check().is_ok());
        let Err(not_until) = limiter.check() else {
            panic!("a second cell in the same instant must be refused");
        };
        let wait = not_until.wait_time_from(limiter.clock().now());
        assert_eq!(wait, Duration::from_secs(1));
        tokio::time::advance(Duration::from_millis(999)).await;
        assert!(limiter.check().is_err());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(limiter.check().is_ok());
    }
}
