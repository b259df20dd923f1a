//! What the budgets have left right now, as the status page shows it.

use serde::Serialize;
use tokio::time::Instant;

use super::Budgets;
use super::budget::Use;
use crate::config::RateLimitKey;

/// One budget's state at one instant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BudgetUse {
    /// `global`, `anonymous` (trusted tokens without a `client_id`), `unverified`,
    /// `overflow` (new clients past the most budgets held), or a client app's id.
    pub name: String,
    /// Permits free now in the per-second window.
    pub free: u32,
    /// The per-second window's burst.
    pub burst: u32,
    /// Permits free now in the hourly window, when `requests_per_hour` is set.
    pub hourly_free: Option<u32>,
    /// The hourly window's burst, when `requests_per_hour` is set.
    pub hourly_burst: Option<u32>,
    /// Calls waiting for a permit now.
    pub queued: usize,
    /// Seconds left on an upstream Retry-After pause, if one is in force.
    pub paused_for_seconds: Option<f64>,
}

impl BudgetUse {
    fn new(name: impl Into<String>, used: Use) -> Self {
        Self {
            name: name.into(),
            free: used.free,
            burst: used.burst,
            hourly_free: used.hourly.map(|(free, _)| free),
            hourly_burst: used.hourly.map(|(_, burst)| burst),
            queued: used.queued,
            paused_for_seconds: used.paused_for.map(|pause| pause.as_secs_f64()),
        }
    }
}

/// Every budget's state at one instant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BudgetsUsage {
    /// Whether the budgets are drawn from the cluster's Redis while it answers: what is
    /// listed is then this replica's local share (used while Redis does not answer) and the
    /// pauses it learnt.
    pub clustered: bool,
    /// The budgets, shared ones first, then the busiest client budgets.
    pub budgets: Vec<BudgetUse>,
    /// How many client budgets are held, listed or not.
    pub client_budgets: usize,
}

impl Budgets {
    /// What every budget has left now, with at most `most_clients` client budgets (the
    /// busiest: paused, then most in line, then least left).
    pub fn usage(&self, most_clients: usize) -> BudgetsUsage {
        let now = Instant::now();
        let usage = self.registry.usage(now, most_clients);
        let mut budgets = Vec::with_capacity(usage.clients.len() + 3);
        match self.policy().key {
            RateLimitKey::Global => budgets.push(BudgetUse::new("global", usage.shared)),
            RateLimitKey::ClientId => {
                budgets.push(BudgetUse::new("unverified", usage.unverified));
                budgets.push(BudgetUse::new("anonymous", usage.shared));
                if usage.client_count >= super::MAX_CLIENT_BUDGETS
                    || usage.overflow.free < usage.overflow.burst
                {
                    budgets.push(BudgetUse::new("overflow", usage.overflow));
                }
                budgets.extend(
                    usage
                        .clients
                        .into_iter()
                        .map(|(id, used)| BudgetUse::new(&*id, used)),
                );
            }
        }
        BudgetsUsage {
            clustered: self.shared.is_some(),
            budgets,
            client_budgets: usage.client_count,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use http::{HeaderMap, StatusCode};

    use super::*;
    use crate::config::Settings;
    use crate::ratelimit::Caller;

    #[tokio::test(start_paused = true)]
    async fn spent_permits_queue_and_pauses_show() {
        let settings = crate::config::RateLimitSettings {
            burst: 3,
            requests_per_hour: Some(100),
            ..Settings::default().rate_limit
        };
        let budgets = Budgets::new(&settings);
        let app = budgets.key_for(Caller::Trusted(Some("app-1")));
        budgets.acquire(&app).await.unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", "7".parse().unwrap());
        let now = SystemTime::now();
        let status = StatusCode::TOO_MANY_REQUESTS;
        budgets.observe_response(&app, status, &headers, now).await;

        let usage = budgets.usage(10);
        assert!(!usage.clustered);
        assert_eq!(usage.client_budgets, 1);
        let names: Vec<&str> = usage.budgets.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["unverified", "anonymous", "app-1"]);
        let app = &usage.budgets[2];
        assert_eq!((app.free, app.burst), (2, 3));
        assert_eq!((app.hourly_free, app.hourly_burst), (Some(2), Some(3)));
        assert_eq!(app.paused_for_seconds, Some(7.0));
        assert_eq!(
            usage.budgets[0].hourly_burst, None,
            "no hourly unverified window"
        );

        tokio::time::advance(Duration::from_secs(8)).await;
        assert_eq!(budgets.usage(10).budgets[2].paused_for_seconds, None);
    }

    #[tokio::test(start_paused = true)]
    async fn one_global_budget() {
        let settings = crate::config::RateLimitSettings {
            key: RateLimitKey::Global,
            ..Settings::default().rate_limit
        };
        let usage = Budgets::new(&settings).usage(10);
        assert_eq!(usage.budgets.len(), 1);
        assert_eq!(usage.budgets[0].name, "global");
    }
}
