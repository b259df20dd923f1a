//! The GCRA quotas every budget is built from, derived from `[rate_limit]` without panics.
//!
//! The per-second window replenishes one permit every `1 / requests_per_second` (fractional
//! rates allowed) and holds up to `burst`. The optional hourly window replenishes one permit
//! every `3600 s / requests_per_hour` and holds up to `requests_per_hour`: after a quiet hour a
//! full hour's allowance may go at once (within the per-second window), so in the worst
//! sliding hour up to about twice `requests_per_hour` can pass. A tighter hourly burst would
//! forbid the bursts the per-second window exists for; an upstream that counts strictly
//! answers 429, which pauses the budget.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::Quota;

use crate::config::RateLimitSettings;

/// The slowest per-second window honoured: one permit a day.
const MAX_PERIOD: Duration = Duration::from_secs(24 * 60 * 60);

/// The longest time a full per-second burst may take to replenish; larger bursts are cut down
/// so the limiter's nanosecond arithmetic stays far from overflow.
const MAX_REPLENISH: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// The quotas of one budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// The per-second window.
    pub(crate) per_second: Quota,
    /// The hourly window, when configured.
    pub(crate) per_hour: Option<Quota>,
}

impl Limits {
    /// Quotas for these settings.
    pub(crate) fn new(settings: &RateLimitSettings) -> Self {
        Self {
            per_second: per_second(settings.requests_per_second, settings.burst),
            per_hour: settings
                .requests_per_hour
                .and_then(NonZeroU32::new)
                .map(Quota::per_hour),
        }
    }

    /// How long an unused budget takes to become indistinguishable from a fresh one.
    pub(crate) fn replenish_span(&self) -> Duration {
        let hourly = self
            .per_hour
            .map_or(Duration::ZERO, |q| q.burst_size_replenished_in());
        self.per_second.burst_size_replenished_in().max(hourly)
    }

    /// The spacing of permits once the per-second burst is spent.
    pub(crate) fn period(&self) -> Duration {
        self.per_second.replenish_interval()
    }
}

fn per_second(requests_per_second: f64, burst: u32) -> Quota {
    let period = if requests_per_second > 0.0 {
        Duration::try_from_secs_f64(requests_per_second.recip()).unwrap_or(MAX_PERIOD)
    } else {
        MAX_PERIOD
    };
    let period = period.clamp(Duration::from_nanos(1), MAX_PERIOD);
    let most = MAX_REPLENISH.as_nanos() / period.as_nanos();
    let burst = burst.min(u32::try_from(most).unwrap_or(u32::MAX));
    let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
    match Quota::with_period(period) {
        Some(quota) => quota.allow_burst(burst),
        None => Quota::per_second(NonZeroU32::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RateLimitKey;

    fn settings(rps: f64, burst: u32, per_hour: Option<u32>) -> RateLimitSettings {
        RateLimitSettings {
            requests_per_second: rps,
            burst,
            requests_per_hour: per_hour,
            max_wait: Duration::ZERO,
            max_pause: Duration::ZERO,
            key: RateLimitKey::Global,
        }
    }

    #[test]
    fn fractional_and_whole_rates() {
        let half = Limits::new(&settings(0.5, 3, None));
        assert_eq!(half.period(), Duration::from_secs(2));
        assert_eq!(half.per_second.burst_size().get(), 3);
        assert_eq!(half.replenish_span(), Duration::from_secs(6));
        let ten = Limits::new(&settings(10.0, 1, None));
        assert_eq!(ten.period(), Duration::from_millis(100));
    }

    #[test]
    fn hourly_window_and_span() {
        let limits = Limits::new(&settings(10.0, 5, Some(7200)));
        let Some(hourly) = limits.per_hour else {
            panic!("requests_per_hour = 7200 must give an hourly window");
        };
        assert_eq!(hourly.replenish_interval(), Duration::from_millis(500));
        assert_eq!(hourly.burst_size().get(), 7200);
        assert_eq!(limits.replenish_span(), Duration::from_secs(3600));
        assert_eq!(Limits::new(&settings(1.0, 1, Some(0))).per_hour, None);
    }

    #[test]
    fn extreme_settings_stay_in_range() {
        for rps in [0.0, -1.0, f64::NAN, f64::MIN_POSITIVE, 1e-300] {
            let limits = Limits::new(&settings(rps, u32::MAX, None));
            assert_eq!(limits.period(), MAX_PERIOD, "{rps}");
            assert!(limits.replenish_span() <= MAX_REPLENISH, "{rps}");
        }
        for rps in [f64::INFINITY, 1e300, 1e12] {
            let limits = Limits::new(&settings(rps, u32::MAX, None));
            assert_eq!(limits.period(), Duration::from_nanos(1), "{rps}");
            assert_eq!(limits.per_second.burst_size(), NonZeroU32::MAX, "{rps}");
        }
        let zero_burst = Limits::new(&settings(1.0, 0, None));
        assert_eq!(zero_burst.per_second.burst_size(), NonZeroU32::MIN);
    }
}
