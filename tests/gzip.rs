//! Upstream answers in gzip: JSON is decompressed so its links lead back through the proxy.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Method, Response};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use itwin_proxy::app;
use itwin_proxy::config::Settings;
use tokio::net::TcpListener;

/// An upstream that answers everything with a gzip JSON page linking to itself.
async fn gzip_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let service = service_fn(move |_request| async move {
                let json = format!(
                    r#"{{"connections":[],"_links":{{"next":{{"href":"http://{addr}/export/connections?imodelId=m&$skip=1"}}}}}}"#
                );
                let mut encoder =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                encoder.write_all(json.as_bytes()).unwrap();
                let gzip = Bytes::from(encoder.finish().unwrap());
                let response = Response::builder()
                    .header("content-type", "application/json")
                    .header("content-encoding", "gzip")
                    .body(Full::new(gzip))
                    .unwrap();
                Ok::<_, Infallible>(response)
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    addr
}

#[tokio::test]
async fn gzip_json_is_decompressed_and_its_links_rewritten() {
    let upstream = gzip_upstream().await;
    let mut settings = Settings::default();
    settings.server.listen = "127.0.0.1:0".parse().unwrap();
    settings.server.admin_listen = "127.0.0.1:0".parse().unwrap();
    settings.upstream.base_url = format!("http://{upstream}").parse().unwrap();
    settings.auth.issuer = None;
    let proxy = app::start(settings).await.unwrap();
    let client = support::client();
    for path in ["/export/connections?imodelId=m", "/export/connections/c1"] {
        let answer = support::request(
            &client,
            Method::GET,
            &format!("http://{}{path}", proxy.addr()),
            support::bearer("opaque-token"),
            Bytes::new(),
        )
        .await;
        assert_eq!(answer.status, 200, "{path}");
        assert_eq!(answer.header("content-encoding"), None, "{path}");
        assert_eq!(
            answer.json()["_links"]["next"]["href"],
            "http://127.0.0.1:8080/export/connections?imodelId=m&$skip=1",
            "{path}"
        );
    }
}
