//! Stale pages: served (to known-valid tokens only) when the upstream fails, pauses or the
//! budget has no permit now, within `cache.stale_if_error`; and served at once with a refresh
//! behind within `cache.stale_while_revalidate`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use itwin_proxy::config::Settings;
use itwin_proxy_sim::{Failure, SimConfig, TokenSpec};
use support::{Answer, Harness, page, rate_limit, starts_with_hit, within};

const TTL: Duration = Duration::from_secs(1);

fn short_ttl(settings: &mut Settings) {
    settings.cache.ttl = TTL;
}

fn assert_stale(answer: &Answer, original: &Answer) {
    assert_eq!(answer.status, 200);
    let status = answer.cache_status();
    assert!(
        status.starts_with("itwin-proxy; hit; ttl=-") && status.ends_with("; detail=stale"),
        "{status}"
    );
    assert_eq!(answer.header("cache-control"), Some("private"));
    assert!(answer.header("age").unwrap().parse::<u64>().unwrap() >= 1);
    assert_eq!(answer.body, original.body);
}

/// Stores the page for `token` and lets it go stale.
async fn stored_then_stale(h: &Harness, token: &str) -> Answer {
    let original = h.get(&page(3), Some(token)).await;
    assert_eq!(original.cache_status(), "itwin-proxy; fwd=uri-miss; stored");
    // Freshness is measured in real time here: waiting it out is the condition itself.
    tokio::time::sleep(TTL + Duration::from_millis(200)).await;
    original
}

#[tokio::test]
async fn an_upstream_failure_serves_the_stale_page() {
    let h = Harness::start_with(SimConfig::default(), short_ttl).await;
    let alice = h.token("alice");
    let original = stored_then_stale(&h, &alice).await;
    h.sim.fail_next(1, Failure::Status(500));
    assert_stale(&h.get(&page(3), Some(&alice)).await, &original);
    h.sim.fail_next(1, Failure::Close);
    assert_stale(&h.get(&page(3), Some(&alice)).await, &original);
    let refreshed = h.get(&page(3), Some(&alice)).await;
    assert_eq!(
        refreshed.cache_status(),
        "itwin-proxy; fwd=uri-miss; stored"
    );
    let metrics = String::from_utf8_lossy(&h.admin("/metrics").await.body).into_owned();
    assert!(
        metrics.contains(r#"itwin_proxy_requests_total{route="/export/connections",method="GET",status="200",cache="stale"} 2"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_spent_budget_serves_the_stale_page_at_once() {
    let h = Harness::start_with(SimConfig::default(), |settings| {
        short_ttl(settings);
        rate_limit(settings, 0.02, 1, Duration::from_secs(60));
    })
    .await;
    let alice = h.token("alice");
    let original = stored_then_stale(&h, &alice).await;
    let started = Instant::now();
    assert_stale(&h.get(&page(3), Some(&alice)).await, &original);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "it did not wait for a permit"
    );
    assert_eq!(h.list_calls(), 1);
}

#[tokio::test]
async fn an_upstream_429_serves_stale_and_pauses_without_a_retry() {
    let h = Harness::start_with(SimConfig::default(), short_ttl).await;
    let alice = h.token("alice");
    let original = stored_then_stale(&h, &alice).await;
    h.sim.fail_next(
        1,
        Failure::TooManyRequests {
            retry_after: Some("30".into()),
        },
    );
    assert_stale(&h.get(&page(3), Some(&alice)).await, &original);
    assert_stale(&h.get(&page(3), Some(&alice)).await, &original);
    assert_eq!(h.list_calls(), 2, "the pause kept the second request home");
}

#[tokio::test]
async fn a_token_not_known_valid_never_gets_a_stale_page() {
    let h = Harness::start_with(SimConfig::default(), short_ttl).await;
    let alice = h.token("alice");
    stored_then_stale(&h, &alice).await;
    let other_alice = h.sim.token(&TokenSpec::new("alice").expires_in(900));
    h.sim.fail_next(1, Failure::Status(500));
    let answer = h.get(&page(3), Some(&other_alice)).await;
    assert_eq!(answer.status, 500);
    assert!(!answer.cache_status().contains("stale"));
}

#[tokio::test]
async fn past_stale_if_error_the_failure_passes_through() {
    let h = Harness::start_with(SimConfig::default(), |settings| {
        short_ttl(settings);
        settings.cache.stale_if_error = Duration::from_millis(100);
    })
    .await;
    let alice = h.token("alice");
    stored_then_stale(&h, &alice).await;
    h.sim.fail_next(1, Failure::Status(503));
    let answer = h.get(&page(3), Some(&alice)).await;
    assert_eq!(answer.status, 503);
}

#[tokio::test]
async fn stale_while_revalidate_serves_at_once_and_refreshes_behind() {
    let h = Harness::start_with(SimConfig::default(), |settings| {
        short_ttl(settings);
        settings.cache.stale_while_revalidate = Duration::from_secs(30);
    })
    .await;
    let alice = h.token("alice");
    let original = stored_then_stale(&h, &alice).await;
    assert_stale(&h.get(&page(3), Some(&alice)).await, &original);
    within(async {
        while h.list_calls() < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    let refreshed = within(async {
        loop {
            let answer = h.get(&page(3), Some(&alice)).await;
            if starts_with_hit(answer.cache_status()) {
                return answer;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(refreshed.header("age").unwrap().parse::<u64>().unwrap() < 1);
    assert_eq!(h.list_calls(), 2);
}
