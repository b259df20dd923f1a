//! Request ids: every response carries `x-request-id` (the client's own, one made from its
//! `traceparent`, or a new one), the upstream gets the same id, and a cached or shared answer
//! carries its own request's id, never the one of the request that filled it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method};
use support::{Answer, Harness, bearer, page, starts_with_hit, within};

fn with_id(token: Option<&str>, name: &'static str, id: &str) -> HeaderMap {
    let mut headers = token.map_or_else(HeaderMap::new, bearer);
    headers.insert(name, id.parse().unwrap());
    headers
}

async fn get(h: &Harness, headers: HeaderMap) -> Answer {
    h.send(Method::GET, &page(3), headers, Bytes::new()).await
}

/// The `x-request-id` the simulator received last.
fn upstream_id(h: &Harness) -> String {
    let requests = h.sim.requests();
    let last = requests.last().expect("a request reached the upstream");
    last.headers["x-request-id"].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn every_response_carries_the_id_the_upstream_got() {
    let h = Harness::start().await;
    let token = h.token("alice");
    let own = get(&h, with_id(Some(&token), "x-request-id", "client-id-1")).await;
    assert_eq!(own.header("x-request-id"), Some("client-id-1"));
    assert_eq!(upstream_id(&h), "client-id-1");

    let traced = h
        .send(
            Method::GET,
            "/elsewhere",
            with_id(
                Some(&token),
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
            Bytes::new(),
        )
        .await;
    let expected = "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7";
    assert_eq!(traced.header("x-request-id"), Some(expected));
    assert_eq!(upstream_id(&h), expected);

    let unusable = "x".repeat(129);
    let generated = h.get("/elsewhere", Some(&token)).await;
    let replaced = h
        .send(
            Method::GET,
            "/elsewhere",
            with_id(Some(&token), "x-request-id", &unusable),
            Bytes::new(),
        )
        .await;
    for answer in [&generated, &replaced] {
        let id = answer.header("x-request-id").unwrap();
        assert_eq!(id.len(), 32, "{id}");
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    }
    assert_ne!(
        generated.header("x-request-id"),
        replaced.header("x-request-id")
    );
    assert_eq!(upstream_id(&h), replaced.header("x-request-id").unwrap());

    let refused = get(&h, with_id(None, "x-request-id", "no-token")).await;
    assert_eq!(refused.status, 401);
    assert_eq!(refused.header("x-request-id"), Some("no-token"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_and_shared_answers_carry_their_own_ids() {
    let h = Arc::new(Harness::start().await);
    let token = h.token("alice");
    let hold = h.sim.hold();
    let requests: Vec<_> = (0..3)
        .map(|n| {
            let h = Arc::clone(&h);
            let headers = with_id(Some(&token), "x-request-id", &format!("shared-{n}"));
            tokio::spawn(async move { get(&h, headers).await })
        })
        .collect();
    within(hold.waiting_at_least(1)).await;
    within(async {
        while h.proxy.proxy().waiting_on_upstream() < 3 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    hold.release();
    let mut collapsed = 0;
    for (n, request) in requests.into_iter().enumerate() {
        let answer = within(request).await.unwrap();
        assert_eq!(answer.status, 200);
        let expected = format!("shared-{n}");
        assert_eq!(answer.header("x-request-id"), Some(expected.as_str()));
        if answer.cache_status().ends_with("collapsed") {
            collapsed += 1;
        }
    }
    assert_eq!(collapsed, 2, "two requests shared the third's call");
    assert_eq!(h.list_calls(), 1);

    let hit = get(&h, with_id(Some(&token), "x-request-id", "the-hit")).await;
    assert!(
        starts_with_hit(hit.cache_status()),
        "{}",
        hit.cache_status()
    );
    assert_eq!(hit.header("x-request-id"), Some("the-hit"));
    assert!(
        !hit.body.windows(6).any(|w| w == b"shared"),
        "no id in the stored page"
    );
}
