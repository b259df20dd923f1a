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
        unverified_per_second: rps,
        unverified_burst: burst,
    }
}

pub(super) async fn acquire(budgets: &Budgets, key: &BudgetKey) -> Result<Admission, Rejection> {
    match timeout(BOUND, budgets.acquire(key)).await {
        Ok(result) => result,
        Err(_) => panic!("acquire outlived its bound"),
    }
}

/// Whether the budget of a trusted caller of `app` admits a call at once.
pub(super) async fn admits_now(budgets: &Budgets, app: Option<&str>) -> bool {
    let key = budgets.key_for(Caller::Trusted(app));
    budgets.try_acquire(&key).await.is_ok()
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
    let key = budgets.key_for(Caller::Trusted(Some("app")));
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
    let key = budgets.key_for(Caller::Trusted(Some("app")));
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
    let key = budgets.key_for(Caller::Trusted(Some("app")));
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
    let key = budgets.key_for(Caller::Trusted(Some("app")));
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
    let key = budgets.key_for(Caller::Trusted(Some("app")));
    let start = Instant::now();
    assert_eq!(acquire(&budgets, &key).await, Ok(Admission::Immediate));
    assert_eq!(budgets.try_acquire(&key).await, Ok(Admission::Immediate));
    let Err(rejection) = acquire(&budgets, &key).await else {
        panic!("the burst of 2 is spent");
    };
    assert_eq!(rejection.retry_after_secs(), 1);
    assert!(budgets.try_acquire(&key).await.is_err());
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn max_wait_zero_refuses_nobody_for_the_instant_another_holds_the_turn() {
    let budgets = Arc::new(Budgets::new(&settings(0.001, 5, Duration::ZERO)));
    let key = budgets.key_for(Caller::Trusted(Some("app")));
    // Another caller is taking its permit at this very instant.
    let budget = budgets.registry.budget(&key);
    let held = budget.try_turn().expect("nobody holds the turn");
    let asking = tokio::spawn({
        let (budgets, key) = (Arc::clone(&budgets), key.clone());
        async move { acquire(&budgets, &key).await }
    });
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(
        !asking.is_finished(),
        "permits to spare: it waits for the turn, not refused"
    );
    drop(held);
    assert!(matches!(
        asking.await,
        Ok(Ok(Admission::Immediate | Admission::Delayed(_)))
    ));
    // With none to spare, a caller behind the turn is still refused at once.
    for _ in 0..4 {
        assert!(acquire(&budgets, &key).await.is_ok());
    }
    let held = budget.try_turn().expect("nobody holds the turn");
    assert!(acquire(&budgets, &key).await.is_err(), "the burst is spent");
    drop(held);
}

#[tokio::test(start_paused = true)]
async fn try_acquire_never_jumps_the_line() {
    let budgets = Arc::new(Budgets::new(&settings(0.1, 1, Duration::from_secs(15))));
    let key = budgets.key_for(Caller::Trusted(Some("app")));
    assert_eq!(acquire(&budgets, &key).await, Ok(Admission::Immediate));
    let head = tokio::spawn({
        let (budgets, key) = (Arc::clone(&budgets), key.clone());
        async move { acquire(&budgets, &key).await }
    });
    tokio::task::yield_now().await;
    advance(Duration::from_secs(9)).await;
    // The head waits until 10 s; whoever stands behind it gets the permit after that.
    let Err(rejection) = budgets.try_acquire(&key).await else {
        panic!("someone is in line");
    };
    assert!(about(rejection.retry_after, Duration::from_secs(11)));
    assert!(matches!(head.await, Ok(Ok(Admission::Delayed(_)))));
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_waiter_gives_up_its_place() {
    let budgets = Arc::new(Budgets::new(&settings(1.0, 1, Duration::from_secs(60))));
    let key = budgets.key_for(Caller::Trusted(Some("app")));
    assert_eq!(acquire(&budgets, &key).await, Ok(Admission::Immediate));
    let gave_up = timeout(Duration::from_millis(100), budgets.acquire(&key)).await;
    assert!(gave_up.is_err(), "the permit was not due before 1 s");
    let waited = delay(acquire(&budgets, &key).await);
    assert!(about(waited, Duration::from_millis(900)), "{waited:?}");
}

#[tokio::test(start_paused = true)]
async fn client_budgets_are_independent() {
    let budgets = Budgets::new(&settings(1.0, 1, Duration::ZERO));
    let (a, b) = (
        budgets.key_for(Caller::Trusted(Some("a"))),
        budgets.key_for(Caller::Trusted(Some("b"))),
    );
    assert_ne!(a, b);
    assert_eq!(budgets.try_acquire(&a).await, Ok(Admission::Immediate));
    assert!(budgets.try_acquire(&a).await.is_err());
    assert_eq!(budgets.try_acquire(&b).await, Ok(Admission::Immediate));
    assert_eq!(budgets.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn tokens_without_client_id_share_one_budget() {
    let budgets = Budgets::new(&settings(1.0, 1, Duration::ZERO));
    let anonymous = budgets.key_for(Caller::Trusted(None));
    assert_eq!(budgets.key_for(Caller::Trusted(Some(""))), anonymous);
    assert_ne!(budgets.key_for(Caller::Trusted(Some("a"))), anonymous);
    assert_eq!(
        budgets.try_acquire(&anonymous).await,
        Ok(Admission::Immediate)
    );
    assert!(!admits_now(&budgets, Some("")).await);
    assert!(admits_now(&budgets, Some("a")).await);
}

#[tokio::test(start_paused = true)]
async fn global_key_shares_one_budget() {
    let budgets = Budgets::new(&RateLimitSettings {
        key: RateLimitKey::Global,
        ..settings(1.0, 2, Duration::ZERO)
    });
    let a = budgets.key_for(Caller::Trusted(Some("a")));
    assert_eq!(a, budgets.key_for(Caller::Trusted(Some("b"))));
    assert_eq!(a, budgets.key_for(Caller::Trusted(None)));
    assert!(budgets.try_acquire(&a).await.is_ok());
    assert!(admits_now(&budgets, Some("b")).await);
    assert!(!admits_now(&budgets, None).await);
    assert_eq!(budgets.len(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_flood_of_client_ids_stays_bounded() {
    let budgets = Budgets::new(&settings(1.0, 1, Duration::ZERO));
    let real = budgets.key_for(Caller::Trusted(Some("real")));
    assert!(budgets.try_acquire(&real).await.is_ok());
    let mut admitted = 0;
    for id in 0..100_000 {
        let key = budgets.key_for(Caller::Trusted(Some(&format!("forged-{id}"))));
        admitted += usize::from(budgets.try_acquire(&key).await.is_ok());
        assert!(budgets.len() <= MAX_CLIENT_BUDGETS);
    }
    assert_eq!(budgets.len(), MAX_CLIENT_BUDGETS);
    // Past the cap, the flood shares one overflow budget (of one permit here).
    assert_eq!(admitted, MAX_CLIENT_BUDGETS);
    assert!(
        budgets.try_acquire(&real).await.is_err(),
        "the real client kept its state"
    );
    advance(Duration::from_secs(1)).await;
    assert!(admits_now(&budgets, Some("newcomer")).await);
    assert_eq!(budgets.len(), 1, "replenished budgets were swept out");
}

#[tokio::test(start_paused = true)]
async fn everyone_in_line_whose_permit_falls_past_max_wait_is_refused_at_once() {
    let budgets = Arc::new(Budgets::new(&settings(1.0, 1, Duration::from_millis(2500))));
    let key = budgets.key_for(Caller::Trusted(Some("app")));
    assert_eq!(acquire(&budgets, &key).await, Ok(Admission::Immediate));
    let start = Instant::now();
    let (done, mut finished) = mpsc::unbounded_channel();
    for index in 0..5u64 {
        let (budgets, key, done) = (Arc::clone(&budgets), key.clone(), done.clone());
        tokio::spawn(async move {
            let admission = acquire(&budgets, &key).await;
            let _ = done.send((index, admission, start.elapsed()));
        });
        tokio::task::yield_now().await;
    }
    drop(done);
    let mut seen = 0;
    while let Some((index, admission, elapsed)) = finished.recv().await {
        seen += 1;
        match index {
            // Permits due at 1 s and 2 s: within max_wait.
            0 | 1 => {
                assert!(
                    matches!(admission, Ok(Admission::Delayed(_))),
                    "{admission:?}"
                );
                assert!(
                    about(elapsed, Duration::from_secs(index + 1)),
                    "{elapsed:?}"
                );
            }
            // Third in line (the refused leave it): due at 3 s, refused the moment they
            // arrive, with that as Retry-After.
            _ => {
                let Err(rejection) = admission else {
                    panic!("caller {index} cannot have a permit within 2.5 s");
                };
                assert_eq!(elapsed, Duration::ZERO, "caller {index} waited");
                assert!(about(rejection.retry_after, Duration::from_secs(3)));
            }
        }
    }
    assert_eq!(seen, 5);
}

#[tokio::test(start_paused = true)]
async fn a_debt_charged_meanwhile_refuses_those_it_pushes_past_max_wait() {
    let budgets = Arc::new(Budgets::new(&settings(1.0, 1, Duration::from_secs(3))));
    let key = budgets.key_for(Caller::Trusted(Some("app")));
    assert_eq!(acquire(&budgets, &key).await, Ok(Admission::Immediate));
    let start = Instant::now();
    let waiter = tokio::spawn({
        let (budgets, key) = (Arc::clone(&budgets), key.clone());
        async move { (acquire(&budgets, &key).await, start.elapsed()) }
    });
    tokio::task::yield_now().await;
    for _ in 0..5 {
        budgets.charge(&key);
    }
    let Ok((Err(rejection), at)) = waiter.await else {
        panic!("a permit pushed to 6 s is past max_wait");
    };
    assert_eq!(at, Duration::ZERO);
    assert!(about(rejection.retry_after, Duration::from_secs(6)));
}

#[tokio::test(start_paused = true)]
async fn untrusted_calls_share_one_budget_whatever_they_claim() {
    let budgets = Budgets::new(&RateLimitSettings {
        unverified_per_second: 1.0,
        unverified_burst: 2,
        ..settings(1.0, 1, Duration::ZERO)
    });
    let untrusted = budgets.key_for(Caller::Untrusted);
    assert!(untrusted.is_unverified());
    let app = budgets.key_for(Caller::Trusted(Some("app")));
    assert!(!app.is_unverified());
    assert_eq!(
        budgets.try_acquire(&untrusted).await,
        Ok(Admission::Immediate)
    );
    assert_eq!(
        budgets.try_acquire(&untrusted).await,
        Ok(Admission::Immediate)
    );
    assert!(budgets.try_acquire(&untrusted).await.is_err());
    assert_eq!(
        budgets.try_acquire(&app).await,
        Ok(Admission::Immediate),
        "untouched"
    );
    assert_eq!(budgets.len(), 1);
    let global = Budgets::new(&RateLimitSettings {
        key: RateLimitKey::Global,
        ..settings(1.0, 1, Duration::ZERO)
    });
    assert!(!global.key_for(Caller::Untrusted).is_unverified());
    assert_eq!(
        global.key_for(Caller::Untrusted),
        global.key_for(Caller::Trusted(Some("app")))
    );
}

#[tokio::test(start_paused = true)]
async fn a_reconfigure_keeps_spent_permits_and_pauses() {
    let budgets = Budgets::new(&settings(1.0, 3, Duration::ZERO));
    let (a, b) = (
        budgets.key_for(Caller::Trusted(Some("a"))),
        budgets.key_for(Caller::Trusted(Some("b"))),
    );
    for _ in 0..3 {
        assert_eq!(budgets.try_acquire(&a).await, Ok(Admission::Immediate));
    }
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::RETRY_AFTER,
        http::HeaderValue::from_static("30"),
    );
    budgets
        .observe_response(
            &b,
            StatusCode::TOO_MANY_REQUESTS,
            &headers,
            SystemTime::now(),
        )
        .await;
    // Half the rate, a longer max_wait: the three permits of `a` stay spent and now
    // replenish every 2 s; `b` stays paused.
    budgets.reconfigure(&settings(0.5, 3, Duration::from_secs(1)));
    let Err(rejection) = budgets.try_acquire(&a).await else {
        panic!("the spent permits were forgotten");
    };
    assert!(about(rejection.retry_after, Duration::from_secs(2)));
    assert_eq!(budgets.pause_remaining(&b), Some(Duration::from_secs(30)));
    assert!(budgets.try_acquire(&b).await.is_err_and(|r| r.paused));
    advance(Duration::from_secs(2)).await;
    assert_eq!(budgets.try_acquire(&a).await, Ok(Admission::Immediate));
    assert!(budgets.try_acquire(&a).await.is_err());
}
