//! Retry-After pauses seen through [`Budgets`], on paused tokio time and a fixed wall clock.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::header::RETRY_AFTER;
use http::{HeaderMap, HeaderValue, StatusCode};
use tokio::time::{Instant, advance};

use super::tests::{about, acquire, admits_now, settings};
use super::*;

/// The wall clock of these tests.
fn wall() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

fn retry_after(value: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(RETRY_AFTER, value);
    }
    headers
}

async fn observe(
    budgets: &Budgets,
    key: &BudgetKey,
    status: u16,
    headers: &HeaderMap,
) -> Option<Duration> {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::IM_A_TEAPOT);
    budgets.observe_response(key, status, headers, wall()).await
}

fn budgets(max_wait: Duration) -> Budgets {
    Budgets::new(&settings(100.0, 100, max_wait))
}

#[tokio::test(start_paused = true)]
async fn a_429_with_seconds_pauses_and_calls_wait_it_out() {
    let budgets = budgets(Duration::from_secs(10));
    let key = budgets.key_for(Caller::Trusted(Some("app")));
    let five = Some(Duration::from_secs(5));
    assert_eq!(observe(&budgets, &key, 429, &retry_after("5")).await, five);
    assert_eq!(budgets.pause_remaining(&key), five);
    let start = Instant::now();
    let admission = acquire(&budgets, &key).await;
    assert_eq!(admission, Ok(Admission::Delayed(Duration::from_secs(5))));
    assert_eq!(start.elapsed(), Duration::from_secs(5));
    assert_eq!(budgets.pause_remaining(&key), None);
}

#[tokio::test(start_paused = true)]
async fn a_pause_longer_than_max_wait_rejects_at_once() {
    let budgets = budgets(Duration::from_secs(2));
    let key = budgets.key_for(Caller::Trusted(Some("app")));
    observe(&budgets, &key, 429, &retry_after("5")).await;
    let start = Instant::now();
    let rejection = Rejection {
        retry_after: Duration::from_secs(5),
        paused: true,
    };
    assert_eq!(acquire(&budgets, &key).await, Err(rejection));
    assert_eq!(
        budgets.try_acquire(&key).await.map_err(|r| r.paused),
        Err(true)
    );
    assert_eq!(start.elapsed(), Duration::ZERO);
    advance(Duration::from_millis(3500)).await;
    let waited = acquire(&budgets, &key).await;
    assert_eq!(waited, Ok(Admission::Delayed(Duration::from_millis(1500))));
}

#[tokio::test(start_paused = true)]
async fn a_429_with_an_http_date_pauses_until_then() {
    let budgets = budgets(Duration::ZERO);
    let key = budgets.key_for(Caller::Trusted(Some("app")));
    let date = httpdate::fmt_http_date(wall() + Duration::from_secs(7));
    let seven = Some(Duration::from_secs(7));
    assert_eq!(
        observe(&budgets, &key, 429, &retry_after(&date)).await,
        seven
    );
    let Err(rejection) = budgets.try_acquire(&key).await else {
        panic!("paused for 7 s");
    };
    assert_eq!(rejection.retry_after_secs(), 7);
}

#[tokio::test(start_paused = true)]
async fn a_503_pauses_only_with_a_usable_retry_after() {
    let budgets = budgets(Duration::ZERO);
    let key = budgets.key_for(Caller::Trusted(Some("app")));
    assert_eq!(observe(&budgets, &key, 503, &HeaderMap::new()).await, None);
    assert_eq!(
        observe(&budgets, &key, 503, &retry_after("soon")).await,
        None
    );
    assert_eq!(observe(&budgets, &key, 500, &retry_after("9")).await, None);
    assert_eq!(budgets.pause_remaining(&key), None);
    assert!(budgets.try_acquire(&key).await.is_ok());
    let three = Some(Duration::from_secs(3));
    assert_eq!(observe(&budgets, &key, 503, &retry_after("3")).await, three);
    assert_eq!(budgets.pause_remaining(&key), three);
    assert!(budgets.try_acquire(&key).await.is_err());
}

#[tokio::test(start_paused = true)]
async fn a_429_without_retry_after_doubles_until_a_success() {
    let budgets = budgets(Duration::ZERO);
    let key = budgets.key_for(Caller::Trusted(Some("app")));
    let mut pauses = Vec::new();
    for _ in 0..4 {
        pauses.push(observe(&budgets, &key, 429, &HeaderMap::new()).await);
        advance(Duration::from_secs(30)).await;
    }
    let secs = |s| Some(Duration::from_secs(s));
    assert_eq!(pauses, [secs(1), secs(2), secs(4), secs(8)]);
    assert_eq!(observe(&budgets, &key, 200, &HeaderMap::new()).await, None);
    assert_eq!(
        observe(&budgets, &key, 429, &retry_after("x")).await,
        secs(1)
    );
}

#[tokio::test(start_paused = true)]
async fn every_pause_is_capped_by_max_pause() {
    let budgets = Budgets::new(&RateLimitSettings {
        max_pause: Duration::from_secs(30),
        ..settings(1.0, 1, Duration::ZERO)
    });
    let key = budgets.key_for(Caller::Trusted(Some("app")));
    let cap = Some(Duration::from_secs(30));
    assert_eq!(
        observe(&budgets, &key, 429, &retry_after("3600")).await,
        cap
    );
    let date = httpdate::fmt_http_date(wall() + Duration::from_secs(86_400));
    assert_eq!(observe(&budgets, &key, 503, &retry_after(&date)).await, cap);
    for _ in 0..10 {
        observe(&budgets, &key, 429, &HeaderMap::new()).await;
    }
    assert_eq!(budgets.pause_remaining(&key), cap);
}

#[tokio::test(start_paused = true)]
async fn a_pause_of_one_client_never_slows_another() {
    let budgets = budgets(Duration::ZERO);
    let (a, b) = (
        budgets.key_for(Caller::Trusted(Some("a"))),
        budgets.key_for(Caller::Trusted(Some("b"))),
    );
    observe(&budgets, &a, 429, &retry_after("60")).await;
    assert!(budgets.try_acquire(&a).await.is_err());
    assert_eq!(budgets.pause_remaining(&b), None);
    assert_eq!(acquire(&budgets, &b).await, Ok(Admission::Immediate));
    assert_eq!(
        budgets.pause_remaining(&budgets.key_for(Caller::Trusted(None))),
        None
    );
}

#[tokio::test(start_paused = true)]
async fn a_global_pause_holds_everyone() {
    let budgets = Budgets::new(&RateLimitSettings {
        key: RateLimitKey::Global,
        ..settings(100.0, 100, Duration::ZERO)
    });
    observe(
        &budgets,
        &budgets.key_for(Caller::Trusted(Some("a"))),
        429,
        &retry_after("60"),
    )
    .await;
    assert!(!admits_now(&budgets, Some("b")).await);
    assert!(!admits_now(&budgets, None).await);
}

#[tokio::test(start_paused = true)]
async fn a_pause_arriving_while_calls_wait_rejects_them_at_once() {
    let budgets = Arc::new(Budgets::new(&settings(1.0, 1, Duration::from_secs(3))));
    let key = budgets.key_for(Caller::Trusted(Some("app")));
    assert_eq!(acquire(&budgets, &key).await, Ok(Admission::Immediate));
    let start = Instant::now();
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let (budgets, key) = (Arc::clone(&budgets), key.clone());
            tokio::spawn(async move { (acquire(&budgets, &key).await, start.elapsed()) })
        })
        .collect();
    tokio::task::yield_now().await;
    advance(Duration::from_millis(500)).await;
    observe(&budgets, &key, 429, &retry_after("10")).await;
    for waiter in waiters {
        let Ok((Err(rejection), at)) = waiter.await else {
            panic!("a pause past max_wait must reject every waiter");
        };
        assert!(rejection.paused);
        assert!(about(rejection.retry_after, Duration::from_secs(10)));
        assert!(
            about(at, Duration::from_millis(500)),
            "rejected when the pause came: {at:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_pause_arriving_while_calls_wait_is_waited_out_if_it_fits() {
    let budgets = Arc::new(Budgets::new(&settings(1.0, 1, Duration::from_secs(30))));
    let key = budgets.key_for(Caller::Trusted(Some("app")));
    assert_eq!(acquire(&budgets, &key).await, Ok(Admission::Immediate));
    let start = Instant::now();
    let waiter = tokio::spawn({
        let (budgets, key) = (Arc::clone(&budgets), key.clone());
        async move { (acquire(&budgets, &key).await, start.elapsed()) }
    });
    tokio::task::yield_now().await;
    observe(&budgets, &key, 429, &retry_after("4")).await;
    let Ok((Ok(Admission::Delayed(_)), at)) = waiter.await else {
        panic!("a pause within max_wait is waited out");
    };
    assert!(about(at, Duration::from_secs(4)), "{at:?}");
}

#[tokio::test(start_paused = true)]
async fn a_429_for_a_client_without_a_budget_still_pauses_it() {
    let budgets = budgets(Duration::ZERO);
    let key = budgets.key_for(Caller::Trusted(Some("fresh")));
    assert_eq!(budgets.pause_remaining(&key), None);
    assert_eq!(budgets.len(), 0);
    observe(&budgets, &key, 429, &retry_after("2")).await;
    assert_eq!(budgets.len(), 1);
    assert_eq!(budgets.pause_remaining(&key), Some(Duration::from_secs(2)));
}
