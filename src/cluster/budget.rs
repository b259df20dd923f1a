//! The shared budgets: every replica draws an app's permits from one GCRA state in Redis, so
//! the upstream sees one proxy. Same rate, burst, hourly window, queue-with-deadline and pause
//! semantics as the local budgets (`crate::ratelimit`), decided by one atomic script on
//! Redis's clock (`budget.lua`), one round trip per permit.
//!
//! A call is granted a permit at a time: now, or a little later, and then waits for it (its
//! place in line is that reserved time, so waiters go in arrival order across replicas); or,
//! when that time is further than `max_wait`, it is refused at once with the time until the
//! permit could be due. A pause (an upstream Retry-After met by any replica) holds every
//! replica's calls of that app, checked in the same script.

use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;

use super::error::ClusterError;
use super::keys::Keys;
use super::link::Link;

/// The pause after a 429 without a usable Retry-After, doubled on each repeat (as alone).
const DEFAULT_PAUSE: Duration = Duration::from_secs(1);

/// The slowest per-second window honoured: one permit a day (as alone).
const MAX_PERIOD: Duration = Duration::from_secs(24 * 60 * 60);

/// One hour.
const HOUR: Duration = Duration::from_secs(3600);

static SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("budget.lua")));

/// The windows of one budget, in the script's microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedLimits {
    /// Per-second window: one permit every `interval`.
    per_second: Window,
    /// Hourly window, when configured.
    per_hour: Option<Window>,
}

/// A GCRA window: one permit every `interval`, `burst` at once after a quiet time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Window {
    interval_us: u64,
    tolerance_us: u64,
}

impl Window {
    fn new(interval: Duration, burst: u32) -> Self {
        let interval_us = u64::try_from(interval.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        Self {
            interval_us,
            tolerance_us: interval_us.saturating_mul(u64::from(burst.max(1) - 1)),
        }
    }
}

impl SharedLimits {
    /// `requests_per_second` (fractional allowed) with `burst`, and when `requests_per_hour`
    /// is set an hourly window holding `b = min(burst, n)` and one permit a little more than
    /// every `3600 s / (n - b + 1)`, so that no 3,600 s window holds more than `n` (as the
    /// local budgets do).
    pub fn new(requests_per_second: f64, burst: u32, requests_per_hour: Option<u32>) -> Self {
        let period = if requests_per_second > 0.0 {
            Duration::try_from_secs_f64(requests_per_second.recip()).unwrap_or(MAX_PERIOD)
        } else {
            MAX_PERIOD
        };
        let per_second = Window::new(period.min(MAX_PERIOD), burst);
        let per_hour = requests_per_hour.filter(|n| *n > 0).map(|n| {
            let hourly_burst = burst.clamp(1, n);
            let steps = u128::from(n - hourly_burst + 1);
            // Strictly more than 3600 s / steps: after the first b permits of a span, its
            // steps-th further permit falls past 3600 s.
            let interval_us = HOUR.as_micros() / steps + 1;
            let interval = Duration::from_micros(u64::try_from(interval_us).unwrap_or(u64::MAX));
            Window::new(interval, hourly_burst)
        });
        Self {
            per_second,
            per_hour,
        }
    }

    fn args(&self) -> [u64; 4] {
        let hourly = self.per_hour.unwrap_or(Window {
            interval_us: 0,
            tolerance_us: 0,
        });
        [
            self.per_second.interval_us,
            self.per_second.tolerance_us,
            hourly.interval_us,
            hourly.tolerance_us,
        ]
    }
}

/// What the script decided for a permit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Granted: go after waiting this long (zero: at once).
    Granted(Duration),
    /// Refused: no permit within the wait accepted; one could be due after `retry_after`.
    Refused {
        /// Time until a permit could be due (or the pause ends).
        retry_after: Duration,
        /// Whether an upstream pause is the reason.
        paused: bool,
    },
}

/// What an upstream answer asks of a shared budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PauseAsk {
    /// Pause for this long (a usable Retry-After), capped.
    For(Duration),
    /// A 429 without a usable Retry-After: the default pause, doubling on repeats.
    Default,
}

/// The shared budgets of one cluster.
#[derive(Debug, Clone)]
pub struct SharedBudgets {
    link: Link,
    keys: Keys,
}

impl SharedBudgets {
    /// Budgets kept through `link` under `keys`.
    pub fn new(link: Link, keys: Keys) -> Self {
        Self { link, keys }
    }

    async fn run(
        &self,
        app: &str,
        mode: &str,
        limits: &SharedLimits,
        extra: &[u64],
    ) -> Result<(bool, Duration, bool), ClusterError> {
        let key = self.keys.budget(app);
        let mut invocation = SCRIPT.key(key);
        invocation.arg(mode);
        for value in limits.args().iter().chain(extra) {
            invocation.arg(*value);
        }
        let (ok, micros, flag): (i64, i64, i64) = self
            .link
            .call(|mut conn| async move { invocation.invoke_async(&mut conn).await })
            .await?;
        let micros = u64::try_from(micros).unwrap_or(0);
        Ok((ok == 1, Duration::from_micros(micros), flag == 1))
    }

    /// Takes a permit of `app`'s budget due within `max_wait` (zero: only one due now), or
    /// says when one could be due. A granted permit is reserved: the caller waits for it.
    pub async fn take(
        &self,
        app: &str,
        limits: &SharedLimits,
        max_wait: Duration,
    ) -> Result<Decision, ClusterError> {
        let max_wait = u64::try_from(max_wait.as_micros()).unwrap_or(u64::MAX);
        let (granted, wait, paused) = self.run(app, "take", limits, &[max_wait]).await?;
        Ok(match granted {
            true => Decision::Granted(wait),
            false => Decision::Refused {
                retry_after: wait,
                paused,
            },
        })
    }

    /// Charges one permit to `app`'s budget even into debt: a call made on another budget
    /// that turned out to be `app`'s (its later calls wait for it).
    pub async fn charge(&self, app: &str, limits: &SharedLimits) -> Result<(), ClusterError> {
        self.run(app, "charge", limits, &[]).await.map(|_| ())
    }

    /// Pauses `app`'s budget on every replica (only ever extending the pause in force),
    /// capped by `max_pause`; returns the pause now in force.
    pub async fn pause(
        &self,
        app: &str,
        limits: &SharedLimits,
        ask: PauseAsk,
        max_pause: Duration,
    ) -> Result<Duration, ClusterError> {
        let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        // The script reads -1 as "the default pause".
        let asked = match ask {
            PauseAsk::For(pause) => micros(pause).to_string(),
            PauseAsk::Default => "-1".to_owned(),
        };
        let key = self.keys.budget(app);
        let mut invocation = SCRIPT.key(key);
        invocation.arg("pause");
        for value in limits.args() {
            invocation.arg(value);
        }
        invocation
            .arg(asked)
            .arg(micros(max_pause))
            .arg(micros(DEFAULT_PAUSE));
        let (_, left, _): (i64, i64, i64) = self
            .link
            .call(|mut conn| async move { invocation.invoke_async(&mut conn).await })
            .await?;
        Ok(Duration::from_micros(u64::try_from(left).unwrap_or(0)))
    }

    /// Ends the doubling streak of default pauses (the upstream answered 2xx).
    pub async fn end_streak(&self, app: &str, limits: &SharedLimits) -> Result<(), ClusterError> {
        self.run(app, "end_streak", limits, &[]).await.map(|_| ())
    }

    /// Time left on `app`'s pause, if any.
    pub async fn pause_remaining(
        &self,
        app: &str,
        limits: &SharedLimits,
    ) -> Result<Option<Duration>, ClusterError> {
        let (_, left, _) = self.run(app, "peek", limits, &[]).await?;
        Ok((!left.is_zero()).then_some(left))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_follow_the_settings() {
        let limits = SharedLimits::new(8.0, 10, None);
        assert_eq!(limits.args(), [125_000, 1_125_000, 0, 0]);
        // Trial: 5000 an hour with a burst of 10: one permit every 3600 s / 4991, and a bit.
        let hourly = SharedLimits::new(8.0, 10, Some(5000));
        let [_, _, interval, tolerance] = hourly.args();
        assert_eq!(interval, 721_299);
        assert_eq!(tolerance, 9 * 721_299);
        // At most n in any hour: the burst, then 4991 intervals reach past the hour.
        assert!(4991 * interval > 3_600_000_000 && 4990 * interval < 3_600_000_000);
        let tiny = SharedLimits::new(1.0, 10, Some(3));
        let [_, _, interval, tolerance] = tiny.args();
        assert_eq!((interval, tolerance), (3_600_000_001, 7_200_000_002));
        let one = SharedLimits::new(1.0, 10, Some(1));
        assert_eq!(one.args()[2..], [3_600_000_001, 0]);
        let slow = SharedLimits::new(0.0, 1, None);
        assert_eq!(slow.args()[0], 86_400_000_000);
    }
}
