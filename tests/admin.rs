//! The admin listener's token: the status page, metrics and purges need it; probes never do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use base64::Engine;
use bytes::Bytes;
use http::{HeaderMap, Method};
use support::{Answer, Harness, request};

const TOKEN: &str = "adm1n-t0ken";

async fn admin(h: &Harness, method: Method, path: &str, authorization: Option<&str>) -> Answer {
    let mut headers = HeaderMap::new();
    if let Some(value) = authorization {
        headers.insert("authorization", value.parse().unwrap());
    }
    let uri = format!("http://{}{}", h.proxy.admin_addr(), path);
    request(&support::client(), method, &uri, headers, Bytes::new()).await
}

#[tokio::test]
async fn the_admin_token_guards_everything_but_the_probes() {
    let h = Harness::start_with(Default::default(), |settings| {
        settings.server.admin_token = Some(TOKEN.to_owned());
    })
    .await;
    for probe in ["/healthz", "/readyz"] {
        assert_eq!(admin(&h, Method::GET, probe, None).await.status, 200);
    }
    for (method, path) in [(Method::GET, "/metrics"), (Method::POST, "/purge")] {
        for wrong in [None, Some("Bearer nope"), Some("Basic bm9wZTpub3Bl")] {
            let answer = admin(&h, method.clone(), path, wrong).await;
            assert_eq!(answer.status, 401, "{path} with {wrong:?}");
            assert_eq!(answer.json()["error"]["code"], "Unauthorized");
            assert!(
                answer
                    .header("www-authenticate")
                    .unwrap()
                    .starts_with("Bearer")
            );
        }
    }
    let page = admin(&h, Method::GET, "/", None).await;
    assert_eq!(page.status, 401);
    assert!(
        page.header("www-authenticate")
            .unwrap()
            .starts_with("Basic "),
        "a browser asks for the token"
    );

    let bearer = format!("Bearer {TOKEN}");
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("anyone:{TOKEN}"))
    );
    for good in [&bearer, &basic] {
        let metrics = admin(&h, Method::GET, "/metrics", Some(good)).await;
        assert_eq!(metrics.status, 200, "{good}");
        assert!(String::from_utf8_lossy(&metrics.body).contains("itwin_proxy_"));
        let purged = admin(&h, Method::POST, "/purge", Some(good)).await;
        assert_eq!(purged.status, 200);
        assert_eq!(purged.json()["purged"], 0);
    }
}

#[tokio::test]
async fn without_a_token_the_admin_endpoints_are_open() {
    let h = Harness::start().await;
    assert_eq!(admin(&h, Method::GET, "/metrics", None).await.status, 200);
    assert_eq!(admin(&h, Method::POST, "/purge", None).await.status, 200);
}
