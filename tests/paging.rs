//! Paging through the proxy: rewritten links lead back through it and reach every connection
//! exactly once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashSet;

use itwin_proxy_sim::{DEMO_IMODEL_ID, SimConfig};
use support::Harness;

const UPSTREAM_ORIGIN: &str = "https://api.bentley.com";

/// Follows `next` links from `start`, asserting every link points at `public`, and returns
/// the connection ids seen in order.
async fn page_through(h: &Harness, public: &str, start: String, token: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut next = Some(start);
    let mut pages = 0;
    while let Some(path) = next.take() {
        pages += 1;
        assert!(pages < 100, "paging does not end");
        let answer = h.get(&path, Some(token)).await;
        assert_eq!(answer.status, 200, "{path}");
        let json = answer.json();
        for connection in json["connections"].as_array().unwrap() {
            ids.push(connection["id"].as_str().unwrap().to_owned());
            for link in connection["_links"].as_object().unwrap().values() {
                let href = link["href"].as_str().unwrap();
                assert!(
                    href.starts_with(public),
                    "{href} does not lead through the proxy"
                );
            }
        }
        let links = &json["_links"];
        assert!(links["self"]["href"].as_str().unwrap().starts_with(public));
        next = links["next"]["href"].as_str().map(|href| {
            assert!(href.starts_with(public), "{href}");
            href[public.len() - prefix_len(public)..].to_owned()
        });
    }
    ids
}

/// Length of the path prefix of `public` (the part after the origin).
fn prefix_len(public: &str) -> usize {
    let after_scheme = public.find("://").map_or(0, |i| i + 3);
    public[after_scheme..]
        .find('/')
        .map_or(0, |i| public.len() - after_scheme - i)
}

fn sim_config() -> SimConfig {
    SimConfig {
        link_origin: Some(UPSTREAM_ORIGIN.into()),
        ..SimConfig::default()
    }
}

#[tokio::test]
async fn next_links_reach_every_connection_once() {
    let public = "http://proxy.test:8080";
    let h = Harness::start_with(sim_config(), |settings| {
        settings.server.public_base_url = public.parse().unwrap();
        settings.upstream.link_origins = vec![UPSTREAM_ORIGIN.parse().unwrap()];
    })
    .await;
    let token = h.token("alice");
    let start = format!("/export/connections?imodelId={DEMO_IMODEL_ID}&$top=25");
    let ids = page_through(&h, public, start.clone(), &token).await;
    let unique: HashSet<_> = ids.iter().collect();
    assert_eq!(ids.len(), 120, "the simulator seeds 120 connections");
    assert_eq!(unique.len(), ids.len(), "no connection twice");
    let calls = h.list_calls();
    assert_eq!(calls, 5);

    let again = page_through(&h, public, start, &token).await;
    assert_eq!(again, ids);
    assert_eq!(h.list_calls(), calls, "the second pass came from memory");
}

#[tokio::test]
async fn a_public_path_prefix_is_written_into_links_and_stripped_from_requests() {
    let public = "http://gateway.test/bentley";
    let h = Harness::start_with(sim_config(), |settings| {
        settings.server.public_base_url = public.parse().unwrap();
        settings.upstream.link_origins = vec![UPSTREAM_ORIGIN.parse().unwrap()];
    })
    .await;
    let token = h.token("alice");
    let start = format!("/bentley/export/connections?imodelId={DEMO_IMODEL_ID}&$top=50");
    let ids = page_through(&h, public, start, &token).await;
    assert_eq!(ids.len(), 120);
    let unprefixed = h
        .get(
            &format!("/export/connections?imodelId={DEMO_IMODEL_ID}&$top=50"),
            Some(&token),
        )
        .await;
    assert_eq!(
        unprefixed.status, 200,
        "requests without the prefix are routed as they are"
    );
}

#[tokio::test]
async fn only_hrefs_change_byte_for_byte() {
    let public = "http://proxy.test:8080";
    let h = Harness::start_with(sim_config(), |settings| {
        settings.server.public_base_url = public.parse().unwrap();
        settings.upstream.link_origins = vec![UPSTREAM_ORIGIN.parse().unwrap()];
    })
    .await;
    let token = h.token("alice");
    let path = format!("/export/connections?imodelId={DEMO_IMODEL_ID}&$top=3");
    let through_proxy = h.get(&path, Some(&token)).await;
    let direct = support::request(
        &support::client(),
        http::Method::GET,
        &format!("{}{}", h.sim.base_url(), path),
        {
            let mut headers = http::HeaderMap::new();
            headers.insert("authorization", format!("Bearer {token}").parse().unwrap());
            headers
        },
        bytes::Bytes::new(),
    )
    .await;
    let expected = String::from_utf8(direct.body.to_vec())
        .unwrap()
        .replace(&format!("\"{UPSTREAM_ORIGIN}/"), &format!("\"{public}/"));
    assert_eq!(
        String::from_utf8(through_proxy.body.to_vec()).unwrap(),
        expected
    );
}
