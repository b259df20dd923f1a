//! One budget: its GCRA windows, its Retry-After pause, and the queue its waiters stand in.
//!
//! Permits are only ever taken by the holder of the budget's queue lock (a FIFO-fair tokio
//! mutex), so the two windows are checked as one: while the hourly window is known to be
//! spent, the per-second window is not touched at all. Only the call that first finds the
//! hourly window spent uses up a per-second permit it cannot use, which delays at most the
//! next call by one per-second period.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use governor::RateLimiter;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::{InMemoryState, NotKeyed};
use tokio::sync::futures::Notified;
use tokio::sync::{Mutex as Queue, MutexGuard as Turn, Notify, TryLockError};
use tokio::time::Instant;

use super::clock::{TokioClock, after};
use super::limits::Limits;
use super::pause::{Ask, Pause};

type Limiter = RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<Nanos>>;

/// Why a permit cannot be had now, and when it can.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Wait {
    /// The earliest instant a permit can be due.
    pub(crate) until: Instant,
    /// Whether an upstream Retry-After pause is the reason.
    pub(crate) paused: bool,
}

/// The state of a budget besides its GCRA windows.
#[derive(Debug, Default)]
struct State {
    pause: Pause,
    /// The hourly window refuses permits until then.
    hourly_not_before: Option<Instant>,
    /// What the queue's head is waiting for, for those queued behind it.
    head_waits_until: Option<Instant>,
    last_permit: Option<Instant>,
}

/// One budget.
#[derive(Debug)]
pub(crate) struct Budget {
    clock: TokioClock,
    per_second: Limiter,
    per_hour: Option<Limiter>,
    queue: Queue<()>,
    pause_extended: Notify,
    state: Mutex<State>,
}

impl Budget {
    /// A fresh budget, its windows full.
    pub(crate) fn new(limits: &Limits) -> Self {
        let clock = TokioClock::new();
        Self {
            clock,
            per_second: RateLimiter::direct_with_clock(limits.per_second, clock),
            per_hour: limits
                .per_hour
                .map(|quota| RateLimiter::direct_with_clock(quota, clock)),
            queue: Queue::new(()),
            pause_extended: Notify::new(),
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The state stays consistent across a panic elsewhere: every update is one assignment.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The turn to take permits, if nobody holds or awaits it.
    pub(crate) fn try_turn(&self) -> Result<Turn<'_, ()>, TryLockError> {
        self.queue.try_lock()
    }

    /// Waits, in arrival order, for the turn to take permits.
    pub(crate) async fn turn(&self) -> Turn<'_, ()> {
        self.queue.lock().await
    }

    /// Completes when a pause of this budget is extended after this call; call it before
    /// checking the pause so that no extension is missed.
    pub(crate) fn pause_extended(&self) -> Notified<'_> {
        self.pause_extended.notified()
    }

    /// Takes a permit of both windows at `now`, or says when one can be due. The caller holds
    /// the turn.
    pub(crate) fn take(&self, _turn: &Turn<'_, ()>, now: Instant) -> Result<(), Wait> {
        let mut state = self.state();
        if let Some(until) = state.pause.until(now) {
            return Err(Wait {
                until,
                paused: true,
            });
        }
        let blocked = |until| {
            Err(Wait {
                until,
                paused: false,
            })
        };
        if let Some(until) = state.hourly_not_before.filter(|until| *until > now) {
            return blocked(until);
        }
        let reading = self.clock.reading_at(now);
        if let Err(not_until) = self.per_second.check() {
            return blocked(after(now, not_until.wait_time_from(reading)));
        }
        if let Some(per_hour) = &self.per_hour
            && let Err(not_until) = per_hour.check()
        {
            let until = after(now, not_until.wait_time_from(reading));
            state.hourly_not_before = Some(until);
            return blocked(until);
        }
        state.last_permit = Some(now);
        Ok(())
    }

    /// Tells those queued that the head waits until `until`.
    pub(crate) fn set_head_wait(&self, until: Instant) {
        self.state().head_waits_until = Some(until);
    }

    /// A lower bound, known without taking a permit, on when anyone can get the next permit:
    /// the pause, or the wait of the queue's head, whichever ends later.
    pub(crate) fn known_wait(&self, now: Instant) -> Option<Wait> {
        let state = self.state();
        let pause = state.pause.until(now).map(|until| Wait {
            until,
            paused: true,
        });
        let head = state.head_waits_until.filter(|until| *until > now);
        let head = head.map(|until| Wait {
            until,
            paused: false,
        });
        match (pause, head) {
            (Some(pause), Some(head)) if head.until > pause.until => Some(head),
            (pause, head) => pause.or(head),
        }
    }

    /// Applies an upstream answer; returns the pause in force after it, if any.
    pub(crate) fn observe(&self, ask: Ask, now: Instant, max_pause: Duration) -> Option<Duration> {
        let mut state = self.state();
        if state.pause.apply(ask, now, max_pause) {
            self.pause_extended.notify_waiters();
        }
        state.pause.remaining(now)
    }

    /// Time left on the pause at `now`, if any.
    pub(crate) fn pause_remaining(&self, now: Instant) -> Option<Duration> {
        self.state().pause.remaining(now)
    }

    /// Whether forgetting this budget would change nothing but the doubling streak: no pause
    /// in force and both windows replenished (`replenish_span` after the last permit).
    pub(crate) fn is_idle(&self, now: Instant, replenish_span: Duration) -> bool {
        let state = self.state();
        state.pause.until(now).is_none()
            && state
                .last_permit
                .is_none_or(|last| after(last, replenish_span) <= now)
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{RateLimitKey, RateLimitSettings};

    use super::*;

    fn limits(rps: f64, burst: u32, per_hour: Option<u32>) -> Limits {
        Limits::new(&RateLimitSettings {
            requests_per_second: rps,
            burst,
            requests_per_hour: per_hour,
            max_wait: Duration::ZERO,
            max_pause: Duration::ZERO,
            key: RateLimitKey::Global,
        })
    }

    fn take_now(budget: &Budget) -> Result<(), Wait> {
        let Ok(turn) = budget.try_turn() else {
            panic!("nobody else holds the turn in these tests");
        };
        budget.take(&turn, Instant::now())
    }

    #[tokio::test(start_paused = true)]
    async fn spent_hourly_window_leaves_the_per_second_window_alone() {
        // Per-second: one permit every 1000 s, 4 at once; hourly: one every 1800 s, 2 at once.
        let budget = Budget::new(&limits(0.001, 4, Some(2)));
        let start = Instant::now();
        assert_eq!(take_now(&budget), Ok(()));
        assert_eq!(take_now(&budget), Ok(()));
        let hourly_due = start + Duration::from_secs(1800);
        let refused = Err(Wait {
            until: hourly_due,
            paused: false,
        });
        assert_eq!(take_now(&budget), refused);
        // Had these refusals drawn on the per-second window, it would be spent by the fifth
        // call and report its own due (1000 s) instead.
        for _ in 0..10 {
            assert_eq!(take_now(&budget), refused);
        }
        tokio::time::advance(Duration::from_secs(1800)).await;
        assert_eq!(take_now(&budget), Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn idle_once_replenished_and_unpaused() {
        let span = Duration::from_secs(2);
        let budget = Budget::new(&limits(1.0, 2, None));
        assert!(budget.is_idle(Instant::now(), span));
        assert_eq!(take_now(&budget), Ok(()));
        assert!(!budget.is_idle(Instant::now(), span));
        tokio::time::advance(span).await;
        assert!(budget.is_idle(Instant::now(), span));
        budget.observe(Ask::PauseFor(span), Instant::now(), span);
        assert!(!budget.is_idle(Instant::now(), span));
    }

    #[tokio::test(start_paused = true)]
    async fn known_wait_is_the_later_of_pause_and_head() {
        let budget = Budget::new(&limits(1.0, 1, None));
        let now = Instant::now();
        assert_eq!(budget.known_wait(now), None);
        budget.set_head_wait(now + Duration::from_secs(3));
        let head = Wait {
            until: now + Duration::from_secs(3),
            paused: false,
        };
        assert_eq!(budget.known_wait(now), Some(head));
        budget.observe(Ask::PauseFor(Duration::from_secs(2)), now, Duration::MAX);
        assert_eq!(budget.known_wait(now), Some(head));
        budget.observe(Ask::PauseFor(Duration::from_secs(5)), now, Duration::MAX);
        let pause = Wait {
            until: now + Duration::from_secs(5),
            paused: true,
        };
        assert_eq!(budget.known_wait(now), Some(pause));
    }
}
