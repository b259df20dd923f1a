//! Graceful shutdown: readiness turns 503, new connections are refused, in-flight requests
//! finish within the grace period and are cut after it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use itwin_proxy::app;
use itwin_proxy_sim::{SimConfig, Simulator};
use support::{Harness, client, settings_for, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_requests_finish_and_readiness_turns_503() {
    let h = Arc::new(Harness::start().await);
    assert_eq!(h.admin("/healthz").await.status, 200);
    assert_eq!(h.admin("/readyz").await.status, 200);
    let token = h.token("alice");
    let hold = h.sim.hold();
    let slow = {
        let h = Arc::clone(&h);
        tokio::spawn(async move { h.get("/export/connections/x", Some(&token)).await })
    };
    within(hold.waiting_at_least(1)).await;
    h.proxy.begin_shutdown();
    assert_eq!(h.admin("/readyz").await.status, 503);
    assert_eq!(h.admin("/healthz").await.status, 200);
    within(async {
        while tokio::net::TcpStream::connect(h.proxy.addr()).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    hold.release();
    let answer = within(slow).await.unwrap();
    assert_eq!(
        answer.status, 404,
        "the in-flight request got its upstream answer"
    );
    let h = Arc::into_inner(h).expect("the only owner");
    let drained = within(h.proxy.shutdown()).await;
    assert_eq!(drained.cut, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_past_the_grace_period_are_cut_and_counted() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let mut settings = settings_for(&sim);
    settings.server.shutdown_grace = Duration::from_millis(200);
    let proxy = app::start(settings).await.unwrap();
    let token = sim.token(&itwin_proxy_sim::TokenSpec::new("alice"));
    let hold = sim.hold();
    let url = format!("http://{}/export/connections/x", proxy.addr());
    let pending = tokio::spawn(async move {
        let request = http::Request::get(url)
            .header("authorization", format!("Bearer {token}"))
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        client().request(request).await
    });
    within(hold.waiting_at_least(1)).await;
    let drained = within(proxy.shutdown()).await;
    assert_eq!(drained.cut, 1);
    let outcome = within(pending).await.unwrap();
    assert!(outcome.is_err(), "the cut request's connection was closed");
    drop(hold);
}
