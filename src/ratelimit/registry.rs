//! The bounded set of budgets: one shared budget (the global one, or the one of trusted
//! tokens without a `client_id`), the unverified budget, per-client budgets created on
//! demand, and an overflow budget.
//!
//! Memory stays bounded two ways. Idle client budgets (nobody in line, no pause, windows
//! replenished, nobody holding them) are swept out at most once per [`SWEEP_INTERVAL`] when a
//! new client appears; forgetting them changes nothing but the doubling streak of 429s. And at
//! most [`MAX_CLIENT_BUDGETS`] are held: past that, new clients share the overflow budget
//! until a sweep makes room. Evicting a live budget instead would hand its client a fresh burst
//! and let it exceed its upstream quota; sharing errs the safe way (fewer upstream calls, not
//! more). Only trusted tokens name client budgets, so a flood of forged ids never gets here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::budget::{Budget, Use};
use super::clock::after;
use super::rates::Rates;
use super::{BudgetKey, KeyKind, MAX_CLIENT_BUDGETS};

/// The least time between two sweeps, so a flood of new clients cannot make every call scan.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct Clients {
    /// The limits new client budgets follow.
    limits: Rates,
    budgets: HashMap<Arc<str>, Arc<Budget>>,
    next_sweep: Instant,
}

/// What the budgets of one proxy have left (see [`Registry::usage`]).
#[derive(Debug)]
pub(crate) struct RegistryUse {
    pub(crate) shared: Use,
    pub(crate) unverified: Use,
    pub(crate) overflow: Use,
    /// The busiest client budgets, by client id.
    pub(crate) clients: Vec<(Arc<str>, Use)>,
    /// How many client budgets are held in all.
    pub(crate) client_count: usize,
}

/// Every budget of one proxy.
#[derive(Debug)]
pub(crate) struct Registry {
    shared: Arc<Budget>,
    unverified: Arc<Budget>,
    overflow: Arc<Budget>,
    clients: Mutex<Clients>,
}

impl Registry {
    /// An empty registry: client budgets follow `limits`, the unverified one `unverified`.
    pub(crate) fn new(limits: Rates, unverified: Rates) -> Self {
        Self {
            shared: Arc::new(Budget::new(limits)),
            unverified: Arc::new(Budget::new(unverified)),
            overflow: Arc::new(Budget::new(limits)),
            clients: Mutex::new(Clients {
                limits,
                budgets: HashMap::new(),
                next_sweep: Instant::now(),
            }),
        }
    }

    fn clients(&self) -> MutexGuard<'_, Clients> {
        // A map left half-updated by a panic is still a valid map.
        self.clients.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The budget of a key that is not a client's.
    fn fixed(&self, key: &BudgetKey) -> Option<Arc<Budget>> {
        match &key.0 {
            KeyKind::Global | KeyKind::Anonymous => Some(Arc::clone(&self.shared)),
            KeyKind::Unverified => Some(Arc::clone(&self.unverified)),
            KeyKind::Client(_) => None,
        }
    }

    /// The budget `key` draws from, created if need be.
    pub(crate) fn budget(&self, key: &BudgetKey) -> Arc<Budget> {
        if let Some(budget) = self.fixed(key) {
            return budget;
        }
        let KeyKind::Client(id) = &key.0 else {
            return Arc::clone(&self.shared);
        };
        let mut clients = self.clients();
        if let Some(budget) = clients.budgets.get(id) {
            return Arc::clone(budget);
        }
        let now = Instant::now();
        if now >= clients.next_sweep {
            // Held elsewhere (a waiter, a call taking a permit) means in use.
            clients
                .budgets
                .retain(|_, budget| Arc::strong_count(budget) > 1 || !budget.is_idle(now));
            clients.next_sweep = after(now, SWEEP_INTERVAL);
        }
        if clients.budgets.len() >= MAX_CLIENT_BUDGETS {
            return Arc::clone(&self.overflow);
        }
        let budget = Arc::new(Budget::new(clients.limits));
        clients.budgets.insert(Arc::clone(id), Arc::clone(&budget));
        budget
    }

    /// The budget `key` would draw from, without creating one: `None` for a client that has
    /// no budget of its own and would get a fresh one.
    pub(crate) fn existing(&self, key: &BudgetKey) -> Option<Arc<Budget>> {
        if let Some(budget) = self.fixed(key) {
            return Some(budget);
        }
        let KeyKind::Client(id) = &key.0 else {
            return None;
        };
        let clients = self.clients();
        match clients.budgets.get(id) {
            Some(budget) => Some(Arc::clone(budget)),
            None if clients.budgets.len() >= MAX_CLIENT_BUDGETS => Some(Arc::clone(&self.overflow)),
            None => None,
        }
    }

    /// Makes every budget, and those created from now on, follow new limits; what each has
    /// spent and any pause stay.
    pub(crate) fn reconfigure(&self, limits: Rates, unverified: Rates) {
        let now = Instant::now();
        let mut clients = self.clients();
        clients.limits = limits;
        for budget in clients.budgets.values() {
            budget.reconfigure(limits, now);
        }
        self.shared.reconfigure(limits, now);
        self.overflow.reconfigure(limits, now);
        self.unverified.reconfigure(unverified, now);
    }

    /// What every budget has left at `now`: the shared, unverified and overflow budgets,
    /// then at most `most` client budgets, the busiest first (paused, then most in line,
    /// then least left).
    pub(crate) fn usage(&self, now: Instant, most: usize) -> RegistryUse {
        let clients = self.clients();
        let mut busiest: Vec<(Arc<str>, Use)> = clients
            .budgets
            .iter()
            .map(|(id, budget)| (Arc::clone(id), budget.usage(now)))
            .collect();
        busiest.sort_by_key(|(id, used)| {
            let spent = used.burst.saturating_sub(used.free);
            (
                std::cmp::Reverse((used.paused_for.is_some(), used.queued, spent)),
                Arc::clone(id),
            )
        });
        busiest.truncate(most);
        RegistryUse {
            shared: self.shared.usage(now),
            unverified: self.unverified.usage(now),
            overflow: self.overflow.usage(now),
            clients: busiest,
            client_count: clients.budgets.len(),
        }
    }

    /// Number of per-client budgets held.
    pub(crate) fn len(&self) -> usize {
        self.clients().budgets.len()
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{RateLimitSettings, Settings};

    use super::*;

    fn key(id: &str) -> BudgetKey {
        BudgetKey(KeyKind::Client(id.into()))
    }

    fn registry() -> Registry {
        let limits = Rates::new(&RateLimitSettings {
            requests_per_second: 1.0,
            burst: 1,
            ..Settings::default().rate_limit
        });
        Registry::new(limits, limits)
    }

    #[tokio::test(start_paused = true)]
    async fn one_budget_per_client_until_swept() {
        let registry = registry();
        let first = registry.budget(&key("a"));
        assert!(Arc::ptr_eq(&first, &registry.budget(&key("a"))));
        assert!(!Arc::ptr_eq(&first, &registry.budget(&key("b"))));
        assert!(registry.existing(&key("c")).is_none());
        assert_eq!(registry.len(), 2);
        drop(first);
        tokio::time::advance(SWEEP_INTERVAL).await;
        registry.budget(&key("c"));
        assert_eq!(registry.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_budget_held_by_a_caller_is_not_swept() {
        let registry = registry();
        let held = registry.budget(&key("held"));
        tokio::time::advance(SWEEP_INTERVAL).await;
        registry.budget(&key("newcomer"));
        assert_eq!(registry.len(), 2);
        let again = registry.existing(&key("held"));
        assert!(again.is_some_and(|again| Arc::ptr_eq(&again, &held)));
    }

    #[tokio::test(start_paused = true)]
    async fn usage_lists_the_busiest_clients_first() {
        let registry = registry();
        let now = Instant::now();
        registry.budget(&key("idle"));
        registry.budget(&key("spent")).charge(now);
        let pause = Duration::from_secs(5);
        registry.budget(&key("paused")).observe(
            super::super::pause::Ask::PauseFor(pause),
            now,
            pause,
        );
        let usage = registry.usage(now, 2);
        assert_eq!(usage.client_count, 3);
        let names: Vec<&str> = usage.clients.iter().map(|(id, _)| &**id).collect();
        assert_eq!(names, ["paused", "spent"]);
        assert_eq!(usage.clients[0].1.paused_for, Some(pause));
        assert_eq!((usage.clients[1].1.free, usage.clients[1].1.burst), (0, 1));
        assert_eq!(usage.shared.free, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn shared_keys_use_the_shared_budget_and_unverified_its_own() {
        let registry = registry();
        let global = registry.budget(&BudgetKey(KeyKind::Global));
        let anonymous = registry.budget(&BudgetKey(KeyKind::Anonymous));
        let unverified = registry.budget(&BudgetKey(KeyKind::Unverified));
        assert!(Arc::ptr_eq(&global, &anonymous));
        assert!(!Arc::ptr_eq(&global, &unverified));
        assert_eq!(registry.len(), 0);
    }
}
