//! Live reload: new settings apply to new requests; link changes empty the cache; budgets
//! survive a reload that leaves them unchanged.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use itwin_proxy::sim::DEMO_IMODEL_ID;
use support::{Harness, starts_with_hit};

fn page() -> String {
    format!("/export/connections?imodelId={DEMO_IMODEL_ID}&$top=2")
}

#[tokio::test]
async fn a_new_public_url_empties_the_cache_and_shows_in_links() {
    let h = Harness::start().await;
    let token = h.token("alice");
    h.get(&page(), Some(&token)).await;
    assert!(starts_with_hit(
        h.get(&page(), Some(&token)).await.cache_status()
    ));

    let mut settings = support::settings_for(&h.sim);
    settings.server.public_base_url = "http://gateway.test/itwin".parse().unwrap();
    let reloaded = h.proxy.proxy().reload(settings).unwrap();
    assert!(reloaded.cache_emptied);
    assert!(!reloaded.budgets_rebuilt);
    assert_eq!(reloaded.needs_restart, Vec::<&str>::new());

    let answer = h.get(&page(), Some(&token)).await;
    assert_eq!(answer.cache_status(), "itwin-proxy; fwd=uri-miss; stored");
    let next = answer.json()["_links"]["next"]["href"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        next.starts_with("http://gateway.test/itwin/export/connections?"),
        "{next}"
    );
    let prefixed = h.get(&format!("/itwin{}", page()), Some(&token)).await;
    assert!(
        starts_with_hit(prefixed.cache_status()),
        "the new prefix routes"
    );
}

#[tokio::test]
async fn keys_that_need_a_restart_are_reported_and_the_cache_is_kept() {
    let h = Harness::start().await;
    let token = h.token("alice");
    h.get(&page(), Some(&token)).await;
    let mut settings = support::settings_for(&h.sim);
    settings.server.listen = "127.0.0.1:1".parse().unwrap();
    settings.cache.max_bytes = 1024;
    settings.rate_limit.burst = 3;
    let reloaded = h.proxy.proxy().reload(settings).unwrap();
    assert_eq!(reloaded.needs_restart, ["server.listen", "cache.max_bytes"]);
    assert!(reloaded.budgets_rebuilt);
    assert!(!reloaded.cache_emptied);
    assert!(starts_with_hit(
        h.get(&page(), Some(&token)).await.cache_status()
    ));
}
