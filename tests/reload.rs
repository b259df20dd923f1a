//! Live reload: new settings apply to new requests; link changes empty the cache; budgets
//! keep their spent permits and pauses whatever changed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::time::Duration;

use itwin_proxy::app::ReloadError;
use itwin_proxy_sim::{Failure, SimConfig};
use support::process::{BINARY, temp_config};
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

/// The value of the sample `series` (name and labels, as written) on `/metrics`.
async fn sample(h: &Harness, series: &str) -> f64 {
    let metrics = h.admin("/metrics").await;
    let text = String::from_utf8(metrics.body.to_vec()).unwrap();
    let line = text
        .lines()
        .find(|line| {
            line.strip_prefix(series)
                .is_some_and(|rest| rest.starts_with(' '))
        })
        .unwrap_or_else(|| panic!("no {series} in\n{text}"));
    line[series.len()..].trim().parse().unwrap()
}

#[tokio::test]
async fn reloads_of_the_file_are_counted_and_restart_keys_reported_until_restarted() {
    const OK: &str = "itwin_proxy_config_reload_total{result=\"ok\"}";
    const ERROR: &str = "itwin_proxy_config_reload_total{result=\"error\"}";
    const LOADED_AT: &str = "itwin_proxy_config_last_reload_success_timestamp_seconds";
    const PENDING: &str = "itwin_proxy_config_restart_pending_keys";
    let h = Harness::start().await;
    let env = HashMap::new();
    let started_at = sample(&h, LOADED_AT).await;
    assert!(
        started_at > 1.7e9,
        "the start counts as a load: {started_at}"
    );

    let mut moved = support::settings_for(&h.sim);
    moved.server.listen = "127.0.0.1:1".parse().unwrap();
    let path = temp_config("reload-counted.toml", &moved.to_toml());
    for _ in 0..2 {
        // Reported at every reload, not only the one that changed it.
        let reloaded = h.proxy.reload_config(Some(&path), &env).unwrap();
        assert_eq!(reloaded.needs_restart, ["server.listen"]);
    }
    assert_eq!(sample(&h, OK).await, 2.0);
    assert_eq!(sample(&h, PENDING).await, 1.0);
    assert!(sample(&h, LOADED_AT).await >= started_at);

    std::fs::write(&path, "[rate_limit]\nburst = 0\n").unwrap();
    let refused = h.proxy.reload_config(Some(&path), &env).unwrap_err();
    assert!(matches!(refused, ReloadError::Invalid(_)), "{refused}");
    assert!(
        refused
            .to_string()
            .contains("rate_limit.burst: must be >= 1"),
        "{refused}"
    );
    assert_eq!(sample(&h, ERROR).await, 1.0);
    assert_eq!(sample(&h, OK).await, 2.0);
    assert_eq!(sample(&h, PENDING).await, 1.0);

    std::fs::write(&path, support::settings_for(&h.sim).to_toml()).unwrap();
    let reloaded = h.proxy.reload_config(Some(&path), &env).unwrap();
    assert!(reloaded.needs_restart.is_empty(), "{reloaded:?}");
    assert_eq!(sample(&h, PENDING).await, 0.0);
    assert_eq!(sample(&h, OK).await, 3.0);
}

#[test]
fn the_systemd_reload_checks_the_file_before_the_signal() {
    let unit = include_str!("../deploy/systemd/itwin-proxy.service");
    let directive = |name: &str| -> Vec<String> {
        unit.lines()
            .filter_map(|line| line.strip_prefix(name)?.strip_prefix('='))
            .map(str::to_owned)
            .collect()
    };
    let start = directive("ExecStart");
    let reload = directive("ExecReload");
    assert_eq!(reload.len(), 2, "{reload:?}");
    assert_eq!(reload[0], format!("{} --check-config", start[0]));
    assert_eq!(reload[1], "/bin/kill -HUP $MAINPID");

    // The check as the unit runs it fails on an invalid file, so no signal is sent.
    let check = |text: &str| {
        let path = temp_config("unit-check.toml", text);
        let args: Vec<String> = reload[0]
            .split_whitespace()
            .skip(1)
            .map(|arg| match arg {
                "/etc/itwin-proxy/config.toml" => path.display().to_string(),
                other => other.to_owned(),
            })
            .collect();
        std::process::Command::new(BINARY)
            .args(&args)
            .output()
            .unwrap()
            .status
    };
    assert_eq!(check("[rate_limit]\nburst = 0\n").code(), Some(2));
    assert!(check("[rate_limit]\nburst = 5\n").success());
}

#[tokio::test]
async fn a_call_sent_before_the_judges_changed_proves_no_token_after() {
    use itwin_proxy_sim::{DEMO_IMODEL_ID, TokenSpec};
    let h = Harness::start().await;
    let early = h.sim.token(&TokenSpec::new("alice"));
    let later = h.sim.token(&TokenSpec::new("alice").expires_in(3000));
    assert_ne!(early, later);

    let hold = h.sim.hold();
    let url = format!("{}{}", h.url(), page(2));
    let client = support::client();
    let in_flight = tokio::spawn({
        let early = early.clone();
        async move {
            let headers = support::bearer(&early);
            support::request(
                &client,
                http::Method::GET,
                &url,
                headers,
                Default::default(),
            )
            .await
        }
    });
    support::within(hold.waiting_at_least(1)).await;
    // The same simulator under another name: a new upstream, so proofs start afresh.
    let mut renamed = support::settings_for(&h.sim);
    renamed.upstream.base_url = format!("http://localhost:{}/", h.sim.addr().port())
        .parse()
        .unwrap();
    h.proxy.proxy().reload(renamed).unwrap();
    drop(hold);
    assert_eq!(in_flight.await.unwrap().status, 200);

    // Another token of the same subject fills the page under the new upstream; then the
    // upstream stops accepting the subject.
    assert_eq!(h.get(&page(2), Some(&later)).await.status, 200);
    assert!(starts_with_hit(
        h.get(&page(2), Some(&later)).await.cache_status()
    ));
    h.sim.deny("alice", DEMO_IMODEL_ID);
    let answer = h.get(&page(2), Some(&early)).await;
    assert_eq!(
        answer.status,
        403,
        "the early token was proven by a call sent before the reload: {}",
        answer.cache_status()
    );
}
