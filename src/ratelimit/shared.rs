//! Budgets shared by a cluster: with `cluster.redis_url` set, every permit is drawn from the
//! app's one budget in Redis (`crate::cluster::budget`), so all replicas together keep to
//! the rate; pauses and debts are written there too. While Redis cannot be reached, the
//! local budgets take over, each at 1/`cluster.replicas_hint` of every rate and burst.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::sleep;

use super::pause::Ask;
use super::{Admission, BudgetKey, KeyKind, Rejection};
use crate::cluster::{Decision, Link, PauseAsk, SharedBudgets, SharedLimits};
use crate::config::RateLimitSettings;

/// The cluster's side of the budgets.
#[derive(Debug)]
pub(super) struct Shared {
    budgets: SharedBudgets,
    link: Link,
    limits: Mutex<Windows>,
}

/// The windows of an app's budget and of the unverified one.
#[derive(Debug, Clone, Copy)]
struct Windows {
    app: SharedLimits,
    unverified: SharedLimits,
}

impl Windows {
    fn new(settings: &RateLimitSettings) -> Self {
        Self {
            app: SharedLimits::new(
                settings.requests_per_second,
                settings.burst,
                settings.requests_per_hour,
            ),
            unverified: SharedLimits::new(
                settings.unverified_per_second,
                settings.unverified_burst,
                None,
            ),
        }
    }
}

/// The name of a budget in Redis.
fn name(key: &BudgetKey) -> String {
    match &key.0 {
        KeyKind::Global => "global".to_owned(),
        KeyKind::Anonymous => "anonymous".to_owned(),
        KeyKind::Unverified => "unverified".to_owned(),
        KeyKind::Client(id) => format!("client:{id}"),
    }
}

/// The local settings of one replica while Redis is down: 1/`replicas` of every rate, burst
/// and hourly window (at least one permit each).
pub(super) fn share_of(settings: &RateLimitSettings, replicas: u32) -> RateLimitSettings {
    let n = replicas.max(1);
    let part = |whole: u32| (whole / n).max(1);
    RateLimitSettings {
        requests_per_second: settings.requests_per_second / f64::from(n),
        burst: part(settings.burst),
        requests_per_hour: settings.requests_per_hour.map(part),
        unverified_per_second: settings.unverified_per_second / f64::from(n),
        unverified_burst: part(settings.unverified_burst),
        ..settings.clone()
    }
}

impl Shared {
    /// Budgets drawn from `budgets` while `link` is up.
    pub(super) fn new(budgets: SharedBudgets, link: Link, settings: &RateLimitSettings) -> Self {
        Self {
            budgets,
            link,
            limits: Mutex::new(Windows::new(settings)),
        }
    }

    fn limits(&self, key: &BudgetKey) -> SharedLimits {
        let windows = *self.limits.lock().unwrap_or_else(PoisonError::into_inner);
        match key.0 {
            KeyKind::Unverified => windows.unverified,
            _ => windows.app,
        }
    }

    /// Follows new settings from now on.
    pub(super) fn reconfigure(&self, settings: &RateLimitSettings) {
        *self.limits.lock().unwrap_or_else(PoisonError::into_inner) = Windows::new(settings);
    }

    /// A permit of `key`'s shared budget due within `max_wait` (waited for here), or the
    /// rejection; `None` when Redis cannot decide, so the local budget must.
    pub(super) async fn acquire(
        &self,
        key: &BudgetKey,
        max_wait: Duration,
    ) -> Option<Result<Admission, Rejection>> {
        if !self.link.is_up() {
            return None;
        }
        match self
            .budgets
            .take(&name(key), &self.limits(key), max_wait)
            .await
        {
            Ok(Decision::Granted(wait)) if wait.is_zero() => Some(Ok(Admission::Immediate)),
            Ok(Decision::Granted(wait)) => {
                sleep(wait).await;
                Some(Ok(Admission::Delayed(wait)))
            }
            Ok(Decision::Refused {
                retry_after,
                paused,
            }) => Some(Err(Rejection {
                retry_after,
                paused,
            })),
            Err(error) => {
                tracing::debug!(%error, "shared budget unavailable; the local one decides");
                None
            }
        }
    }

    /// Charges `key`'s shared budget (into debt if need be), in the background.
    pub(super) fn charge(&self, key: &BudgetKey) {
        if !self.link.is_up() {
            return;
        }
        let (budgets, name, limits) = (self.budgets.clone(), name(key), self.limits(key));
        tokio::spawn(async move {
            if let Err(error) = budgets.charge(&name, &limits).await {
                tracing::debug!(%error, "cannot charge the shared budget");
            }
        });
    }

    /// Applies what an upstream answer asked to `key`'s shared budget: a pause reaches every
    /// replica (awaited, so the caller's next call already sees it); a success ends the
    /// doubling streak in the background.
    pub(super) async fn observe(&self, key: &BudgetKey, ask: Ask, max_pause: Duration) {
        if !self.link.is_up() {
            return;
        }
        let (name, limits) = (name(key), self.limits(key));
        let pause = match ask {
            Ask::PauseFor(pause) => PauseAsk::For(pause),
            Ask::DefaultPause => PauseAsk::Default,
            Ask::EndStreak => {
                let budgets = self.budgets.clone();
                tokio::spawn(async move {
                    if let Err(error) = budgets.end_streak(&name, &limits).await {
                        tracing::debug!(%error, "cannot end the shared pause streak");
                    }
                });
                return;
            }
            Ask::Nothing => return,
        };
        if let Err(error) = self.budgets.pause(&name, &limits, pause, max_pause).await {
            tracing::debug!(%error, "cannot pause the shared budget");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    #[test]
    fn a_replica_alone_spends_its_share() {
        let mut settings = Settings::default().rate_limit;
        settings.requests_per_second = 9.0;
        settings.burst = 10;
        settings.requests_per_hour = Some(5000);
        settings.unverified_burst = 2;
        let share = share_of(&settings, 3);
        assert_eq!(share.requests_per_second, 3.0);
        assert_eq!(share.burst, 3);
        assert_eq!(share.requests_per_hour, Some(1666));
        assert_eq!(share.unverified_burst, 1);
        assert_eq!(share.max_wait, settings.max_wait);
        assert_eq!(share_of(&settings, 1), settings);
    }

    #[test]
    fn budgets_have_distinct_names() {
        let names = [
            BudgetKey(KeyKind::Global),
            BudgetKey(KeyKind::Anonymous),
            BudgetKey(KeyKind::Unverified),
            BudgetKey(KeyKind::Client("global".into())),
        ]
        .map(|key| name(&key));
        assert_eq!(
            names,
            ["global", "anonymous", "unverified", "client:global"]
        );
    }
}
