//! Compressed hits: a client that accepts gzip gets the page compressed once when it was
//! stored; identity clients get the page as stored; both count against `cache.max_bytes`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Read;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method};
use support::{Answer, Harness, bearer, page, starts_with_hit};

async fn get(h: &Harness, token: &str, accept_encoding: Option<&'static str>) -> Answer {
    let mut headers: HeaderMap = bearer(token);
    if let Some(value) = accept_encoding {
        headers.insert("accept-encoding", HeaderValue::from_static(value));
    }
    h.send(Method::GET, &page(50), headers, Bytes::new()).await
}

fn gunzip(body: &[u8]) -> Vec<u8> {
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(body)
        .read_to_end(&mut plain)
        .expect("a gzip body");
    plain
}

fn varies_on_encoding(answer: &Answer) -> bool {
    answer.headers.get_all("vary").iter().any(|v| {
        v.to_str()
            .unwrap()
            .to_ascii_lowercase()
            .contains("accept-encoding")
    })
}

#[tokio::test]
async fn hits_come_gzipped_to_clients_that_accept_it() {
    let h = Harness::start().await;
    let token = h.token("alice");
    let miss = get(&h, &token, Some("gzip")).await;
    assert_eq!(miss.status, 200);
    assert_eq!(
        miss.header("content-encoding"),
        None,
        "a miss relays identity"
    );
    assert!(varies_on_encoding(&miss));
    let identity = miss.body;

    let hit = get(&h, &token, Some("br, gzip;q=0.8")).await;
    assert!(
        starts_with_hit(hit.cache_status()),
        "{}",
        hit.cache_status()
    );
    assert_eq!(hit.header("content-encoding"), Some("gzip"));
    assert!(varies_on_encoding(&hit));
    assert_eq!(
        hit.header("content-length"),
        Some(hit.body.len().to_string().as_str())
    );
    assert!(
        hit.body.len() * 4 < identity.len(),
        "{} of {}",
        hit.body.len(),
        identity.len()
    );
    assert_eq!(gunzip(&hit.body), identity);

    for refused in [None, Some("identity"), Some("gzip;q=0")] {
        let plain = get(&h, &token, refused).await;
        assert!(starts_with_hit(plain.cache_status()));
        assert_eq!(plain.header("content-encoding"), None, "{refused:?}");
        assert!(varies_on_encoding(&plain));
        assert_eq!(plain.body, identity, "{refused:?}");
    }
    assert_eq!(h.list_calls(), 1, "every answer after the first was a hit");

    h.proxy.proxy().cache().settle();
    let held = h.proxy.proxy().cache().weighted_size() as usize;
    assert!(
        held >= identity.len() + hit.body.len(),
        "both variants count: {held} held for {} + {}",
        identity.len(),
        hit.body.len()
    );
}
