//! The limits the proxy puts on clients (request body size, stalls), answered in the JSON
//! error shape, and connections never closed under a client without notice.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method};
use support::{Harness, bearer, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A proxy whose request bodies may be at most `max` bytes.
async fn with_body_limit(max: u64) -> Harness {
    Harness::start_with(Default::default(), |settings| {
        settings.server.max_request_body = max;
    })
    .await
}

/// A proxy whose clients may stall for 300 ms.
async fn with_short_client_timeout() -> Harness {
    Harness::start_with(Default::default(), |settings| {
        settings.server.client_timeout = Duration::from_millis(300);
    })
    .await
}

/// A raw connection to the proxy's listener.
async fn connect(h: &Harness) -> tokio::net::TcpStream {
    tokio::net::TcpStream::connect(h.proxy.addr())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_declared_body_over_the_limit_is_refused_before_anything_is_sent() {
    let h = with_body_limit(1024).await;
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

/// Reads one HTTP/1.1 response (head and a `Content-Length` body) from `stream`.
async fn read_response(stream: &mut tokio::net::TcpStream) -> (String, String) {
    let mut data = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            if data.len() >= end + 4 + length {
                let body = String::from_utf8_lossy(&data[end + 4..end + 4 + length]).into_owned();
                return (head, body);
            }
        }
        let read = stream.read(&mut buffer).await.unwrap();
        assert!(read > 0, "closed before a whole response");
        data.extend_from_slice(&buffer[..read]);
    }
}

fn post_head(path: &str, token: &str, length: usize) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    )
}

#[tokio::test]
async fn an_answer_before_a_small_body_keeps_the_connection_usable() {
    let h = with_body_limit(1024).await;
    let token = h.token("alice");
    within(async {
        let mut stream = tokio::net::TcpStream::connect(h.proxy.addr()).await.unwrap();
        stream
            .write_all(post_head("/export/connections", &token, 4096).as_bytes())
            .await
            .unwrap();
        stream.write_all(&[b' '; 1000]).await.unwrap();
        // The rest comes later, as from a slow client: the proxy reads it rather than
        // closing under the client.
        tokio::time::sleep(Duration::from_millis(300)).await;
        stream.write_all(&[b' '; 3096]).await.unwrap();
        let (head, body) = read_response(&mut stream).await;
        assert!(head.starts_with("http/1.1 413"), "{head}");
        assert!(body.contains("PayloadTooLarge"), "{body}");
        assert!(!head.contains("connection: close"), "{head}");
        let next = format!(
            "GET /export/connections/nope HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n"
        );
        stream.write_all(next.as_bytes()).await.unwrap();
        let (head, _) = read_response(&mut stream).await;
        assert!(head.starts_with("http/1.1 404"), "the next request is served: {head}");
    })
    .await;
}

#[tokio::test]
async fn an_answer_before_a_large_body_announces_the_close() {
    let h = with_body_limit(1024).await;
    let token = h.token("alice");
    within(async {
        let mut stream = connect(&h).await;
        stream
            .write_all(post_head("/export/connections", &token, 1 << 20).as_bytes())
            .await
            .unwrap();
        stream.write_all(&[b' '; 8192]).await.unwrap();
        let (head, _) = read_response(&mut stream).await;
        assert!(head.starts_with("http/1.1 413"), "{head}");
        assert!(head.contains("connection: close"), "told to close: {head}");
    })
    .await;
}

#[tokio::test]
async fn a_streamed_body_over_the_limit_is_cut() {
    let h = with_body_limit(1024).await;
    let token = h.token("alice");
    within(async {
        let mut stream = connect(&h).await;
        let head = format!(
            "POST /sim/echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
             Transfer-Encoding: chunked\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        for _ in 0..4 {
            stream.write_all(b"200\r\n").await.unwrap();
            stream.write_all(&[b'x'; 0x200]).await.unwrap();
            stream.write_all(b"\r\n").await.unwrap();
        }
        let (head, body) = read_response(&mut stream).await;
        assert!(head.starts_with("http/1.1 413"), "{head}");
        assert!(body.contains("PayloadTooLarge"), "{body}");
        assert!(head.contains("connection: close"), "{head}");
    })
    .await;
}

#[tokio::test]
async fn a_client_stalling_in_its_body_gets_408() {
    let h = with_short_client_timeout().await;
    let token = h.token("alice");
    within(async {
        let mut stream = connect(&h).await;
        stream
            .write_all(post_head("/sim/echo", &token, 100).as_bytes())
            .await
            .unwrap();
        stream.write_all(b"{\"partial\":").await.unwrap();
        let (head, body) = read_response(&mut stream).await;
        assert!(head.starts_with("http/1.1 408"), "{head}");
        assert!(body.contains("RequestTimeout"), "{body}");
        assert!(head.contains("connection: close"), "{head}");
    })
    .await;
}

#[tokio::test]
async fn a_client_stalling_in_its_request_head_gets_408_and_the_close() {
    let h = with_short_client_timeout().await;
    within(async {
        let mut stream = connect(&h).await;
        stream
            .write_all(b"GET /export/connections?imodelId=x HTTP/1.1\r\nHost: a\r\n")
            .await
            .unwrap();
        let (head, body) = read_response(&mut stream).await;
        assert!(head.starts_with("http/1.1 408"), "{head}");
        assert!(head.contains("content-type: application/json"), "{head}");
        assert!(head.contains("connection: close"), "{head}");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["error"]["code"], "RequestTimeout", "{body}");
        let mut rest = Vec::new();
        let read = stream.read_to_end(&mut rest).await;
        assert!(matches!(read, Ok(0)), "then the connection ends: {read:?}");
    })
    .await;
    assert_eq!(h.sim.request_count(), 0, "nothing reached the upstream");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_outlives_the_client_timeout() {
    let h = with_short_client_timeout().await;
    let token = h.token("alice");
    let request = format!(
        "GET /export/connections/nope HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n"
    );
    within(async {
        let mut stream = connect(&h).await;
        stream.write_all(request.as_bytes()).await.unwrap();
        let (head, _) = read_response(&mut stream).await;
        assert!(head.starts_with("http/1.1 404"), "{head}");
        // Idle, with no request started, for longer than the client timeout but well
        // within the idle timeout.
        tokio::time::sleep(Duration::from_secs(1)).await;
        stream.write_all(request.as_bytes()).await.unwrap();
        let (head, _) = read_response(&mut stream).await;
        assert!(head.starts_with("http/1.1 404"), "still served: {head}");
    })
    .await;
}

#[tokio::test]
async fn too_many_or_too_large_headers_get_431_in_the_error_shape() {
    let h = Harness::start().await;
    let mut many = HeaderMap::new();
    for i in 0..120 {
        many.insert(
            http::HeaderName::from_bytes(format!("x-extra-{i}").as_bytes()).unwrap(),
            "1".parse().unwrap(),
        );
    }
    let mut large = HeaderMap::new();
    large.insert("x-large", "v".repeat(40 * 1024).parse().unwrap());
    for headers in [many, large] {
        let answer = h
            .send(Method::GET, "/sim/echo", headers, Bytes::new())
            .await;
        assert_eq!(answer.status, 431);
        assert_eq!(answer.json()["error"]["code"], "HeadersTooLarge");
    }
    assert_eq!(h.sim.request_count(), 0, "nothing reached the upstream");
}
