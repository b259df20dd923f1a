//! The admin listener: liveness, readiness, metrics, the status page and cache purges, kept
//! apart from client traffic. With `server.admin_token` set, everything but the probes needs
//! the token.

use std::sync::Arc;

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use percent_encoding::percent_decode_str;
use tokio::sync::watch;

use super::admin_auth::is_authorized;
use super::status;
use crate::body::{self, ProxyBody};
use crate::cache::Purge;
use crate::error::ProxyError;
use crate::metrics::{Format, Snapshot};
use crate::pipeline::Proxy;
use crate::request_body::RequestBody;
use crate::server::InFlight;

/// Answers one admin request. `draining` is true once shutdown began; `in_flight` counts the
/// proxy listener's requests.
pub(crate) async fn handle(
    request: Request<RequestBody>,
    proxy: Arc<Proxy>,
    draining: watch::Receiver<bool>,
    in_flight: InFlight,
) -> Response<ProxyBody> {
    let path = request.uri().path();
    if !matches!(path, "/healthz" | "/readyz")
        && let Some(token) = &proxy.settings_state().settings.server.admin_token
        && !is_authorized(request.headers(), token)
    {
        return unauthorized(path == "/");
    }
    match (request.method(), request.uri().path()) {
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
        (&Method::GET, "/readyz") if *draining.borrow() => {
            text(StatusCode::SERVICE_UNAVAILABLE, "draining\n")
        }
        (&Method::GET, "/readyz") => text(StatusCode::OK, "ready\n"),
        (&Method::GET, "/metrics") => {
            let format = Format::negotiate(request.headers());
            let cache = proxy.cache();
            cache.settle();
            let now = Snapshot {
                cache_entries: cache.entry_count(),
                cache_bytes: cache.weighted_size(),
                in_flight: in_flight.count() as u64,
            };
            let body = proxy.metrics().render(now, format);
            respond(StatusCode::OK, format.content_type(), body.into())
        }
        (&Method::GET, "/") => status_page(),
        (&Method::GET, "/status.json") => {
            let draining = *draining.borrow();
            let status = status::read(&proxy, draining, in_flight.count() as u64).await;
            match serde_json::to_string(&status) {
                Ok(body) => no_store(json(StatusCode::OK, body)),
                Err(error) => ProxyError::Internal(error.to_string()).to_response(),
            }
        }
        (&Method::POST, "/purge") => match purge_target(request.uri().query()) {
            Ok(purge) => {
                let purged = proxy.purge(&purge).await;
                tracing::info!(%purge, purged, "cache purged");
                json(
                    StatusCode::OK,
                    serde_json::json!({ "purged": purged }).to_string(),
                )
            }
            Err(error) => error.to_response(),
        },
        (_, "/purge") => text(StatusCode::METHOD_NOT_ALLOWED, "use POST\n"),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// The answer to an admin request without the admin token. The status page challenges for
/// Basic, so that a browser asks for it (any user name, the token as password).
fn unauthorized(status_page: bool) -> Response<ProxyBody> {
    let mut response = ProxyError::AdminTokenRequired.to_response();
    let challenge = match status_page {
        true => "Basic realm=\"itwin-proxy admin\", charset=\"UTF-8\"",
        false => "Bearer realm=\"itwin-proxy admin\"",
    };
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    response
}

/// The status page, allowed to run only its own inline code.
fn status_page() -> Response<ProxyBody> {
    let mut response = respond(
        StatusCode::OK,
        "text/html; charset=utf-8",
        status::PAGE.clone().into(),
    );
    let headers = response.headers_mut();
    if let Ok(policy) = HeaderValue::from_str(&status::CONTENT_SECURITY_POLICY) {
        headers.insert(header::CONTENT_SECURITY_POLICY, policy);
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    no_store(response)
}

/// Marks an answer that must not be kept by a browser or an intermediary.
fn no_store(mut response: Response<ProxyBody>) -> Response<ProxyBody> {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// What `POST /purge[?imodelId=..]` evicts.
fn purge_target(query: Option<&str>) -> Result<Purge, ProxyError> {
    let Some(query) = query.filter(|q| !q.is_empty()) else {
        return Ok(Purge::All);
    };
    let invalid = ProxyError::InvalidRequest("Use POST /purge or POST /purge?imodelId=<id>.");
    let (name, raw) = query.split_once('=').ok_or(invalid.clone())?;
    if name != "imodelId" || raw.is_empty() || raw.contains('&') {
        return Err(invalid);
    }
    let value = percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| invalid.clone())?;
    Ok(Purge::IModel(value.into_owned()))
}

fn text(status: StatusCode, body: impl Into<bytes::Bytes>) -> Response<ProxyBody> {
    respond(status, "text/plain; charset=utf-8", body.into())
}

fn json(status: StatusCode, body: String) -> Response<ProxyBody> {
    respond(status, "application/json", body.into())
}

fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: bytes::Bytes,
) -> Response<ProxyBody> {
    let mut response = Response::new(body::full(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purge_targets() {
        assert_eq!(purge_target(None).unwrap(), Purge::All);
        assert_eq!(
            purge_target(Some("imodelId=a%2Fb")).unwrap(),
            Purge::IModel("a/b".into())
        );
        assert!(purge_target(Some("imodelId=")).is_err());
        assert!(purge_target(Some("imodelId=a&x=1")).is_err());
        assert!(purge_target(Some("other=a")).is_err());
    }
}
