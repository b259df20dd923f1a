//! The GCRA rates every budget is built from, derived from `[rate_limit]` without panics.
//!
//! The per-second window replenishes one permit every `1 / requests_per_second` (fractional
//! rates allowed) and holds up to `burst`. The optional hourly window of `n =
//! requests_per_hour` holds `b = min(burst, n)` and replenishes one permit a little more than
//! every `3600 s / (n - b + 1)`: any span of 3,600 s then holds at most `b` permits at its
//! start and `n - b` more, so no 3,600 s window ever holds more than `n` calls. The unverified
//! budget has a per-second window of its own and no hourly one.

use std::time::Duration;

use crate::config::RateLimitSettings;

/// The slowest per-second window honoured: one permit a day.
const MAX_PERIOD: Duration = Duration::from_secs(24 * 60 * 60);

/// The longest time a full burst may take to replenish; larger bursts are cut down so that
/// instant arithmetic stays far from overflow.
const MAX_REPLENISH: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// The span the hourly window bounds.
const HOUR: Duration = Duration::from_secs(3600);

/// One GCRA window: a permit every `interval`, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rate {
    /// The time one permit takes to replenish; at least 1 ns.
    pub(crate) interval: Duration,
    /// The most permits held at once; at least 1.
    pub(crate) burst: u32,
}

impl Rate {
    /// How far ahead of now the window's arrival time may be with a permit still free.
    pub(crate) fn tolerance(&self) -> Duration {
        self.interval.saturating_mul(self.burst.saturating_sub(1))
    }
}

/// The rates of one budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rates {
    /// The per-second window.
    pub(crate) per_second: Rate,
    /// The hourly window, when configured.
    pub(crate) per_hour: Option<Rate>,
}

impl Rates {
    /// The rates of a client app's budget (and of the global and anonymous ones).
    pub(crate) fn new(settings: &RateLimitSettings) -> Self {
        let per_second = per_second(settings.requests_per_second, settings.burst);
        Self {
            per_hour: settings
                .requests_per_hour
                .filter(|n| *n > 0)
                .map(|n| per_hour(n, per_second.burst)),
            per_second,
        }
    }

    /// The rates of the unverified budget.
    pub(crate) fn unverified(settings: &RateLimitSettings) -> Self {
        Self {
            per_second: per_second(settings.unverified_per_second, settings.unverified_burst),
            per_hour: None,
        }
    }
}

fn per_second(requests_per_second: f64, burst: u32) -> Rate {
    let period = if requests_per_second > 0.0 {
        Duration::try_from_secs_f64(requests_per_second.recip()).unwrap_or(MAX_PERIOD)
    } else {
        MAX_PERIOD
    };
    let interval = period.clamp(Duration::from_nanos(1), MAX_PERIOD);
    let most = MAX_REPLENISH.as_nanos() / interval.as_nanos();
    let burst = burst.min(u32::try_from(most).unwrap_or(u32::MAX)).max(1);
    Rate { interval, burst }
}

/// The hourly window of `n` calls, holding up to `burst` of them at once.
fn per_hour(n: u32, burst: u32) -> Rate {
    let burst = burst.clamp(1, n);
    // Strictly more than 3600 s / (n - b + 1): after the first `b` permits of a span, its
    // (n - b + 1)-th further permit falls past 3600 s.
    let steps = n - burst + 1;
    let interval = HOUR / steps + Duration::from_nanos(1);
    Rate { interval, burst }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    fn settings(rps: f64, burst: u32, per_hour: Option<u32>) -> RateLimitSettings {
        RateLimitSettings {
            requests_per_second: rps,
            burst,
            requests_per_hour: per_hour,
            ..Settings::default().rate_limit
        }
    }

    #[test]
    fn fractional_and_whole_rates() {
        let half = Rates::new(&settings(0.5, 3, None));
        assert_eq!(half.per_second.interval, Duration::from_secs(2));
        assert_eq!(half.per_second.burst, 3);
        assert_eq!(half.per_second.tolerance(), Duration::from_secs(4));
        let ten = Rates::new(&settings(10.0, 1, None));
        assert_eq!(ten.per_second.interval, Duration::from_millis(100));
    }

    #[test]
    fn the_hourly_window_spreads_what_the_burst_leaves() {
        let limits = Rates::new(&settings(10.0, 5, Some(7200)));
        let Some(hourly) = limits.per_hour else {
            panic!("requests_per_hour = 7200 must give an hourly window");
        };
        assert_eq!(hourly.burst, 5);
        // 3600 s / 7196, plus a nanosecond: 7196 steps reach past the hour, 7195 do not.
        assert!(hourly.interval.saturating_mul(7196) > HOUR);
        assert!(hourly.interval.saturating_mul(7195) < HOUR);
        assert_eq!(Rates::new(&settings(1.0, 1, Some(0))).per_hour, None);
        let tiny = Rates::new(&settings(1.0, 10, Some(1))).per_hour;
        assert_eq!(tiny.map(|r| r.burst), Some(1));
        assert_eq!(
            tiny.map(|r| r.interval),
            Some(HOUR + Duration::from_nanos(1))
        );
    }

    #[test]
    fn extreme_settings_stay_in_range() {
        for rps in [0.0, -1.0, f64::NAN, f64::MIN_POSITIVE, 1e-300] {
            let limits = Rates::new(&settings(rps, u32::MAX, None));
            assert_eq!(limits.per_second.interval, MAX_PERIOD, "{rps}");
            assert!(limits.per_second.tolerance() <= MAX_REPLENISH, "{rps}");
        }
        for rps in [f64::INFINITY, 1e300, 1e12] {
            let limits = Rates::new(&settings(rps, u32::MAX, None));
            assert_eq!(limits.per_second.interval, Duration::from_nanos(1), "{rps}");
            assert_eq!(limits.per_second.burst, u32::MAX, "{rps}");
        }
        let zero_burst = Rates::new(&settings(1.0, 0, None));
        assert_eq!(zero_burst.per_second.burst, 1);
        let hourly = Rates::new(&settings(1e12, u32::MAX, Some(u32::MAX))).per_hour;
        assert!(hourly.is_some_and(|r| r.interval > Duration::ZERO));
    }
}
