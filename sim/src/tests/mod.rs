//! Tests that start the simulator on port 0 and talk to it over HTTP, as the proxy does.

mod api;
mod controls;
mod issuer;

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use super::{SimConfig, Simulator, TokenSpec};

/// The bound on every wait in these tests.
const WAIT: Duration = Duration::from_secs(10);

/// An answer, read whole.
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", |v| v.to_str().unwrap())
    }

    fn error_code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

/// A simulator, a client and a valid token for subject `alice`.
struct Harness {
    sim: Simulator,
    client: Client<HttpConnector, Full<Bytes>>,
    token: String,
}

impl Harness {
    async fn start(config: SimConfig) -> Self {
        let sim = Simulator::start(config).await.unwrap();
        let token = sim.token(&TokenSpec::new("alice"));
        let client = Client::builder(TokioExecutor::new()).build_http();
        Self { sim, client, token }
    }

    async fn default() -> Self {
        Self::start(SimConfig::default()).await
    }

    /// Sends a request to a path (or an absolute URL) with an optional `Authorization` value.
    async fn try_send(
        &self,
        method: Method,
        target: &str,
        authorization: Option<&str>,
        body: &str,
    ) -> Result<Reply, hyper_util::client::legacy::Error> {
        let url = if target.starts_with("http") {
            target.to_owned()
        } else {
            format!("{}{target}", self.sim.base_url())
        };
        let mut request = Request::builder().method(method).uri(url);
        if let Some(authorization) = authorization {
            request = request.header("authorization", authorization);
        }
        let request = request
            .body(Full::new(Bytes::from(body.to_owned())))
            .unwrap();
        let response = tokio::time::timeout(WAIT, self.client.request(request))
            .await
            .unwrap()?;
        let (parts, body) = response.into_parts();
        let body = tokio::time::timeout(WAIT, body.collect())
            .await
            .unwrap()
            .unwrap();
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body: body.to_bytes(),
        })
    }

    /// Sends a request with an optional bearer token.
    async fn send(&self, method: Method, target: &str, token: Option<&str>, body: &str) -> Reply {
        let authorization = token.map(|token| format!("Bearer {token}"));
        let authorization = authorization.as_deref();
        self.try_send(method, target, authorization, body)
            .await
            .unwrap()
    }

    /// GET with the harness token.
    async fn get(&self, target: &str) -> Reply {
        self.send(Method::GET, target, Some(&self.token), "").await
    }

    async fn get_with(&self, target: &str, token: Option<&str>) -> Reply {
        self.send(Method::GET, target, token, "").await
    }
}

/// The list path of the demo iModel with a query suffix.
fn demo_list(suffix: &str) -> String {
    format!(
        "/export/connections?imodelId={}{suffix}",
        super::DEMO_IMODEL_ID
    )
}
