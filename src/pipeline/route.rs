//! The request's frame: [`Proxy::handle`] starts it and runs the route phase without
//! waiting ([`Proxy::route`]), which answers a hit then and there; what needs waiting goes on
//! in one boxed future ([`Proxy::proceed`]); [`Proxy::end`] finishes every request alike.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::future::Either;
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderValue, Method, Request, Response, header, request};
use tokio::time::Instant;
use tracing::Instrument;

use super::forward::Outbound;
use super::guard::{self, guard, strip_prefix};
use super::head_scan::HeadScan;
use super::request_id::REQUEST_ID;
use super::{
    CONNECTIONS_ROUTE, Proxy, RequestContext, SettingsState, access, cached, route_template,
};
use crate::auth::{Token, bearer_token, bearer_unchecked};
use crate::body::ProxyBody;
use crate::cache::{CACHE_STATUS, Write, private_and_varying};
use crate::error::ProxyError;
use crate::metrics::{RequestLabels, method_label};
use crate::request_body::RequestBody;
use crate::telemetry::request_span;

impl Proxy {
    /// Answers one request from `client`. Never fails: every error becomes its response.
    ///
    /// The route phase runs at once, without waiting: a page served from memory is answered
    /// there, and only a request that needs waiting (an upstream call, a token to judge)
    /// gets a future, boxed, to go on in.
    pub(crate) fn handle(
        self: Arc<Self>,
        request: Request<RequestBody>,
        client: SocketAddr,
    ) -> Answering {
        let started = Instant::now();
        let mut ctx = RequestContext {
            epoch: self.cache.epoch(),
            ..RequestContext::default()
        };
        let live = self.live.load_full();
        let scan = HeadScan::of(request.headers());
        // Sent upstream (see `Outbound`) and answered, whatever came back.
        let request_id = self.request_ids.for_request(&scan);
        let ending = Ending {
            arrived: access::Arrived::when_logged(live.settings.log.access, &request, client.ip()),
            received: access::Received {
                request_id,
                method: request.method().clone(),
                uri: request.uri().clone(),
                started,
            },
        };
        let result = match self.route(&live, request, &scan, client, &ending, &mut ctx) {
            Ok(Routed::Answered(response)) => Ok(response),
            Ok(Routed::Later(later)) => {
                let span = ending.span();
                return Either::Right(Box::pin(async move {
                    let request_id = &ending.received.request_id;
                    let result = (self.proceed(&live, later, request_id, &mut ctx))
                        .instrument(span.clone())
                        .await;
                    self.end(result, &ctx, ending, Some(span))
                }));
            }
            Err(error) => Err(error),
        };
        Either::Left(std::future::ready(self.end(result, &ctx, ending, None)))
    }

    /// The end of every request: an error becomes its response; on the cached route,
    /// `Cache-Status`, and `Cache-Control: private` and `Vary` unless it is a page from
    /// memory, which carries them; the request id, one metric, and the request line once the
    /// response is sent. `span` is the request's span, if one was made (see [`Ending::span`]).
    fn end(
        &self,
        result: Result<Response<ProxyBody>, ProxyError>,
        ctx: &RequestContext,
        ending: Ending,
        span: Option<tracing::Span>,
    ) -> Response<ProxyBody> {
        let mut response = match result {
            Ok(response) => response,
            Err(error) => {
                let span = span.unwrap_or_else(|| ending.span());
                span.in_scope(|| {
                    if error.status().is_server_error() {
                        tracing::warn!(%error, code = error.code(), "request failed");
                    } else {
                        tracing::debug!(%error, code = error.code(), "request refused");
                    }
                });
                error.to_response()
            }
        };
        if ctx.is_cached_route() {
            let headers = response.headers_mut();
            if !ctx.page_from_memory {
                private_and_varying(headers);
            }
            debug_assert_eq!(
                headers
                    .get(header::CACHE_CONTROL)
                    .map(HeaderValue::as_bytes),
                Some(&b"private"[..]),
                "every answer of the cached route is private"
            );
            if let Some(status) = ctx.cache {
                headers.insert(CACHE_STATUS, status.header_value());
            }
        }
        let Ending { received, arrived } = ending;
        self.finish(&received.method, ctx, &response, received.started);
        // The request id is cloned only when the line keeps it too.
        match arrived {
            Some(arrived) => {
                response
                    .headers_mut()
                    .insert(REQUEST_ID, received.request_id.clone());
                let line = arrived.answered(received, ctx, response.status());
                response.map(|body| access::log_when_sent(line, body))
            }
            None => {
                response
                    .headers_mut()
                    .insert(REQUEST_ID, received.request_id);
                response
            }
        }
    }

    /// The route phase, as far as it goes without waiting: guards, strips the public path
    /// prefix and dispatches. A page query of the cached route goes to
    /// [`cached::answer_now`], which answers it when memory can; a write, the rest of the
    /// cached route (the bypass) and every other route are left for [`Proxy::proceed`].
    fn route(
        self: &Arc<Self>,
        live: &Arc<SettingsState>,
        request: Request<RequestBody>,
        scan: &HeadScan,
        client: SocketAddr,
        ending: &Ending,
        ctx: &mut RequestContext,
    ) -> Result<Routed, ProxyError> {
        let request_id = &ending.received.request_id;
        let (parts, mut body) = request.into_parts();
        guard(&parts, scan)?;
        let max_body = live.settings.server.max_request_body;
        guard::body_size(scan, max_body)?;
        body.limit(max_body);
        let path = strip_prefix(&live.public_prefix, &parts)?;
        ctx.route = route_template(path.path());
        ctx.cached_route = ctx.route == CONNECTIONS_ROUTE
            && (parts.method == Method::GET || parts.method == Method::HEAD);
        let token = match ctx.cached_route {
            true => Some(self.required_token(&parts.headers)?),
            false => None,
        };
        let query = token
            .as_ref()
            .and_then(|_| cached::page_query(&parts, path.query()));
        let step = match (Write::classify(&parts.method, path.path()), token, query) {
            (Some(write), _, _) => Step::Write(write),
            (None, Some(token), Some(query)) => {
                // Built on demand: a hit never needs it.
                let outbound =
                    || Outbound::from_client(live, &parts, &path, client.ip(), request_id);
                let refresh_needs = || Ok((outbound()?, ending.span()));
                let headers = &parts.headers;
                match cached::answer_now(self, live, headers, token, refresh_needs, query, ctx)? {
                    cached::Now::Answered(response) => return Ok(Routed::Answered(response)),
                    cached::Now::Later(pending) => Step::Page(pending),
                }
            }
            (None, token, _) => Step::PassThrough { token },
        };
        Ok(Routed::Later(Box::new(Later {
            parts,
            body,
            path,
            client,
            step,
        })))
    }

    /// The rest of a request the route phase left: a write, a page query that needs waiting,
    /// or a pass-through.
    async fn proceed(
        self: &Arc<Self>,
        live: &Arc<SettingsState>,
        later: Box<Later>,
        request_id: &HeaderValue,
        ctx: &mut RequestContext,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        let Later {
            parts,
            body,
            path,
            client,
            step,
        } = *later;
        let outbound = || Outbound::from_client(live, &parts, &path, client.ip(), request_id);
        match step {
            Step::Write(write) => {
                let outbound = outbound()?;
                self.write(live, parts, outbound, body, write, ctx).await
            }
            Step::Page(pending) => {
                // Required, and found, by the route phase; as text for a signature check.
                let raw_token = bearer_token(&parts.headers).ok_or(ProxyError::NotBearer)?;
                cached::answer_later(self, live, &parts, raw_token, outbound, pending, ctx).await
            }
            Step::PassThrough { token } => {
                let outbound = outbound()?;
                if ctx.cached_route {
                    ctx.cache = Some(crate::cache::CacheStatus::Bypass);
                }
                let relayed = (self.pass_through(live, &parts, token, outbound, body, ctx)).await?;
                Ok(relayed.into_response())
            }
        }
    }

    /// The client's bearer token, required on the cached route and read there: without one
    /// the request is refused (401) before anything else happens.
    fn required_token(&self, headers: &HeaderMap) -> Result<Arc<Token>, ProxyError> {
        let Some(raw) = bearer_unchecked(headers) else {
            return Err(match headers.contains_key(header::AUTHORIZATION) {
                true => ProxyError::NotBearer,
                false => ProxyError::MissingAuthorization,
            });
        };
        self.tokens.read_bearer(raw).ok_or(ProxyError::NotBearer)
    }

    /// The end of a request: one metric.
    fn finish(
        &self,
        method: &Method,
        ctx: &RequestContext,
        response: &Response<ProxyBody>,
        started: Instant,
    ) {
        self.metrics.record_request(
            RequestLabels {
                route: ctx.route,
                method: method_label(method),
                status: response.status().as_u16(),
                cache: ctx.cache_label(),
            },
            started,
        );
    }
}

/// The answer to a request: ready at once (a page from memory, a refusal), or to come.
pub(crate) type Answering = Either<
    std::future::Ready<Response<ProxyBody>>,
    Pin<Box<dyn Future<Output = Response<ProxyBody>> + Send>>,
>;

/// How far the route phase got without waiting.
enum Routed {
    /// Answered from memory.
    Answered(Response<ProxyBody>),
    /// The rest needs waiting.
    Later(Box<Later>),
}

/// A request the route phase left for [`Proxy::proceed`], with what it found out.
struct Later {
    parts: request::Parts,
    body: RequestBody,
    /// The path and query under the public prefix.
    path: PathAndQuery,
    client: SocketAddr,
    step: Step,
}

/// Where a request left by the route phase goes.
enum Step {
    /// A write under `/export/connections`.
    Write(Write),
    /// A page query of the cached route, as far as [`cached::answer_now`] got.
    Page(Box<cached::Pending>),
    /// Anything else, the cached route's bypass included, with its token if the route phase
    /// read it (the cached route requires one).
    PassThrough { token: Option<Arc<Token>> },
}

/// What the end of a request needs from its start: the request as received, and what only its
/// line needs, if one is written.
struct Ending {
    received: access::Received,
    arrived: Option<access::Arrived>,
}

impl Ending {
    /// The request's span, made when something may log in it: a request that needs waiting,
    /// a refusal, a refresh started behind a stale page. A page served from memory logs
    /// nothing but its request line, which carries these fields itself (see `access`), so it
    /// makes none.
    fn span(&self) -> tracing::Span {
        tracing::info_span!(
            target: request_span::TARGET,
            request_span::NAME,
            request_id = self.received.request_id.to_str().unwrap_or_default(),
            http.method = %self.received.method,
            http.path = self.received.uri.path(),
        )
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use bytes::Bytes;
    use http_body_util::BodyExt;

    use super::*;
    use crate::auth::{Token, TokenHasher, epoch_now};
    use crate::cache::{CacheKey, CachedPage, PageQuery};
    use crate::config::Settings;
    use crate::metrics::Metrics;

    const PAGE: &str = "/export/connections?imodelId=m1&$top=1";

    fn proxy() -> Arc<Proxy> {
        let metrics = Arc::new(Metrics::default());
        let live = SettingsState::new(Settings::default(), &metrics).unwrap();
        Arc::new(Proxy::new(live, TokenHasher::random().unwrap(), metrics))
    }

    fn token() -> String {
        let claims = r#"{"sub":"alice","exp":4102444800,"scope":"itwin-platform"}"#;
        let payload = URL_SAFE_NO_PAD.encode(claims);
        format!("eyJhbGciOiJSUzI1NiJ9.{payload}.c2ln")
    }

    fn request(token: &str) -> Request<RequestBody> {
        Request::get(PAGE)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(RequestBody::empty())
            .unwrap()
    }

    /// A proxy holding the page of `PAGE` for `token`'s subject, `token` known-valid.
    async fn holding(token: &str) -> Arc<Proxy> {
        let proxy = proxy();
        let read: Arc<Token> = proxy.tokens.read_bearer(token).unwrap();
        let generation = proxy.live.load().proofs;
        assert!(proxy.known.remember(&read, epoch_now(), generation).await);
        let query = PageQuery::parse(Some("imodelId=m1&$top=1")).unwrap();
        let key = CacheKey::new(read.subject.clone(), query, &HeaderMap::new());
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let page = CachedPage::new(
            &headers,
            Bytes::from_static(b"{\"page\":1}"),
            Instant::now(),
        );
        assert!(proxy.cache.store(key, page, proxy.cache.epoch()).is_some());
        proxy
    }

    fn client() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 40000))
    }

    #[tokio::test]
    async fn a_hit_is_answered_at_once_with_every_header_of_the_route() {
        let token = token();
        let proxy = holding(&token).await;
        let Either::Left(ready) = Arc::clone(&proxy).handle(request(&token), client()) else {
            panic!("a hit went through a future");
        };
        let response = ready.await;
        assert_eq!(response.status(), 200);
        let headers = response.headers();
        assert!(
            headers["cache-status"]
                .to_str()
                .unwrap()
                .starts_with("itwin-proxy; hit")
        );
        assert_eq!(headers[header::CACHE_CONTROL], "private");
        assert_eq!(headers[header::VARY], "Accept-Encoding");
        assert_eq!(headers[header::CONTENT_TYPE], "application/json");
        assert_eq!(headers[header::AGE], "0");
        assert_eq!(headers[REQUEST_ID].len(), 32);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "{\"page\":1}");
    }

    #[tokio::test]
    async fn what_needs_waiting_goes_on_in_a_future() {
        let token = token();
        let proxy = holding(&token).await;
        // The same page for a token not known here must be judged first (here: the upstream,
        // which this proxy cannot reach, decides).
        let stranger = format!("{token}x");
        let answer = Arc::clone(&proxy).handle(request(&stranger), client());
        assert!(
            matches!(answer, Either::Right(_)),
            "an unknown token was served"
        );
        // So must a request that asks past the cache.
        let mut no_cache = request(&token);
        (no_cache.headers_mut())
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        assert!(matches!(proxy.handle(no_cache, client()), Either::Right(_)));
    }

    /// Counts the request spans made, and the events logged inside one.
    #[derive(Clone, Default)]
    struct RequestSpans {
        made: Arc<std::sync::atomic::AtomicUsize>,
        events_inside: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl<S> tracing_subscriber::Layer<S> for RequestSpans
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        fn on_new_span(
            &self,
            attrs: &tracing::span::Attributes<'_>,
            _: &tracing::span::Id,
            _: tracing_subscriber::layer::Context<'_, S>,
        ) {
            if attrs.metadata().name() == request_span::NAME {
                self.made.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }

        fn on_event(
            &self,
            event: &tracing::Event<'_>,
            ctx: tracing_subscriber::layer::Context<'_, S>,
        ) {
            if ctx
                .event_span(event)
                .is_some_and(|span| span.name() == request_span::NAME)
            {
                self.events_inside
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
    }

    #[tokio::test]
    async fn only_what_may_log_makes_the_request_span() {
        use std::sync::atomic::Ordering::SeqCst;
        use tracing_subscriber::layer::SubscriberExt;

        let spans = RequestSpans::default();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_subscriber::filter::LevelFilter::DEBUG)
            .with(spans.clone());
        let _second = crate::telemetry::captured::second_dispatcher();
        let _default = tracing::subscriber::set_default(subscriber);
        let token = token();
        let proxy = holding(&token).await;
        let hit = Arc::clone(&proxy).handle(request(&token), client());
        assert_eq!(hit.await.status(), 200);
        assert_eq!(spans.made.load(SeqCst), 0, "a hit made a span");
        let unauthenticated = Request::get(PAGE).body(RequestBody::empty()).unwrap();
        let refused = Arc::clone(&proxy).handle(unauthenticated, client());
        assert_eq!(refused.await.status(), 401);
        assert_eq!(spans.made.load(SeqCst), 1, "a refusal logs in its span");
        assert_eq!(
            spans.events_inside.load(SeqCst),
            1,
            "the refusal was logged"
        );
        let answer = proxy.handle(request(&format!("{token}x")), client());
        assert!(matches!(answer, Either::Right(_)));
        assert_eq!(
            spans.made.load(SeqCst),
            2,
            "what needs waiting goes on in its span"
        );
    }

    #[tokio::test]
    async fn a_refusal_in_the_route_phase_is_answered_at_once() {
        let proxy = proxy();
        let unauthenticated = Request::get(PAGE).body(RequestBody::empty()).unwrap();
        let Either::Left(ready) = proxy.handle(unauthenticated, client()) else {
            panic!("a refusal went through a future");
        };
        let response = ready.await;
        assert_eq!(response.status(), 401);
        assert_eq!(response.headers()[header::CACHE_CONTROL], "private");
    }
}
