//! Everything that is not the cached list: forwarded unchanged but for hop-by-hop headers and
//! links, never to another host.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use bytes::Bytes;
use http::{HeaderMap, Method};
use itwin_proxy_sim::{DEMO_IMODEL_ID, Failure};
use support::{Harness, bearer, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends raw bytes to the proxy and returns the status line of its answer.
async fn raw_status_line(h: &Harness, request: &str) -> String {
    within(async {
        let mut stream = tokio::net::TcpStream::connect(h.proxy.addr())
            .await
            .unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut buffer = vec![0u8; 4096];
        let read = stream.read(&mut buffer).await.unwrap();
        let text = String::from_utf8_lossy(&buffer[..read]).into_owned();
        text.lines().next().unwrap_or_default().to_owned()
    })
    .await
}

#[tokio::test]
async fn a_post_body_passes_through_intact() {
    let h = Harness::start().await;
    let body: String = (0..50_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let mut headers = bearer(&h.token("alice"));
    headers.insert("content-type", "text/plain".parse().unwrap());
    let answer = h
        .send(
            Method::POST,
            "/sim/echo?x=1",
            headers,
            Bytes::from(body.clone()),
        )
        .await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json()["body"], body.as_str());
    assert_eq!(answer.json()["method"], "POST");
    let recorded = h.sim.requests().pop().unwrap();
    assert_eq!(recorded.body, Bytes::from(body));
    assert_eq!(recorded.uri, "/sim/echo?x=1");
}

#[tokio::test]
async fn creating_a_connection_passes_through() {
    let h = Harness::start().await;
    let token = h.token("alice");
    let mut headers = bearer(&token);
    headers.insert("content-type", "application/json".parse().unwrap());
    let body = serde_json::json!({
        "iModelId": DEMO_IMODEL_ID, "displayName": "new", "authenticationType": "User"
    });
    let answer = h
        .send(
            Method::POST,
            "/export/connections",
            headers,
            Bytes::from(body.to_string()),
        )
        .await;
    assert_eq!(answer.status, 201);
    assert_eq!(answer.json()["connection"]["displayName"], "new");
    assert_eq!(
        answer.header("cache-status"),
        None,
        "pass-through carries no Cache-Status"
    );
}

#[tokio::test]
async fn hop_by_hop_request_headers_are_removed_and_forwarding_headers_added() {
    let h = Harness::start().await;
    let mut headers = bearer(&h.token("alice"));
    headers.insert("connection", "x-hop".parse().unwrap());
    headers.insert("x-hop", "secret".parse().unwrap());
    headers.insert("keep-alive", "timeout=5".parse().unwrap());
    headers.insert("proxy-authorization", "Basic abc".parse().unwrap());
    headers.insert("x-end-to-end", "kept".parse().unwrap());
    let answer = h
        .send(Method::GET, "/sim/echo", headers, Bytes::new())
        .await;
    assert_eq!(answer.status, 200);
    let recorded = h.sim.requests().pop().unwrap();
    for gone in ["x-hop", "keep-alive", "proxy-authorization"] {
        assert!(!recorded.headers.contains_key(gone), "{gone} was forwarded");
    }
    assert_eq!(recorded.headers["x-end-to-end"], "kept");
    assert_eq!(recorded.headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(recorded.headers["x-forwarded-proto"], "http");
    assert_eq!(
        recorded.headers["x-forwarded-host"].to_str().unwrap(),
        h.proxy.addr().to_string()
    );
    assert_eq!(
        recorded.headers["host"].to_str().unwrap(),
        h.sim.addr().to_string(),
        "the upstream's own Host"
    );
}

#[tokio::test]
async fn hop_by_hop_response_headers_are_removed() {
    let h = Harness::start().await;
    let answer = h
        .get(
            "/sim/headers?Connection=X-Hop&X-Hop=1&Proxy-Agent=sim&X-Kept=yes",
            None,
        )
        .await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("x-kept"), Some("yes"));
    assert_eq!(answer.header("x-hop"), None);
    assert_eq!(answer.header("proxy-agent"), None);
}

#[tokio::test]
async fn location_and_link_headers_lead_back_through_the_proxy() {
    let h = Harness::start().await;
    let origin = h.sim.link_origin();
    let query = format!(
        "/sim/headers?Location={origin}/export/connections/c1/runs/r1&Link=%3C{origin}/x%3E%3B%20rel%3D%22next%22"
    );
    let answer = h.get(&query, None).await;
    assert_eq!(
        answer.header("location"),
        Some("http://127.0.0.1:8080/export/connections/c1/runs/r1")
    );
    assert_eq!(
        answer.header("link"),
        Some("<http://127.0.0.1:8080/x>; rel=\"next\"")
    );
}

#[tokio::test]
async fn runs_answer_with_a_rewritten_location() {
    let h = Harness::start().await;
    let token = h.token("alice");
    let list = h
        .get(
            &format!("/export/connections?imodelId={DEMO_IMODEL_ID}&$top=1"),
            Some(&token),
        )
        .await;
    let id = list.json()["connections"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let run = h
        .send(
            Method::POST,
            &format!("/export/connections/{id}/runs"),
            bearer(&token),
            Bytes::from_static(b"{}"),
        )
        .await;
    assert_eq!(run.status, 202);
    let location = run.header("location").unwrap();
    assert!(
        location.starts_with(&format!(
            "http://127.0.0.1:8080/export/connections/{id}/runs/"
        )),
        "{location}"
    );
}

#[tokio::test]
async fn links_to_other_origins_are_left_alone() {
    let h = Harness::start().await;
    let answer = h
        .get(
            "/authorizationinformation?redirectUrl=http://localhost",
            Some(&h.token("alice")),
        )
        .await;
    assert_eq!(answer.status, 200);
    let href = answer.json()["_links"]["authorizationUrl"]["href"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(href.starts_with("https://ims.bentley.com/"), "{href}");
}

#[tokio::test]
async fn json_larger_than_the_rewrite_limit_streams_unchanged() {
    let h = Harness::start_with(Default::default(), |settings| {
        settings.upstream.max_rewrite_bytes = 4096;
    })
    .await;
    let origin = h.sim.link_origin();
    let small = h.get("/sim/large?bytes=1000", None).await;
    let href = small.json()["_links"]["self"]["href"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(href.starts_with("http://127.0.0.1:8080/"), "{href}");
    let large = h.get("/sim/large?bytes=20000", None).await;
    assert!(large.body.len() >= 16_000);
    let href = large.json()["_links"]["self"]["href"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(href.starts_with(&origin), "{href}");
}

#[tokio::test]
async fn upstream_errors_pass_through_as_sent() {
    let h = Harness::start().await;
    let answer = h
        .get(
            "/export/connections/no-such-connection",
            Some(&h.token("alice")),
        )
        .await;
    assert_eq!(answer.status, 404);
    assert_eq!(answer.json()["error"]["code"], "ConnectionNotFound");
}

#[tokio::test]
async fn an_unreachable_upstream_is_a_502_in_the_error_shape() {
    let h = Harness::start().await;
    h.sim.fail_next(1, Failure::Close);
    let answer = h
        .get("/export/connections/x", Some(&h.token("alice")))
        .await;
    assert_eq!(answer.status, 502);
    assert_eq!(answer.json()["error"]["code"], "UpstreamUnavailable");
}

#[tokio::test]
async fn the_proxy_is_never_an_open_proxy() {
    let h = Harness::start().await;
    let absolute = raw_status_line(
        &h,
        "GET http://evil.example/export/connections HTTP/1.1\r\nHost: evil.example\r\n\r\n",
    )
    .await;
    assert!(absolute.starts_with("HTTP/1.1 400"), "{absolute}");
    let connect = raw_status_line(
        &h,
        "CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n",
    )
    .await;
    assert!(connect.starts_with("HTTP/1.1 400"), "{connect}");
    let evil_host = h
        .send(
            Method::GET,
            "/sim/echo",
            {
                let mut headers = HeaderMap::new();
                headers.insert("host", "evil.example".parse().unwrap());
                headers
            },
            Bytes::new(),
        )
        .await;
    assert_eq!(evil_host.status, 200, "a Host header never routes");
    assert_eq!(
        h.sim.request_count(),
        1,
        "only the last request reached the simulator"
    );
}

#[tokio::test]
async fn a_slow_upstream_is_a_504_after_the_request_timeout() {
    let h = Harness::start_with(Default::default(), |settings| {
        settings.upstream.request_timeout = std::time::Duration::from_millis(200);
    })
    .await;
    h.sim.set_delay(std::time::Duration::from_secs(3));
    let answer = h
        .get("/export/connections/x", Some(&h.token("alice")))
        .await;
    assert_eq!(answer.status, 504);
    assert_eq!(answer.json()["error"]["code"], "UpstreamTimeout");
}

#[tokio::test]
async fn clients_may_speak_h2c() {
    let h = Harness::start().await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<http_body_util::Full<Bytes>>();
    let token = h.token("alice");
    let uri = format!(
        "{}/export/connections?imodelId={DEMO_IMODEL_ID}&$top=2",
        h.url()
    );
    for expected in ["itwin-proxy; fwd=uri-miss; stored", "itwin-proxy; hit"] {
        let request = http::Request::get(&uri)
            .header("authorization", format!("Bearer {token}"))
            .body(http_body_util::Full::new(Bytes::new()))
            .unwrap();
        let response = within(client.request(request)).await.unwrap();
        assert_eq!(response.version(), http::Version::HTTP_2);
        assert_eq!(response.status(), 200);
        let status = response.headers()["cache-status"].to_str().unwrap();
        assert!(status.starts_with(expected), "{status}");
    }
    assert_eq!(h.list_calls(), 1);
}
