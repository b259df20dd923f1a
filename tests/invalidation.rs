//! Writes through the proxy evict the pages they make stale, for every subject; a fill in
//! flight when pages are evicted does not store its older page.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method};
use itwin_proxy_sim::{DEMO_IMODEL_ID, SimConfig};
use support::{Answer, Harness, starts_with_hit, within};

const OTHER_IMODEL: &str = "other-imodel";

fn list(imodel: &str) -> String {
    format!("/export/connections?imodelId={imodel}&$top=1000")
}

fn auth(token: &str) -> HeaderMap {
    let mut headers = support::bearer(token);
    headers.insert("content-type", "application/json".parse().unwrap());
    headers
}

fn ids(answer: &Answer) -> Vec<String> {
    answer.json()["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn two_imodels() -> Harness {
    let config = SimConfig {
        imodels: vec![(DEMO_IMODEL_ID.into(), 30), (OTHER_IMODEL.into(), 5)],
        ..SimConfig::default()
    };
    Harness::start_with(config, |_| {}).await
}

/// Caches `path` for `token` and checks the second request hits.
async fn cache(h: &Harness, path: &str, token: &str) -> Answer {
    let first = h.get(path, Some(token)).await;
    assert_eq!(first.status, 200);
    assert!(starts_with_hit(
        h.get(path, Some(token)).await.cache_status()
    ));
    first
}

#[tokio::test]
async fn creating_a_connection_evicts_its_imodel_for_every_subject() {
    let h = two_imodels().await;
    let (alice, bob) = (h.token("alice"), h.token("bob"));
    cache(&h, &list(DEMO_IMODEL_ID), &alice).await;
    cache(&h, &list(DEMO_IMODEL_ID), &bob).await;
    cache(&h, &list(OTHER_IMODEL), &alice).await;
    let body = serde_json::json!({
        "iModelId": DEMO_IMODEL_ID, "displayName": "fresh", "authenticationType": "User"
    });
    let created = h
        .send(
            Method::POST,
            "/export/connections",
            auth(&alice),
            Bytes::from(body.to_string()),
        )
        .await;
    assert_eq!(created.status, 201);
    let id = created.json()["connection"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for token in [&alice, &bob] {
        let after = h.get(&list(DEMO_IMODEL_ID), Some(token)).await;
        assert_eq!(after.cache_status(), "itwin-proxy; fwd=uri-miss; stored");
        assert!(ids(&after).contains(&id), "the new connection is listed");
    }
    let other = h.get(&list(OTHER_IMODEL), Some(&alice)).await;
    assert!(
        starts_with_hit(other.cache_status()),
        "another iModel keeps its pages"
    );
}

#[tokio::test]
async fn deleting_and_running_evict_the_connections_imodel() {
    let h = two_imodels().await;
    let alice = h.token("alice");
    let page = cache(&h, &list(DEMO_IMODEL_ID), &alice).await;
    cache(&h, &list(OTHER_IMODEL), &alice).await;
    let connections = ids(&page);

    let run = h
        .send(
            Method::POST,
            &format!("/export/connections/{}/runs", connections[3]),
            auth(&alice),
            Bytes::from_static(b"{}"),
        )
        .await;
    assert_eq!(run.status, 202);
    let after_run = h.get(&list(DEMO_IMODEL_ID), Some(&alice)).await;
    assert_eq!(
        after_run.cache_status(),
        "itwin-proxy; fwd=uri-miss; stored"
    );
    assert!(starts_with_hit(
        h.get(&list(OTHER_IMODEL), Some(&alice))
            .await
            .cache_status()
    ));

    let deleted = h
        .send(
            Method::DELETE,
            &format!("/export/connections/{}", connections[2]),
            auth(&alice),
            Bytes::new(),
        )
        .await;
    assert_eq!(deleted.status, 204);
    let after_delete = h.get(&list(DEMO_IMODEL_ID), Some(&alice)).await;
    assert_eq!(
        after_delete.cache_status(),
        "itwin-proxy; fwd=uri-miss; stored"
    );
    assert!(!ids(&after_delete).contains(&connections[2]));
    assert!(starts_with_hit(
        h.get(&list(OTHER_IMODEL), Some(&alice))
            .await
            .cache_status()
    ));
}

#[tokio::test]
async fn a_failed_write_evicts_nothing() {
    let h = two_imodels().await;
    let alice = h.token("alice");
    cache(&h, &list(DEMO_IMODEL_ID), &alice).await;
    let failed = h
        .send(
            Method::DELETE,
            "/export/connections/no-such",
            auth(&alice),
            Bytes::new(),
        )
        .await;
    assert_eq!(failed.status, 404);
    assert!(starts_with_hit(
        h.get(&list(DEMO_IMODEL_ID), Some(&alice))
            .await
            .cache_status()
    ));
}

#[tokio::test]
async fn a_write_to_a_connection_of_unknown_imodel_evicts_everything() {
    let h = two_imodels().await;
    let alice = h.token("alice");
    cache(&h, &list(DEMO_IMODEL_ID), &alice).await;
    let unseen = format!("conn-2-{}", &OTHER_IMODEL[..8]);
    let deleted = h
        .send(
            Method::DELETE,
            &format!("/export/connections/{unseen}"),
            auth(&alice),
            Bytes::new(),
        )
        .await;
    assert_eq!(
        deleted.status,
        204,
        "{}",
        String::from_utf8_lossy(&deleted.body)
    );
    let after = h.get(&list(DEMO_IMODEL_ID), Some(&alice)).await;
    assert_eq!(after.cache_status(), "itwin-proxy; fwd=uri-miss; stored");
}

#[tokio::test]
async fn a_single_connection_answer_teaches_its_imodel() {
    let h = two_imodels().await;
    let alice = h.token("alice");
    cache(&h, &list(DEMO_IMODEL_ID), &alice).await;
    let seen = format!("conn-1-{}", &OTHER_IMODEL[..8]);
    let direct = h
        .get(&format!("/export/connections/{seen}"), Some(&alice))
        .await;
    assert_eq!(
        direct.status,
        200,
        "{}",
        String::from_utf8_lossy(&direct.body)
    );
    let deleted = h
        .send(
            Method::DELETE,
            &format!("/export/connections/{seen}"),
            auth(&alice),
            Bytes::new(),
        )
        .await;
    assert_eq!(deleted.status, 204);
    let after = h.get(&list(DEMO_IMODEL_ID), Some(&alice)).await;
    assert!(
        starts_with_hit(after.cache_status()),
        "only the other iModel's pages were evicted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fill_in_flight_during_a_purge_is_not_stored() {
    let h = Arc::new(two_imodels().await);
    let alice = h.token("alice");
    let hold = h.sim.hold();
    let pending = {
        let (h, alice) = (Arc::clone(&h), alice.clone());
        tokio::spawn(async move { h.get(&list(DEMO_IMODEL_ID), Some(&alice)).await })
    };
    within(hold.waiting_at_least(1)).await;
    assert_eq!(
        h.admin_post(&format!("/purge?imodelId={DEMO_IMODEL_ID}"))
            .await
            .status,
        200
    );
    hold.release();
    let answer = within(pending).await.unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.cache_status(), "itwin-proxy; fwd=uri-miss");
    let next = h.get(&list(DEMO_IMODEL_ID), Some(&alice)).await;
    assert_eq!(next.cache_status(), "itwin-proxy; fwd=uri-miss; stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_after_a_purge_never_gets_the_answer_fetched_before_it() {
    let h = Arc::new(two_imodels().await);
    let alice = h.token("alice");
    let hold = h.sim.hold();
    let spawn_get = || {
        let (h, alice) = (Arc::clone(&h), alice.clone());
        tokio::spawn(async move { h.get(&list(DEMO_IMODEL_ID), Some(&alice)).await })
    };
    let before = spawn_get();
    within(hold.waiting_at_least(1)).await;
    assert_eq!(h.admin_post("/purge").await.status, 200);
    let after = spawn_get();
    within(hold.waiting_at_least(2)).await;
    hold.release();
    let (before, after) = (within(before).await.unwrap(), within(after).await.unwrap());
    assert_eq!(before.cache_status(), "itwin-proxy; fwd=uri-miss");
    assert_eq!(after.cache_status(), "itwin-proxy; fwd=uri-miss; stored");
    assert_eq!(h.list_calls(), 2, "the later request made its own call");
}

#[tokio::test]
async fn a_write_without_an_answer_evicts_conservatively() {
    let h = two_imodels().await;
    let alice = h.token("alice");
    cache(&h, &list(DEMO_IMODEL_ID), &alice).await;
    h.sim.fail_next(1, itwin_proxy_sim::Failure::Close);
    let body = serde_json::json!({"iModelId": DEMO_IMODEL_ID, "displayName": "x"});
    let lost = h
        .send(
            Method::POST,
            "/export/connections",
            auth(&alice),
            Bytes::from(body.to_string()),
        )
        .await;
    assert_eq!(lost.status, 502);
    let after = h.get(&list(DEMO_IMODEL_ID), Some(&alice)).await;
    assert_eq!(after.cache_status(), "itwin-proxy; fwd=uri-miss; stored");
}
