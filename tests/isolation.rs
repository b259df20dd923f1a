//! Whose page is it: a cached page goes only to a known-valid token of the page's subject.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use bytes::Bytes;
use http::{HeaderMap, Method};
use itwin_proxy_sim::{DEMO_IMODEL_ID, Scopes, SimConfig, TokenSpec};
use support::{Harness, page, starts_with_hit};

/// A harness where alice's page is cached and her token known-valid.
async fn with_alice_cached() -> (Harness, String) {
    let h = Harness::start().await;
    let alice = h.token("alice");
    assert_eq!(h.get(&page(10), Some(&alice)).await.status, 200);
    assert!(starts_with_hit(
        h.get(&page(10), Some(&alice)).await.cache_status()
    ));
    assert_eq!(h.list_calls(), 1);
    (h, alice)
}

#[tokio::test]
async fn another_subject_goes_upstream() {
    let (h, _) = with_alice_cached().await;
    let bob = h.token("bob");
    let answer = h.get(&page(10), Some(&bob)).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.cache_status(), "itwin-proxy; fwd=uri-miss; stored");
    assert_eq!(h.list_calls(), 2);
}

#[tokio::test]
async fn a_forged_token_claiming_alice_gets_the_upstream_refusal() {
    let (h, _) = with_alice_cached().await;
    let forged = h.sim.forged_token(&TokenSpec::new("alice"));
    for _ in 0..2 {
        let answer = h.get(&page(10), Some(&forged)).await;
        assert_eq!(answer.status, 401);
        assert_eq!(answer.cache_status(), "itwin-proxy; fwd=request");
    }
    assert_eq!(h.list_calls(), 3);
}

#[tokio::test]
async fn an_expired_token_never_hits() {
    let (h, _) = with_alice_cached().await;
    let expired = h.sim.token(&TokenSpec::new("alice").expires_in(-60));
    let answer = h.get(&page(10), Some(&expired)).await;
    assert_eq!(answer.status, 401);
    assert!(!starts_with_hit(answer.cache_status()));
    assert_eq!(h.list_calls(), 2);
}

#[tokio::test]
async fn a_token_without_an_accepted_scope_never_hits() {
    let sim_config = SimConfig::default();
    let h = Harness::start_with(sim_config, |settings| {
        settings.auth.accepted_scopes = vec!["itwin-platform".into()];
    })
    .await;
    let alice = h.token("alice");
    h.get(&page(10), Some(&alice)).await;
    let legacy = h.sim.token(
        &TokenSpec::new("alice").scopes(Scopes::SpaceSeparated("openid export:read".into())),
    );
    for _ in 0..3 {
        let answer = h.get(&page(10), Some(&legacy)).await;
        assert_eq!(
            answer.status, 200,
            "the upstream accepts the deprecated scope"
        );
        assert_eq!(answer.cache_status(), "itwin-proxy; fwd=request");
    }
    assert_eq!(h.list_calls(), 4);
}

#[tokio::test]
async fn a_second_valid_token_of_the_same_subject_hits_once_known() {
    let (h, _) = with_alice_cached().await;
    let again = h.sim.token(&TokenSpec::new("alice").expires_in(1800));
    let first = h.get(&page(10), Some(&again)).await;
    assert_eq!(first.cache_status(), "itwin-proxy; fwd=request");
    let second = h.get(&page(10), Some(&again)).await;
    assert!(
        starts_with_hit(second.cache_status()),
        "{}",
        second.cache_status()
    );
    assert_eq!(h.list_calls(), 2);
}

#[tokio::test]
async fn opaque_tokens_are_their_own_subject() {
    let h = Harness::start().await;
    h.sim.register_opaque_token("opaque-one", "carol", "app");
    h.sim.register_opaque_token("opaque-two", "carol", "app");
    assert_eq!(h.get(&page(10), Some("opaque-one")).await.status, 200);
    assert!(starts_with_hit(
        h.get(&page(10), Some("opaque-one")).await.cache_status()
    ));
    let other = h.get(&page(10), Some("opaque-two")).await;
    assert_eq!(other.cache_status(), "itwin-proxy; fwd=uri-miss; stored");
    assert_eq!(h.list_calls(), 2);
}

#[tokio::test]
async fn without_a_bearer_token_nothing_goes_upstream() {
    let h = Harness::start().await;
    let answer = h.get(&page(10), None).await;
    assert_eq!(answer.status, 401);
    assert_eq!(answer.header("content-type"), Some("application/json"));
    assert_eq!(answer.json()["error"]["code"], "HeaderNotFound");
    let mut basic = HeaderMap::new();
    basic.insert("authorization", "Basic YWxpY2U6cHc=".parse().unwrap());
    let answer = h.send(Method::GET, &page(10), basic, Bytes::new()).await;
    assert_eq!(answer.status, 401);
    assert_eq!(answer.json()["error"]["code"], "HeaderNotFound");
    assert_eq!(h.sim.request_count(), 0);
}

#[tokio::test]
async fn a_denied_subject_is_refused_by_the_upstream_not_served() {
    let (h, _) = with_alice_cached().await;
    h.sim.deny("dave", DEMO_IMODEL_ID);
    let dave = h.token("dave");
    let answer = h.get(&page(10), Some(&dave)).await;
    assert_eq!(answer.status, 403);
    assert_eq!(answer.json()["error"]["code"], "InsufficientPermissions");
}

#[tokio::test]
async fn a_second_authorization_header_is_refused_before_anything_is_sent() {
    let (h, alice) = with_alice_cached().await;
    let forged = h.sim.forged_token(&TokenSpec::new("alice"));
    let mut headers = HeaderMap::new();
    headers.append("authorization", format!("Bearer {forged}").parse().unwrap());
    headers.append("authorization", format!("Bearer {alice}").parse().unwrap());
    let calls = h.sim.request_count();
    for path in [page(10), "/export/connections/x".to_owned()] {
        let answer = h
            .send(Method::GET, &path, headers.clone(), Bytes::new())
            .await;
        assert_eq!(answer.status, 400, "{path}");
        assert_eq!(answer.json()["error"]["code"], "InvalidRequest");
    }
    assert_eq!(h.sim.request_count(), calls);
}

#[tokio::test]
async fn naming_authorization_in_connection_does_not_strip_it() {
    let (h, alice) = with_alice_cached().await;
    let mut headers = HeaderMap::new();
    headers.insert("authorization", format!("Bearer {alice}").parse().unwrap());
    headers.insert("connection", "authorization".parse().unwrap());
    let answer = h
        .send(Method::GET, "/sim/echo", headers, Bytes::new())
        .await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.json()["headers"]["authorization"][0],
        format!("Bearer {alice}")
    );
}
