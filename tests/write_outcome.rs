//! What a write's outcome means for the cache: a write never sent evicts nothing, one the
//! upstream may have received evicts even when its client went away.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request};
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use itwin_proxy::app;
use itwin_proxy::config::RateLimitKey;
use itwin_proxy_sim::{DEMO_IMODEL_ID, SimConfig, Simulator};
use support::{Harness, WAIT, rate_limit, starts_with_hit, within};

fn list() -> String {
    format!("/export/connections?imodelId={DEMO_IMODEL_ID}&$top=5")
}

fn json_auth(token: &str) -> HeaderMap {
    let mut headers = support::bearer(token);
    headers.insert("content-type", "application/json".parse().unwrap());
    headers
}

fn create_body() -> Bytes {
    let body = serde_json::json!({
        "iModelId": DEMO_IMODEL_ID, "displayName": "new", "authenticationType": "User"
    });
    Bytes::from(body.to_string())
}

#[tokio::test]
async fn a_write_refused_by_the_budget_evicts_nothing() {
    let h = Harness::start_with(SimConfig::default(), |settings| {
        settings.rate_limit.key = RateLimitKey::Global;
        rate_limit(settings, 0.001, 1, Duration::ZERO);
    })
    .await;
    let token = h.token("alice");
    assert_eq!(h.get(&list(), Some(&token)).await.status, 200);
    let refused = h
        .send(
            Method::POST,
            "/export/connections",
            json_auth(&token),
            create_body(),
        )
        .await;
    assert_eq!(refused.status, 429, "the one permit is spent");
    assert_eq!(h.sim.count("POST", "/export/connections"), 0);
    let after = h.get(&list(), Some(&token)).await;
    assert!(
        starts_with_hit(after.cache_status()),
        "still cached: {}",
        after.cache_status()
    );
}

#[tokio::test]
async fn a_write_that_could_not_connect_evicts_nothing() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let mut settings = support::settings_for(&sim);
    settings.auth.issuer = None;
    let proxy = app::start(settings).await.unwrap();
    let token = sim.token(&itwin_proxy_sim::TokenSpec::new("alice"));
    let client = support::client();
    let url = |path: &str| format!("http://{}{path}", proxy.addr());
    let page = url(&list());
    let get = || {
        support::request(
            &client,
            Method::GET,
            &page,
            support::bearer(&token),
            Bytes::new(),
        )
    };
    assert_eq!(get().await.status, 200);
    sim.shutdown().await;
    let refused = support::request(
        &client,
        Method::POST,
        &url("/export/connections"),
        json_auth(&token),
        create_body(),
    )
    .await;
    assert_eq!(refused.status, 502);
    assert_eq!(refused.json()["error"]["code"], "UpstreamUnavailable");
    let after = get().await;
    assert!(
        starts_with_hit(after.cache_status()),
        "still cached: {}",
        after.cache_status()
    );
}

#[tokio::test]
async fn a_write_whose_client_went_away_still_evicts() {
    let h = Harness::start().await;
    let token = h.token("alice");
    assert_eq!(h.get(&list(), Some(&token)).await.status, 200);
    assert!(starts_with_hit(
        h.get(&list(), Some(&token)).await.cache_status()
    ));

    let hold = h.sim.hold();
    let stream = tokio::net::TcpStream::connect(h.proxy.addr())
        .await
        .unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let mut request = Request::post(format!("http://{}/export/connections", h.proxy.addr()))
        .body(Full::new(create_body()))
        .unwrap();
    *request.headers_mut() = json_auth(&token);
    let write = tokio::spawn(async move { sender.send_request(request).await });
    within(hold.waiting_at_least(1)).await;
    // The client resets the stream while the upstream holds the write.
    write.abort();
    assert!(write.await.unwrap_err().is_cancelled());
    hold.release();

    let evicted = async {
        loop {
            let answer = h.get(&list(), Some(&token)).await;
            if answer.cache_status() == "itwin-proxy; fwd=uri-miss; stored" {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(WAIT, evicted)
        .await
        .expect("the write's eviction ran after its client left");
    assert_eq!(h.sim.count("POST", "/export/connections"), 1);
}
