//! Live reload: new settings apply to new requests; link changes empty the cache; budgets
//! keep their spent permits and pauses whatever changed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use itwin_proxy_sim::{Failure, SimConfig};
use support::{Harness, page, rate_limit, starts_with_hit};

#[tokio::test]
async fn a_new_public_url_empties_the_cache_and_shows_in_links() {
    let h = Harness::start().await;
    let token = h.token("alice");
    h.get(&page(2), Some(&token)).await;
    assert!(starts_with_hit(
        h.get(&page(2), Some(&token)).await.cache_status()
    ));

    let mut settings = support::settings_for(&h.sim);
    settings.server.public_base_url = "http://gateway.test/itwin".parse().unwrap();
    let reloaded = h.proxy.proxy().reload(settings).unwrap();
    assert!(reloaded.cache_emptied);
    assert_eq!(reloaded.needs_restart, Vec::<&str>::new());

    let answer = h.get(&page(2), Some(&token)).await;
    assert_eq!(answer.cache_status(), "itwin-proxy; fwd=uri-miss; stored");
    let next = answer.json()["_links"]["next"]["href"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        next.starts_with("http://gateway.test/itwin/export/connections?"),
        "{next}"
    );
    let prefixed = h.get(&format!("/itwin{}", page(2)), Some(&token)).await;
    assert!(
        starts_with_hit(prefixed.cache_status()),
        "the new prefix routes"
    );
}

#[tokio::test]
async fn keys_that_need_a_restart_are_reported_and_the_cache_is_kept() {
    let h = Harness::start().await;
    let token = h.token("alice");
    h.get(&page(2), Some(&token)).await;
    let mut settings = support::settings_for(&h.sim);
    settings.server.listen = "127.0.0.1:1".parse().unwrap();
    settings.cache.max_bytes = 1024;
    settings.rate_limit.burst = 3;
    let reloaded = h.proxy.proxy().reload(settings).unwrap();
    assert_eq!(reloaded.needs_restart, ["server.listen", "cache.max_bytes"]);
    assert!(!reloaded.cache_emptied);
    assert!(starts_with_hit(
        h.get(&page(2), Some(&token)).await.cache_status()
    ));
}

#[tokio::test]
async fn a_reload_keeps_pauses_and_spent_permits() {
    let budget = |settings: &mut itwin_proxy::config::Settings, burst| {
        rate_limit(settings, 0.001, burst, Duration::ZERO);
    };
    let h = Harness::start_with(SimConfig::default(), |s| budget(s, 2)).await;
    let paused = h
        .sim
        .token(&itwin_proxy_sim::TokenSpec::new("alice").client_id("paused"));
    let spent = h
        .sim
        .token(&itwin_proxy_sim::TokenSpec::new("bob").client_id("spent"));
    h.sim.fail_next(
        1,
        Failure::TooManyRequests {
            retry_after: Some("60".into()),
        },
    );
    assert_eq!(h.get(&page(2), Some(&paused)).await.status, 429);
    // Two calls spend the burst of the other app (the first, untrusted, is charged to it).
    assert_eq!(h.get(&page(2), Some(&spent)).await.status, 200);
    let skip = format!("{}&$skip=2", page(2));
    assert_eq!(h.get(&skip, Some(&spent)).await.status, 200);

    let mut settings = support::settings_for(&h.sim);
    budget(&mut settings, 2);
    settings.rate_limit.max_pause = Duration::from_secs(120);
    h.proxy.proxy().reload(settings).unwrap();

    let still_paused = h.get(&page(2), Some(&paused)).await;
    assert_eq!(still_paused.status, 429);
    assert_eq!(still_paused.json()["error"]["code"], "TooManyRequests");
    let retry_after: u64 = still_paused.header("retry-after").unwrap().parse().unwrap();
    assert!((50..=60).contains(&retry_after), "{retry_after}");
    let next = format!("{}&$skip=4", page(2));
    let still_spent = h.get(&next, Some(&spent)).await;
    assert_eq!(
        still_spent.status, 429,
        "the spent burst came back on reload"
    );
}

#[tokio::test]
async fn a_new_upstream_origin_reports_the_old_one_no_longer_rewritten() {
    let h = Harness::start().await;
    let old_origin = h.sim.base_url().trim_end_matches('/').to_owned();
    let mut moved = support::settings_for(&h.sim);
    moved.upstream.base_url = "http://localhost:9/".parse().unwrap();
    let reloaded = h.proxy.proxy().reload(moved.clone()).unwrap();
    assert_eq!(
        reloaded.unrewritten_origins,
        std::slice::from_ref(&old_origin)
    );

    let mut kept = moved;
    kept.upstream.link_origins = vec![old_origin.parse().unwrap()];
    h.proxy
        .proxy()
        .reload(support::settings_for(&h.sim))
        .unwrap();
    let reloaded = h.proxy.proxy().reload(kept).unwrap();
    assert!(reloaded.unrewritten_origins.is_empty(), "{reloaded:?}");
}
