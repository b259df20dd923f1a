//! Outbound budgets: the upstream never answers 429 under overload, clients over budget get
//! the proxy's 429 with Retry-After, cache hits never wait, and an upstream Retry-After pauses
//! the whole budget of that client app, and only that one.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use itwin_proxy_sim::{Failure, SimConfig, SimQuota, TokenSpec};
use support::{Answer, Harness, page_at, rate_limit, within};

fn retry_after(answer: &Answer) -> u64 {
    answer
        .header("retry-after")
        .expect("a Retry-After header")
        .parse()
        .expect("whole seconds")
}

/// Asserts `answer` is the proxy's own 429, not the upstream's.
fn assert_proxy_429(answer: &Answer) {
    assert_eq!(answer.status, 429);
    assert_eq!(answer.json()["error"]["code"], "TooManyRequests");
    assert!(retry_after(answer) >= 1);
    assert!(answer.header("itwinplatform-ratelimited-tier").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eightfold_overload_never_earns_an_upstream_429() {
    let (rps, burst) = (4.0, 4);
    let sim_config = SimConfig {
        // The upstream counts with some slack, as a real counting window does (and as a busy
        // machine needs: calls granted apart may reach the upstream together).
        quota: Some(SimQuota {
            requests_per_second: rps * 1.5,
            burst: 2 * burst,
        }),
        ..SimConfig::default()
    };
    let h = Arc::new(
        Harness::start_with(sim_config, |s| {
            rate_limit(s, rps, burst, Duration::from_secs(1))
        })
        .await,
    );
    let token = h.token("alice");
    // One answer makes the token trusted, so the overload draws from its app's budget alone;
    // then a quiet second lets that budget and the upstream's quota fill up again.
    assert_eq!(h.get(&page_at(1, 1000), Some(&token)).await.status, 200);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let overload = 8 * burst;
    let requests: Vec<_> = (0..overload)
        .map(|skip| {
            let (h, token) = (Arc::clone(&h), token.clone());
            tokio::spawn(async move {
                let started = std::time::Instant::now();
                let answer = h.get(&page_at(1, skip), Some(&token)).await;
                (answer, started.elapsed())
            })
        })
        .collect();
    let (mut served, mut refused) = (0, 0);
    for request in requests {
        let (answer, took) = within(request).await.unwrap();
        // max_wait is 1 s; the bound is generous for a busy machine, but far below what an
        // unbounded queue of 32 requests at 4/s would take.
        assert!(took < Duration::from_secs(6), "answered after {took:?}");
        match answer.status.as_u16() {
            200 => served += 1,
            429 => {
                assert_proxy_429(&answer);
                refused += 1;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(h.sim.quota_rejections(), 0, "the upstream never said 429");
    assert!(served >= burst, "at least the burst was served, {served}");
    assert!(refused > 0, "an 8x overload cannot all fit in max_wait");
    let metrics = String::from_utf8_lossy(&h.admin("/metrics").await.body).into_owned();
    assert!(
        metrics.contains(&format!("itwin_proxy_ratelimit_rejected_total {refused}")),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hits_are_served_while_the_budget_is_spent() {
    let h = Arc::new(
        Harness::start_with(SimConfig::default(), |s| {
            rate_limit(s, 0.05, 1, Duration::from_secs(60))
        })
        .await,
    );
    let token = h.token("alice");
    assert_eq!(h.get(&page_at(1, 0), Some(&token)).await.status, 200);
    let waiting = {
        let (h, token) = (Arc::clone(&h), token.clone());
        tokio::spawn(async move { h.get(&page_at(1, 1), Some(&token)).await })
    };
    within(async {
        while h.proxy.in_flight() < 1 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    let hit = h.get(&page_at(1, 0), Some(&token)).await;
    assert!(
        support::starts_with_hit(hit.cache_status()),
        "{}",
        hit.cache_status()
    );
    assert!(
        !waiting.is_finished(),
        "the miss is still waiting for a permit"
    );
    assert_eq!(h.list_calls(), 1);
    waiting.abort();
}

#[tokio::test]
async fn two_client_apps_have_their_own_budgets() {
    let h = Harness::start_with(SimConfig::default(), |s| {
        rate_limit(s, 0.05, 1, Duration::ZERO)
    })
    .await;
    let app_a = h.sim.token(&TokenSpec::new("alice").client_id("app-a"));
    let app_b = h.sim.token(&TokenSpec::new("bob").client_id("app-b"));
    assert_eq!(h.get(&page_at(1, 0), Some(&app_a)).await.status, 200);
    let refused = h.get(&page_at(1, 1), Some(&app_a)).await;
    assert_proxy_429(&refused);
    assert_eq!(refused.cache_status(), "itwin-proxy; fwd=uri-miss");
    assert_eq!(refused.header("cache-control"), Some("private"));
    assert_eq!(h.get(&page_at(1, 1), Some(&app_b)).await.status, 200);
    assert_eq!(h.list_calls(), 2);
}

#[tokio::test]
async fn the_global_key_shares_one_budget() {
    let h = Harness::start_with(SimConfig::default(), |settings| {
        rate_limit(settings, 0.05, 1, Duration::ZERO);
        settings.rate_limit.key = itwin_proxy::config::RateLimitKey::Global;
    })
    .await;
    let app_a = h.sim.token(&TokenSpec::new("alice").client_id("app-a"));
    let app_b = h.sim.token(&TokenSpec::new("bob").client_id("app-b"));
    assert_eq!(h.get(&page_at(1, 0), Some(&app_a)).await.status, 200);
    assert_proxy_429(&h.get(&page_at(1, 1), Some(&app_b)).await);
}

#[tokio::test]
async fn an_upstream_retry_after_pauses_that_client_app_only() {
    let h = Harness::start_with(SimConfig::default(), |s| {
        rate_limit(s, 100.0, 100, Duration::from_secs(1))
    })
    .await;
    let app_a = h.sim.token(&TokenSpec::new("alice").client_id("app-a"));
    let app_b = h.sim.token(&TokenSpec::new("bob").client_id("app-b"));
    h.sim.fail_next(
        1,
        Failure::TooManyRequests {
            retry_after: Some("30".into()),
        },
    );
    let met = h.get(&page_at(1, 0), Some(&app_a)).await;
    assert_eq!(
        met.status, 429,
        "the pause is longer than max_wait: the upstream's 429"
    );
    assert!(met.header("itwinplatform-ratelimited-tier").is_some());
    assert_eq!(met.header("retry-after"), Some("30"));
    let paused = h.get(&page_at(1, 1), Some(&app_a)).await;
    assert_proxy_429(&paused);
    assert!(
        (25..=30).contains(&retry_after(&paused)),
        "{}",
        retry_after(&paused)
    );
    assert_eq!(
        h.get(&page_at(1, 1), Some(&app_b)).await.status,
        200,
        "app-b is not paused"
    );
    assert_eq!(
        h.list_calls(),
        2,
        "nothing of app-a went upstream during its pause"
    );
}

#[tokio::test]
async fn an_http_date_retry_after_pauses_too() {
    let h = Harness::start_with(SimConfig::default(), |s| {
        rate_limit(s, 100.0, 100, Duration::from_secs(1))
    })
    .await;
    let token = h.token("alice");
    let until = SystemTime::now() + Duration::from_secs(40);
    h.sim.fail_next(
        1,
        Failure::ServiceUnavailable {
            retry_after: Some(httpdate::fmt_http_date(until)),
        },
    );
    assert_eq!(h.get(&page_at(1, 0), Some(&token)).await.status, 503);
    let paused = h.get(&page_at(1, 1), Some(&token)).await;
    assert_proxy_429(&paused);
    assert!(
        (30..=41).contains(&retry_after(&paused)),
        "{}",
        retry_after(&paused)
    );
}

#[tokio::test]
async fn a_get_that_met_a_short_pause_is_retried_once() {
    let h = Harness::start_with(SimConfig::default(), |s| {
        rate_limit(s, 100.0, 100, Duration::from_secs(5))
    })
    .await;
    let token = h.token("alice");
    h.sim.fail_next(
        1,
        Failure::TooManyRequests {
            retry_after: Some("1".into()),
        },
    );
    let answer = h.get(&page_at(1, 0), Some(&token)).await;
    assert_eq!(answer.status, 200, "retried after the pause");
    assert_eq!(h.list_calls(), 2);
    let metrics = String::from_utf8_lossy(&h.admin("/metrics").await.body).into_owned();
    assert!(
        metrics.contains("itwin_proxy_upstream_retry_after_total 1"),
        "{metrics}"
    );
}

/// `token` with its claims replaced: the signature no longer matches, so it is forged.
fn forged(token: &str, sub: &str, client_id: &str) -> String {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    claims["sub"] = sub.into();
    claims["client_id"] = client_id.into();
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{}.{payload}.{}", parts[0], parts[2])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_tokens_naming_an_app_never_spend_its_budget() {
    // The app may make 3 calls at once and no more for a long while; no waiting at all.
    let h = Arc::new(
        Harness::start_with(SimConfig::default(), |settings| {
            rate_limit(settings, 0.001, 3, Duration::ZERO);
            settings.rate_limit.unverified_per_second = 0.001;
            settings.rate_limit.unverified_burst = 40;
        })
        .await,
    );
    let genuine = h.sim.token(&TokenSpec::new("alice").client_id("victim"));
    // Its first answer makes the token trusted (that call is charged to the app: 2 left).
    assert_eq!(h.get(&page_at(1, 0), Some(&genuine)).await.status, 200);
    let flood: Vec<_> = (0..30)
        .map(|i| {
            let (h, token) = (
                Arc::clone(&h),
                forged(&genuine, &format!("mallory-{i}"), "victim"),
            );
            tokio::spawn(async move { h.get(&page_at(1, i % 5), Some(&token)).await.status })
        })
        .collect();
    for request in flood {
        assert_eq!(
            within(request).await.unwrap(),
            401,
            "the upstream refuses forgeries"
        );
    }
    // The app's trusted misses still find its two remaining permits at once.
    for skip in [1, 2] {
        let answer = h.get(&page_at(1, skip), Some(&genuine)).await;
        assert_eq!(
            answer.status,
            200,
            "{}",
            String::from_utf8_lossy(&answer.body)
        );
    }
    assert_proxy_429(&h.get(&page_at(1, 3), Some(&genuine)).await);
}

#[tokio::test]
async fn an_untrusted_call_that_succeeds_is_charged_to_its_app() {
    let h = Harness::start_with(SimConfig::default(), |s| {
        rate_limit(s, 0.001, 2, Duration::ZERO)
    })
    .await;
    let first = h.sim.token(&TokenSpec::new("alice").client_id("app"));
    let second = h.sim.token(&TokenSpec::new("bob").client_id("app"));
    // Two new tokens of one app: both untrusted, both on the unverified budget, and both
    // charged to the app once answered, which spends its burst of 2.
    assert_eq!(h.get(&page_at(1, 0), Some(&first)).await.status, 200);
    assert_eq!(h.get(&page_at(1, 0), Some(&second)).await.status, 200);
    assert_proxy_429(&h.get(&page_at(1, 1), Some(&first)).await);
    assert_eq!(h.list_calls(), 2);
}
