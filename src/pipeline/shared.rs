//! The cluster in the pipeline (with `cluster.redis_url`; without it each step does
//! nothing): proofs shared with every replica, the shared page tier around a fill (look in
//! Redis, take the fill lock or wait for another replica's fill, store the page for all), and
//! writes and purges announced to every replica.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::time::Instant;

use super::{Proxy, SettingsState};
use crate::auth::{Generation, Token, TokenHash, lifetime};
use crate::cache::{CacheKey, CachedPage, HeldPage, Lookup, Purge};
use crate::cluster::{
    Event, FillLock, Generations, LockToken, PageRef, PageTimes, SharedPages, SharedProofs,
    page_keep,
};

/// The shortest and longest a fill lock holds when its filler never releases it.
const LOCK_BOUNDS: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(10));

/// A fill's place in the shared tier: where its page goes, under which generations, and the
/// fill lock if it holds it.
#[derive(Debug)]
pub(crate) struct Claim {
    pages: SharedPages,
    page: PageRef,
    times: PageTimes,
    seen: Generations,
    lock: Option<LockToken>,
}

/// How a fill starts.
#[derive(Debug)]
pub(crate) enum Start {
    /// Another replica's page, now in this one's memory too: no upstream call.
    Shared(HeldPage),
    /// Call the upstream; store the page in the shared tier too when a claim is given.
    Fill(Option<Claim>),
}

impl Claim {
    /// After the upstream answered: shares the page if it was stored in memory (unless a
    /// write came since the fill looked), else frees the fill lock.
    pub(crate) async fn finish(mut self, stored: Option<&CachedPage>) {
        let lock = self.lock.take();
        let result = match (stored, &lock) {
            (Some(page), _) => self
                .pages
                .store(
                    &self.page,
                    &self.times,
                    &page.headers,
                    &page.body,
                    &self.seen,
                    lock.as_ref(),
                )
                .await
                .map(|_| ()),
            (None, Some(lock)) => self.pages.release(&self.page, lock).await,
            (None, None) => Ok(()),
        };
        if let Err(error) = result {
            tracing::debug!(%error, "cannot share a filled page");
        }
    }
}

impl Drop for Claim {
    /// A fill that ended without finishing (an error, a cancelled request) frees its lock at
    /// once rather than making the other replicas wait for it to expire.
    fn drop(&mut self) {
        if let Some(lock) = self.lock.take() {
            let (pages, page) = (self.pages.clone(), self.page.clone());
            tokio::spawn(async move {
                if let Err(error) = pages.release(&page, &lock).await {
                    tracing::debug!(%error, "cannot free a fill lock");
                }
            });
        }
    }
}

/// The link settings a page was rewritten for: replicas that differ never share pages.
fn links(live: &SettingsState) -> String {
    let settings = &live.settings;
    let mut links = format!(
        "{} {}",
        settings.server.public_base_url, settings.upstream.base_url
    );
    for origin in &settings.upstream.link_origins {
        links.push(' ');
        links.push_str(origin.as_str());
    }
    links
}

fn times(live: &SettingsState) -> PageTimes {
    let settings = &live.settings;
    let (least, most) = LOCK_BOUNDS;
    PageTimes {
        fresh: settings.cache.ttl,
        keep: page_keep(&settings.cache),
        lock: (settings.rate_limit.max_wait + settings.upstream.request_timeout).clamp(least, most),
    }
}

impl Proxy {
    /// The shared proofs, when this replica hashes tokens with the cluster's key.
    fn shared_proofs(&self) -> Option<&SharedProofs> {
        self.cluster
            .as_ref()
            .filter(|_| self.shared_hashing)
            .map(|cluster| cluster.proofs())
    }

    /// Remembers that the upstream accepted `token`, here and on every replica.
    /// Nothing is remembered or shared when the judges changed since the call was sent
    /// under `generation`.
    pub(crate) async fn remember_token(&self, token: &Token, now: u64, generation: Generation) {
        if !self.known.remember(token, now, generation).await {
            return;
        }
        if let Some(proofs) = self.shared_proofs()
            && let Some(lifetime) = lifetime(token, now)
        {
            let (proofs, hash) = (proofs.clone(), *token.hash.as_bytes());
            tokio::spawn(async move {
                if let Err(error) = proofs.remember(&hash, lifetime).await {
                    tracing::debug!(%error, "cannot share a proof");
                }
            });
        }
    }

    /// Forgets `token` (the upstream refused it), here and on every replica.
    pub(crate) async fn forget_token(&self, token: &Token, now: u64) {
        self.known.forget(token, now).await;
        if let Some(proofs) = self.shared_proofs()
            && let Err(error) = proofs.forget(token.hash.as_bytes()).await
        {
            tracing::debug!(%error, "cannot share a refusal");
        }
    }

    /// Whether another replica proved `token` (then it is remembered here too).
    pub(crate) async fn proven_elsewhere(
        &self,
        token: &Token,
        now: u64,
        generation: Generation,
    ) -> bool {
        let Some(proofs) = self.shared_proofs() else {
            return false;
        };
        if !token.is_current(now) || self.known.was_refused(token) {
            return false;
        }
        match proofs.is_known(token.hash.as_bytes()).await {
            Ok(true) => self.known.remember(token, now, generation).await,
            Ok(false) => false,
            Err(error) => {
                tracing::debug!(%error, "cannot read shared proofs");
                false
            }
        }
    }

    /// Evicts pages here and announces it to every replica. Returns the pages evicted here.
    pub async fn purge(&self, purge: &Purge) -> u64 {
        let purged = self.cache.purge(purge);
        self.announce(purge).await;
        purged
    }

    /// Announces a purge already applied here to every replica.
    pub(crate) async fn announce(&self, purge: &Purge) {
        let Some(cluster) = &self.cluster else {
            return;
        };
        let imodel_id = match purge {
            Purge::All => None,
            Purge::IModel(id) => Some(id.as_str()),
        };
        if let Err(error) = cluster.invalidations().announce_purge(imodel_id).await {
            tracing::warn!(%error, "cannot announce a purge to the other replicas");
        }
    }

    /// Follows the other replicas' announcements for as long as the proxy lives.
    pub(crate) fn follow_cluster(self: &Arc<Self>) {
        let Some(cluster) = &self.cluster else {
            return;
        };
        let proxy = Arc::downgrade(self);
        cluster
            .invalidations()
            .follow(Arc::new(move |event| apply(&proxy, event)));
    }

    /// Starts a fill in the shared tier: a fresh page another replica stored is copied here
    /// (keeping its age) and served; else the fill lock is taken, or another replica's fill
    /// is waited for (a bounded time) and its page served. `may_reuse`: the token may be
    /// served a stored page.
    pub(crate) async fn start_fill(
        &self,
        live: &SettingsState,
        key: &CacheKey,
        epoch: u64,
        may_reuse: bool,
    ) -> Start {
        let Some(cluster) = &self.cluster else {
            return Start::Fill(None);
        };
        let (Some(pages), Some(namer)) = (cluster.pages(), cluster.page_namer()) else {
            return Start::Fill(None);
        };
        if !cluster.link().is_up() {
            return Start::Fill(None);
        }
        let page = namer.page(key, &links(live));
        let times = times(live);
        let mut found = match pages.lookup(&page, &times, may_reuse).await {
            Ok(found) => found,
            Err(error) => {
                tracing::debug!(%error, "shared page tier unavailable");
                return Start::Fill(None);
            }
        };
        if may_reuse && found.lock == FillLock::Busy {
            let deadline = Instant::now() + times.lock;
            match pages.wait_for_fill(&page, &times, deadline).await {
                Ok(waited) => found = waited,
                Err(error) => {
                    tracing::debug!(%error, "shared page tier unavailable");
                    return Start::Fill(None);
                }
            }
        }
        if may_reuse && let Some(shared) = found.page.filter(|shared| shared.age < times.fresh) {
            let stored_at = Instant::now()
                .checked_sub(shared.age)
                .unwrap_or_else(Instant::now);
            let copy = CachedPage::new(&shared.headers, shared.body, stored_at);
            if let Some(stored) = self.cache.store(key.clone(), copy, epoch)
                && let Lookup::Fresh(held) = self.cache.judge(stored, Instant::now())
            {
                return Start::Shared(held);
            }
        }
        let lock = match found.lock {
            FillLock::Taken(lock) => Some(lock),
            FillLock::NotAsked | FillLock::Busy => None,
        };
        Start::Fill(Some(Claim {
            pages: pages.clone(),
            page,
            times,
            seen: found.seen,
            lock,
        }))
    }
}

/// Applies another replica's announcement (or a resynchronisation) here.
fn apply(proxy: &Weak<Proxy>, event: Event) {
    let Some(proxy) = proxy.upgrade() else {
        return;
    };
    match event {
        Event::PurgeIModel(id) => {
            proxy.cache.purge(&Purge::IModel(id));
        }
        Event::PurgeAll | Event::Resync => {
            proxy.cache.purge(&Purge::All);
        }
        Event::Forget(hex) => {
            if let Some(hash) = parse_hash(&hex) {
                tokio::spawn(async move { proxy.known.forget_hash(&hash).await });
            }
        }
    }
}

/// A token hash from its lower-case hex.
fn parse_hash(hex: &str) -> Option<TokenHash> {
    let mut bytes = [0u8; 32];
    if hex.len() != 64 {
        return None;
    }
    for (byte, pair) in bytes.iter_mut().zip(hex.as_bytes().chunks(2)) {
        *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(TokenHash::from_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_parse_back_from_hex() {
        let hash = TokenHash::from_bytes([0xab; 32]);
        let hex = crate::cluster::keys::hex(hash.as_bytes());
        assert_eq!(parse_hash(&hex), Some(hash));
        assert_eq!(parse_hash("ab"), None);
        assert_eq!(parse_hash(&"zz".repeat(32)), None);
    }
}
