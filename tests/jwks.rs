//! Local verification: with a JWKS, a token whose signature and claims check is known-valid at
//! once; a bad one is answered 401 locally when `auth.reject_unverified` is on; without keys,
//! the upstream decides as before.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use itwin_proxy_sim::{DEMO_IMODEL_ID, Scopes, SimConfig, TokenSpec};
use support::{Harness, page, starts_with_hit, within};

/// A harness whose proxy verifies tokens against the simulator's key set.
async fn verifying(reject_unverified: bool) -> Harness {
    let h = Harness::start().await;
    let mut settings = support::settings_for(&h.sim);
    settings.auth.jwks_url = Some(
        format!("{}/.well-known/jwks.json", h.sim.base_url())
            .parse()
            .unwrap(),
    );
    settings.auth.reject_unverified = reject_unverified;
    h.proxy.proxy().reload(settings).unwrap();
    keys_fetched(&h).await;
    h
}

/// What `/metrics` says now.
async fn metrics(h: &Harness) -> String {
    String::from_utf8_lossy(&h.admin("/metrics").await.body).into_owned()
}

/// Waits until the proxy's background key fetch has succeeded.
async fn keys_fetched(h: &Harness) {
    within(async {
        while !metrics(h)
            .await
            .contains("itwin_proxy_signing_key_fetches_total{result=\"ok\"}")
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn a_verified_token_hits_without_proving_itself_upstream() {
    let h = verifying(false).await;
    let first = h.sim.rs256_token(&TokenSpec::new("alice"));
    let answer = h.get(&page(4), Some(&first)).await;
    assert_eq!(answer.cache_status(), "itwin-proxy; fwd=uri-miss; stored");
    let second = h.sim.rs256_token(&TokenSpec::new("alice").expires_in(1200));
    let hit = h.get(&page(4), Some(&second)).await;
    assert!(
        starts_with_hit(hit.cache_status()),
        "{}",
        hit.cache_status()
    );
    assert_eq!(h.list_calls(), 1, "the second token never went upstream");
    assert!(h.sim.jwks_requests() >= 1);
}

#[tokio::test]
async fn a_forged_token_is_refused_locally_when_asked() {
    let h = verifying(true).await;
    let alice = h.sim.rs256_token(&TokenSpec::new("alice"));
    h.get(&page(4), Some(&alice)).await;
    let forged = h.sim.forged_rs256_token(&TokenSpec::new("alice"));
    let answer = h.get(&page(4), Some(&forged)).await;
    assert_eq!(answer.status, 401);
    assert_eq!(answer.json()["error"]["code"], "InvalidToken");
    assert_eq!(answer.header("cache-control"), Some("private"));
    let expired = h.sim.rs256_token(&TokenSpec::new("alice").expires_in(-600));
    assert_eq!(h.get(&page(4), Some(&expired)).await.status, 401);
    let hs256 = h.token("alice");
    assert_eq!(
        h.get(&page(4), Some(&hs256)).await.json()["error"]["code"],
        "InvalidToken",
        "symmetric algorithms are never accepted"
    );
    assert_eq!(h.list_calls(), 1, "refused tokens cost no upstream call");
}

#[tokio::test]
async fn without_reject_unverified_the_upstream_decides() {
    let h = verifying(false).await;
    let alice = h.sim.rs256_token(&TokenSpec::new("alice"));
    h.get(&page(4), Some(&alice)).await;
    let forged = h.sim.forged_rs256_token(&TokenSpec::new("alice"));
    let answer = h.get(&page(4), Some(&forged)).await;
    assert_eq!(answer.status, 401);
    assert_eq!(answer.cache_status(), "itwin-proxy; fwd=request");
    assert_eq!(h.list_calls(), 2);
}

#[tokio::test]
async fn a_verified_token_still_needs_an_accepted_scope() {
    let h = verifying(false).await;
    let alice = h.sim.rs256_token(&TokenSpec::new("alice"));
    h.get(&page(4), Some(&alice)).await;
    let unscoped = h.sim.rs256_token(
        &TokenSpec::new("alice")
            .scopes(Scopes::Absent)
            .expires_in(1500),
    );
    let answer = h.get(&page(4), Some(&unscoped)).await;
    assert!(
        !starts_with_hit(answer.cache_status()),
        "{}",
        answer.cache_status()
    );
}

#[tokio::test]
async fn unavailable_keys_fall_back_to_the_upstream() {
    let h = Harness::start().await;
    h.sim.set_jwks_down(true);
    let mut settings = support::settings_for(&h.sim);
    settings.auth.issuer = Some(h.sim.base_url());
    settings.auth.reject_unverified = true;
    h.proxy.proxy().reload(settings).unwrap();
    let alice = h.sim.rs256_token(&TokenSpec::new("alice"));
    assert_eq!(h.get(&page(4), Some(&alice)).await.status, 200);
    assert!(starts_with_hit(
        h.get(&page(4), Some(&alice)).await.cache_status()
    ));
}

#[tokio::test]
async fn keys_are_discovered_from_the_issuer() {
    let h = Harness::start().await;
    let mut settings = support::settings_for(&h.sim);
    settings.auth.issuer = Some(h.sim.base_url());
    h.proxy.proxy().reload(settings).unwrap();
    keys_fetched(&h).await;
    h.get(&page(4), Some(&h.sim.rs256_token(&TokenSpec::new("alice"))))
        .await;
    let fresh = h.sim.rs256_token(&TokenSpec::new("alice").expires_in(900));
    assert!(starts_with_hit(
        h.get(&page(4), Some(&fresh)).await.cache_status()
    ));
    assert_eq!(h.list_calls(), 1);
}

#[tokio::test]
async fn an_upstream_refusal_outweighs_a_good_signature() {
    let h = verifying(false).await;
    let alice = h.sim.rs256_token(&TokenSpec::new("alice"));
    assert_eq!(h.get(&page(4), Some(&alice)).await.status, 200);
    h.sim.deny("alice", DEMO_IMODEL_ID);
    let other_page = format!("/export/connections?imodelId={DEMO_IMODEL_ID}&$top=5");
    assert_eq!(h.get(&other_page, Some(&alice)).await.status, 403);
    let after = h.get(&page(4), Some(&alice)).await;
    assert_eq!(
        after.status, 403,
        "the cached page is not served to a refused token"
    );
    assert!(!starts_with_hit(after.cache_status()));
}

#[tokio::test]
async fn new_verification_settings_forget_what_the_old_ones_proved() {
    let h = verifying(false).await;
    let alice = h.sim.rs256_token(&TokenSpec::new("alice"));
    h.get(&page(4), Some(&alice)).await;
    assert!(starts_with_hit(
        h.get(&page(4), Some(&alice)).await.cache_status()
    ));
    let mut settings = support::settings_for(&h.sim);
    settings.auth.jwks_url = Some(
        format!("{}/.well-known/jwks.json", h.sim.base_url())
            .parse()
            .unwrap(),
    );
    settings.auth.audience = Some("another-api".into());
    h.proxy.proxy().reload(settings).unwrap();
    let after = h.get(&page(4), Some(&alice)).await;
    assert_eq!(
        after.cache_status(),
        "itwin-proxy; fwd=request",
        "the token must prove itself again under the new audience"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_server_that_never_answers_delays_neither_start_nor_requests() {
    // Accepts connections and never says a word.
    let hole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", hole.local_addr().unwrap());
    let (accepted, mut fetching) = tokio::sync::mpsc::unbounded_channel();
    let held = tokio::spawn(async move {
        let mut silent = Vec::new();
        while let Ok((stream, _)) = hole.accept().await {
            silent.push(stream);
            let _ = accepted.send(());
        }
    });
    let h = Harness::start_with(SimConfig::default(), |settings| {
        settings.auth.issuer = Some(issuer);
        settings.auth.reject_unverified = true;
    })
    .await;
    within(fetching.recv())
        .await
        .expect("the key fetch starts at once");
    let started = Instant::now();
    let alice = h.sim.rs256_token(&TokenSpec::new("alice"));
    let answer = h.get(&page(4), Some(&alice)).await;
    assert_eq!(answer.status, 200, "the upstream judged the token");
    let passed = h.get("/export/connections/none", Some(&alice)).await;
    assert_eq!(passed.status, 404);
    // A fetch gives up after 5 s: had either request waited for it, it would have ended.
    assert!(started.elapsed() < Duration::from_secs(5));
    let shown = metrics(&h).await;
    assert!(
        !shown.contains("itwin_proxy_signing_key_fetches_total{result="),
        "{shown}"
    );
    held.abort();
}
