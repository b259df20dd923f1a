//! The admin listener: liveness, readiness and metrics, kept apart from client traffic.

use std::sync::Arc;

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use tokio::sync::watch;

use crate::body::{self, ProxyBody};
use crate::pipeline::Proxy;

/// Answers one admin request. `draining` is true once shutdown began.
pub async fn handle(
    request: Request<Incoming>,
    proxy: Arc<Proxy>,
    draining: watch::Receiver<bool>,
) -> Response<ProxyBody> {
    let (status, content_type, text) = match (request.method(), request.uri().path()) {
        (&Method::GET, "/healthz") => (StatusCode::OK, "text/plain", "ok\n".to_owned()),
        (&Method::GET, "/readyz") if *draining.borrow() => (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "draining\n".to_owned(),
        ),
        (&Method::GET, "/readyz") => (StatusCode::OK, "text/plain", "ready\n".to_owned()),
        (&Method::GET, "/metrics") => {
            let cache = proxy.cache();
            cache.settle().await;
            let text = proxy
                .metrics()
                .render(cache.entry_count(), cache.weighted_size());
            (
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                text,
            )
        }
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found\n".to_owned(),
        ),
    };
    let mut response = Response::new(body::full(text));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
