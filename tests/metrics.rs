//! `/metrics` as a scraper reads it: both formats parsed by Prometheus' own parsers, the
//! labels of what happened, and upstream failures by class.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method};
use itwin_proxy_sim::{Failure, SimConfig};
use support::prometheus::{Family, kind, parse, value};
use support::{Harness, bearer, page};

const LIST: &str = "/export/connections";

/// Scrapes `/metrics` with `accept` (if any), checks the announced type, and parses the
/// body with the parser for that type.
async fn scrape(h: &Harness, accept: Option<&'static str>) -> Vec<Family> {
    let mut headers = HeaderMap::new();
    if let Some(accept) = accept {
        headers.insert("accept", accept.parse().unwrap());
    }
    let uri = format!("http://{}/metrics", h.proxy.admin_addr());
    let answer =
        support::request(&support::client(), Method::GET, &uri, headers, Bytes::new()).await;
    assert_eq!(answer.status, 200);
    let content_type = answer.header("content-type").unwrap_or_default().to_owned();
    let openmetrics = content_type.starts_with("application/openmetrics-text; version=1.0.0");
    assert!(
        openmetrics || content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    parse(std::str::from_utf8(&answer.body).unwrap(), openmetrics)
}

fn requests(families: &[Family], route: &str, status: &str, cache: &str) -> Option<f64> {
    value(
        families,
        "itwin_proxy_requests_total",
        &[
            ("route", route),
            ("method", "GET"),
            ("status", status),
            ("cache", cache),
        ],
    )
}

#[tokio::test]
async fn both_formats_parse_and_count_what_happened() {
    let h = Harness::start().await;
    let token = h.token("alice");
    let first = h.get(&page(5), Some(&token)).await;
    assert_eq!(first.status, 200);
    h.get(&page(5), Some(&token)).await;
    let mut no_cache = bearer(&token);
    no_cache.insert("cache-control", "no-cache".parse().unwrap());
    let refreshed = h.send(Method::GET, &page(5), no_cache, Bytes::new()).await;
    assert_eq!(refreshed.cache_status(), "itwin-proxy; fwd=request");
    assert_eq!(h.get(&page(5), None).await.status, 401);
    let id = first.json()["connections"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let one = h.get(&format!("{LIST}/{id}"), Some(&token)).await;
    assert_eq!(one.status, 200);
    let runs = h.get(&format!("{LIST}/{id}/runs"), Some(&token)).await;
    let elsewhere = h.get("/elsewhere", Some(&token)).await;
    assert_eq!(h.admin_post("/purge").await.status, 200);

    for accept in [
        None,
        Some("text/plain"),
        Some("application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3"),
    ] {
        let families = scrape(&h, accept).await;
        for counter in [
            "itwin_proxy_requests",
            "itwin_proxy_upstream_requests",
            "itwin_proxy_ratelimit_rejected",
            "itwin_proxy_cache_evictions",
        ] {
            assert_eq!(
                kind(&families, counter),
                Some("counter"),
                "{counter} ({accept:?})"
            );
        }
        assert_eq!(kind(&families, "itwin_proxy_cache_entries"), Some("gauge"));
        assert_eq!(
            kind(&families, "itwin_proxy_request_duration_seconds"),
            Some("histogram")
        );
        assert_eq!(
            requests(&families, LIST, "200", "miss"),
            Some(1.0),
            "{accept:?}"
        );
        assert_eq!(requests(&families, LIST, "200", "hit"), Some(1.0));
        assert_eq!(requests(&families, LIST, "200", "request"), Some(1.0));
        assert_eq!(requests(&families, LIST, "401", "refused"), Some(1.0));
        assert_eq!(
            requests(&families, "/export/connections/{id}", "200", "none"),
            Some(1.0)
        );
        assert_eq!(
            requests(
                &families,
                "/export/connections/{id}/runs",
                runs.status.as_str(),
                "none"
            ),
            Some(1.0)
        );
        assert_eq!(
            requests(&families, "other", elsewhere.status.as_str(), "none"),
            Some(1.0)
        );
        assert_eq!(
            value(
                &families,
                "itwin_proxy_build_info",
                &[("version", env!("CARGO_PKG_VERSION"))]
            ),
            Some(1.0)
        );
        assert_eq!(
            value(
                &families,
                "itwin_proxy_request_duration_seconds_count",
                &[("route", LIST), ("cache", "hit")]
            ),
            Some(1.0)
        );
        assert_eq!(
            value(&families, "itwin_proxy_cache_entries", &[]),
            Some(0.0)
        );
        assert_eq!(
            value(
                &families,
                "itwin_proxy_cache_evictions_total",
                &[("reason", "purged")]
            ),
            Some(1.0)
        );
        assert_eq!(
            value(&families, "itwin_proxy_requests_in_flight", &[]),
            Some(0.0)
        );
        assert_eq!(
            value(&families, "itwin_proxy_ratelimit_queue_depth", &[]),
            Some(0.0)
        );
        assert!(value(&families, "process_open_fds", &[]).unwrap() > 0.0);
        assert!(value(&families, "process_resident_memory_bytes", &[]).unwrap() > 0.0);
    }
}

/// Counts of `itwin_proxy_upstream_requests_total` by status, from a scrape.
async fn upstream_status(h: &Harness, status: &str) -> Option<f64> {
    let families = scrape(h, None).await;
    value(
        &families,
        "itwin_proxy_upstream_requests_total",
        &[("status", status)],
    )
}

#[tokio::test]
async fn upstream_failures_are_counted_by_class() {
    let h = Harness::start_with(SimConfig::default(), |s| {
        s.upstream.request_timeout = Duration::from_millis(300);
    })
    .await;
    let token = h.token("alice");

    h.sim.fail_next(1, Failure::Close);
    assert_eq!(h.get("/elsewhere", Some(&token)).await.status, 502);
    assert_eq!(upstream_status(&h, "reset").await, Some(1.0));

    h.sim.set_delay(Duration::from_secs(3));
    assert_eq!(h.get("/elsewhere", Some(&token)).await.status, 504);
    assert_eq!(upstream_status(&h, "timeout").await, Some(1.0));
    assert_eq!(upstream_status(&h, "error").await, None);

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let refused = Harness::start_with(SimConfig::default(), |s| {
        s.upstream.base_url = format!("http://127.0.0.1:{closed_port}").parse().unwrap();
    })
    .await;
    assert_eq!(refused.get("/elsewhere", Some(&token)).await.status, 502);
    assert_eq!(upstream_status(&refused, "connect").await, Some(1.0));

    let plain_port = h.sim.addr().port();
    let not_tls = Harness::start_with(SimConfig::default(), |s| {
        s.upstream.base_url = format!("https://127.0.0.1:{plain_port}").parse().unwrap();
    })
    .await;
    assert_eq!(not_tls.get("/elsewhere", Some(&token)).await.status, 502);
    assert_eq!(upstream_status(&not_tls, "tls").await, Some(1.0));
}
