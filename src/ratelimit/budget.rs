//! One budget: its GCRA windows, its Retry-After pause, and the line its callers stand in.
//!
//! Permits are only ever taken by the holder of the budget's turn (a FIFO-fair tokio mutex),
//! in arrival order. Every caller holds a ticket while in line, so the permit of any caller
//! can be foreseen: the windows' state, simulated forward for everyone ahead of it, from the
//! end of any pause. A caller whose foreseen permit falls past its deadline is refused at
//! once, wherever it stands; the foresight is rechecked whenever the outlook worsens (a
//! pause is extended, a debt is charged).

use std::collections::BTreeSet;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::futures::Notified;
use tokio::sync::{Mutex as Queue, MutexGuard as Turn, Notify, TryLockError};
use tokio::time::Instant;

use super::gcra::Windows;
use super::pause::{Ask, Pause};
use super::rates::Rates;

/// Why a permit cannot be had now, and when it can.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Wait {
    /// The earliest instant a permit can be due.
    pub(crate) until: Instant,
    /// Whether an upstream Retry-After pause is the reason.
    pub(crate) paused: bool,
}

/// What a budget has left at one instant, for the status page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Use {
    /// Permits free now in the per-second window.
    pub(crate) free: u32,
    /// The per-second window's burst.
    pub(crate) burst: u32,
    /// Permits free now in the hourly window and its burst, when configured.
    pub(crate) hourly: Option<(u32, u32)>,
    /// Callers waiting for a permit.
    pub(crate) queued: usize,
    /// Time left on a Retry-After pause, if one is in force.
    pub(crate) paused_for: Option<Duration>,
}

/// The state of a budget.
#[derive(Debug)]
struct State {
    limits: Rates,
    windows: Windows,
    pause: Pause,
    /// The tickets of the callers in line (waiting for the turn or holding it).
    line: BTreeSet<u64>,
    next_ticket: u64,
}

impl State {
    /// When the caller with `ahead` others before it gets its permit, looking no further
    /// than `limit`.
    fn foresee(&self, ahead: usize, now: Instant, limit: Instant) -> Wait {
        let pause = self.pause.until(now);
        let from = pause.unwrap_or(now);
        let until = self.windows.due_after(&self.limits, from, ahead, limit);
        Wait {
            until,
            paused: pause.is_some_and(|pause| until <= pause),
        }
    }
}

/// One budget.
#[derive(Debug)]
pub(crate) struct Budget {
    queue: Queue<()>,
    worsened: Notify,
    state: Mutex<State>,
}

/// A caller's place in line; leaving the line when dropped.
#[derive(Debug)]
pub(crate) struct Ticket<'b> {
    budget: &'b Budget,
    number: u64,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        self.budget.state().line.remove(&self.number);
    }
}

impl Budget {
    /// A fresh budget, its windows full.
    pub(crate) fn new(limits: Rates) -> Self {
        Self {
            queue: Queue::new(()),
            worsened: Notify::new(),
            state: Mutex::new(State {
                limits,
                windows: Windows::default(),
                pause: Pause::default(),
                line: BTreeSet::new(),
                next_ticket: 0,
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The state stays consistent across a panic elsewhere: every update is one assignment.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A place at the end of the line.
    pub(crate) fn join(&self) -> Ticket<'_> {
        let mut state = self.state();
        let number = state.next_ticket;
        state.next_ticket += 1;
        state.line.insert(number);
        Ticket {
            budget: self,
            number,
        }
    }

    /// When the holder of `ticket` gets its permit, were everyone ahead of it to take theirs
    /// as soon as due; no further than `limit`.
    pub(crate) fn foresee(&self, ticket: &Ticket<'_>, now: Instant, limit: Instant) -> Wait {
        let state = self.state();
        let ahead = state.line.range(..ticket.number).count();
        state.foresee(ahead, now, limit)
    }

    /// When a caller joining the line now would get its permit; no further than `limit`.
    pub(crate) fn foresee_newcomer(&self, now: Instant, limit: Instant) -> Wait {
        let state = self.state();
        state.foresee(state.line.len(), now, limit)
    }

    /// The turn to take permits, if nobody holds or awaits it.
    pub(crate) fn try_turn(&self) -> Result<Turn<'_, ()>, TryLockError> {
        self.queue.try_lock()
    }

    /// Waits, in arrival order, for the turn to take permits.
    pub(crate) async fn turn(&self) -> Turn<'_, ()> {
        self.queue.lock().await
    }

    /// Completes when the outlook worsens after this call (a pause extended, a debt
    /// charged); call it before reading the state so that no change is missed.
    pub(crate) fn worsened(&self) -> Notified<'_> {
        self.worsened.notified()
    }

    /// Takes a permit of both windows at `now` and leaves the line, or says when one can be
    /// due. The caller holds the turn.
    pub(crate) fn take(
        &self,
        _turn: &Turn<'_, ()>,
        ticket: &Ticket<'_>,
        now: Instant,
    ) -> Result<(), Wait> {
        let mut state = self.state();
        if let Some(until) = state.pause.until(now) {
            return Err(Wait {
                until,
                paused: true,
            });
        }
        let limits = state.limits;
        state.windows.take(&limits, now).map_err(|until| Wait {
            until,
            paused: false,
        })?;
        state.line.remove(&ticket.number);
        Ok(())
    }

    /// Spends a permit at `now` whether or not one is free: the budget may go into debt.
    pub(crate) fn charge(&self, now: Instant) {
        let mut state = self.state();
        let limits = state.limits;
        state.windows.charge(&limits, now);
        self.worsened.notify_waiters();
    }

    /// Applies an upstream answer; returns the pause in force after it, if any.
    pub(crate) fn observe(&self, ask: Ask, now: Instant, max_pause: Duration) -> Option<Duration> {
        let mut state = self.state();
        if state.pause.apply(ask, now, max_pause) {
            self.worsened.notify_waiters();
        }
        state.pause.remaining(now)
    }

    /// Time left on the pause at `now`, if any.
    pub(crate) fn pause_remaining(&self, now: Instant) -> Option<Duration> {
        self.state().pause.remaining(now)
    }

    /// Follows new limits from `now` on, the permits spent so far still spent.
    pub(crate) fn reconfigure(&self, limits: Rates, now: Instant) {
        let mut state = self.state();
        let old = state.limits;
        state.windows.rescale(&old, &limits, now);
        state.limits = limits;
        self.worsened.notify_waiters();
    }

    /// What the budget has left at `now`.
    pub(crate) fn usage(&self, now: Instant) -> Use {
        let state = self.state();
        let (free, hourly_free) = state.windows.free(&state.limits, now);
        Use {
            free,
            burst: state.limits.per_second.burst,
            hourly: hourly_free.zip(state.limits.per_hour.map(|hour| hour.burst)),
            queued: state.line.len(),
            paused_for: state.pause.remaining(now),
        }
    }

    /// Whether forgetting this budget would change nothing but the doubling streak: nobody in
    /// line, no pause in force and both windows replenished.
    pub(crate) fn is_idle(&self, now: Instant) -> bool {
        let state = self.state();
        state.line.is_empty()
            && state.pause.until(now).is_none()
            && state.windows.is_replenished(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{RateLimitSettings, Settings};

    fn limits(rps: f64, burst: u32) -> Rates {
        Rates::new(&RateLimitSettings {
            requests_per_second: rps,
            burst,
            ..Settings::default().rate_limit
        })
    }

    fn take_now(budget: &Budget) -> Result<(), Wait> {
        let Ok(turn) = budget.try_turn() else {
            panic!("nobody else holds the turn in these tests");
        };
        budget.take(&turn, &budget.join(), Instant::now())
    }

    #[tokio::test(start_paused = true)]
    async fn idle_once_replenished_unpaused_and_nobody_in_line() {
        let budget = Budget::new(limits(1.0, 2));
        assert!(budget.is_idle(Instant::now()));
        assert_eq!(take_now(&budget), Ok(()));
        assert!(!budget.is_idle(Instant::now()));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(budget.is_idle(Instant::now()));
        let ticket = budget.join();
        assert!(!budget.is_idle(Instant::now()));
        drop(ticket);
        let span = Duration::from_secs(2);
        budget.observe(Ask::PauseFor(span), Instant::now(), span);
        assert!(!budget.is_idle(Instant::now()));
    }

    #[tokio::test(start_paused = true)]
    async fn each_place_in_line_is_foreseen() {
        let budget = Budget::new(limits(1.0, 1));
        let now = Instant::now();
        let far = now + Duration::from_secs(3600);
        assert_eq!(take_now(&budget), Ok(()));
        let tickets: Vec<_> = (0..3).map(|_| budget.join()).collect();
        for (place, ticket) in tickets.iter().enumerate() {
            let wait = budget.foresee(ticket, now, far);
            assert_eq!(wait.until, now + Duration::from_secs(place as u64 + 1));
            assert!(!wait.paused);
        }
        assert_eq!(
            budget.foresee_newcomer(now, far).until,
            now + Duration::from_secs(4)
        );
        budget.observe(Ask::PauseFor(Duration::from_secs(10)), now, Duration::MAX);
        let first = budget.foresee(&tickets[0], now, far);
        assert_eq!(first.until, now + Duration::from_secs(10));
        assert!(first.paused);
        let second = budget.foresee(&tickets[1], now, far);
        assert_eq!(second.until, now + Duration::from_secs(11));
        assert!(!second.paused);
        drop(tickets);
        assert_eq!(
            budget.foresee_newcomer(now, far).until,
            now + Duration::from_secs(10)
        );
    }
}
