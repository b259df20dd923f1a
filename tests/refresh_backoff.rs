//! A stale-while-revalidate refresh that failed is not retried on every request.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use itwin_proxy_sim::{DEMO_IMODEL_ID, Failure, SimConfig};
use support::{Harness, within};

#[tokio::test]
async fn a_failed_refresh_backs_off() {
    let h = Harness::start_with(SimConfig::default(), |settings| {
        settings.cache.ttl = Duration::from_millis(300);
        settings.cache.stale_while_revalidate = Duration::from_secs(60);
    })
    .await;
    let token = h.token("alice");
    let page = format!("/export/connections?imodelId={DEMO_IMODEL_ID}&$top=3");
    assert_eq!(h.get(&page, Some(&token)).await.status, 200);
    // Freshness is measured in real time here: waiting it out is the condition itself.
    tokio::time::sleep(Duration::from_millis(500)).await;
    h.sim.fail_next(100, Failure::Status(500));
    let idle = || async {
        while h.proxy.proxy().waiting_on_upstream() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    for _ in 0..5 {
        let answer = h.get(&page, Some(&token)).await;
        assert!(
            answer.cache_status().ends_with("detail=stale"),
            "{}",
            answer.cache_status()
        );
        within(idle()).await;
    }
    assert_eq!(
        h.list_calls(),
        2,
        "the fill, then one failed refresh; the requests after it did not retry at once"
    );
}
