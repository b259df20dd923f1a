//! The cached route: hits and misses, the key, and what is never stored.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use bytes::Bytes;
use http::Method;
use itwin_proxy_sim::DEMO_IMODEL_ID;
use support::{Harness, page_at, starts_with_hit};

#[tokio::test]
async fn a_repeated_page_is_served_from_memory() {
    let h = Harness::start().await;
    let token = h.token("alice");
    let first = h.get(&page_at(10, 0), Some(&token)).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.cache_status(), "itwin-proxy; fwd=uri-miss; stored");
    assert_eq!(first.header("cache-control"), Some("private"));
    assert_eq!(h.list_calls(), 1);

    let second = h.get(&page_at(10, 0), Some(&token)).await;
    assert_eq!(second.status, 200);
    assert!(
        starts_with_hit(second.cache_status()),
        "{}",
        second.cache_status()
    );
    assert_eq!(second.header("cache-control"), Some("private"));
    assert!(second.header("age").is_some());
    assert_eq!(second.header("content-type"), first.header("content-type"));
    assert_eq!(second.body, first.body);
    assert_eq!(h.list_calls(), 1, "the hit made no upstream call");

    let other_page = h.get(&page_at(10, 10), Some(&token)).await;
    assert_eq!(
        other_page.cache_status(),
        "itwin-proxy; fwd=uri-miss; stored"
    );
    assert_ne!(other_page.body, first.body);
    assert_eq!(h.list_calls(), 2);
}

#[tokio::test]
async fn parameter_order_and_encoding_share_one_entry() {
    let h = Harness::start().await;
    let token = h.token("alice");
    h.get(&page_at(5, 5), Some(&token)).await;
    let reordered = format!("/export/connections?%24skip=5&imodelId={DEMO_IMODEL_ID}&%24top=5");
    let answer = h.get(&reordered, Some(&token)).await;
    assert!(
        starts_with_hit(answer.cache_status()),
        "{}",
        answer.cache_status()
    );
    assert_eq!(h.list_calls(), 1);
}

#[tokio::test]
async fn accept_and_prefer_are_part_of_the_key() {
    let h = Harness::start().await;
    let token = h.token("alice");
    h.get(&page_at(5, 0), Some(&token)).await;
    let mut headers = support::bearer(&token);
    headers.insert(
        "accept",
        "application/vnd.bentley.itwin-platform.v1+json"
            .parse()
            .unwrap(),
    );
    let answer = h
        .send(Method::GET, &page_at(5, 0), headers.clone(), Bytes::new())
        .await;
    assert_eq!(answer.cache_status(), "itwin-proxy; fwd=uri-miss; stored");
    headers.insert("prefer", "return=minimal".parse().unwrap());
    let answer = h
        .send(Method::GET, &page_at(5, 0), headers, Bytes::new())
        .await;
    assert_eq!(answer.cache_status(), "itwin-proxy; fwd=uri-miss; stored");
    assert_eq!(h.list_calls(), 3);
}

#[tokio::test]
async fn unknown_or_repeated_parameters_and_head_bypass_the_cache() {
    let h = Harness::start().await;
    let token = h.token("alice");
    for query in [
        format!("imodelId={DEMO_IMODEL_ID}&$top=5&foo=1"),
        format!("imodelId={DEMO_IMODEL_ID}&$top=5&$top=6"),
        format!("imodelid={DEMO_IMODEL_ID}"),
    ] {
        for _ in 0..2 {
            let answer = h
                .get(&format!("/export/connections?{query}"), Some(&token))
                .await;
            assert_eq!(answer.cache_status(), "itwin-proxy; fwd=bypass", "{query}");
            assert_eq!(answer.header("cache-control"), Some("private"));
        }
    }
    assert_eq!(h.list_calls(), 6, "every bypass went upstream");
    let headers = support::bearer(&token);
    let head = h
        .send(Method::HEAD, &page_at(5, 0), headers, Bytes::new())
        .await;
    assert_eq!(head.cache_status(), "itwin-proxy; fwd=bypass");
    assert_eq!(h.sim.count("HEAD", "/export/connections"), 1);
}

#[tokio::test]
async fn only_successes_are_stored() {
    let h = Harness::start().await;
    let token = h.token("alice");
    for _ in 0..2 {
        let answer = h
            .get("/export/connections?imodelId=no-such-imodel", Some(&token))
            .await;
        assert_eq!(answer.status, 404);
        assert_eq!(answer.json()["error"]["code"], "ConnectionNotFound");
        assert_eq!(answer.cache_status(), "itwin-proxy; fwd=uri-miss");
    }
    for _ in 0..2 {
        let answer = h.get(&page_at(5000, 0), Some(&token)).await;
        assert_eq!(answer.status, 422, "the upstream's own validation");
    }
    assert_eq!(h.list_calls(), 4);
}

#[tokio::test]
async fn no_cache_goes_upstream_and_refreshes_the_entry() {
    let h = Harness::start().await;
    let token = h.token("alice");
    h.get(&page_at(5, 0), Some(&token)).await;
    let mut headers = support::bearer(&token);
    headers.insert("cache-control", "no-cache".parse().unwrap());
    let answer = h
        .send(Method::GET, &page_at(5, 0), headers, Bytes::new())
        .await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.cache_status(), "itwin-proxy; fwd=request");
    assert_eq!(h.list_calls(), 2);
    let after = h.get(&page_at(5, 0), Some(&token)).await;
    assert!(starts_with_hit(after.cache_status()));
    let age: u64 = after.header("age").unwrap().parse().unwrap();
    assert!(age <= 1, "the entry was refreshed, age {age}");
    assert_eq!(h.list_calls(), 2);
}

#[tokio::test]
async fn hits_and_misses_are_counted_in_metrics() {
    let h = Harness::start().await;
    let token = h.token("alice");
    h.get(&page_at(5, 0), Some(&token)).await;
    h.get(&page_at(5, 0), Some(&token)).await;
    h.get("/export/connections/nope", Some(&token)).await;
    let metrics = h.admin("/metrics").await;
    assert_eq!(metrics.status, 200);
    let text = String::from_utf8_lossy(&metrics.body);
    for line in [
        r#"itwin_proxy_requests_total{route="/export/connections",method="GET",status="200",cache="hit"} 1"#,
        r#"itwin_proxy_requests_total{route="/export/connections",method="GET",status="200",cache="miss"} 1"#,
        r#"itwin_proxy_requests_total{route="/export/connections/{id}",method="GET",status="404",cache="none"} 1"#,
        r#"itwin_proxy_upstream_requests_total{status="200"} 1"#,
        "itwin_proxy_cache_entries 1",
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
}

#[tokio::test]
async fn purges_evict_pages_for_every_subject() {
    let h = Harness::start().await;
    let alice = h.token("alice");
    let bob = h.token("bob");
    for token in [&alice, &bob] {
        h.get(&page_at(5, 0), Some(token)).await;
        assert!(starts_with_hit(
            h.get(&page_at(5, 0), Some(token)).await.cache_status()
        ));
    }
    let purged = h
        .admin_post(&format!("/purge?imodelId={DEMO_IMODEL_ID}"))
        .await;
    assert_eq!(purged.status, 200);
    assert_eq!(purged.json()["purged"], 2, "one page of each subject");
    for token in [&alice, &bob] {
        let answer = h.get(&page_at(5, 0), Some(token)).await;
        assert_eq!(answer.cache_status(), "itwin-proxy; fwd=uri-miss; stored");
    }
    let purged = h.admin_post("/purge").await;
    assert_eq!(purged.status, 200);
    assert_eq!(purged.json()["purged"], 2);
    let answer = h.get(&page_at(5, 0), Some(&alice)).await;
    assert_eq!(answer.cache_status(), "itwin-proxy; fwd=uri-miss; stored");
    assert_eq!(h.admin_post("/purge?foo=1").await.status, 400);
}

#[tokio::test]
async fn a_page_over_the_rewrite_limit_streams_unchanged_and_is_not_stored() {
    let h = Harness::start_with(Default::default(), |settings| {
        settings.upstream.max_rewrite_bytes = 2048;
    })
    .await;
    let token = h.token("alice");
    for _ in 0..2 {
        let answer = h.get(&page_at(50, 0), Some(&token)).await;
        assert_eq!(answer.status, 200);
        assert!(answer.body.len() > 2048);
        assert_eq!(answer.cache_status(), "itwin-proxy; fwd=uri-miss");
        let href = answer.json()["_links"]["self"]["href"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            href.starts_with(&h.sim.link_origin()),
            "unrewritten: {href}"
        );
    }
    assert_eq!(h.list_calls(), 2);
    let small = h.get(&page_at(1, 0), Some(&token)).await;
    assert_eq!(small.cache_status(), "itwin-proxy; fwd=uri-miss; stored");
}

#[tokio::test]
async fn skipping_none_is_the_first_page() {
    let h = Harness::start().await;
    let token = h.token("alice");
    let first = format!("/export/connections?imodelId={DEMO_IMODEL_ID}&$top=5");
    h.get(&first, Some(&token)).await;
    let zero = h.get(&page_at(5, 0), Some(&token)).await;
    assert!(
        starts_with_hit(zero.cache_status()),
        "{}",
        zero.cache_status()
    );
    assert_eq!(h.list_calls(), 1);
}

#[tokio::test]
async fn the_proxys_own_401s_challenge_for_a_bearer_token() {
    let h = Harness::start().await;
    let none = h.get(&page_at(5, 0), None).await;
    assert_eq!(none.status, 401);
    assert_eq!(
        none.header("www-authenticate"),
        Some("Bearer realm=\"itwin-proxy\"")
    );
    let mut basic = http::HeaderMap::new();
    basic.insert("authorization", "Basic dXNlcjpwYXNz".parse().unwrap());
    let not_bearer = h
        .send(Method::GET, &page_at(5, 0), basic, Bytes::new())
        .await;
    assert_eq!(not_bearer.status, 401);
    assert_eq!(not_bearer.json()["error"]["code"], "HeaderNotFound");
    assert!(
        not_bearer
            .header("www-authenticate")
            .unwrap()
            .contains("error=\"invalid_request\""),
        "{:?}",
        not_bearer.header("www-authenticate")
    );
    assert_eq!(h.sim.request_count(), 0);
}
