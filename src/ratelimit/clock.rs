//! Instant arithmetic for budgets, on tokio's clock, so that budgets obey
//! `tokio::time::pause()` and `advance` in tests exactly as they obey real time.

use std::time::Duration;

use tokio::time::Instant;

/// The longest span this module adds to an instant: longer than any wait or pause worth
/// honouring, short enough that adding it never overflows.
pub(crate) const HORIZON: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// `now + span`, with `span` capped at a year so the sum cannot overflow.
pub(crate) fn after(now: Instant, span: Duration) -> Instant {
    now.checked_add(span.min(HORIZON)).unwrap_or(now)
}

#[cfg(test)]
mod tests {
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
}
