//! The fill phase of the cached route: one upstream call for a page (or a fresh page stored
//! meanwhile, here or by another replica, instead), on a task of its own, through the
//! response, store and learn phases; its outcome is shared by every request of its flight
//! (see `cached`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::{HeaderMap, StatusCode, header};
use tokio::time::Instant;

use super::cached::{Fetched, FillOutcome};
use super::forward::{self, Draw, Outbound};
use super::learn::{Answer, Asked};
use super::relay::{self, Buffering, Relayed};
use super::shared::{Claim, Start};
use super::{Proxy, SettingsState};
use crate::auth::{Token, epoch_now};
use crate::cache::{CacheKey, CachedPage, HeldPage, Lookup};

/// What a fill may do with its answer, and so how long it may wait for a permit: one
/// decision, from what its requests fall back on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fallback {
    /// Not storable (the token may not use the cache): wait for a permit, relay the answer.
    NotStored,
    /// Storable, nothing to fall back on: wait for a permit.
    Store,
    /// Storable, and a stale page is at hand: take a permit only if one is free now and do
    /// not retry after a 429, since serving the stale page beats waiting.
    Stale,
}

impl Fallback {
    /// The fallback of a request with a stale page at hand or not, whose token may have its
    /// answer stored (`usable`) or not.
    pub(super) fn of(stale_at_hand: bool, usable: bool) -> Self {
        match (stale_at_hand, usable) {
            (true, _) => Self::Stale,
            (false, true) => Self::Store,
            (false, false) => Self::NotStored,
        }
    }

    /// Whether the answer may be stored.
    fn stores(self) -> bool {
        self != Self::NotStored
    }

    /// Whether the call may wait for a permit.
    fn may_wait(self) -> bool {
        self != Self::Stale
    }
}

/// The time a fill's upstream call took, left for the request that started it, which logs
/// it even when the call failed.
#[derive(Debug, Clone, Default)]
pub(super) struct UpstreamTime(Arc<AtomicU64>);

impl UpstreamTime {
    fn set(&self, latency: Option<Duration>) {
        if let Some(latency) = latency {
            let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
            self.0.store(micros.max(1), Ordering::Relaxed);
        }
    }

    pub(super) fn get(&self) -> Option<Duration> {
        let micros = self.0.load(Ordering::Relaxed);
        (micros > 0).then(|| Duration::from_micros(micros))
    }
}

/// One fill: the call it makes, and where its answer goes.
#[derive(Debug)]
pub(super) struct Fill {
    pub(super) outbound: Outbound,
    pub(super) token: Arc<Token>,
    pub(super) draw: Draw,
    /// The page it fetches.
    pub(super) key: CacheKey,
    /// The purge epoch its request arrived in: no purge since, or the answer is not stored.
    pub(super) epoch: u64,
    /// Whether a fresh page stored meanwhile may be served instead of calling the upstream
    /// (not for a request that asked for `no-cache`).
    pub(super) reuse_fresh: bool,
    pub(super) fallback: Fallback,
    pub(super) upstream_time: UpstreamTime,
}

/// How a fill begins.
enum Begun {
    /// With a fresh page stored meanwhile: no upstream call.
    Reused(Fetched),
    /// With a call, and the fill's place in the shared tier, if any.
    Call(Option<Claim>),
}

/// The fill phase, on a task of its own (so it completes even if the request that started
/// it goes away): a fresh page stored meanwhile is taken instead of a call; else one
/// upstream call through the response, store and learn phases, in that order, so that a
/// request that sees the token known-valid finds the page in place.
pub(super) async fn fill(proxy: Arc<Proxy>, live: Arc<SettingsState>, fill: Fill) -> FillOutcome {
    let claim = match begin_fill(&proxy, &live, &fill).await {
        Begun::Reused(fetched) => return Ok(Arc::new(fetched)),
        Begun::Call(claim) => claim,
    };
    let may_wait = fill.fallback.may_wait();
    let called = forward::call(&proxy, &live, &fill.draw, &fill.outbound, None, may_wait).await;
    fill.upstream_time.set(called.latency);
    let response = called.answer?;
    let status = response.status();
    let relayed = relay::relay(&live, response, Buffering::Always).await;
    let stored = match &relayed {
        Ok(relayed) => store(&proxy, &fill, relayed, claim).await,
        Err(_) => false,
    };
    proxy
        .learn(Answer {
            asked: Asked::Fill,
            proofs: live.proofs,
            token: Some(&fill.token),
            status,
            body: relayed
                .as_ref()
                .ok()
                .and_then(Relayed::whole)
                .map(|b| &b[..]),
        })
        .await;
    Ok(Arc::new(Fetched::answered(relayed?, stored)))
}

/// How a fill that may store begins: with a fresh page stored since its request looked,
/// here or by another replica, if the token may have it; else with a call.
async fn begin_fill(proxy: &Proxy, live: &SettingsState, fill: &Fill) -> Begun {
    if !fill.fallback.stores() {
        return Begun::Call(None);
    }
    if fill.reuse_fresh
        && let Some(held) = stored_meanwhile(proxy, &fill.token, &fill.key).await
    {
        return Begun::Reused(Fetched::Reused {
            held,
            shared: false,
        });
    }
    let may_reuse = fill.reuse_fresh && proxy.known.is_known(&fill.token, epoch_now());
    match proxy
        .start_fill(live, &fill.key, fill.epoch, may_reuse)
        .await
    {
        Start::Shared(held) => Begun::Reused(Fetched::Reused { held, shared: true }),
        Start::Fill(claim) => Begun::Call(claim),
    }
}

/// The store phase: a 200 read whole, in no content coding, whose fill may store, is stored
/// under the fill's key unless a purge came since its request arrived; the shared tier gets
/// the stored page (or its fill lock back). Returns whether it was stored.
async fn store(proxy: &Proxy, fill: &Fill, relayed: &Relayed, claim: Option<Claim>) -> bool {
    let head = &relayed.head;
    let storable =
        fill.fallback.stores() && head.status == StatusCode::OK && !encoded(&head.headers);
    let stored = relayed.whole().filter(|_| storable).and_then(|body| {
        let page = CachedPage::new(&head.headers, body.clone(), Instant::now());
        proxy.cache.store(fill.key.clone(), page, fill.epoch)
    });
    if let Some(claim) = claim {
        claim.finish(stored.as_deref()).await;
    }
    stored.is_some()
}

/// A fresh page stored since the request looked (by a fill that ended just before this one
/// started), if the token may have it.
async fn stored_meanwhile(proxy: &Proxy, token: &Token, key: &CacheKey) -> Option<HeldPage> {
    if !proxy.known.is_known(token, epoch_now()) {
        return None;
    }
    match proxy.cache.lookup(key, Instant::now()) {
        Lookup::Fresh(held) => Some(held),
        Lookup::Stale { .. } | Lookup::Missing => None,
    }
}

/// Whether the body is in a content coding other than identity (such a body is not stored,
/// since the stored headers would not describe it).
fn encoded(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| !v.trim().eq_ignore_ascii_case("identity"))
}
