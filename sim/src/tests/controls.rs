//! The test controls: quota, queued failures, holds, delay, counters, aids and shutdown.

use std::time::{Duration, Instant};

use http::{Method, StatusCode};

use super::super::{Failure, SimConfig, SimQuota, TokenSpec};
use super::{Harness, WAIT, demo_list};

#[tokio::test]
async fn quota_answers_429_per_client_with_retry_after_and_headers() {
    let quota = SimQuota {
        requests_per_second: 0.01,
        burst: 2,
    };
    let h = Harness::start(SimConfig {
        quota: Some(quota),
        ..SimConfig::default()
    })
    .await;
    for _ in 0..2 {
        assert_eq!(h.get(&demo_list("&$top=1")).await.status, StatusCode::OK);
    }
    let limited = h.get(&demo_list("&$top=1")).await;
    assert_eq!(
        (limited.status, limited.error_code()),
        (StatusCode::TOO_MANY_REQUESTS, "TooManyRequests".to_owned())
    );
    let retry_after: u64 = limited.header("retry-after").parse().unwrap();
    assert!(retry_after >= 1);
    assert_eq!(limited.header("itwinplatform-ratelimited-tier"), "Trial");
    assert_eq!(limited.header("itwinplatform-ratelimited-api"), "export");
    assert_eq!(
        limited.header("itwinplatform-ratelimited-operation"),
        "get-export-connections"
    );
    assert_eq!(
        limited.header("itwinplatform-ratelimited-application"),
        "sim-client"
    );
    let other = h.sim.token(&TokenSpec::new("alice").client_id("other-app"));
    assert_eq!(
        h.get_with(&demo_list(""), Some(&other)).await.status,
        StatusCode::OK
    );
    let aid = h.send(Method::POST, "/sim/echo", None, "").await;
    assert_eq!(
        aid.status,
        StatusCode::OK,
        "test aids are outside the quota"
    );
    assert_eq!(h.sim.quota_rejections(), 1);
}

#[tokio::test]
async fn queued_failures_answer_in_order_then_service_resumes() {
    let h = Harness::default().await;
    let date = "Wed, 21 Oct 2015 07:28:00 GMT";
    h.sim.fail_next(2, Failure::Status(500));
    h.sim.fail_next(
        1,
        Failure::TooManyRequests {
            retry_after: Some(date.to_owned()),
        },
    );
    h.sim.fail_next(
        1,
        Failure::ServiceUnavailable {
            retry_after: Some("7".to_owned()),
        },
    );
    h.sim.fail_next(1, Failure::Close);
    for _ in 0..2 {
        let failed = h.send(Method::POST, "/sim/echo", None, "").await;
        assert_eq!(failed.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(failed.header("content-type"), "application/json");
    }
    let limited = h.get(&demo_list("")).await;
    assert_eq!(
        (limited.status, limited.header("retry-after")),
        (StatusCode::TOO_MANY_REQUESTS, date)
    );
    assert_eq!(
        limited.header("itwinplatform-ratelimited-application"),
        "sim-client"
    );
    let unavailable = h.get(&demo_list("")).await;
    assert_eq!(
        (unavailable.status, unavailable.header("retry-after")),
        (StatusCode::SERVICE_UNAVAILABLE, "7")
    );
    assert_eq!(unavailable.error_code(), "ServiceUnavailable");
    let token = Some(format!("Bearer {}", h.token));
    let closed = h
        .try_send(Method::GET, &demo_list(""), token.as_deref(), "")
        .await;
    assert!(
        closed.is_err(),
        "the connection is dropped without an answer"
    );
    assert_eq!(h.get(&demo_list("")).await.status, StatusCode::OK);
    assert_eq!((h.sim.request_count(), h.sim.quota_rejections()), (6, 0));
}

#[tokio::test]
async fn a_hold_parks_requests_until_released() {
    let h = Harness::default().await;
    let hold = h.sim.hold();
    let client = h.client.clone();
    let url = format!("{}/sim/echo", h.sim.base_url());
    let requests: Vec<_> = (0..3)
        .map(|_| {
            let request = http::Request::get(&url).body(Default::default()).unwrap();
            tokio::spawn(client.request(request))
        })
        .collect();
    tokio::time::timeout(WAIT, hold.waiting_at_least(3))
        .await
        .unwrap();
    assert_eq!(
        h.sim.request_count(),
        3,
        "parked requests are already counted"
    );
    assert!(requests.iter().all(|r| !r.is_finished()));
    hold.release();
    for request in requests {
        let response = tokio::time::timeout(WAIT, request)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert_eq!(
        h.get(&demo_list("&$top=1")).await.status,
        StatusCode::OK,
        "later requests are not held"
    );
}

#[tokio::test]
async fn delay_is_added_before_answers() {
    let h = Harness::default().await;
    h.sim.set_delay(Duration::from_millis(300));
    let started = Instant::now();
    assert_eq!(
        h.send(Method::GET, "/sim/echo", None, "").await.status,
        StatusCode::OK
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn requests_are_counted_and_the_last_thousand_recorded() {
    let h = Harness::default().await;
    h.get(&demo_list("&$top=2")).await;
    h.get(&demo_list("&$top=3")).await;
    h.send(Method::PUT, "/sim/echo?n=1", None, "payload").await;
    assert_eq!(h.sim.count("GET", "/export/connections"), 2);
    assert_eq!(
        (
            h.sim.count("PUT", "/sim/echo"),
            h.sim.count("GET", "/sim/echo")
        ),
        (1, 0)
    );
    let recorded = h.sim.requests();
    assert_eq!(recorded.len(), 3);
    let last = &recorded[2];
    assert_eq!(
        (last.method.as_str(), last.uri.as_str()),
        ("PUT", "/sim/echo?n=1")
    );
    assert_eq!(&last.body[..], b"payload");
    assert_eq!(recorded[0].uri, demo_list("&$top=2"));
    assert!(recorded[0].headers.contains_key("authorization"));
    for n in 0..1_000 {
        h.send(Method::GET, &format!("/sim/echo?n={n}"), None, "")
            .await;
    }
    let recorded = h.sim.requests();
    assert_eq!((recorded.len(), h.sim.request_count()), (1_000, 1_003));
    assert_eq!(
        recorded[0].uri, "/sim/echo?n=0",
        "the three oldest are dropped"
    );
    assert_eq!(recorded[999].uri, "/sim/echo?n=999");
}

#[tokio::test]
async fn aids_answer_headers_echo_and_large_documents_without_a_token() {
    let h = Harness::default().await;
    let headers = h
        .get_with(
            "/sim/headers?Link=%3Chttp%3A%2F%2Fx%2Fa%3E%3B%20rel%3Dnext&X-Two=a&X-Two=b",
            None,
        )
        .await;
    assert_eq!(headers.status, StatusCode::OK);
    assert_eq!(headers.header("link"), "<http://x/a>; rel=next");
    let two: Vec<_> = headers.headers.get_all("x-two").iter().collect();
    assert_eq!(two, ["a", "b"]);
    assert_eq!(
        (headers.header("content-type"), &headers.body[..]),
        ("application/json", &b"{}"[..])
    );

    let echo = h
        .send(Method::POST, "/sim/echo?q=%24top", Some("t"), "héllo")
        .await
        .json();
    assert_eq!(
        (echo["method"].as_str(), echo["uri"].as_str()),
        (Some("POST"), Some("/sim/echo?q=%24top"))
    );
    assert_eq!(echo["headers"]["authorization"][0], "Bearer t");
    assert_eq!(echo["body"], "héllo");

    let large = h.get_with("/sim/large?bytes=50000", None).await;
    assert!(
        (50_000..50_100).contains(&large.body.len()),
        "{}",
        large.body.len()
    );
    let href = format!("{}/sim/large?bytes=50000", h.sim.base_url());
    assert_eq!(large.json()["_links"]["self"]["href"], href);
}

#[tokio::test]
async fn shutdown_stops_accepting() {
    let h = Harness::default().await;
    assert_eq!(
        h.send(Method::GET, "/sim/echo", None, "").await.status,
        StatusCode::OK
    );
    let addr = h.sim.addr();
    tokio::time::timeout(WAIT, h.sim.clone().shutdown())
        .await
        .unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
