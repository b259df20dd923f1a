//! The forward phase: the outbound request built from the client's, a permit from the budget,
//! the call, and what the upstream's answer tells the budget.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, header, request};
use hyper::body::Incoming;
use tokio::time::Instant;

use super::request_id::REQUEST_ID;
use super::{Proxy, SettingsState};
use crate::auth::Token;
use crate::body::{self, ProxyBody};
use crate::error::ProxyError;
use crate::headers::{add_forwarded, remove_hop_by_hop};
use crate::ratelimit::{Admission, BudgetKey, Budgets, Caller, Rejection};

/// The budget a call draws from, and for an untrusted token the budget of the app it names.
#[derive(Debug, Clone)]
pub(crate) struct Draw {
    /// Where the permit comes from.
    key: BudgetKey,
    /// For a call on the unverified budget with a token: the budget of the app it names. A
    /// 2xx answer charges it too (even into debt), since the token turned out to be that
    /// app's; an upstream pause is that app's quota speaking, so it pauses this budget (not
    /// the unverified one) and the call waits out this budget's pause.
    app: Option<BudgetKey>,
}

impl Draw {
    /// The budget of a call with `token` (None: no token), trusted or not.
    pub(crate) fn of(budgets: &Budgets, token: Option<&Token>, trusted: bool) -> Self {
        let app = |token: &Token| budgets.key_for(Caller::Trusted(token.client_id.as_deref()));
        match token {
            Some(token) if trusted => Self {
                key: app(token),
                app: None,
            },
            _ => {
                let key = budgets.key_for(Caller::Untrusted);
                let app = token.filter(|_| key.is_unverified()).map(app);
                Self { key, app }
            }
        }
    }

    /// The budget an upstream pause applies to.
    fn paused_budget(&self) -> &BudgetKey {
        self.app.as_ref().unwrap_or(&self.key)
    }
}

/// A request to the upstream, without its body, so a bodiless one can be sent again.
#[derive(Clone)]
pub(crate) struct Outbound {
    /// The method.
    pub(crate) method: Method,
    /// The upstream URI.
    pub(crate) uri: Uri,
    /// End-to-end headers plus the forwarding headers.
    pub(crate) headers: HeaderMap,
}

impl std::fmt::Debug for Outbound {
    /// Header values stay out: they carry the client's credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbound")
            .field("method", &self.method)
            .field("uri", &self.uri)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Outbound {
    /// The upstream version of a client request for `path`: hop-by-hop headers dropped, the
    /// upstream's own `Host`, identity encoding asked for (so JSON can be rewritten), and the
    /// `X-Forwarded-*` headers and the request's id added.
    pub(crate) fn from_client(
        live: &SettingsState,
        parts: &request::Parts,
        path: &PathAndQuery,
        client: IpAddr,
        request_id: &HeaderValue,
    ) -> Result<Self, ProxyError> {
        let mut headers = parts.headers.clone();
        remove_hop_by_hop(&mut headers);
        // The credential is end to end: naming it in `Connection` must not strip the token the
        // proxy keyed and budgeted the request by.
        if let Some(authorization) = parts.headers.get(header::AUTHORIZATION) {
            headers.insert(header::AUTHORIZATION, authorization.clone());
        }
        let original_host = headers.remove(header::HOST).or_else(|| {
            parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });
        let https = live.settings.server.public_base_url.scheme() == "https";
        add_forwarded(&mut headers, client, original_host.as_ref(), https);
        headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
        if let Ok(host) = HeaderValue::from_str(live.upstream.authority().as_str()) {
            headers.insert(header::HOST, host);
        }
        headers.insert(REQUEST_ID, request_id.clone());
        Ok(Self {
            method: parts.method.clone(),
            uri: live.upstream.uri_for(path)?,
            headers,
        })
    }

    fn request(&self, body: ProxyBody) -> Result<Request<ProxyBody>, ProxyError> {
        let mut request = Request::builder()
            .method(self.method.clone())
            .uri(self.uri.clone())
            .body(body)
            .map_err(|e| ProxyError::Internal(e.to_string()))?;
        *request.headers_mut() = self.headers.clone();
        Ok(request)
    }
}

/// An upstream call: the answer, and the time spent waiting for response heads (`None`
/// when nothing was sent).
#[derive(Debug)]
pub(crate) struct Called {
    /// The upstream's answer, or why there is none.
    pub(crate) answer: Result<Response<Incoming>, ProxyError>,
    /// The time the call (and its retry) waited for response heads.
    pub(crate) latency: Option<Duration>,
}

/// Sends `outbound` with `body` (None: no body) once its budget grants a permit: with
/// `may_wait`, waiting up to `rate_limit.max_wait`; without, only if a permit is free now
/// (the caller has a stale page to serve instead).
///
/// An upstream 429 or 503 that asks for a pause pauses the whole budget; a 2xx to a call on
/// the unverified budget is charged to its app's budget too. A bodiless GET that
/// may wait and met a 429 is sent once more after the pause when the pause fits in
/// `rate_limit.max_wait`; otherwise the upstream's answer is returned as it came.
pub(crate) async fn call(
    proxy: &Proxy,
    live: &SettingsState,
    draw: &Draw,
    outbound: &Outbound,
    body: Option<ProxyBody>,
    may_wait: bool,
) -> Called {
    let mut latency: Option<Duration> = None;
    let retryable = may_wait && body.is_none() && outbound.method == Method::GET;
    let mut body = body;
    let mut retried = false;
    let answer: Result<_, ProxyError> = async {
        loop {
            admit(proxy, live, draw, may_wait).await?;
            let request = outbound.request(body.take().unwrap_or_else(body::empty))?;
            let started = Instant::now();
            let result = live.upstream.send(request).await;
            let elapsed = started.elapsed();
            latency = Some(latency.unwrap_or_default() + elapsed);
            let response = match result {
                Ok(response) => {
                    proxy
                        .metrics
                        .record_upstream(response.status().as_u16(), elapsed.as_secs_f64());
                    response
                }
                Err(failure) => {
                    proxy
                        .metrics
                        .record_upstream_failure(failure.class.label(), elapsed.as_secs_f64());
                    return Err(failure.into());
                }
            };
            if response.status().is_success()
                && let Some(app) = &draw.app
            {
                live.budgets.charge(app);
            }
            let pause = live
                .budgets
                .observe_response(
                    draw.paused_budget(),
                    response.status(),
                    response.headers(),
                    SystemTime::now(),
                )
                .await;
            let Some(pause) = pause else {
                return Ok(response);
            };
            proxy.metrics.record_upstream_retry_after();
            let retry = retryable
                && !retried
                && response.status() == StatusCode::TOO_MANY_REQUESTS
                && pause <= live.settings.rate_limit.max_wait;
            if !retry {
                return Ok(response);
            }
            tracing::debug!(
                pause_ms = pause.as_millis() as u64,
                "retrying after upstream 429"
            );
            retried = true;
        }
    }
    .await;
    Called { answer, latency }
}

/// Takes a permit for `draw`, waiting up to `rate_limit.max_wait` if `may_wait` (an
/// untrusted call first waits out a pause of the app its token names, if that fits).
async fn admit(
    proxy: &Proxy,
    live: &SettingsState,
    draw: &Draw,
    may_wait: bool,
) -> Result<(), ProxyError> {
    let budgets = &live.budgets;
    let admission = match draw
        .app
        .as_ref()
        .and_then(|app| budgets.pause_remaining(app))
    {
        Some(pause) if !may_wait || pause > live.settings.rate_limit.max_wait => Err(Rejection {
            retry_after: pause,
            paused: true,
        }),
        Some(pause) => {
            let _queued = proxy.metrics.queued();
            tokio::time::sleep(pause).await;
            match budgets.acquire(&draw.key).await {
                Ok(Admission::Immediate) => Ok(Admission::Delayed(pause)),
                other => other,
            }
        }
        None if may_wait => {
            let _queued = proxy.metrics.queued();
            budgets.acquire(&draw.key).await
        }
        None => budgets.try_acquire(&draw.key).await,
    };
    match admission {
        Ok(Admission::Immediate) => Ok(()),
        Ok(Admission::Delayed(_)) => {
            proxy.metrics.record_ratelimit_delayed();
            Ok(())
        }
        Err(rejection) => {
            // Without waiting, the caller serves a stale page instead: nobody is refused.
            if may_wait {
                proxy.metrics.record_ratelimit_rejected();
            }
            Err(ProxyError::TooManyRequests {
                retry_after_secs: rejection.retry_after_secs(),
            })
        }
    }
}
