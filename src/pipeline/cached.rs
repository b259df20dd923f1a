//! The cached route, `GET /export/connections`: authenticate, build the key, look up, fill
//! (collapsed), store.
//!
//! A page is served from memory only to a request whose token is known-valid, current, holds
//! an accepted scope, and whose subject owns the page. Every other request goes upstream and
//! the upstream's answer decides; while a token is not yet known-valid, identical requests
//! with that same token share one upstream call, never one made with another token.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header, request};
use http_body_util::BodyExt;
use tokio::time::Instant;
use tracing::Instrument;

use super::authenticate::authenticate;
use super::forward::{self, Draw, Outbound, Wait};
use super::relay::{
    self, Buffered, clean_headers, identity_body, is_rewritable_json, rewrite_json_body,
};
use super::shared::Start;
use super::{Live, Proxy, RequestContext};
use crate::auth::{Token, TokenHash, bearer_token, epoch_now};
use crate::body::{self, ProxyBody};
use crate::cache::{CacheKey, CacheStatus, CachedPage, HeldPage, Lookup, PageQuery, Role};
use crate::error::ProxyError;

/// Who may share an upstream call: every known-valid request for a key, or only the requests
/// carrying one not-yet-known token; and only requests that arrived in the same purge epoch,
/// so that a request made after a write never gets an answer fetched before it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum FlightKey {
    /// Requests whose tokens are known-valid for the key's subject.
    Verified(CacheKey, u64),
    /// Requests carrying this one token, not yet known-valid.
    Unverified(TokenHash, CacheKey, u64),
}

/// An upstream answer on the cached route, shareable by every request that waited for it.
#[derive(Debug)]
pub(crate) struct Fetched {
    /// Set when the fill found the page already stored (another fill stored it meanwhile):
    /// its freshness left and age, in whole seconds.
    hit: Option<(i64, u64)>,
    /// Whether that page came from another replica, through the shared tier.
    shared: bool,
    upstream_latency: Option<std::time::Duration>,
    status: StatusCode,
    headers: HeaderMap,
    body: FetchedBody,
    stored: bool,
}

/// The body of a shared answer.
enum FetchedBody {
    /// Read whole (and rewritten, if JSON): every sharer gets a copy.
    Whole(Bytes),
    /// Larger than `upstream.max_rewrite_bytes`: it streams, unrewritten, to the one request
    /// that takes it; the others ask the upstream on their own.
    Oversized(Mutex<Option<ProxyBody>>),
}

impl std::fmt::Debug for FetchedBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Whole(bytes) => write!(f, "Whole({} bytes)", bytes.len()),
            Self::Oversized(_) => f.write_str("Oversized"),
        }
    }
}

/// Where a fill's answer goes.
struct Target {
    /// The page it fetches.
    key: CacheKey,
    /// The purge epoch its request arrived in: no purge since, or the answer is not stored.
    epoch: u64,
    /// Whether a fresh page stored meanwhile may be served instead of calling the upstream
    /// (not for a request that asked for `no-cache`).
    reuse_fresh: bool,
    /// Where the fill leaves the time its upstream call took (microseconds), so that the
    /// request that started it can log it even when the call failed.
    upstream_micros: Arc<AtomicU64>,
}

/// What a fill may do with its answer, and what its requests fall back on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fallback {
    /// Not storable (the token may not use the cache): wait for a permit, relay the answer.
    None,
    /// Storable, nothing to fall back on: wait for a permit.
    Store,
    /// Storable, and a stale page is at hand: take a permit only if one is free now and do
    /// not retry after a 429, since serving the stale page beats waiting.
    Stale,
}

/// Whether a shared answer means the upstream could not give one: the proxy's own failures
/// (no permit, unreachable, timed out) or the upstream's 429 and 5xx.
fn upstream_could_not_answer(outcome: &FillOutcome) -> bool {
    let status = match outcome {
        Ok(fetched) => fetched.status,
        Err(error) => error.status(),
    };
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// What a fill hands to the requests that share it.
pub(crate) type FillOutcome = Result<Arc<Fetched>, ProxyError>;

/// Whether the request is cacheable at all: a GET whose query is exactly a page query.
pub(crate) fn page_query(parts: &request::Parts, query: Option<&str>) -> Option<PageQuery> {
    (parts.method == Method::GET)
        .then(|| PageQuery::parse(query))
        .flatten()
}

/// Serves one cacheable request: a fresh page when the token may see it, else the (shared)
/// upstream answer.
pub(crate) async fn serve(
    proxy: &Arc<Proxy>,
    live: &Arc<Live>,
    parts: &request::Parts,
    path: &PathAndQuery,
    client: IpAddr,
    query: PageQuery,
    ctx: &mut RequestContext,
) -> Result<Response<ProxyBody>, ProxyError> {
    let raw_token = bearer_token(&parts.headers).ok_or(ProxyError::MissingAuthorization)?;
    let token = proxy.tokens.read(raw_token);
    let now = epoch_now();
    let usable =
        token.is_current(now) && token.has_accepted_scope(&live.settings.auth.accepted_scopes);
    let identity = authenticate(proxy, live, raw_token, &token, now).await?;
    let known = identity.known && usable;
    let no_cache = asks_no_cache(&parts.headers);
    let key = CacheKey::new(token.subject.clone(), query, &parts.headers);

    let lookup = match known && !no_cache {
        true => proxy.cache.lookup(&key, Instant::now()).await,
        false => Lookup::Missing,
    };
    // A refresh that failed lately is not tried again at once (see `RefreshBackoff`).
    let backing_off = matches!(
        lookup,
        Lookup::Stale {
            revalidate: true,
            ..
        }
    ) && !proxy.refresh_backoff.allows(&key, Instant::now()).await;
    let stale = match lookup {
        Lookup::Fresh(held) => {
            ctx.cache = Some(CacheStatus::Hit {
                ttl_secs: held.ttl_secs,
            });
            return Ok(hit_response(&held, &parts.headers));
        }
        Lookup::Stale {
            held,
            revalidate: true,
        } if backing_off
            || proxy
                .flights
                .is_running(&FlightKey::Verified(key.clone(), ctx.epoch)) =>
        {
            ctx.cache = Some(CacheStatus::Stale {
                ttl_secs: held.ttl_secs,
            });
            return Ok(hit_response(&held, &parts.headers));
        }
        Lookup::Stale {
            held,
            revalidate: true,
        } => {
            let outbound = Outbound::from_client(live, parts, path, client)?;
            let epoch = ctx.epoch;
            let draw = Draw::of(&live.budgets, Some(&token), identity.trusted);
            let refresh = fill(
                Arc::clone(proxy),
                Arc::clone(live),
                outbound,
                token,
                draw,
                Target {
                    key: key.clone(),
                    epoch,
                    reuse_fresh: true,
                    upstream_micros: Arc::default(),
                },
                Fallback::Stale,
            );
            let proxy = Arc::clone(proxy);
            tokio::spawn(
                async move {
                    // The page is stored by the fill; only a failure matters here.
                    let refreshed = proxy
                        .flights
                        .run(FlightKey::Verified(key.clone(), epoch), refresh)
                        .await;
                    match refreshed {
                        Ok((outcome, _)) if !upstream_could_not_answer(&outcome) => {
                            proxy.refresh_backoff.succeeded(&key).await;
                        }
                        _ => proxy.refresh_backoff.failed(key, Instant::now()).await,
                    }
                }
                .instrument(tracing::Span::current()),
            );
            ctx.cache = Some(CacheStatus::Stale {
                ttl_secs: held.ttl_secs,
            });
            return Ok(hit_response(&held, &parts.headers));
        }
        Lookup::Stale { held, .. } => Some(held),
        Lookup::Missing => None,
    };

    let present = proxy.cache.contains(&key);
    // What this request is, should the upstream call fail before it can say more.
    ctx.cache = Some(if present && (!known || no_cache) {
        CacheStatus::Request
    } else {
        CacheStatus::Miss { stored: false }
    });
    let flight = if known {
        FlightKey::Verified(key.clone(), ctx.epoch)
    } else {
        FlightKey::Unverified(token.hash, key.clone(), ctx.epoch)
    };
    let draw = Draw::of(&live.budgets, Some(&token), identity.trusted);
    let fallback = match (&stale, usable) {
        (Some(_), _) => Fallback::Stale,
        (None, true) => Fallback::Store,
        (None, false) => Fallback::None,
    };
    let upstream_micros = Arc::new(AtomicU64::new(0));
    let fill = fill(
        Arc::clone(proxy),
        Arc::clone(live),
        Outbound::from_client(live, parts, path, client)?,
        token,
        draw.clone(),
        Target {
            key,
            epoch: ctx.epoch,
            reuse_fresh: !no_cache,
            upstream_micros: Arc::clone(&upstream_micros),
        },
        fallback,
    )
    .instrument(tracing::Span::current());
    let (outcome, role) = match proxy.flights.run(flight, fill).await {
        Ok(shared) => shared,
        Err(abandoned) => (
            Err(ProxyError::Internal(abandoned.to_string())),
            Role::Leader,
        ),
    };
    if let Some(held) = &stale
        && upstream_could_not_answer(&outcome)
    {
        ctx.cache = Some(CacheStatus::Stale {
            ttl_secs: held.ttl_secs,
        });
        return Ok(hit_response(held, &parts.headers));
    }
    if role == Role::Leader && outcome.is_err() {
        let micros = upstream_micros.load(Ordering::Relaxed);
        if micros > 0 {
            ctx.add_upstream_latency(std::time::Duration::from_micros(micros));
        }
    }
    let fetched = outcome?;
    if role == Role::Leader
        && let Some(latency) = fetched.upstream_latency
    {
        ctx.add_upstream_latency(latency);
    }
    if let Some((ttl_secs, age_secs)) = fetched.hit {
        ctx.cache = Some(match role {
            Role::Follower => CacheStatus::Collapsed,
            Role::Leader if fetched.shared => CacheStatus::Shared { ttl_secs },
            Role::Leader => CacheStatus::Hit { ttl_secs },
        });
        let mut response = fetched_response(&fetched)
            .ok_or_else(|| ProxyError::Internal("a stored page has no body".into()))?;
        response
            .headers_mut()
            .insert(header::AGE, HeaderValue::from(age_secs));
        return Ok(response);
    }
    ctx.cache = Some(match role {
        Role::Follower => CacheStatus::Collapsed,
        Role::Leader if present && (!known || no_cache) => CacheStatus::Request,
        Role::Leader => CacheStatus::Miss {
            stored: fetched.stored,
        },
    });
    match fetched_response(&fetched) {
        Some(response) => Ok(response),
        None => {
            // Another request streams the oversized shared answer; this one asks on its own.
            ctx.cache = Some(CacheStatus::Miss { stored: false });
            let outbound = Outbound::from_client(live, parts, path, client)?;
            let response =
                forward::call(proxy, live, &draw, &outbound, None, Wait::Yes, ctx).await?;
            Ok(relay::relay(live, response, false).await?.response)
        }
    }
}

/// The fill: one upstream call whose 200 answer, when the token may use the cache, is stored
/// under the target's key (unless a purge happened since its epoch) and then proves the token
/// known-valid. A fresh page stored since the request looked is served instead of a call.
/// Runs on its own task, so it completes even if the request that started it goes away.
async fn fill(
    proxy: Arc<Proxy>,
    live: Arc<Live>,
    outbound: Outbound,
    token: Token,
    draw: Draw,
    Target {
        key,
        epoch,
        reuse_fresh,
        upstream_micros,
    }: Target,
    fallback: Fallback,
) -> FillOutcome {
    let storable = fallback != Fallback::None;
    let wait = match fallback {
        Fallback::Stale => Wait::No,
        Fallback::Store | Fallback::None => Wait::Yes,
    };
    if storable
        && reuse_fresh
        && let Some(held) = stored_meanwhile(&proxy, &token, &key).await
    {
        return Ok(Arc::new(Fetched {
            hit: Some((held.ttl_secs, held.age_secs)),
            shared: false,
            upstream_latency: None,
            status: StatusCode::OK,
            headers: held.page.headers.clone(),
            body: FetchedBody::Whole(held.page.body.clone()),
            stored: false,
        }));
    }
    let claim = match storable {
        true => {
            let may_reuse = reuse_fresh && proxy.known.is_known(&token, epoch_now()).await;
            match proxy.start_fill(&live, &key, epoch, may_reuse).await {
                Start::Shared(held) => {
                    return Ok(Arc::new(Fetched {
                        hit: Some((held.ttl_secs, held.age_secs)),
                        shared: true,
                        upstream_latency: None,
                        status: StatusCode::OK,
                        headers: held.page.headers.clone(),
                        body: FetchedBody::Whole(held.page.body.clone()),
                        stored: false,
                    }));
                }
                Start::Fill(claim) => claim,
            }
        }
        false => None,
    };
    let mut ctx = RequestContext::default();
    let response = forward::call(&proxy, &live, &draw, &outbound, None, wait, &mut ctx).await;
    if let Some(latency) = ctx.upstream_latency {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        upstream_micros.store(micros.max(1), Ordering::Relaxed);
    }
    let (mut parts, incoming) = response?.into_parts();

    let now = epoch_now();
    let accepted = parts.status.is_success();
    if matches!(
        parts.status,
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
    ) {
        proxy.forget_token(&token, now).await;
    }

    let limit = live.settings.upstream.max_rewrite_bytes;
    let buffered = relay::buffer(incoming, limit, live.upstream.request_timeout()).await?;
    clean_headers(&live.rewriter, &mut parts.headers);
    let body = match buffered {
        Buffered::Complete(body) => body,
        Buffered::Partial(rest) => {
            if accepted {
                proxy.remember_token(&token, now).await;
            }
            return Ok(Arc::new(Fetched {
                hit: None,
                shared: false,
                upstream_latency: ctx.upstream_latency,
                status: parts.status,
                headers: parts.headers,
                body: FetchedBody::Oversized(Mutex::new(Some(rest.boxed()))),
                stored: false,
            }));
        }
    };
    let body = match is_rewritable_json(&parts.headers) {
        true => match identity_body(&mut parts.headers, body, limit) {
            Ok(plain) => rewrite_json_body(&live.rewriter, &plain).unwrap_or(plain),
            Err(coded) => coded,
        },
        false => body,
    };
    parts.headers.remove(header::CONTENT_LENGTH);

    if parts.status == StatusCode::OK {
        proxy.invalidator.learn_from_page(&body).await;
    }
    let storable = storable && parts.status == StatusCode::OK && !encoded(&parts.headers);
    let page = CachedPage::new(&parts.headers, body.clone(), Instant::now());
    let copy = claim
        .as_ref()
        .map(|_| CachedPage::new(&page.headers, page.body.clone(), page.stored_at));
    let stored = storable && proxy.cache.store(key, page, epoch).await;
    if let Some(claim) = claim {
        claim.finish(copy.as_ref().filter(|_| stored)).await;
    }
    // Only now, with the page in place: a request that sees the token known-valid finds it.
    if accepted {
        proxy.remember_token(&token, now).await;
    }
    Ok(Arc::new(Fetched {
        hit: None,
        shared: false,
        upstream_latency: ctx.upstream_latency,
        status: parts.status,
        headers: parts.headers,
        body: FetchedBody::Whole(body),
        stored,
    }))
}

/// A fresh page stored since the request looked (by a fill that ended just before this one
/// started), if the token may have it.
async fn stored_meanwhile(proxy: &Proxy, token: &Token, key: &CacheKey) -> Option<HeldPage> {
    if !proxy.known.is_known(token, epoch_now()).await {
        return None;
    }
    match proxy.cache.lookup(key, Instant::now()).await {
        Lookup::Fresh(held) => Some(held),
        Lookup::Stale { .. } | Lookup::Missing => None,
    }
}

/// A stored page as the answer to a request with `request` headers (the variant it accepts).
fn hit_response(held: &HeldPage, request: &HeaderMap) -> Response<ProxyBody> {
    let (headers, body) = held.page.variant_for(request);
    let mut response = Response::new(body::full(body.clone()));
    *response.headers_mut() = headers.clone();
    response
        .headers_mut()
        .insert(header::AGE, HeaderValue::from(held.age_secs));
    response
}

/// The response for one sharer of `fetched`; `None` when its body streamed to another.
fn fetched_response(fetched: &Fetched) -> Option<Response<ProxyBody>> {
    let body = match &fetched.body {
        FetchedBody::Whole(bytes) => body::full(bytes.clone()),
        FetchedBody::Oversized(slot) => {
            slot.lock().unwrap_or_else(PoisonError::into_inner).take()?
        }
    };
    let mut response = Response::new(body);
    *response.status_mut() = fetched.status;
    *response.headers_mut() = fetched.headers.clone();
    Some(response)
}

/// Whether the client asked that no stored page be used (`Cache-Control: no-cache` or
/// `Pragma: no-cache`).
fn asks_no_cache(headers: &HeaderMap) -> bool {
    let has = |name: header::HeaderName| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|directive| directive.trim().eq_ignore_ascii_case("no-cache"))
    };
    has(header::CACHE_CONTROL) || has(header::PRAGMA)
}

/// Whether the body is in a content coding other than identity (such a body is not stored,
/// since the stored headers would not describe it).
fn encoded(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| !v.trim().eq_ignore_ascii_case("identity"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_cache_is_read_from_either_header() {
        let mut headers = HeaderMap::new();
        assert!(!asks_no_cache(&headers));
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("max-age=0, No-Cache"),
        );
        assert!(asks_no_cache(&headers));
        let mut pragma = HeaderMap::new();
        pragma.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        assert!(asks_no_cache(&pragma));
    }
}
