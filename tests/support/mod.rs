//! Test support: the simulator and the proxy started in-process on 127.0.0.1:0, and a small
//! HTTP client to talk to them.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

pub mod browser;
pub mod process;
pub mod prometheus;

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use itwin_proxy::app::{self, RunningProxy};
use itwin_proxy::config::Settings;
use itwin_proxy_sim::{DEMO_IMODEL_ID, SimConfig, Simulator, TokenSpec};

/// Bound on any single wait in a test.
pub const WAIT: Duration = Duration::from_secs(20);

/// A simulator and a proxy in front of it.
pub struct Harness {
    pub sim: Simulator,
    pub proxy: RunningProxy,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// One answer, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn cache_status(&self) -> &str {
        self.header("cache-status").unwrap_or("")
    }
}

/// The proxy path of the demo iModel's first page of `top` connections.
pub fn page(top: u32) -> String {
    format!("/export/connections?imodelId={DEMO_IMODEL_ID}&$top={top}")
}

/// The proxy path of the demo iModel's page of `top` connections from `skip` on.
pub fn page_at(top: u32, skip: u32) -> String {
    format!("/export/connections?imodelId={DEMO_IMODEL_ID}&$top={top}&$skip={skip}")
}

/// Sets the outbound budget: `rps` calls a second, `burst` at once, `max_wait` in the queue.
pub fn rate_limit(settings: &mut Settings, rps: f64, burst: u32, max_wait: Duration) {
    settings.rate_limit.requests_per_second = rps;
    settings.rate_limit.burst = burst;
    settings.rate_limit.max_wait = max_wait;
}

/// Settings for a proxy in front of `sim`, on ephemeral ports, with local token verification
/// off (the default issuer is not on loopback; tests that verify name their own).
pub fn settings_for(sim: &Simulator) -> Settings {
    let mut settings = Settings::default();
    settings.auth.issuer = None;
    settings.server.listen = "127.0.0.1:0".parse().unwrap();
    settings.server.admin_listen = "127.0.0.1:0".parse().unwrap();
    settings.upstream.base_url = sim.base_url().parse().unwrap();
    settings.server.shutdown_grace = Duration::from_secs(5);
    settings
}

impl Harness {
    /// A default simulator and a proxy with default settings in front of it.
    pub async fn start() -> Self {
        Self::start_with(SimConfig::default(), |_| {}).await
    }

    /// A simulator with `config` and a proxy whose settings `adjust` changes.
    pub async fn start_with(config: SimConfig, adjust: impl FnOnce(&mut Settings)) -> Self {
        let sim = Simulator::start(config).await.expect("simulator starts");
        let mut settings = settings_for(&sim);
        adjust(&mut settings);
        let proxy = app::start(settings).await.expect("proxy starts");
        Self {
            sim,
            proxy,
            client: client(),
        }
    }

    /// The proxy's base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.proxy.addr())
    }

    /// A token for `sub`, signed by the simulator.
    pub fn token(&self, sub: &str) -> String {
        self.sim.token(&TokenSpec::new(sub))
    }

    /// GET `path_and_query` on the proxy with an optional bearer token.
    pub async fn get(&self, path_and_query: &str, token: Option<&str>) -> Answer {
        let headers = token.map_or_else(HeaderMap::new, bearer);
        self.send(Method::GET, path_and_query, headers, Bytes::new())
            .await
    }

    /// Any request to the proxy.
    pub async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        headers: HeaderMap,
        body: Bytes,
    ) -> Answer {
        let uri = if path_and_query.starts_with("http") {
            path_and_query.to_owned()
        } else {
            format!("{}{}", self.url(), path_and_query)
        };
        request(&self.client, method, &uri, headers, body).await
    }

    /// GET on the admin listener.
    pub async fn admin(&self, path: &str) -> Answer {
        let uri = format!("http://{}{}", self.proxy.admin_addr(), path);
        request(
            &self.client,
            Method::GET,
            &uri,
            HeaderMap::new(),
            Bytes::new(),
        )
        .await
    }

    /// POST on the admin listener.
    pub async fn admin_post(&self, path: &str) -> Answer {
        let uri = format!("http://{}{}", self.proxy.admin_addr(), path);
        request(
            &self.client,
            Method::POST,
            &uri,
            HeaderMap::new(),
            Bytes::new(),
        )
        .await
    }

    /// Upstream calls made for the connections list so far.
    pub fn list_calls(&self) -> u64 {
        self.sim.count("GET", "/export/connections")
    }
}

/// Request headers carrying `Authorization: Bearer <token>`.
pub fn bearer(token: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("authorization", format!("Bearer {token}").parse().unwrap());
    headers
}

/// A plain HTTP/1.1 client.
pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

/// Sends one request and reads the answer whole, within [`WAIT`].
pub async fn request(
    client: &Client<HttpConnector, Full<Bytes>>,
    method: Method,
    uri: &str,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    within(try_request(client, method, uri, headers, body))
        .await
        .expect("request succeeds")
}

/// Sends one request and reads the answer whole; a failed connection or body is an error.
pub async fn try_request(
    client: &Client<HttpConnector, Full<Bytes>>,
    method: Method,
    uri: &str,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Answer, Box<dyn std::error::Error + Send + Sync>> {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .body(Full::new(body))
        .unwrap();
    *request.headers_mut() = headers;
    let response = client.request(request).await?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

/// Awaits `future`, failing the test if it takes longer than [`WAIT`].
pub async fn within<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, future)
        .await
        .expect("finished within the bound")
}

/// The `Cache-Status` directive list without the cache name, e.g. `hit; ttl=59`.
pub fn starts_with_hit(status: &str) -> bool {
    status.starts_with("itwin-proxy; hit; ttl=")
}
