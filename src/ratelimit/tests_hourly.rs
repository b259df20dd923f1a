//! The hourly window: no span of 3,600 s ever holds more than `requests_per_hour` permits of
//! a budget, however they are asked for; checked over every sliding window, on paused time.

use std::time::Duration;

use tokio::time::{Instant, advance};

use super::tests::{acquire, settings};
use super::*;

const HOUR: Duration = Duration::from_secs(3600);

/// The most permits in any window `[t, t + 3600 s]` (closed, the stricter reading) that
/// starts at a permit.
fn busiest_hour(permits: &[Instant]) -> usize {
    permits
        .iter()
        .enumerate()
        .map(|(i, start)| {
            permits[i..]
                .iter()
                .take_while(|t| **t - *start <= HOUR)
                .count()
        })
        .max()
        .unwrap_or(0)
}

fn hourly(per_hour: u32, burst: u32) -> Budgets {
    Budgets::new(&RateLimitSettings {
        requests_per_hour: Some(per_hour),
        ..settings(100.0, burst, HOUR)
    })
}

/// Takes permits as fast as they come for `span`, returning when each was granted.
async fn greedy(budgets: &Budgets, key: &BudgetKey, span: Duration) -> Vec<Instant> {
    let end = Instant::now() + span;
    let mut permits = Vec::new();
    while Instant::now() < end {
        match acquire(budgets, key).await {
            Ok(_) => permits.push(Instant::now()),
            Err(rejection) => advance(rejection.retry_after).await,
        }
    }
    permits
}

#[tokio::test(start_paused = true)]
async fn a_greedy_caller_never_gets_more_than_the_hourly_quota() {
    for (per_hour, burst) in [(50, 10), (50, 1), (50, 50), (50, 80), (7, 3), (1, 10)] {
        let budgets = hourly(per_hour, burst);
        let key = budgets.key_for(Caller::Trusted(Some("app")));
        let permits = greedy(&budgets, &key, 3 * HOUR).await;
        let busiest = busiest_hour(&permits);
        let per_hour = per_hour as usize;
        assert_eq!(busiest, per_hour, "{per_hour}/h, burst {burst}");
        // Not stingy either: a whole burst, then `per_hour - burst + 1` an hour.
        let burst = (burst as usize).min(per_hour);
        let steady = 3 * (per_hour - burst + 1);
        assert!(permits.len() >= steady, "{} < {steady}", permits.len());
    }
}

#[tokio::test(start_paused = true)]
async fn bursts_after_quiet_spells_stay_within_the_quota() {
    let per_hour = 40;
    let budgets = hourly(per_hour, 10);
    let key = budgets.key_for(Caller::Trusted(Some("app")));
    let mut permits = Vec::new();
    // Quiet spells of every length between greedy stretches: the pattern that let a full
    // hour's allowance through after each quiet hour.
    for quiet_minutes in [0, 5, 20, 45, 60, 61, 90, 10, 0, 30] {
        advance(Duration::from_secs(quiet_minutes * 60)).await;
        permits.extend(greedy(&budgets, &key, Duration::from_secs(15 * 60)).await);
    }
    assert!(busiest_hour(&permits) <= per_hour as usize);
}

#[tokio::test(start_paused = true)]
async fn debt_counts_against_the_hour_too() {
    let per_hour = 20;
    let budgets = hourly(per_hour, 5);
    let key = budgets.key_for(Caller::Trusted(Some("app")));
    let start = Instant::now();
    let mut permits = vec![start; 8];
    for _ in 0..8 {
        budgets.charge(&key);
    }
    permits.extend(greedy(&budgets, &key, 2 * HOUR).await);
    assert!(busiest_hour(&permits) <= per_hour as usize);
}
