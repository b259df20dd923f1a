//! The cluster: every replica of a deployment sharing one Redis (`cluster.redis_url`) acts,
//! toward the upstream, as one proxy. Through Redis they share one budget and one pause per
//! client app ([`budget`]), the proofs of known-valid tokens ([`proofs`]), a second page tier
//! with fill locks ([`pages`]), and the invalidations of writes and purges ([`sync`]); the
//! key tokens are hashed with is drawn once and adopted by all ([`hash_key`]).
//!
//! Redis failing never fails a request: every call is bounded by `cluster.timeout`
//! ([`link`]), and a caller whose call fails goes on as if alone.

pub(crate) mod budget;
mod codec;
pub(crate) mod error;
pub(crate) mod hash_key;
pub(crate) mod keys;
pub(crate) mod link;
pub(crate) mod pages;
pub(crate) mod proofs;
pub(crate) mod sync;

#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;

pub(crate) use budget::{Decision, PauseAsk, SharedBudgets, SharedLimits};
pub use error::ClusterSetupError;
pub(crate) use hash_key::HASH_KEY_LEN;
pub(crate) use keys::Keys;
pub(crate) use link::Link;
pub(crate) use pages::{
    FillLock, Generations, LockToken, PageNamer, PageRef, PageTimes, SharedPages,
};
pub(crate) use proofs::SharedProofs;
pub(crate) use sync::{Event, Invalidations};

use crate::config::{CacheSettings, ClusterSettings};
use crate::metrics::Metrics;

/// How long an iModel's generation is kept at least after its last change (longer if pages
/// live longer).
const MIN_GENERATION_KEEP: Duration = Duration::from_secs(24 * 60 * 60);

/// One replica's membership of the cluster.
#[derive(Debug)]
pub struct Cluster {
    link: Link,
    budgets: SharedBudgets,
    proofs: SharedProofs,
    pages: Option<SharedPages>,
    sync: Invalidations,
    hash_key: Arc<ArcSwapOption<Adopted>>,
    replicas_hint: u32,
}

/// The cluster's hash key and the page namer keyed with it.
#[derive(Debug)]
struct Adopted {
    key: [u8; HASH_KEY_LEN],
    namer: PageNamer,
}

impl Cluster {
    /// Joins the cluster of `settings.redis_url` (`None` when it is not set). Returns at
    /// once: the link connects in the background, and the cluster's hash key is adopted as
    /// soon as it is up ([`Cluster::hash_key`]). Must run inside a tokio runtime.
    pub fn join(
        settings: &ClusterSettings,
        cache: &CacheSettings,
        ca_file: Option<&Path>,
        metrics: Arc<Metrics>,
    ) -> Result<Option<Self>, ClusterSetupError> {
        let Some(url) = &settings.redis_url else {
            return Ok(None);
        };
        let link = Link::new(settings, url, ca_file, metrics)?;
        let keys = Keys::new(&settings.key_prefix);
        let keep = page_keep(cache);
        let hash_key = Arc::new(ArcSwapOption::empty());
        tokio::spawn(adopt_when_up(
            link.clone(),
            keys.clone(),
            Arc::clone(&hash_key),
        ));
        Ok(Some(Self {
            budgets: SharedBudgets::new(link.clone(), keys.clone()),
            proofs: SharedProofs::new(link.clone(), keys.clone()),
            pages: settings
                .shared_cache
                .then(|| SharedPages::new(link.clone(), keys.clone())),
            sync: Invalidations::new(
                link.clone(),
                keys,
                keep.saturating_mul(2).max(MIN_GENERATION_KEEP),
            ),
            link,
            hash_key,
            replicas_hint: settings.replicas_hint,
        }))
    }

    /// The connection and whether Redis is up.
    pub fn link(&self) -> &Link {
        &self.link
    }

    /// The shared budgets.
    pub fn budgets(&self) -> &SharedBudgets {
        &self.budgets
    }

    /// The shared proofs.
    pub fn proofs(&self) -> &SharedProofs {
        &self.proofs
    }

    /// The shared page tier, with `cluster.shared_cache`.
    pub fn pages(&self) -> Option<&SharedPages> {
        self.pages.as_ref()
    }

    /// Invalidation announcements.
    pub fn invalidations(&self) -> &Invalidations {
        &self.sync
    }

    /// The cluster's token-hash key, once adopted.
    pub fn hash_key(&self) -> Option<[u8; HASH_KEY_LEN]> {
        self.hash_key.load().as_ref().map(|adopted| adopted.key)
    }

    /// Names pages with the cluster's hash key, once adopted.
    pub fn page_namer(&self) -> Option<PageNamer> {
        self.hash_key
            .load()
            .as_ref()
            .map(|adopted| adopted.namer.clone())
    }

    /// Waits, at most `wait`, for the cluster's hash key.
    pub async fn wait_hash_key(&self, wait: Duration) -> Option<[u8; HASH_KEY_LEN]> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(key) = self.hash_key() {
                return Some(key);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// `cluster.replicas_hint`: while Redis is down, each replica spends 1/N of a budget.
    pub fn replicas_hint(&self) -> u32 {
        self.replicas_hint
    }
}

/// How long pages are kept: freshness plus the longest stale window.
pub fn page_keep(cache: &CacheSettings) -> Duration {
    cache
        .ttl
        .saturating_add(cache.stale_if_error.max(cache.stale_while_revalidate))
}

/// Adopts the cluster's hash key the first time the link is up (retrying while it fails),
/// then offers it again at every reconnection, so that a Redis that lost its data (a restart
/// without persistence) hands the same key to replicas that join later.
async fn adopt_when_up(link: Link, keys: Keys, slot: Arc<ArcSwapOption<Adopted>>) {
    let mut state = link.watch();
    loop {
        if state.wait_for(|up| *up).await.is_err() {
            return;
        }
        let offered = slot.load().as_ref().map(|adopted| adopted.key);
        match hash_key::adopt_hash_key(&link, &keys, offered).await {
            Ok(key) if offered.is_none() => {
                let namer = PageNamer::new(&key);
                slot.store(Some(Arc::new(Adopted { key, namer })));
            }
            Ok(key) if Some(key) != offered => {
                tracing::warn!(
                    "the cluster's hash key changed while this replica was away: its proofs \
                     and pages are not shared until it restarts"
                );
            }
            Ok(_) => {}
            Err(error) => {
                tracing::debug!(%error, "cannot adopt the cluster's hash key yet");
                tokio::time::sleep(link::PROBE_INTERVAL).await;
                continue;
            }
        }
        if state.wait_for(|up| !*up).await.is_err() {
            return;
        }
    }
}
