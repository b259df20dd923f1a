//! One request, start to finish, as a sequence of named phases sharing a [`RequestContext`]:
//!
//! 1. [`Proxy::handle`] starts (it, the route phase, `Proxy::proceed` and `Proxy::end` are in
//!    `route`): one pass over the request's headers (`head_scan`), the request id
//!    (`request_id`), taken from the client or made; the request's span is made only for what
//!    may log in it (see `route::Ending::span`);
//! 2. `Proxy::route`, without waiting: `guard` refuses what would make the proxy an open proxy
//!    and bodies over `server.max_request_body`; `guard::strip_prefix` removes the public path
//!    prefix and the route template is named; on the cached route (a GET or HEAD of the
//!    connections list) the bearer token is required, here and only here; a page query goes
//!    to `cached::answer_now`, which answers a hit (a token known here, a page in memory)
//!    then and there: a hit builds no future. The outbound request (`forward::Outbound`) is
//!    built when a branch calls the upstream (never on a hit), at most once for the whole
//!    request;
//! 3. what needs waiting goes on in one boxed future, `Proxy::proceed`, down one branch of
//!    three:
//!    - a page query left by `cached::answer_now`: `cached::answer_later` (authenticate,
//!      cache key, lookup, fetch with its fill, cache status: see `cached`);
//!    - a write: `Proxy::write`, run to completion on its own task: a pass-through, then
//!      `Proxy::after_write` evicts what it made stale and announces it to the other
//!      replicas;
//!    - anything else, the cached route's bypass included (a HEAD, or a query that is not a
//!      page query): `Proxy::pass_through`, which authenticates the token for its budget
//!      (`authenticate::trusted`);
//! 4. in every branch, an upstream call goes through the same phases: `forward::call` (a
//!    budget permit, the call, what the answer tells the budget), `relay::relay` (the one
//!    response phase: headers cleaned, a JSON body read whole and rewritten) and
//!    `Proxy::learn` (`learn`: known-token bookkeeping and connections' iModels, in one
//!    place); a fill stores its answer between the last two;
//! 5. `Proxy::end` finishes every request: on the cached route, `Cache-Status`, and
//!    `Cache-Control: private` and `Vary` unless the answer is a page from memory (a stored
//!    page carries them: see `CachedPage::new`); the request id, one metric
//!    (`Proxy::finish`), and the request line once the response is sent (`access`).

mod access;
mod authenticate;
mod cached;
mod context;
mod fill;
mod forward;
mod guard;
mod head_scan;
mod learn;
mod relay;
mod reload;
mod request_id;
mod route;
mod shared;

use std::sync::Arc;

use arc_swap::ArcSwap;
use http::{Method, Response, request};
use http_body_util::BodyExt;
use tracing::Instrument;

pub(crate) use context::{CONNECTIONS_ROUTE, RequestContext, route_template};
pub(crate) use guard::{MAX_HEADER_BYTES, MAX_HEADER_COUNT};
pub use reload::Reloaded;

use crate::auth::{
    Generation, KnownTokens, Token, TokenHasher, TokenReader, Verifier, VerifierSetupError,
    bearer_token,
};
use crate::body::{BoxError, ProxyBody};
use crate::cache::{Flights, Invalidator, PageCache, RefreshBackoff, Write, WriteOutcome};
use crate::cluster::Cluster;
use crate::config::Settings;
use crate::error::ProxyError;
use crate::metrics::Metrics;
use crate::ratelimit::Budgets;
use crate::request_body::RequestBody;
use crate::rewrite::LinkRewriter;
use crate::upstream::{Upstream, UpstreamSetupError};
use forward::{Draw, Outbound};
use learn::{Answer, Asked};
use relay::Buffering;
use request_id::RequestIds;

/// The per-settings state could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SettingsStateError {
    /// The upstream client.
    #[error(transparent)]
    Upstream(#[from] UpstreamSetupError),
    /// The token verifier.
    #[error(transparent)]
    Verifier(#[from] VerifierSetupError),
}

/// Everything derived from one version of the settings; swapped whole on reload.
#[derive(Debug)]
pub(crate) struct SettingsState {
    /// The settings it was built from.
    pub settings: Settings,
    /// The upstream client.
    pub upstream: Upstream,
    /// Link rewriting toward `server.public_base_url`.
    pub rewriter: LinkRewriter,
    /// Outbound budgets (kept across reloads, which reconfigure them).
    pub budgets: Arc<Budgets>,
    /// Local token verification, when `auth.jwks_url` or `auth.issuer` is set (kept across
    /// reloads that leave them and `auth.audience` unchanged).
    pub verifier: Option<Arc<Verifier>>,
    /// The generation of known tokens these settings prove tokens under (a reload that
    /// changes the upstream or the keys starts a new one).
    pub(crate) proofs: Generation,
    /// The path prefix of `server.public_base_url`, without a trailing `/` (may be empty).
    public_prefix: String,
}

impl SettingsState {
    /// Builds the per-settings state; key fetches are counted in `metrics`.
    pub(crate) fn new(settings: Settings, metrics: &Metrics) -> Result<Self, SettingsStateError> {
        let upstream = Upstream::new(&settings.upstream)?;
        let verifier = Verifier::new(
            &settings.auth,
            settings.upstream.connect_timeout,
            settings.upstream.ca_file.as_deref(),
            metrics.key_fetches(),
        )?
        .map(Arc::new);
        let mut origins = vec![settings.upstream.base_url.clone()];
        origins.extend(settings.upstream.link_origins.iter().cloned());
        let rewriter = LinkRewriter::new(&origins, &settings.server.public_base_url);
        let budgets = Arc::new(Budgets::new(&settings.rate_limit));
        let public_prefix = settings
            .server
            .public_base_url
            .path()
            .trim_end_matches('/')
            .to_owned();
        Ok(Self {
            settings,
            upstream,
            rewriter,
            budgets,
            verifier,
            proofs: Generation::default(),
            public_prefix,
        })
    }
}

/// The proxy: state that outlives a reload (cache, known tokens, metrics) and the live
/// settings-derived state.
#[derive(Debug)]
pub struct Proxy {
    live: ArcSwap<SettingsState>,
    cache: PageCache,
    flights: Flights<cached::FlightKey, cached::FillOutcome>,
    refresh_backoff: RefreshBackoff,
    invalidator: Invalidator,
    known: KnownTokens,
    tokens: TokenReader,
    metrics: Arc<Metrics>,
    /// The cluster this replica belongs to, with `cluster.redis_url`.
    cluster: Option<Arc<Cluster>>,
    /// Whether `tokens` hashes with the cluster's key, so token hashes agree with other replicas'.
    shared_hashing: bool,
    request_ids: RequestIds,
    /// The settings the process started with: a reload reports every key changed since
    /// then that only a restart applies, until the restart.
    started: Settings,
}

impl Proxy {
    /// A proxy for `live`, recording into `metrics`.
    pub(crate) fn new(live: SettingsState, hasher: TokenHasher, metrics: Arc<Metrics>) -> Self {
        let cache = PageCache::with_evictions(&live.settings.cache, metrics.cache_evictions());
        let started = live.settings.clone();
        Self {
            live: ArcSwap::from_pointee(live),
            cache,
            flights: Flights::default(),
            refresh_backoff: RefreshBackoff::default(),
            invalidator: Invalidator::default(),
            known: KnownTokens::default(),
            tokens: TokenReader::new(hasher),
            metrics,
            cluster: None,
            shared_hashing: false,
            request_ids: RequestIds::default(),
            started,
        }
    }

    /// The same proxy as a replica of `cluster`: budgets, proofs (when `shared_hashing`:
    /// its hasher uses the cluster's key), pages and invalidations shared through it. Follows
    /// the other replicas' invalidations from now on.
    pub(crate) fn with_cluster(self, cluster: Arc<Cluster>, shared_hashing: bool) -> Arc<Self> {
        let proxy = Arc::new(Self {
            cluster: Some(cluster),
            shared_hashing,
            ..self
        });
        proxy.follow_cluster();
        proxy
    }

    /// The settings-derived state that requests starting now use.
    pub(crate) fn settings_state(&self) -> Arc<SettingsState> {
        self.live.load_full()
    }

    /// The page cache.
    pub fn cache(&self) -> &PageCache {
        &self.cache
    }

    /// Requests waiting for a shared upstream call of the cached route, the callers that
    /// started one included.
    pub fn waiting_on_upstream(&self) -> usize {
        self.flights.callers()
    }

    /// The cluster this replica belongs to, with `cluster.redis_url`.
    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.cluster.as_ref()
    }

    /// The metrics this proxy records into.
    pub(crate) fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// A write: forwarded, then what it made stale evicted, on a task of its own, so that a write the upstream may have received is followed by its eviction even
    /// when the client goes away (a closed socket, an h2 reset) before the answer.
    async fn write(
        self: &Arc<Self>,
        live: &Arc<SettingsState>,
        parts: request::Parts,
        outbound: Outbound,
        body: RequestBody,
        write: Write,
        ctx: &mut RequestContext,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        let proxy = Arc::clone(self);
        let live = Arc::clone(live);
        let mut write_ctx = RequestContext {
            epoch: ctx.epoch,
            ..RequestContext::default()
        };
        let task = tokio::spawn(
            async move {
                let relayed = proxy
                    .pass_through(&live, &parts, None, outbound, body, &mut write_ctx)
                    .await;
                proxy.after_write(&write, relayed.as_ref()).await;
                (relayed.map(relay::Relayed::into_response), write_ctx)
            }
            .instrument(tracing::Span::current()),
        );
        let (response, write_ctx) = task
            .await
            .map_err(|error| ProxyError::Internal(error.to_string()))?;
        ctx.add_upstream_latency(write_ctx.upstream_latency);
        response
    }

    /// After a write: a write that succeeded, or may have (no answer, or a 5xx),
    /// evicts the pages it made stale; one never sent (refused by the proxy itself, or the
    /// upstream could not be connected to) evicts nothing.
    async fn after_write(&self, write: &Write, relayed: Result<&relay::Relayed, &ProxyError>) {
        let outcome = match relayed {
            Ok(relayed) => WriteOutcome::Answered {
                status: relayed.head.status,
                body: relayed.whole().map(|body| &body[..]),
            },
            Err(error) if !error.may_have_reached_upstream() => {
                tracing::debug!(
                    ?write,
                    code = error.code(),
                    "write never sent; nothing evicted"
                );
                return;
            }
            Err(_) => WriteOutcome::Unknown,
        };
        let purge = self
            .invalidator
            .after_write(write, outcome, &self.cache)
            .await;
        if let Some(purge) = purge {
            self.announce(&purge).await;
        }
    }

    /// The pass-through: a request the cache does not serve, its body streaming both ways,
    /// through the forward, response and learn phases. `read` is its token when read already.
    async fn pass_through(
        &self,
        live: &SettingsState,
        parts: &request::Parts,
        read: Option<Arc<Token>>,
        outbound: Outbound,
        body: RequestBody,
        ctx: &mut RequestContext,
    ) -> Result<relay::Relayed, ProxyError> {
        let raw_token = bearer_token(&parts.headers);
        let token = read.or_else(|| raw_token.and_then(|raw| self.tokens.read_bearer(raw)));
        let trusted = match (raw_token, &token) {
            (Some(raw), Some(token)) => authenticate::trusted(self, live, raw, token).await,
            _ => false,
        };
        let draw = Draw::of(&live.budgets, token.as_deref(), trusted);
        let body =
            (!http_body::Body::is_end_stream(&body)).then(|| body.map_err(BoxError::from).boxed());
        let called = forward::call(self, live, &draw, &outbound, body, true).await;
        ctx.add_upstream_latency(called.latency);
        let response = called.answer?;
        let status = response.status();
        let buffering = match parts.method == Method::HEAD {
            true => Buffering::Never,
            false => Buffering::Json,
        };
        let relayed = relay::relay(live, response, buffering).await;
        self.learn(Answer {
            asked: Asked::pass_through(ctx.route, &parts.method, trusted),
            proofs: live.proofs,
            token: token.as_deref(),
            status,
            body: relayed
                .as_ref()
                .ok()
                .and_then(relay::Relayed::whole)
                .map(|b| &b[..]),
        })
        .await;
        relayed
    }
}
