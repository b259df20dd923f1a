//! Outbound budgets: every upstream call takes a permit first (cache hits never do).
//!
//! A budget is a GCRA of `rate_limit.requests_per_second` with `rate_limit.burst`, plus an
//! hourly one when `rate_limit.requests_per_hour` is set; a call needs a permit of both.
//! Budgets are keyed by the token's `client_id` claim (tokens without one share a budget) or
//! one for all, per `rate_limit.key`; per-client budgets are created on demand, idle ones are
//! swept out, and at most [`MAX_CLIENT_BUDGETS`] are held.
//!
//! A call over budget waits, asynchronously and in arrival order, up to `rate_limit.max_wait`;
//! when its permit cannot be due by then it is rejected at once with the time until the
//! permit is due. An upstream 429 or 503 with a Retry-After (a 429 without one: 1 s, doubling
//! on repeats), capped by `rate_limit.max_pause`, pauses the budget it was drawn from: its
//! calls wait out the pause if it fits in `max_wait`, else are rejected with its remainder.
//! Other budgets are never touched.
//!
//! All time is tokio's, so tests drive budgets with `tokio::time::pause()`.

mod budget;
mod clock;
mod limits;
mod pause;
mod registry;
mod retry_after;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_pause;

use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, StatusCode};
use tokio::sync::MutexGuard;
use tokio::time::{Instant, sleep_until};

use crate::config::{RateLimitKey, RateLimitSettings};
use budget::{Budget, Wait};
use clock::after;
use limits::Limits;
use pause::Ask;
use registry::Registry;

pub use retry_after::parse_retry_after;

/// The most per-client budgets held at once; past it, new clients share one overflow budget
/// until idle budgets are swept out.
pub const MAX_CLIENT_BUDGETS: usize = 16_384;

/// The budgets of one proxy instance; shared by all requests through an `Arc`.
#[derive(Debug)]
pub struct Budgets {
    registry: Registry,
    key: RateLimitKey,
    max_wait: Duration,
    max_pause: Duration,
    period: Duration,
}

/// Which budget a call draws from. Cheap to clone.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BudgetKey(KeyKind);

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum KeyKind {
    /// `key = "global"`: one budget for all.
    Global,
    /// A token without a `client_id`: the budget such tokens share.
    Anonymous,
    /// The budget of one OAuth client app.
    Client(Arc<str>),
}

/// A permit was granted.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    /// At once.
    Immediate,
    /// After waiting this long (counted in `itwin_proxy_ratelimit_delayed_total`).
    Delayed(Duration),
}

/// No permit within `max_wait`: answer 429 with `Retry-After`.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "upstream budget exhausted (paused by the upstream: {paused}); retry after {retry_after:?}"
)]
pub struct Rejection {
    /// Time until a permit is due (or the pause ends).
    pub retry_after: Duration,
    /// Whether an upstream Retry-After pause is the reason.
    pub paused: bool,
}

impl Rejection {
    fn after(wait: Wait, now: Instant) -> Self {
        Self {
            retry_after: wait.until.saturating_duration_since(now),
            paused: wait.paused,
        }
    }

    /// `retry_after` in whole seconds, rounded up and at least 1: the `Retry-After` value.
    pub fn retry_after_secs(&self) -> u64 {
        let secs = self.retry_after.as_secs();
        let secs = secs.saturating_add(u64::from(self.retry_after.subsec_nanos() > 0));
        secs.max(1)
    }
}

impl Budgets {
    /// Budgets following `settings`; none is spent yet.
    pub fn new(settings: &RateLimitSettings) -> Self {
        let limits = Limits::new(settings);
        Self {
            period: limits.period(),
            registry: Registry::new(limits),
            key: settings.key,
            max_wait: settings.max_wait,
            max_pause: settings.max_pause,
        }
    }

    /// The budget a call with this token `client_id` draws from (per `rate_limit.key`); an
    /// empty `client_id` counts as none.
    pub fn key_for(&self, client_id: Option<&str>) -> BudgetKey {
        BudgetKey(match (self.key, client_id) {
            (RateLimitKey::Global, _) => KeyKind::Global,
            (RateLimitKey::ClientId, Some(id)) if !id.is_empty() => KeyKind::Client(id.into()),
            (RateLimitKey::ClientId, _) => KeyKind::Anonymous,
        })
    }

    /// Waits (up to `max_wait`, in arrival order) for a permit, waiting out a pause too if
    /// its remainder fits in what is left of `max_wait`. Rejects at once when the permit
    /// cannot be due in time. Cancel-safe: dropping the future gives up the place in line.
    pub async fn acquire(&self, key: &BudgetKey) -> Result<Admission, Rejection> {
        let start = Instant::now();
        let deadline = after(start, self.max_wait);
        let budget = self.registry.budget(key);
        let (turn, mut waited) = match budget.try_turn() {
            Ok(turn) => (turn, false),
            Err(_) => (self.queue(&budget, deadline).await?, true),
        };
        loop {
            let extended = budget.pause_extended();
            let now = Instant::now();
            let wait = match budget.take(&turn, now) {
                Ok(()) if waited => return Ok(Admission::Delayed(now - start)),
                Ok(()) => return Ok(Admission::Immediate),
                Err(wait) => wait,
            };
            if wait.until > deadline {
                return Err(Rejection::after(wait, now));
            }
            budget.set_head_wait(wait.until);
            waited = true;
            tokio::select! {
                () = sleep_until(wait.until) => {}
                () = extended => {}
            }
        }
    }

    /// Stands in the budget's line until it is this call's turn, or rejects once the turn
    /// cannot come by `deadline`.
    async fn queue<'b>(
        &self,
        budget: &'b Budget,
        deadline: Instant,
    ) -> Result<MutexGuard<'b, ()>, Rejection> {
        let mut turn = pin!(budget.turn());
        let mut expired = pin!(sleep_until(deadline));
        loop {
            let extended = budget.pause_extended();
            let now = Instant::now();
            if let Some(wait) = budget.known_wait(now)
                && wait.until > deadline
            {
                return Err(self.rejection_behind(wait, now));
            }
            tokio::select! {
                biased;
                turn = &mut turn => return Ok(turn),
                () = extended => {}
                () = &mut expired => return Err(self.rejection_in_line(budget)),
            }
        }
    }

    /// The rejection of a call that stands behind someone waiting for `wait`.
    fn rejection_behind(&self, wait: Wait, now: Instant) -> Rejection {
        let mut rejection = Rejection::after(wait, now);
        if !wait.paused {
            rejection.retry_after = rejection.retry_after.saturating_add(self.period);
        }
        rejection
    }

    /// The rejection of a call that found others in line ahead of it.
    fn rejection_in_line(&self, budget: &Budget) -> Rejection {
        let now = Instant::now();
        match budget.known_wait(now) {
            Some(wait) => self.rejection_behind(wait, now),
            None => Rejection {
                retry_after: self.period,
                paused: false,
            },
        }
    }

    /// Takes a permit only if one is available now, nobody is in line and no pause is on
    /// (for when a stale page could be served instead of waiting).
    pub fn try_acquire(&self, key: &BudgetKey) -> Result<Admission, Rejection> {
        let budget = self.registry.budget(key);
        let Ok(turn) = budget.try_turn() else {
            return Err(self.rejection_in_line(&budget));
        };
        let now = Instant::now();
        match budget.take(&turn, now) {
            Ok(()) => Ok(Admission::Immediate),
            Err(wait) => Err(Rejection::after(wait, now)),
        }
    }

    /// Feeds an upstream answer. A 429 (with a usable Retry-After, or the default pause of 1 s
    /// doubling on repeats) or a 503 with a usable Retry-After pauses the budget, capped by
    /// `max_pause`, and returns the pause now in force (`None` if e.g. `Retry-After: 0`). A
    /// 2xx ends the doubling streak; other answers do nothing. Both return `None`. `now` is
    /// the wall clock, for HTTP-dates.
    pub fn observe_response(
        &self,
        key: &BudgetKey,
        status: StatusCode,
        headers: &HeaderMap,
        now: SystemTime,
    ) -> Option<Duration> {
        let ask = Ask::of(status, headers, now);
        let budget = match ask {
            Ask::Nothing => return None,
            Ask::EndStreak => {
                if let Some(budget) = self.registry.existing(key) {
                    budget.observe(ask, Instant::now(), self.max_pause);
                }
                return None;
            }
            Ask::PauseFor(_) | Ask::DefaultPause => self.registry.budget(key),
        };
        budget.observe(ask, Instant::now(), self.max_pause)
    }

    /// Time left on the budget's pause, if any.
    pub fn pause_remaining(&self, key: &BudgetKey) -> Option<Duration> {
        let budget = self.registry.existing(key)?;
        budget.pause_remaining(Instant::now())
    }

    /// Number of per-client budgets currently held (for tests and a gauge).
    pub fn len(&self) -> usize {
        self.registry.len()
    }

    /// Whether no per-client budget is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
