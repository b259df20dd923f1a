//! Admission: bursts, spacing, queueing, deadlines and keys, all on paused tokio time.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{Instant, advance, timeout};

use super::*;

/// Bound on any await of these tests, in (auto-advancing) paused time.
pub(super) const BOUND: Duration = Duration::from_secs(3600);

pub(super) fn settings(rps: f64, burst: u32, max_wait: Duration) -> RateLimitSettings {
    RateLimitSettings {
        requests_per_second: rps,
        burst,
        requests_per_hour: None,
        max_wait,
        max_pause: Duration::from_secs(60),
        key: RateLimitKey::ClientId,
    }
}

pub(super) async fn acquire(budgets: &Budgets, key: &BudgetKey) -> Result<Admission, Rejection> {
    match timeout(BOUND, budgets.acquire(key)).await {
        Ok(result) => result,
        Err(_) => panic!("acquire outlived its bound"),
    }
}

/// Whether `actual` is within a few milliseconds of `expected` (timers tick in milliseconds).
pub(super) fn about(actual: Duration, expected: Duration) -> bool {
    actual.abs_diff(expected) <= Duration::from_millis(5)
}

fn delay(admission: Result<Admission, Rejection>) -> Duration {
    match admission {
        Ok(Admission::Delayed(waited)) => waited,
        other => panic!("expected a delayed admission, got {other:?}"),
    }
}

#[test]
fn budgets_are_shareable() {
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<Budgets>();
    shareable::<BudgetKey>();
}

#[test]
fn retry_after_secs_rounds_up_to_at_least_one() {
    let secs = |retry_after| {
        let paused = false;
        Rejection {
            retry_after,
            paused,
        }
        .retry_after_secs()
    };
    assert_eq!(secs(Duration::ZERO), 1);
    assert_eq!(secs(Duration::from_millis(1)), 1);
    assert_eq!(secs(Duration::from_secs(3)), 3);
    assert_eq!(secs(Duration::from_millis(3001)), 4);
    assert_eq!(secs(Duration::MAX), u64::MAX);
}

#[tokio::test(start_paused = true)]
async fn burst_then_spacing_at_the_configured_rate() {
    let budgets = Budgets::new(&settings(2.0, 3, Duration::from_secs(10)));
    let key = budgets.key_for(Some("app"));
    let start = Instant::now();
    for _ in 0..3 {
        assert_eq!(acquire(&budgets, &key).await, Ok(Admission::Immediate));
    }
    for _ in 0..3 {
        assert!(about(
            delay(acquire(&budgets, &key).await),
            Duration::from_millis(500)
        ));
    }
    assert!(about(start.elapsed(), Duration::from_millis(1500)));
}

#[tokio::test(start_paused = true)]
async fn fractional_rate() {
    let budgets = Budgets::new(&settings(0.5, 1, Duration::from_secs(10)));
    let key = budgets.key_for(Some("app"));
    assert_eq!(acquire(&budgets, &key).await, Ok(Admission::Immediate));
    assert!(about(
        delay(acquire(&budgets, &key).await),
        Duration::from_secs(2)
    ));
    assert!(about(
        delay(acquire(&budgets, &key).await),
        Duration::from_secs(2)
    ));
}

#[tokio::test(start_paused = true)]
async fn waiters_are_served_in_arrival_order() {
    let budgets = Arc::new(Budgets::new(&settings(1.0, 1, Duration::from_secs(60))));
    let key = budgets.key_for(Some("app"));
    assert_eq!(acquire(&budgets, &key).await, Ok(Admission::Immediate));
    let start = Instant::now();
    let (done, mut finished) = mpsc::unbounded_channel();
    for index in 0..6 {
        let (budgets, key, done) = (Arc::clone(&budgets), key.clone(), done.clone());
        tokio::spawn(async move {
            let admission = acquire(&budgets, &key).await;
            let _ = done.send((index, admission, start.elapsed()));
        });
        tokio::task::yield_now().await;
    }
    drop(done);
    let mut order = Vec::new();
    while let Some((index, admission, elapsed)) = finished.recv().await {
        assert!(
            matches!(admission, Ok(Admission::Delayed(_))),
            "{admission:?}"
        );
        assert!(
            about(elapsed, Duration::from_secs(index + 1)),
            "{index}: {elapsed:?}"
        );
        order.push(index);
    }
    assert_eq!(order, [0, 1, 2, 3, 4, 5]);
}

#[tokio::test(start_paused = true)]
async fn rejects_at_once_when_the_permit_is_due_past_max_wait() {
    let budgets = Budgets::new(&settings(0.25, 1, Duration::from_millis(500)));
    let key = budgets.key_for(Some("app"));
    assert_eq!(acquire(&budgets, &key).await, Ok(Admission::Immediate));
    let start = Instant::now();
    let Err(rejection) = acquire(&budgets, &key).await else {
        panic!("a permit due in 4 s cannot come within 500 ms");
    };
    assert_eq!(start.elapsed(), Duration::ZERO, "rejected without waiting");
    assert!(!rejection.paused);
    assert!(about(rejection.retry_after, Duration::from_secs(4)));
    assert_eq!(rejection.retry_after_secs(), 4);
    advance(Duration::from_millis(3500)).await;
    assert!(about(
        delay(acquire(&budgets, &key).await),
        Duration::from_millis(500)
    ));
}

#[tokio::test(start_paused = true)]
async fn max_wait_zero_never_waits() {
    let budgets = Budgets::new(&settings(1.0, 2, Duration::ZERO));
    let key = budgets.key_for(Some("app"));
    let start = Instant::now();
    assert_eq!(acquire(&budgets, &key).await, Ok(Admission::Immediate));
    assert_eq!(budgets.try_acquire(&key), Ok(Admission::Immediate));
    let Err(rejection) = acquire(&budgets, &key).await else {
        panic!("the burst of 2 is spent");
    };
    assert_eq!(rejection.retry_after_secs(), 1);
    assert!(budgets.try_acquire(&key).is_err());
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn try_acquire_never_jumps_the_line() {
    let budgets = Arc::new(Budgets::new(&settings(0.1, 1, Duration::from_secs(15))));
    let key = budgets.key_for(Some("app"));
    assert_eq!(acquire(&budgets, &key).await, Ok(Admission::Immediate));
    let head = tokio::spawn({
        let (budgets, key) = (Arc::clone(&budgets), key.clone());
        async move { acquire(&budgets, &key).await }
    });
    tokio::task::yield_now().await;
    advance(Duration::from_secs(9)).await;
    // The head waits until 10 s; whoever stands behind it gets the permit after that.
    let Err(rejection) = budgets.try_acquire(&key) else {
        panic!("someone is in line");
    };
    assert!(about(rejection.retry_after, Duration::from_secs(11)));
    assert!(matches!(head.await, Ok(Ok(Admission::Delayed(_)))));
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_waiter_gives_up_its_place() {
    let budgets = Arc::new(Budgets::new(&settings(1.0, 1, Duration::from_secs(60))));
    let key = budgets.key_for(Some("app"));
    assert_eq!(acquire(&budgets, &key).await, Ok(Admission::Immediate));
    let gave_up = timeout(Duration::from_millis(100), budgets.acquire(&key)).await;
    assert!(gave_up.is_err(), "the permit was not due before 1 s");
    let waited = delay(acquire(&budgets, &key).await);
    assert!(about(waited, Duration::from_millis(900)), "{waited:?}");
}

#[tokio::test(start_paused = true)]
async fn client_budgets_are_independent() {
    let budgets = Budgets::new(&settings(1.0, 1, Duration::ZERO));
    let (a, b) = (budgets.key_for(Some("a")), budgets.key_for(Some("b")));
    assert_ne!(a, b);
    assert_eq!(budgets.try_acquire(&a), Ok(Admission::Immediate));
    assert!(budgets.try_acquire(&a).is_err());
    assert_eq!(budgets.try_acquire(&b), Ok(Admission::Immediate));
    assert_eq!(budgets.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn tokens_without_client_id_share_one_budget() {
    let budgets = Budgets::new(&settings(1.0, 1, Duration::ZERO));
    let anonymous = budgets.key_for(None);
    assert_eq!(budgets.key_for(Some("")), anonymous);
    assert_ne!(budgets.key_for(Some("a")), anonymous);
    assert_eq!(budgets.try_acquire(&anonymous), Ok(Admission::Immediate));
    assert!(budgets.try_acquire(&budgets.key_for(Some(""))).is_err());
    assert!(budgets.try_acquire(&budgets.key_for(Some("a"))).is_ok());
}

#[tokio::test(start_paused = true)]
async fn global_key_shares_one_budget() {
    let budgets = Budgets::new(&RateLimitSettings {
        key: RateLimitKey::Global,
        ..settings(1.0, 2, Duration::ZERO)
    });
    let a = budgets.key_for(Some("a"));
    assert_eq!(a, budgets.key_for(Some("b")));
    assert_eq!(a, budgets.key_for(None));
    assert!(budgets.try_acquire(&a).is_ok());
    assert!(budgets.try_acquire(&budgets.key_for(Some("b"))).is_ok());
    assert!(budgets.try_acquire(&budgets.key_for(None)).is_err());
    assert_eq!(budgets.len(), 0);
}

#[tokio::test(start_paused = true)]
async fn hourly_window_is_needed_too() {
    let budgets = Budgets::new(&RateLimitSettings {
        requests_per_hour: Some(3),
        ..settings(100.0, 10, Duration::from_secs(60))
    });
    let key = budgets.key_for(Some("app"));
    for _ in 0..3 {
        assert_eq!(acquire(&budgets, &key).await, Ok(Admission::Immediate));
    }
    let Err(rejection) = acquire(&budgets, &key).await else {
        panic!("the hourly window of 3 is spent");
    };
    assert!(about(rejection.retry_after, Duration::from_secs(1200)));
    advance(Duration::from_secs(1190)).await;
    assert!(about(
        delay(acquire(&budgets, &key).await),
        Duration::from_secs(10)
    ));
    assert!(budgets.try_acquire(&key).is_err());
}

#[tokio::test(start_paused = true)]
async fn a_flood_of_client_ids_stays_bounded() {
    let budgets = Budgets::new(&settings(1.0, 1, Duration::ZERO));
    let real = budgets.key_for(Some("real"));
    assert!(budgets.try_acquire(&real).is_ok());
    let mut admitted = 0;
    for id in 0..100_000 {
        let key = budgets.key_for(Some(&format!("forged-{id}")));
        admitted += usize::from(budgets.try_acquire(&key).is_ok());
        assert!(budgets.len() <= MAX_CLIENT_BUDGETS);
    }
    assert_eq!(budgets.len(), MAX_CLIENT_BUDGETS);
    // Past the cap, the flood shares one overflow budget (of one permit here).
    assert_eq!(admitted, MAX_CLIENT_BUDGETS);
    assert!(
        budgets.try_acquire(&real).is_err(),
        "the real client kept its state"
    );
    advance(Duration::from_secs(1)).await;
    assert!(
        budgets
            .try_acquire(&budgets.key_for(Some("newcomer")))
            .is_ok()
    );
    assert_eq!(budgets.len(), 1, "replenished budgets were swept out");
}
