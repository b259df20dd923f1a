//! The state of one budget's GCRA windows: each window's theoretical arrival time (TAT).
//!
//! A permit is free at `now` when the TAT is at most `now + tolerance`; taking one moves the
//! TAT one interval past `max(TAT, now)`. Charging a permit does the same without asking, so
//! the TAT may run ahead of the tolerance: the budget is then in debt and its next permits
//! come later. The state is plain data, so it can be simulated (what would the k-th caller in
//! line get?) and carried to new rates on a reload.

use std::time::Duration;

use tokio::time::Instant;

use super::clock::after;
use super::rates::{Rate, Rates};

/// One window's state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Window {
    /// `None`: never used, a full burst is free.
    tat: Option<Instant>,
}

impl Window {
    /// The earliest instant at or after `now` when a permit is free.
    fn due(&self, rate: Rate, now: Instant) -> Instant {
        match self.tat {
            Some(tat) => tat
                .checked_sub(rate.tolerance())
                .map_or(now, |due| due.max(now)),
            None => now,
        }
    }

    /// Spends one permit at `at`, free or not.
    fn spend(&mut self, rate: Rate, at: Instant) {
        let base = self.tat.map_or(at, |tat| tat.max(at));
        self.tat = Some(after(base, rate.interval));
    }

    /// Re-expresses the permits spent and not yet replenished at `now` in a new rate: as many
    /// permits stay spent, and replenish at the new rate from now on.
    fn rescale(&mut self, old: Rate, new: Rate, now: Instant) {
        let Some(tat) = self.tat.filter(|tat| *tat > now) else {
            return;
        };
        let owed = (tat - now).as_nanos();
        let scaled = owed.saturating_mul(new.interval.as_nanos()) / old.interval.as_nanos().max(1);
        let scaled = Duration::from_nanos(u64::try_from(scaled).unwrap_or(u64::MAX));
        self.tat = Some(after(now, scaled));
    }

    /// Whether the window is full again at `now`.
    fn is_replenished(&self, now: Instant) -> bool {
        self.tat.is_none_or(|tat| tat <= now)
    }

    /// Permits free at `now`: the burst less those spent and not yet replenished (0 in debt).
    fn free(&self, rate: Rate, now: Instant) -> u32 {
        let Some(owed) = self.tat.filter(|tat| *tat > now).map(|tat| tat - now) else {
            return rate.burst;
        };
        let spent = owed.as_nanos().div_ceil(rate.interval.as_nanos().max(1));
        rate.burst
            .saturating_sub(u32::try_from(spent).unwrap_or(u32::MAX))
    }
}

/// The windows of one budget: per second, and hourly when configured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Windows {
    per_second: Window,
    per_hour: Window,
}

impl Windows {
    /// The earliest instant at or after `now` when both windows have a permit free.
    pub(crate) fn due(&self, limits: &Rates, now: Instant) -> Instant {
        let second = self.per_second.due(limits.per_second, now);
        match limits.per_hour {
            Some(hour) => second.max(self.per_hour.due(hour, now)),
            None => second,
        }
    }

    /// Takes a permit of both windows at `now`, or returns when one is due.
    pub(crate) fn take(&mut self, limits: &Rates, now: Instant) -> Result<(), Instant> {
        let due = self.due(limits, now);
        if due > now {
            return Err(due);
        }
        self.charge(limits, now);
        Ok(())
    }

    /// Spends a permit of both windows at `now` whether or not one is free (into debt).
    pub(crate) fn charge(&mut self, limits: &Rates, now: Instant) {
        self.per_second.spend(limits.per_second, now);
        if let Some(hour) = limits.per_hour {
            self.per_hour.spend(hour, now);
        }
    }

    /// When the permit of a caller with `ahead` others in line before it would be due, were
    /// each of them to take theirs as soon as it is due, none before `from`. Gives up (and
    /// returns the instant reached) once past `limit`.
    pub(crate) fn due_after(
        &self,
        limits: &Rates,
        from: Instant,
        ahead: usize,
        limit: Instant,
    ) -> Instant {
        let mut line = *self;
        let mut at = from;
        for _ in 0..ahead {
            if at > limit {
                return at;
            }
            at = line.due(limits, at);
            line.charge(limits, at);
        }
        line.due(limits, at)
    }

    /// Carries the spent permits over to new limits (see [`Window::rescale`]).
    pub(crate) fn rescale(&mut self, old: &Rates, new: &Rates, now: Instant) {
        self.per_second.rescale(old.per_second, new.per_second, now);
        match (old.per_hour, new.per_hour) {
            (Some(old), Some(new)) => self.per_hour.rescale(old, new, now),
            _ => self.per_hour = Window::default(),
        }
    }

    /// Whether both windows are full again at `now`.
    pub(crate) fn is_replenished(&self, now: Instant) -> bool {
        self.per_second.is_replenished(now) && self.per_hour.is_replenished(now)
    }

    /// Permits free at `now` in the per-second window and, when configured, the hourly one.
    pub(crate) fn free(&self, limits: &Rates, now: Instant) -> (u32, Option<u32>) {
        (
            self.per_second.free(limits.per_second, now),
            limits.per_hour.map(|hour| self.per_hour.free(hour, now)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(interval_ms: u64, burst: u32, hourly: Option<(u64, u32)>) -> Rates {
        let rate = |ms, burst| Rate {
            interval: Duration::from_millis(ms),
            burst,
        };
        Rates {
            per_second: rate(interval_ms, burst),
            per_hour: hourly.map(|(ms, burst)| rate(ms, burst)),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn burst_then_one_per_interval() {
        let limits = limits(1000, 3, None);
        let mut windows = Windows::default();
        let now = Instant::now();
        for _ in 0..3 {
            assert_eq!(windows.take(&limits, now), Ok(()));
        }
        assert_eq!(
            windows.take(&limits, now),
            Err(now + Duration::from_secs(1))
        );
        let later = now + Duration::from_secs(1);
        assert_eq!(windows.take(&limits, later), Ok(()));
        assert!(windows.take(&limits, later).is_err());
        assert!(windows.is_replenished(now + Duration::from_secs(4)));
        assert!(!windows.is_replenished(now + Duration::from_secs(3)));
    }

    #[tokio::test(start_paused = true)]
    async fn both_windows_must_allow() {
        let limits = limits(10, 5, Some((1000, 2)));
        let mut windows = Windows::default();
        let now = Instant::now();
        assert_eq!(windows.take(&limits, now), Ok(()));
        assert_eq!(windows.take(&limits, now), Ok(()));
        assert_eq!(
            windows.take(&limits, now),
            Err(now + Duration::from_secs(1))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn debt_delays_later_permits() {
        let limits = limits(1000, 1, None);
        let mut windows = Windows::default();
        let now = Instant::now();
        for _ in 0..3 {
            windows.charge(&limits, now);
        }
        assert_eq!(windows.due(&limits, now), now + Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn the_line_ahead_is_simulated_without_spending() {
        let limits = limits(1000, 2, None);
        let windows = Windows::default();
        let now = Instant::now();
        let far = now + Duration::from_secs(3600);
        assert_eq!(windows.due_after(&limits, now, 0, far), now);
        assert_eq!(windows.due_after(&limits, now, 1, far), now);
        assert_eq!(
            windows.due_after(&limits, now, 2, far),
            now + Duration::from_secs(1)
        );
        assert_eq!(
            windows.due_after(&limits, now, 4, far),
            now + Duration::from_secs(3)
        );
        let paused = now + Duration::from_secs(10);
        assert_eq!(
            windows.due_after(&limits, paused, 2, far),
            paused + Duration::from_secs(1)
        );
        assert_eq!(windows, Windows::default(), "nothing was spent");
        let soon = now + Duration::from_secs(2);
        assert!(windows.due_after(&limits, now, usize::MAX, soon) > soon);
    }

    #[tokio::test(start_paused = true)]
    async fn free_permits_count_down_and_replenish() {
        let limits = limits(1000, 3, Some((10_000, 2)));
        let mut windows = Windows::default();
        let now = Instant::now();
        assert_eq!(windows.free(&limits, now), (3, Some(2)));
        assert_eq!(windows.take(&limits, now), Ok(()));
        assert_eq!(windows.free(&limits, now), (2, Some(1)));
        windows.charge(&limits, now);
        windows.charge(&limits, now);
        assert_eq!(windows.free(&limits, now), (0, Some(0)), "in debt");
        let later = now + Duration::from_millis(1500);
        assert_eq!(windows.free(&limits, later), (1, Some(0)));
        assert_eq!(
            windows.free(&limits, now + Duration::from_secs(30)),
            (3, Some(2))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_rate_applies_to_what_is_owed() {
        let slow = limits(1000, 4, None);
        let fast = limits(100, 4, None);
        let mut windows = Windows::default();
        let now = Instant::now();
        for _ in 0..4 {
            assert_eq!(windows.take(&slow, now), Ok(()));
        }
        windows.rescale(&slow, &fast, now);
        // Four permits owed, now replenished at 100 ms each: the next is due in 100 ms.
        assert_eq!(windows.due(&fast, now), now + Duration::from_millis(100));
        assert!(windows.is_replenished(now + Duration::from_millis(400)));
    }
}
