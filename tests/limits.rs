//! The limits the proxy puts on clients: request body size, and answers in the JSON error
//! shape.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use bytes::Bytes;
use http::Method;
use support::{Harness, bearer};

#[tokio::test]
async fn a_declared_body_over_the_limit_is_refused_before_anything_is_sent() {
    let h = Harness::start_with(Default::default(), |settings| {
        settings.server.max_request_body = 1024;
    })
    .await;
    let token = h.token("alice");
    let answer = h
        .send(
            Method::POST,
            "/export/connections",
            bearer(&token),
            Bytes::from(vec![b'x'; 1025]),
        )
        .await;
    assert_eq!(answer.status, 413);
    assert_eq!(answer.json()["error"]["code"], "PayloadTooLarge");
    assert_eq!(h.sim.request_count(), 0, "nothing reached the upstream");
    let fits = h
        .send(
            Method::POST,
            "/sim/echo",
            bearer(&token),
            Bytes::from(vec![b'x'; 1024]),
        )
        .await;
    assert_eq!(fits.status, 200);
}
