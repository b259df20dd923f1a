//! The admin status page: its JSON and HTML as served, and the page as a real browser shows
//! it, checked against what `/metrics` reports.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http::{HeaderMap, Method};
use itwin_proxy_sim::Failure;
use support::{Answer, Harness, request};

const TOKEN: &str = "st4tus-t0ken";

async fn admin(h: &Harness, path: &str, authorization: Option<&str>) -> Answer {
    let mut headers = HeaderMap::new();
    if let Some(value) = authorization {
        headers.insert("authorization", value.parse().unwrap());
    }
    let uri = format!("http://{}{}", h.proxy.admin_addr(), path);
    request(&support::client(), Method::GET, &uri, headers, Bytes::new()).await
}

fn bearer() -> String {
    format!("Bearer {TOKEN}")
}

fn basic() -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("operator:{TOKEN}"));
    format!("Basic {encoded}")
}

/// A proxy guarded by the admin token, after some traffic: a miss, a hit, an upstream that
/// drops a connection and an upstream 429 that pauses the app's budget for 30 s.
async fn busy_proxy() -> Harness {
    let h = Harness::start_with(Default::default(), |settings| {
        settings.server.admin_token = Some(TOKEN.to_owned());
    })
    .await;
    let token = h.token("alice");
    assert_eq!(h.get(&support::page(10), Some(&token)).await.status, 200);
    let hit = h.get(&support::page(10), Some(&token)).await;
    assert!(support::starts_with_hit(hit.cache_status()));
    h.sim.fail_next(1, Failure::Close);
    let failed = h.get("/export/connections/nowhere", None).await;
    assert_eq!(failed.status, 502);
    h.sim.fail_next(
        1,
        Failure::TooManyRequests {
            retry_after: Some("30".into()),
        },
    );
    let paused = h.get(&support::page(5), Some(&token)).await;
    assert_eq!(paused.status, 429);
    h
}

/// The value of each sample named `name` in a Prometheus text exposition, by its labels.
fn samples<'t>(text: &'t str, name: &str) -> Vec<(&'t str, f64)> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let labels = match series.split_once('{') {
                Some((family, labels)) if family == name => labels,
                None if series == name => "",
                _ => return None,
            };
            Some((labels, value.parse().ok()?))
        })
        .collect()
}

/// What the page must show, read from `/metrics`: field name to number.
async fn reported(h: &Harness) -> HashMap<&'static str, u64> {
    let metrics = admin(h, "/metrics", Some(&bearer())).await;
    assert_eq!(metrics.status, 200);
    let text = String::from_utf8(metrics.body.to_vec()).unwrap();
    let total = |name: &str, only: &dyn Fn(&str) -> bool| -> u64 {
        let samples = samples(&text, name);
        assert!(!samples.is_empty(), "{name} in\n{text}");
        samples
            .iter()
            .filter(|(labels, _)| only(labels))
            .map(|(_, value)| *value as u64)
            .sum()
    };
    let hit = |labels: &str| {
        ["hit", "shared", "stale"]
            .iter()
            .any(|cache| labels.contains(&format!("cache=\"{cache}\"")))
    };
    HashMap::from([
        (
            "cache.entries",
            total("itwin_proxy_cache_entries", &|_| true),
        ),
        ("cache.bytes", total("itwin_proxy_cache_bytes", &|_| true)),
        (
            "totals.requests",
            total("itwin_proxy_requests_total", &|_| true),
        ),
        ("totals.hits", total("itwin_proxy_requests_total", &hit)),
        (
            "totals.upstream_calls",
            total("itwin_proxy_upstream_requests_total", &|_| true),
        ),
    ])
}

#[tokio::test]
async fn the_status_json_tells_what_metrics_tell_and_more() {
    let h = busy_proxy().await;
    assert_eq!(admin(&h, "/status.json", None).await.status, 401);
    let answer = admin(&h, "/status.json", Some(&bearer())).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("cache-control"), Some("no-store"));
    let status = answer.json();
    let expected = reported(&h).await;
    let field = |path: &str| {
        path.split('.')
            .fold(&status, |value, key| &value[key])
            .as_u64()
            .unwrap_or_else(|| panic!("{path} in {status}"))
    };
    assert_eq!(field("cache.entries"), expected["cache.entries"]);
    assert!(expected["cache.entries"] >= 1);
    assert_eq!(field("cache.bytes"), expected["cache.bytes"]);
    assert_eq!(field("cache.max_bytes"), 268_435_456);
    for (name, path) in [
        ("totals.requests", "recent.totals.requests"),
        ("totals.hits", "recent.totals.hits"),
        ("totals.upstream_calls", "recent.totals.upstream_calls"),
    ] {
        assert_eq!(field(path), expected[name], "{path}");
    }
    assert_eq!(field("recent.totals.hits"), 1);
    // Lookups: the miss, the hit and the 429; the pass-through is not one.
    assert_eq!(field("recent.totals.lookups"), 3);
    let ratio = status["hit_ratio_1m"].as_f64().unwrap();
    assert!((ratio - 1.0 / 3.0).abs() < 1e-9, "{ratio}");
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(status["draining"], false);

    let errors: Vec<&str> = status["recent"]["upstream_errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["what"].as_str().unwrap())
        .collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert_eq!(errors[0], "429", "newest first");

    let budgets = status["rate_limit"]["budgets"].as_array().unwrap();
    let app = budgets
        .iter()
        .find(|b| b["name"] == "sim-client")
        .unwrap_or_else(|| panic!("the app's budget in {budgets:?}"));
    let pause = app["paused_for_seconds"].as_f64().unwrap();
    assert!(pause > 20.0 && pause <= 30.0, "{pause}");
    assert_eq!(status["rate_limit"]["client_budgets"], 1);
    assert!(status["cluster"].is_null());
}

#[tokio::test]
async fn the_page_is_guarded_self_contained_and_locked_down() {
    let h = Harness::start_with(Default::default(), |settings| {
        settings.server.admin_token = Some(TOKEN.to_owned());
    })
    .await;
    let refused = admin(&h, "/", None).await;
    assert_eq!(refused.status, 401);
    assert!(
        refused
            .header("www-authenticate")
            .unwrap()
            .starts_with("Basic ")
    );
    for authorization in [basic(), bearer()] {
        let page = admin(&h, "/", Some(&authorization)).await;
        assert_eq!(page.status, 200);
        assert_eq!(
            page.header("content-type"),
            Some("text/html; charset=utf-8")
        );
        let policy = page.header("content-security-policy").unwrap();
        assert!(policy.starts_with("default-src 'none';"), "{policy}");
        assert!(policy.contains("connect-src 'self'"), "{policy}");
        let html = String::from_utf8(page.body.to_vec()).unwrap();
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.contains("fetch(\"status.json\""));
        assert!(!html.contains("http://") && !html.contains("https://"));
    }
}

#[tokio::test]
async fn a_browser_shows_the_numbers_metrics_reports() {
    let Some(chromium) = support::browser::chromium() else {
        eprintln!(
            "SKIPPED a_browser_shows_the_numbers_metrics_reports: no chromium on PATH (nor \
             $CHROMIUM); install it (apt-get install chromium) to run this test"
        );
        return;
    };
    let h = busy_proxy().await;
    let expected = reported(&h).await;
    let url = format!("http://{}/", h.proxy.admin_addr());
    let read = r##"JSON.stringify({
        fields: Object.fromEntries([...document.querySelectorAll("[data-field]")]
            .map((e) => [e.dataset.field, e.textContent])),
        budgets: Object.fromEntries([...document.querySelectorAll("tr[data-budget]")]
            .map((row) => [row.dataset.budget, row.cells[4].textContent])),
        errors: [...document.querySelectorAll("#errors li")].map((li) => li.textContent),
        problem: document.getElementById("problem").hidden ? null
            : document.getElementById("problem").textContent,
    })"##;
    let loaded = support::browser::load(
        &chromium,
        &url,
        Some(&basic()),
        "Number(document.body.dataset.updates || 0) >= 1 \
         || !document.getElementById('problem').hidden",
        read,
        Duration::from_secs(90),
    )
    .await;
    assert_eq!(loaded.errors, Vec::<String>::new(), "no console error");
    assert!(
        loaded.ready,
        "the page showed nothing in time: {:?}",
        loaded.value
    );
    assert_eq!(loaded.statuses.get(&url), Some(&200));
    assert_eq!(
        loaded.statuses.get(&format!("{url}status.json")),
        Some(&200)
    );
    let shown: serde_json::Value = serde_json::from_str(loaded.value.as_str().unwrap()).unwrap();
    assert!(shown["problem"].is_null(), "{shown}");
    let fields = &shown["fields"];
    for (name, number) in &expected {
        assert_eq!(fields[name], number.to_string(), "{name} in {fields}");
    }
    assert_eq!(fields["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(fields["cache.max_bytes"], "268435456");
    assert_eq!(fields["hit_ratio_1m"], "33.3 %");
    assert_eq!(
        fields["cluster.state"],
        "not configured (this process alone)"
    );
    let pause = shown["budgets"]["sim-client"].as_str().unwrap();
    assert!(
        pause.starts_with("paused, ") && pause.ends_with(" s left"),
        "{pause}"
    );
    assert_eq!(shown["budgets"]["unverified"], "–");
    let errors = shown["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors[0].as_str().unwrap().starts_with("429, "),
        "{errors:?}"
    );
}
