//! Concurrent misses for one page make one upstream call, and never one shared across tokens
//! that are not yet known-valid.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use itwin_proxy_sim::DEMO_IMODEL_ID;
use support::{Answer, Harness, page, within};

const CONCURRENT: usize = 16;

/// Waits until `n` requests wait on the proxy's shared upstream calls.
async fn all_joined(h: &Harness, n: usize) {
    within(async {
        while h.proxy.proxy().waiting_on_upstream() < n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

async fn fire(h: &Arc<Harness>, tokens: Vec<String>) -> Vec<tokio::task::JoinHandle<Answer>> {
    tokens
        .into_iter()
        .map(|token| {
            let h = Arc::clone(h);
            tokio::spawn(async move { h.get(&page(20), Some(&token)).await })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_with_one_token_make_one_call() {
    let h = Arc::new(Harness::start().await);
    let token = h.token("alice");
    let hold = h.sim.hold();
    let requests = fire(&h, vec![token; CONCURRENT]).await;
    within(hold.waiting_at_least(1)).await;
    all_joined(&h, CONCURRENT).await;
    hold.release();
    let mut stored = 0;
    let mut bodies = Vec::new();
    for request in requests {
        let answer = within(request).await.unwrap();
        assert_eq!(answer.status, 200);
        match answer.cache_status() {
            "itwin-proxy; fwd=uri-miss; stored" => stored += 1,
            "itwin-proxy; fwd=uri-miss; collapsed" => {}
            other => panic!("unexpected Cache-Status {other}"),
        }
        bodies.push(answer.body);
    }
    assert_eq!(stored, 1);
    assert!(bodies.windows(2).all(|pair| pair[0] == pair[1]));
    assert_eq!(h.list_calls(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_of_known_tokens_of_one_subject_make_one_call() {
    let h = Arc::new(Harness::start().await);
    let first = h.token("alice");
    let second = h
        .sim
        .token(&itwin_proxy_sim::TokenSpec::new("alice").expires_in(1200));
    // Make both tokens known-valid on another page.
    for token in [&first, &second] {
        let other = format!("/export/connections?imodelId={DEMO_IMODEL_ID}&$top=1");
        assert_eq!(h.get(&other, Some(token)).await.status, 200);
    }
    let before = h.list_calls();
    let hold = h.sim.hold();
    let tokens = (0..CONCURRENT)
        .map(|i| {
            if i % 2 == 0 {
                first.clone()
            } else {
                second.clone()
            }
        })
        .collect();
    let requests = fire(&h, tokens).await;
    within(hold.waiting_at_least(1)).await;
    all_joined(&h, CONCURRENT).await;
    hold.release();
    for request in requests {
        assert_eq!(within(request).await.unwrap().status, 200);
    }
    assert_eq!(h.list_calls() - before, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_tokens_never_share_a_call() {
    let h = Arc::new(Harness::start().await);
    let alice = h.token("alice");
    let forged = h
        .sim
        .forged_token(&itwin_proxy_sim::TokenSpec::new("alice"));
    let hold = h.sim.hold();
    let requests = fire(&h, vec![alice, forged]).await;
    within(hold.waiting_at_least(2)).await;
    hold.release();
    let mut statuses: Vec<u16> = Vec::new();
    for request in requests {
        statuses.push(within(request).await.unwrap().status.as_u16());
    }
    statuses.sort_unstable();
    assert_eq!(
        statuses,
        [200, 401],
        "each token got its own upstream answer"
    );
    assert_eq!(h.list_calls(), 2);
}
