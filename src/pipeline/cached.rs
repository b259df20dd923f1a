//! The cached route: a page query of `GET /export/connections`, in phases.
//!
//! 1. authenticate (`known_here`, else `authenticate`) and cache key ([`PageRequest::keyed`]):
//!    whether the token is known-valid and trusted, and which page of whose it asks for;
//! 2. [`cache_lookup`]: a fresh page is a hit; a stale one is served at once while a refresh
//!    runs behind ([`refresh`]), or kept to fall back on;
//! 3. [`fetch`]: the request's flight runs a [`fill`] (or joins the one running): a page
//!    stored meanwhile, here or by another replica, or one upstream call through the forward,
//!    response, store and learn phases. A stale page is served instead when the upstream could
//!    not answer; an answer too large to share is asked for again ([`ask_alone`]);
//! 4. [`cache_status`]: the cache status, from what happened.
//!
//! The phases run in [`answer_now`], without waiting, as far as they can: for a token known
//! here and a page in memory, that is to the answer, so a hit never builds a future. What
//! needs waiting (judging a token not known here, the fetch) goes on in [`answer_later`],
//! through the same phases.
//!
//! A page is served from memory only to a request whose token is known-valid, current, holds
//! an accepted scope, and whose subject owns the page. Every other request goes upstream and
//! the upstream's answer decides; while a token is not yet known-valid, identical requests
//! with that same token share one upstream call, never one made with another token.

use std::sync::{Arc, Mutex, PoisonError};

use http::{HeaderMap, Method, Response, StatusCode, header, request};
use tokio::time::Instant;
use tracing::{Instrument, Span};

use super::authenticate::{Identity, authenticate, known_here};
use super::fill::{Fallback, Fill, UpstreamTime, fill};
use super::forward::{self, Draw, Outbound};
use super::relay::{self, Buffering, Relayed, RelayedBody};
use super::{Proxy, RequestContext, SettingsState};
use crate::auth::{Token, TokenHash, epoch_now};
use crate::body::{self, ProxyBody};
use crate::cache::{
    CacheKey, CacheStatus, HeldPage, Lookup, PageHeaders, PageQuery, Role, age_value,
};
use crate::error::ProxyError;
use crate::ratelimit::Budgets;

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

/// What a fill hands to the requests that share it.
pub(crate) type FillOutcome = Result<Arc<Fetched>, ProxyError>;

/// A fill's result, shareable by every request that waited for it.
#[derive(Debug)]
pub(crate) enum Fetched {
    /// A fresh page stored since the request looked: by a fill here, or (`shared`) by another
    /// replica, through the shared tier.
    Reused { held: HeldPage, shared: bool },
    /// The upstream's answer, made fit for the client; `stored` when it is the stored page.
    Answered {
        status: StatusCode,
        headers: HeaderMap,
        body: FetchedBody,
        stored: bool,
    },
}

/// The body of a shared answer.
#[derive(Debug)]
pub(crate) enum FetchedBody {
    /// Read whole (and rewritten, if JSON): every sharer gets a copy.
    Whole(bytes::Bytes),
    /// Larger than `upstream.max_rewrite_bytes`: it streams, unrewritten, to the one request
    /// that takes it; the others ask the upstream on their own.
    Oversized(Mutex<Option<ProxyBody>>),
}

impl Fetched {
    /// The shareable form of an upstream answer.
    pub(super) fn answered(relayed: Relayed, stored: bool) -> Self {
        let body = match relayed.body {
            RelayedBody::Whole(bytes) => FetchedBody::Whole(bytes),
            RelayedBody::Streaming(rest) => FetchedBody::Oversized(Mutex::new(Some(rest))),
        };
        Self::Answered {
            status: relayed.head.status,
            headers: relayed.head.headers,
            body,
            stored,
        }
    }

    /// The status of the answer.
    fn status(&self) -> StatusCode {
        match self {
            Self::Reused { .. } => StatusCode::OK,
            Self::Answered { status, .. } => *status,
        }
    }

    /// The response for one sharer, which accepts the gzip variant of a page or not; `None`
    /// when its body streamed to another.
    fn response(&self, gzip: bool) -> Option<Response<ProxyBody>> {
        let (status, headers, body) = match self {
            Self::Reused { held, .. } => return Some(hit_response(held, gzip)),
            Self::Answered {
                status,
                headers,
                body,
                ..
            } => (status, headers, body),
        };
        let body = match body {
            FetchedBody::Whole(bytes) => body::full(bytes.clone()),
            FetchedBody::Oversized(slot) => {
                slot.lock().unwrap_or_else(PoisonError::into_inner).take()?
            }
        };
        let mut response = Response::new(body);
        *response.status_mut() = *status;
        *response.headers_mut() = headers.clone();
        Some(response)
    }

    /// What happened to a request that took this result in `role`.
    fn happened(&self, role: Role) -> Happened {
        match self {
            Self::Reused { held, shared } => Happened::Reused {
                role,
                ttl_secs: held.ttl_secs,
                shared: *shared,
            },
            Self::Answered { stored, .. } => Happened::Fetched {
                role,
                stored: *stored,
            },
        }
    }
}

/// Whether a shared result means the upstream could not give an answer: the proxy's own
/// failures (no permit, unreachable, timed out) or the upstream's 429 and 5xx.
fn upstream_could_not_answer(outcome: &FillOutcome) -> bool {
    let status = match outcome {
        Ok(fetched) => fetched.status(),
        Err(error) => error.status(),
    };
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// What happened to a request on the cached route; its cache status follows from it alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Happened {
    /// A page from memory was served, fresh or stale, with its freshness left.
    Served { ttl_secs: i64, fresh: bool },
    /// The fill's result, taken in `role`, was a page stored meanwhile (by another replica
    /// when `shared`).
    Reused {
        role: Role,
        ttl_secs: i64,
        shared: bool,
    },
    /// The fill's result, taken in `role`, was the upstream's answer (`stored` or not).
    Fetched { role: Role, stored: bool },
    /// The fill gave no answer.
    Failed,
    /// The upstream's answer was too large to share; the request asked on its own.
    AskedAlone,
}

impl Happened {
    /// Whether the answer is a page from memory (see `hit_response`).
    fn answered_from_memory(self) -> bool {
        matches!(self, Self::Served { .. } | Self::Reused { .. })
    }

    /// `held` was served from memory.
    fn served(held: &HeldPage, fresh: bool) -> Self {
        Self::Served {
            ttl_secs: held.ttl_secs,
            fresh,
        }
    }
}

/// The cache status: from what happened, and whether a stored page was passed over (the
/// request could not use it), which makes an upstream answer `request` rather than `miss`.
fn cache_status(happened: Happened, passed_over: bool) -> CacheStatus {
    match happened {
        Happened::Served {
            ttl_secs,
            fresh: true,
        } => CacheStatus::Hit { ttl_secs },
        Happened::Served {
            ttl_secs,
            fresh: false,
        } => CacheStatus::Stale { ttl_secs },
        Happened::Reused {
            role: Role::Follower,
            ..
        }
        | Happened::Fetched {
            role: Role::Follower,
            ..
        } => CacheStatus::Collapsed,
        Happened::Reused {
            ttl_secs,
            shared: true,
            ..
        } => CacheStatus::Shared { ttl_secs },
        Happened::Reused { ttl_secs, .. } => CacheStatus::Hit { ttl_secs },
        Happened::Fetched { .. } | Happened::Failed if passed_over => CacheStatus::Request,
        Happened::Fetched { stored, .. } => CacheStatus::Miss { stored },
        Happened::Failed | Happened::AskedAlone => CacheStatus::Miss { stored: false },
    }
}

/// Whether the request is cacheable at all: a GET whose query is exactly a page query.
pub(crate) fn page_query(parts: &request::Parts, query: Option<&str>) -> Option<PageQuery> {
    (parts.method == Method::GET)
        .then(|| PageQuery::parse(query))
        .flatten()
}

/// A request of the cached route, authenticated and keyed.
#[derive(Debug)]
pub(crate) struct PageRequest {
    token: Arc<Token>,
    key: CacheKey,
    /// Its token is genuine: its calls draw from its client app's budget (see
    /// [`PageRequest::draw`]).
    trusted: bool,
    /// Its token is known-valid, current and holds an accepted scope: it may share pages.
    known: bool,
    /// Its token is current and holds an accepted scope: its answer may be stored.
    usable: bool,
    /// It asked that no stored page be used.
    no_cache: bool,
    /// It accepts the gzip variant of a page.
    gzip: bool,
    /// A page is stored that it may not use (not `known`, or `no_cache`).
    passes_over: bool,
    /// The purge epoch it arrived in.
    epoch: u64,
}

impl PageRequest {
    /// The cache-key phase, for a request with `headers` whose token the authenticate phase
    /// `judged`, arrived in purge epoch `epoch`.
    fn keyed(
        proxy: &Proxy,
        live: &SettingsState,
        headers: &HeaderMap,
        judged: Judged,
        query: PageQuery,
        epoch: u64,
    ) -> Self {
        let Judged {
            token,
            identity,
            now,
        } = judged;
        let usable =
            token.is_current(now) && token.has_accepted_scope(&live.settings.auth.accepted_scopes);
        let known = identity.known && usable;
        let asked = PageHeaders::of(headers);
        let no_cache = asked.no_cache();
        let key = CacheKey::asked(token.subject.clone(), query, &asked);
        let passes_over = (!known || no_cache) && proxy.cache.contains(&key);
        Self {
            token,
            key,
            trusted: identity.trusted,
            known,
            usable,
            no_cache,
            gzip: asked.accepts_gzip(),
            passes_over,
            epoch,
        }
    }

    /// Who may share its upstream call.
    fn flight(&self) -> FlightKey {
        match self.known {
            true => FlightKey::Verified(self.key.clone(), self.epoch),
            false => FlightKey::Unverified(self.token.hash, self.key.clone(), self.epoch),
        }
    }

    /// The budget its upstream calls draw from (worked out only for a call: a hit needs none).
    fn draw(&self, budgets: &Budgets) -> Draw {
        Draw::of(budgets, Some(&self.token), self.trusted)
    }

    /// A fill for it.
    fn fill(
        &self,
        live: &SettingsState,
        outbound: Outbound,
        fallback: Fallback,
        upstream_time: UpstreamTime,
    ) -> Fill {
        Fill {
            outbound,
            token: Arc::clone(&self.token),
            draw: self.draw(&live.budgets),
            key: self.key.clone(),
            epoch: self.epoch,
            reuse_fresh: !self.no_cache,
            fallback,
            upstream_time,
        }
    }
}

/// What the cache holds for a request, as far as it may use it.
#[derive(Debug)]
pub(crate) enum Found {
    /// A fresh page.
    Fresh(HeldPage),
    /// A stale page to serve now; with `refresh`, a refresh is to start behind it (none
    /// runs yet, and none failed lately: see `RefreshBackoff`).
    Stale { held: HeldPage, refresh: bool },
    /// A stale page to serve only if the upstream cannot answer.
    StaleIfError(HeldPage),
    /// Nothing it may use.
    Missing,
}

/// The lookup phase, for a request that may use the cache.
fn cache_lookup(proxy: &Proxy, page: &PageRequest) -> Found {
    if !page.known || page.no_cache {
        return Found::Missing;
    }
    match proxy.cache.lookup(&page.key, Instant::now()) {
        Lookup::Fresh(held) => Found::Fresh(held),
        Lookup::Stale {
            held,
            revalidate: true,
        } => {
            let backing_off = !proxy.refresh_backoff.allows(&page.key, Instant::now());
            let refreshing = proxy.flights.is_running(&page.flight());
            Found::Stale {
                held,
                refresh: !backing_off && !refreshing,
            }
        }
        Lookup::Stale { held, .. } => Found::StaleIfError(held),
        Lookup::Missing => Found::Missing,
    }
}

/// How far [`answer_now`] got with a page request.
#[derive(Debug)]
pub(crate) enum Now {
    /// Answered from memory.
    Answered(Response<ProxyBody>),
    /// What is left needs waiting: [`answer_later`] goes on from here.
    Later(Box<Pending>),
}

/// A page request that memory could not answer at once.
#[derive(Debug)]
pub(crate) enum Pending {
    /// Its token, read but not known-valid here: the authenticate phase must judge it (which
    /// may ask the other replicas or fetch signing keys).
    Judge { token: Arc<Token>, query: PageQuery },
    /// Authenticated and looked up; it needs the upstream (or a page stored meanwhile).
    Fetch { page: PageRequest, found: Found },
}

/// Answers a page request of the cached route (its `token` already required and read by the
/// route phase) at once when its token is known-valid here and its page is in memory, fresh
/// or stale (a refresh then starts behind it, with what `refresh_needs` makes), and sets its
/// cache status. Everything on this path is synchronous, so a hit costs no future; the rest
/// goes on in [`answer_later`].
pub(crate) fn answer_now(
    proxy: &Arc<Proxy>,
    live: &Arc<SettingsState>,
    headers: &HeaderMap,
    token: Arc<Token>,
    refresh_needs: impl Fn() -> Result<(Outbound, Span), ProxyError>,
    query: PageQuery,
    ctx: &mut RequestContext,
) -> Result<Now, ProxyError> {
    let now = epoch_now();
    let Some(identity) = known_here(proxy, &token, now) else {
        return Ok(Now::Later(Box::new(Pending::Judge { token, query })));
    };
    let judged = Judged {
        token,
        identity,
        now,
    };
    let page = PageRequest::keyed(proxy, live, headers, judged, query, ctx.epoch);
    let found = cache_lookup(proxy, &page);
    match from_memory(proxy, live, &page, found, refresh_needs)? {
        Served::Page(happened, response) => {
            record(ctx, happened, &page);
            Ok(Now::Answered(response))
        }
        Served::Not(found) => Ok(Now::Later(Box::new(Pending::Fetch { page, found }))),
    }
}

/// Goes on with a page request [`answer_now`] left pending: authenticates its token if that
/// is what was left (and serves a page from memory if the token proves known-valid), else
/// fetches; sets its cache status from what happened.
pub(crate) async fn answer_later(
    proxy: &Arc<Proxy>,
    live: &Arc<SettingsState>,
    parts: &request::Parts,
    raw_token: &str,
    outbound: impl Fn() -> Result<Outbound, ProxyError>,
    pending: Box<Pending>,
    ctx: &mut RequestContext,
) -> Result<Response<ProxyBody>, ProxyError> {
    let headers = &parts.headers;
    let (page, found) = match *pending {
        Pending::Judge { token, query } => {
            let now = epoch_now();
            let identity = authenticate(proxy, live, raw_token, &token, now).await?;
            let judged = Judged {
                token,
                identity,
                now,
            };
            let page = PageRequest::keyed(proxy, live, headers, judged, query, ctx.epoch);
            let found = cache_lookup(proxy, &page);
            (page, found)
        }
        Pending::Fetch { page, found } => (page, found),
    };
    let refresh_needs = || Ok((outbound()?, Span::current()));
    let (happened, response) = match from_memory(proxy, live, &page, found, refresh_needs)? {
        Served::Page(happened, response) => (happened, Ok(response)),
        Served::Not(Found::StaleIfError(held)) => {
            fetch(proxy, live, &page, outbound()?, Some(held), ctx).await
        }
        Served::Not(_) => fetch(proxy, live, &page, outbound()?, None, ctx).await,
    };
    record(ctx, happened, &page);
    response
}

/// A token as the authenticate phase judged it at `now` (seconds since the epoch).
struct Judged {
    token: Arc<Token>,
    identity: Identity,
    now: u64,
}

/// Notes in the request's context what happened to it: its cache status, and whether its
/// answer is a page from memory (which carries the cached route's headers already).
fn record(ctx: &mut RequestContext, happened: Happened, page: &PageRequest) {
    ctx.cache = Some(cache_status(happened, page.passes_over));
    ctx.page_from_memory = happened.answered_from_memory();
}

/// What memory gives a request.
enum Served {
    /// A page, fresh, or stale with its refresh started behind it.
    Page(Happened, Response<ProxyBody>),
    /// Nothing to serve now; what was found goes to the fetch phase.
    Not(Found),
}

/// Serves a page from memory, when the lookup found one to serve now; a refresh started
/// behind a stale page gets its upstream call and the span it runs in (the request's) from
/// `refresh_needs`.
fn from_memory(
    proxy: &Arc<Proxy>,
    live: &Arc<SettingsState>,
    page: &PageRequest,
    found: Found,
    refresh_needs: impl FnOnce() -> Result<(Outbound, Span), ProxyError>,
) -> Result<Served, ProxyError> {
    let (held, fresh) = match found {
        Found::Fresh(held) => (held, true),
        Found::Stale { held, refresh } => {
            if refresh {
                let (outbound, span) = refresh_needs()?;
                self::refresh(proxy, live, page, outbound, span);
            }
            (held, false)
        }
        other => return Ok(Served::Not(other)),
    };
    let response = hit_response(&held, page.gzip);
    Ok(Served::Page(Happened::served(&held, fresh), response))
}

/// The refresh of a stale page, behind its serving, in `span`: a fill in the request's
/// flight, and a failure makes the next refresh wait (see `RefreshBackoff`).
fn refresh(
    proxy: &Arc<Proxy>,
    live: &Arc<SettingsState>,
    page: &PageRequest,
    outbound: Outbound,
    span: Span,
) {
    let job = page.fill(live, outbound, Fallback::Stale, UpstreamTime::default());
    let refresh = fill(Arc::clone(proxy), Arc::clone(live), job);
    let (proxy, flight, key) = (Arc::clone(proxy), page.flight(), page.key.clone());
    tokio::spawn(
        async move {
            // The page is stored by the fill; only a failure matters here.
            match proxy.flights.run(flight, refresh).await {
                Ok((outcome, _)) if !upstream_could_not_answer(&outcome) => {
                    proxy.refresh_backoff.succeeded(&key);
                }
                _ => proxy.refresh_backoff.failed(key, Instant::now()),
            }
        }
        .instrument(span),
    );
}

/// The fetch phase: the request's flight runs a fill (or joins the one running), and its
/// result becomes this request's answer; `stale`, if given, is served instead when the
/// upstream could not answer.
async fn fetch(
    proxy: &Arc<Proxy>,
    live: &Arc<SettingsState>,
    page: &PageRequest,
    outbound: Outbound,
    stale: Option<HeldPage>,
    ctx: &mut RequestContext,
) -> (Happened, Result<Response<ProxyBody>, ProxyError>) {
    let upstream_time = UpstreamTime::default();
    let fallback = Fallback::of(stale.is_some(), page.usable);
    let job = page.fill(live, outbound.clone(), fallback, upstream_time.clone());
    let fill = fill(Arc::clone(proxy), Arc::clone(live), job);
    let run = proxy
        .flights
        .run(page.flight(), fill.instrument(tracing::Span::current()));
    let (outcome, role) = match run.await {
        Ok(shared) => shared,
        Err(abandoned) => (
            Err(ProxyError::Internal(abandoned.to_string())),
            Role::Leader,
        ),
    };
    if let Some(held) = &stale
        && upstream_could_not_answer(&outcome)
    {
        return (
            Happened::served(held, false),
            Ok(hit_response(held, page.gzip)),
        );
    }
    if role == Role::Leader {
        ctx.add_upstream_latency(upstream_time.get());
    }
    let fetched = match outcome {
        Ok(fetched) => fetched,
        Err(error) => return (Happened::Failed, Err(error)),
    };
    match fetched.response(page.gzip) {
        Some(response) => (fetched.happened(role), Ok(response)),
        None => {
            let response = ask_alone(proxy, live, page, &outbound, ctx).await;
            (Happened::AskedAlone, response)
        }
    }
}

/// Asks the upstream again for a request whose shared answer streamed to another sharer (it
/// was too large to share). The fill that got it first learned from it already.
async fn ask_alone(
    proxy: &Proxy,
    live: &SettingsState,
    page: &PageRequest,
    outbound: &Outbound,
    ctx: &mut RequestContext,
) -> Result<Response<ProxyBody>, ProxyError> {
    let called = forward::call(proxy, live, &page.draw(&live.budgets), outbound, None, true).await;
    ctx.add_upstream_latency(called.latency);
    let relayed = relay::relay(live, called.answer?, Buffering::Json).await?;
    Ok(relayed.into_response())
}

/// A page served from memory, in the variant the request accepts (gzip or not): its stored
/// headers (the cached route's own among them, see `CachedPage::new`) and `Age`.
fn hit_response(held: &HeldPage, gzip: bool) -> Response<ProxyBody> {
    let (stored, body) = held.page.variant_for(gzip);
    let mut response = Response::new(body::full(body.clone()));
    *response.headers_mut() = stored.clone();
    (response.headers_mut()).insert(header::AGE, age_value(held.age_secs));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_status_follows_from_what_happened() {
        let (leader, follower) = (Role::Leader, Role::Follower);
        let reused = |role, shared| Happened::Reused {
            role,
            ttl_secs: 7,
            shared,
        };
        let fetched = |role, stored| Happened::Fetched { role, stored };
        let cases = [
            (
                Happened::Served {
                    ttl_secs: 7,
                    fresh: true,
                },
                false,
                CacheStatus::Hit { ttl_secs: 7 },
            ),
            (
                Happened::Served {
                    ttl_secs: -1,
                    fresh: false,
                },
                false,
                CacheStatus::Stale { ttl_secs: -1 },
            ),
            (
                reused(leader, false),
                false,
                CacheStatus::Hit { ttl_secs: 7 },
            ),
            (
                reused(leader, true),
                false,
                CacheStatus::Shared { ttl_secs: 7 },
            ),
            (reused(follower, true), false, CacheStatus::Collapsed),
            (fetched(follower, true), true, CacheStatus::Collapsed),
            (
                fetched(leader, true),
                false,
                CacheStatus::Miss { stored: true },
            ),
            (fetched(leader, false), true, CacheStatus::Request),
            (Happened::Failed, true, CacheStatus::Request),
            (Happened::Failed, false, CacheStatus::Miss { stored: false }),
            (
                Happened::AskedAlone,
                true,
                CacheStatus::Miss { stored: false },
            ),
        ];
        for (happened, passed_over, status) in cases {
            assert_eq!(cache_status(happened, passed_over), status, "{happened:?}");
        }
    }
}
