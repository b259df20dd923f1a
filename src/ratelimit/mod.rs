//! Outbound budgets: every upstream call takes a permit first (cache hits never do).
//!
//! A budget is a GCRA of `rate_limit.requests_per_second` with `rate_limit.burst`, plus an
//! hourly one when `rate_limit.requests_per_hour` is set, which no 3,600 s window ever
//! exceeds; a call needs a permit of both. With `rate_limit.key = "client_id"`, calls whose
//! token is trusted draw from their client app's budget (one shared budget for trusted tokens
//! without a `client_id`), every other call from the one `unverified` budget; with `"global"`
//! one budget takes every call. Per-client budgets are created on demand, idle ones are swept
//! out, and at most [`MAX_CLIENT_BUDGETS`] are held.
//!
//! # The interface
//!
//! The pipeline uses [`Budgets`] through these calls only, and a budget kept elsewhere (one
//! shared by a cluster) plugs in behind them:
//! - [`Budgets::key_for`]: which budget a call draws from;
//! - [`Budgets::acquire`] / [`Budgets::try_acquire`]: take a permit (waiting, or not);
//! - [`Budgets::charge`]: spend a permit after the fact, even into debt;
//! - [`Budgets::observe_response`]: an upstream answer that may pause the budget;
//! - [`Budgets::reconfigure`]: new settings, keeping what was spent and every pause.
//!
//! A call over budget waits, asynchronously and in arrival order, up to `rate_limit.max_wait`;
//! every caller whose permit cannot be due by then, wherever it stands in line, is rejected at
//! once with the time until it would be due. An upstream 429 or 503 with a Retry-After (a 429
//! without one: 1 s, doubling on repeats), capped by `rate_limit.max_pause`, pauses the budget
//! it was drawn from: its calls wait out the pause if it fits in `max_wait`, else are rejected
//! with its remainder. Other budgets are never touched.
//!
//! All time is tokio's, so tests drive budgets with `tokio::time::pause()`.

mod budget;
mod clock;
mod gcra;
mod pause;
mod rates;
mod registry;
mod retry_after;
mod shared;
mod usage;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_hourly;
#[cfg(test)]
mod tests_pause;

use std::pin::pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use http::{HeaderMap, StatusCode};
use tokio::sync::MutexGuard;
use tokio::time::{Instant, sleep_until};

use crate::cluster::Cluster;
use crate::config::{RateLimitKey, RateLimitSettings};
use budget::{Budget, Ticket, Wait};
use clock::{HORIZON, after};
use pause::Ask;
use rates::Rates;
use registry::Registry;

pub use retry_after::parse_retry_after;
pub use usage::{BudgetUse, BudgetsUsage};

/// The most per-client budgets held at once; past it, new clients share one overflow budget
/// until idle budgets are swept out.
pub const MAX_CLIENT_BUDGETS: usize = 16_384;

/// The budgets of one proxy instance; shared by all requests through an `Arc`, and kept
/// across reloads.
#[derive(Debug)]
pub struct Budgets {
    registry: Registry,
    policy: Mutex<Policy>,
    /// With a cluster: the budgets in Redis, which decide while Redis answers (the local
    /// ones then hold 1/`replicas_hint` of every rate, for when it does not).
    shared: Option<shared::Shared>,
    replicas: u32,
}

/// The settings read on every call; swapped whole by a reload.
#[derive(Debug, Clone, Copy)]
struct Policy {
    key: RateLimitKey,
    max_wait: Duration,
    max_pause: Duration,
}

impl Policy {
    fn new(settings: &RateLimitSettings) -> Self {
        Self {
            key: settings.key,
            max_wait: settings.max_wait,
            max_pause: settings.max_pause,
        }
    }
}

/// Who makes a call, as far as budgets are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller<'a> {
    /// A token known to be genuine (its signature checked, or the upstream answered it with a
    /// 2xx), with its `client_id` claim if it has one.
    Trusted(Option<&'a str>),
    /// No token, or one not (yet) trusted: whatever it claims chooses nothing.
    Untrusted,
}

/// Which budget a call draws from. Cheap to clone.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BudgetKey(KeyKind);

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum KeyKind {
    /// `key = "global"`: one budget for all.
    Global,
    /// A trusted token without a `client_id`: the budget such tokens share.
    Anonymous,
    /// The budget of one OAuth client app.
    Client(Arc<str>),
    /// Calls whose token is not trusted.
    Unverified,
}

impl BudgetKey {
    /// Whether this is the budget of calls whose token is not trusted.
    pub fn is_unverified(&self) -> bool {
        self.0 == KeyKind::Unverified
    }
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
        Self {
            registry: Registry::new(Rates::new(settings), Rates::unverified(settings)),
            policy: Mutex::new(Policy::new(settings)),
            shared: None,
            replicas: 1,
        }
    }

    /// Budgets shared by every replica of `cluster`: drawn from Redis while it answers, else
    /// from local budgets of 1/`cluster.replicas_hint` of every rate and burst.
    pub(crate) fn clustered(settings: &RateLimitSettings, cluster: &Cluster) -> Self {
        let replicas = cluster.replicas_hint();
        let local = shared::share_of(settings, replicas);
        Self {
            registry: Registry::new(Rates::new(&local), Rates::unverified(&local)),
            policy: Mutex::new(Policy::new(settings)),
            shared: Some(shared::Shared::new(
                cluster.budgets().clone(),
                cluster.link().clone(),
                settings,
            )),
            replicas,
        }
    }

    fn policy(&self) -> Policy {
        *self.policy.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Follows new settings from now on: every budget keeps the permits it has spent (they
    /// replenish at the new rate) and its pause.
    pub(crate) fn reconfigure(&self, settings: &RateLimitSettings) {
        if let Some(shared) = &self.shared {
            shared.reconfigure(settings);
        }
        let local = shared::share_of(settings, self.replicas);
        let limits = (Rates::new(&local), Rates::unverified(&local));
        let mut policy = self.policy.lock().unwrap_or_else(PoisonError::into_inner);
        *policy = Policy::new(settings);
        self.registry.reconfigure(limits.0, limits.1);
    }

    /// The budget a call by `caller` draws from, per `rate_limit.key`; an empty `client_id`
    /// counts as none.
    pub fn key_for(&self, caller: Caller<'_>) -> BudgetKey {
        BudgetKey(match (self.policy().key, caller) {
            (RateLimitKey::Global, _) => KeyKind::Global,
            (RateLimitKey::ClientId, Caller::Untrusted) => KeyKind::Unverified,
            (RateLimitKey::ClientId, Caller::Trusted(Some(id))) if !id.is_empty() => {
                KeyKind::Client(id.into())
            }
            (RateLimitKey::ClientId, Caller::Trusted(_)) => KeyKind::Anonymous,
        })
    }

    /// Waits (up to `max_wait`, in arrival order) for a permit, waiting out a pause too if
    /// its remainder fits in what is left of `max_wait`. Rejects at once when the permit
    /// cannot be due in time. Cancel-safe: dropping the future gives up the place in line.
    pub async fn acquire(&self, key: &BudgetKey) -> Result<Admission, Rejection> {
        let start = Instant::now();
        let max_wait = self.policy().max_wait;
        if let Some(shared) = &self.shared
            && let Some(decided) = shared.acquire(key, max_wait).await
        {
            return self.mirror(key, decided);
        }
        let deadline = after(start, max_wait);
        let budget = self.registry.budget(key);
        let ticket = budget.join();
        let (turn, mut waited) = match budget.try_turn() {
            Ok(turn) => (turn, false),
            Err(_) => (queue(&budget, &ticket, deadline).await?, true),
        };
        loop {
            let worsened = budget.worsened();
            let now = Instant::now();
            let wait = match budget.take(&turn, &ticket, now) {
                Ok(()) if waited => return Ok(Admission::Delayed(now - start)),
                Ok(()) => return Ok(Admission::Immediate),
                Err(wait) => wait,
            };
            if wait.until > deadline {
                return Err(Rejection::after(wait, now));
            }
            waited = true;
            tokio::select! {
                () = sleep_until(wait.until) => {}
                () = worsened => {}
            }
        }
    }

    /// Takes a permit only if one is available now, nobody is in line and no pause is on
    /// (for when a stale page could be served instead of waiting).
    pub async fn try_acquire(&self, key: &BudgetKey) -> Result<Admission, Rejection> {
        if let Some(shared) = &self.shared
            && let Some(decided) = shared.acquire(key, Duration::ZERO).await
        {
            return self.mirror(key, decided);
        }
        let budget = self.registry.budget(key);
        let now = Instant::now();
        let Ok(turn) = budget.try_turn() else {
            let wait = budget.foresee_newcomer(now, after(now, HORIZON));
            return Err(Rejection::after(wait, now));
        };
        let ticket = budget.join();
        match budget.take(&turn, &ticket, now) {
            Ok(()) => Ok(Admission::Immediate),
            Err(wait) => Err(Rejection::after(wait, now)),
        }
    }

    /// Spends a permit of `key`'s budget for a call already made, whether or not one is free:
    /// the budget may go into debt, and its next calls wait for it. For a call that drew from
    /// the unverified budget and turned out to be its app's.
    pub(crate) fn charge(&self, key: &BudgetKey) {
        if let Some(shared) = &self.shared {
            shared.charge(key);
        }
        self.registry.budget(key).charge(Instant::now());
    }

    /// A shared decision, whose pause (met by another replica) the local budget learns too,
    /// so it holds should Redis go away.
    fn mirror(
        &self,
        key: &BudgetKey,
        decided: Result<Admission, Rejection>,
    ) -> Result<Admission, Rejection> {
        if let Err(rejection) = &decided
            && rejection.paused
        {
            let max_pause = self.policy().max_pause;
            let ask = Ask::PauseFor(rejection.retry_after);
            self.registry
                .budget(key)
                .observe(ask, Instant::now(), max_pause);
        }
        decided
    }

    /// Feeds an upstream answer. A 429 (with a usable Retry-After, or the default pause of 1 s
    /// doubling on repeats) or a 503 with a usable Retry-After pauses the budget, capped by
    /// `max_pause`, and returns the pause now in force (`None` if e.g. `Retry-After: 0`). A
    /// 2xx ends the doubling streak; other answers do nothing. Both return `None`. `now` is
    /// the wall clock, for HTTP-dates. With a cluster, the pause reaches every replica
    /// before this returns.
    pub(crate) async fn observe_response(
        &self,
        key: &BudgetKey,
        status: StatusCode,
        headers: &HeaderMap,
        now: SystemTime,
    ) -> Option<Duration> {
        let ask = Ask::of(status, headers, now);
        let max_pause = self.policy().max_pause;
        if let Some(shared) = &self.shared {
            shared.observe(key, ask, max_pause).await;
        }
        let budget = match ask {
            Ask::Nothing => return None,
            Ask::EndStreak => {
                if let Some(budget) = self.registry.existing(key) {
                    budget.observe(ask, Instant::now(), max_pause);
                }
                return None;
            }
            Ask::PauseFor(_) | Ask::DefaultPause => self.registry.budget(key),
        };
        budget.observe(ask, Instant::now(), max_pause)
    }

    /// Time left on the budget's pause, if any.
    pub(crate) fn pause_remaining(&self, key: &BudgetKey) -> Option<Duration> {
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

/// Stands in the budget's line until it is this caller's turn; rejects as soon as its permit
/// is foreseen past `deadline`. A permit due in time waits for the turn alone, past the
/// deadline too: the callers ahead hold it only to take permits that are due as well.
async fn queue<'b>(
    budget: &'b Budget,
    ticket: &Ticket<'_>,
    deadline: Instant,
) -> Result<MutexGuard<'b, ()>, Rejection> {
    let mut turn = pin!(budget.turn());
    let mut expired = pin!(sleep_until(deadline));
    let mut past_deadline = false;
    loop {
        let worsened = budget.worsened();
        let now = Instant::now();
        // Due by the deadline, or, once it has passed, due now: then only the callers ahead
        // stand between, each taking a permit due as well, and the turn comes at once (with
        // `max_wait = 0`, concurrent callers of a budget with permits to spare were refused
        // for the instant one of them held the turn).
        if budget.foresee(ticket, now, deadline).until > deadline.max(now) {
            let wait = budget.foresee(ticket, now, after(now, HORIZON));
            return Err(Rejection::after(wait, now));
        }
        tokio::select! {
            biased;
            turn = &mut turn => return Ok(turn),
            () = worsened => {}
            () = &mut expired, if !past_deadline => past_deadline = true,
        }
    }
}
