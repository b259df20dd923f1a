//! Where pages live: a moka cache weighed by the bytes each page takes, so `cache.max_bytes`
//! bounds memory, with freshness judged on tokio's clock so tests can pause time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use foldhash::quality::RandomState;
use http::{HeaderMap, HeaderName, header};
use moka::notification::RemovalCause;
use moka::sync::Cache;
use tokio::time::Instant;

use super::encoding::{Gzipped, private_and_varying};
use super::key::CacheKey;
use crate::config::CacheSettings;
use crate::metrics::{CacheEvictions, Eviction};

/// The response headers worth replaying from a stored page; the rest describe one exchange
/// (dates, correlation ids, cookies) and are not kept.
const STORED_HEADERS: [HeaderName; 6] = [
    header::CONTENT_TYPE,
    header::CONTENT_LANGUAGE,
    header::CONTENT_LOCATION,
    header::LINK,
    header::ETAG,
    header::LAST_MODIFIED,
];

/// One stored 200 answer: links already rewritten, ready to clone onto a response.
#[derive(Debug)]
pub struct CachedPage {
    /// The kept headers, and those of every answer of the cached route (see
    /// [`CachedPage::new`]).
    pub headers: HeaderMap,
    /// The rewritten body.
    pub body: Bytes,
    /// When the upstream answered it.
    pub stored_at: Instant,
    /// The gzip variant, made when the page is stored (see [`PageCache::store`]).
    pub gzip: Option<Gzipped>,
}

impl CachedPage {
    /// A page from an upstream answer's headers: those worth replaying are kept, and those
    /// every answer of the cached route carries are added, so that a hit is these headers
    /// copied, plus its own (`Age`, `Cache-Status`, the request id).
    pub fn new(headers: &HeaderMap, body: Bytes, stored_at: Instant) -> Self {
        let mut kept = HeaderMap::new();
        for name in &STORED_HEADERS {
            for value in headers.get_all(name) {
                kept.append(name.clone(), value.clone());
            }
        }
        private_and_varying(&mut kept);
        Self {
            headers: kept,
            body,
            stored_at,
            gzip: None,
        }
    }

    /// The headers and body a request gets: the gzip variant when it `accepts_gzip` and the
    /// page has one, else the page as it is.
    pub fn variant_for(&self, accepts_gzip: bool) -> (&HeaderMap, &Bytes) {
        match &self.gzip {
            Some(gzip) if accepts_gzip => (&gzip.headers, &gzip.body),
            _ => (&self.headers, &self.body),
        }
    }

    /// Bytes held: both variants' bodies and headers.
    fn weight(&self) -> usize {
        let headers = |headers: &HeaderMap| -> usize {
            headers
                .iter()
                .map(|(name, value)| name.as_str().len() + value.len())
                .sum()
        };
        let gzip = self
            .gzip
            .as_ref()
            .map_or(0, |gzip| gzip.body.len() + headers(&gzip.headers));
        self.body.len() + headers(&self.headers) + gzip + std::mem::size_of::<Self>()
    }
}

/// A held page and how old it is.
#[derive(Debug)]
pub struct HeldPage {
    /// The page.
    pub page: Arc<CachedPage>,
    /// Whole seconds since it was stored.
    pub age_secs: u64,
    /// Whole seconds of freshness left; negative once stale.
    pub ttl_secs: i64,
}

/// What the cache holds for a key.
#[derive(Debug)]
pub enum Lookup {
    /// A fresh page.
    Fresh(HeldPage),
    /// A page past its freshness but within a stale window: with `revalidate`, within
    /// `stale_while_revalidate` (serve it now, refresh behind); otherwise only within
    /// `stale_if_error` (serve it when the upstream cannot answer).
    Stale {
        /// The page.
        held: HeldPage,
        /// Whether it may be served at once while a refresh runs behind it.
        revalidate: bool,
    },
    /// Nothing usable.
    Missing,
}

/// The page cache of one proxy.
#[derive(Clone)]
pub struct PageCache {
    pages: Cache<CacheKey, Arc<CachedPage>, RandomState>,
    ttl: Duration,
    stale_if_error: Duration,
    stale_while_revalidate: Duration,
    /// Counts purges, so that a fill that started before one does not store its older page.
    epoch: Arc<AtomicU64>,
}

/// Which pages a purge evicts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purge {
    /// Every page.
    All,
    /// The pages of one iModel, for every subject (ids compared ignoring ASCII case, as
    /// GUIDs are).
    IModel(String),
}

/// How a purge reads in a log line: `all`, or `imodel <id>`.
impl std::fmt::Display for Purge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::All => f.write_str("all"),
            Self::IModel(id) => write!(f, "imodel {id}"),
        }
    }
}

impl std::fmt::Debug for PageCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PageCache")
            .field("entries", &self.pages.entry_count())
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl PageCache {
    /// An empty cache bounded by `settings.max_bytes`, its evictions counted nowhere.
    pub fn new(settings: &CacheSettings) -> Self {
        Self::with_evictions(settings, CacheEvictions::default())
    }

    /// An empty cache bounded by `settings.max_bytes`, counting its evictions in
    /// `evictions`. Pages are kept past `ttl` for as long as they may still be served stale.
    pub fn with_evictions(settings: &CacheSettings, evictions: CacheEvictions) -> Self {
        let stale = settings.stale_if_error.max(settings.stale_while_revalidate);
        let keep = settings.ttl.saturating_add(stale);
        let pages = Cache::builder()
            .eviction_listener(move |_key, _page, cause| {
                let why = match cause {
                    RemovalCause::Size => Eviction::Size,
                    RemovalCause::Expired => Eviction::Expired,
                    RemovalCause::Explicit => Eviction::Purged,
                    RemovalCause::Replaced => return,
                };
                evictions.record(why);
            })
            .max_capacity(settings.max_bytes)
            .weigher(|key: &CacheKey, page: &Arc<CachedPage>| {
                u32::try_from(key.weight() + page.weight()).unwrap_or(u32::MAX)
            })
            .time_to_live(keep)
            .support_invalidation_closures()
            // Keys are hashed on every lookup: a fast hash, seeded at random per process
            // (entries only come from upstream answers, so no client can flood the table).
            .build_with_hasher(RandomState::default());
        Self {
            pages,
            ttl: settings.ttl,
            stale_if_error: settings.stale_if_error,
            stale_while_revalidate: settings.stale_while_revalidate,
            epoch: Arc::default(),
        }
    }

    /// The current purge epoch: read it before fetching a page, and pass it to [`store`].
    ///
    /// [`store`]: Self::store
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Evicts pages, and returns how many were held; fills in flight that started before
    /// stay unstored.
    pub fn purge(&self, purge: &Purge) -> u64 {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        match purge {
            Purge::All => {
                let held = self.pages.iter().count() as u64;
                self.pages.invalidate_all();
                held
            }
            Purge::IModel(imodel_id) => {
                let imodel_id: Arc<str> = imodel_id.as_str().into();
                let matches =
                    move |key: &CacheKey| key.query.imodel_id().eq_ignore_ascii_case(&imodel_id);
                let held = self.pages.iter().filter(|(key, _)| matches(key)).count() as u64;
                let evicted = self.pages.invalidate_entries_if(move |key, _| matches(key));
                if evicted.is_err() {
                    // Only possible without invalidation-closure support, which is enabled
                    // above; fall back to evicting everything rather than serving stale pages.
                    self.pages.invalidate_all();
                }
                held
            }
        }
    }

    /// What is held under `key` at `now`: fresh, stale but usable, or nothing usable.
    pub fn lookup(&self, key: &CacheKey, now: Instant) -> Lookup {
        match self.pages.get(key) {
            Some(page) => self.judge(page, now),
            None => Lookup::Missing,
        }
    }

    /// What `page`, held by this cache, is at `now`: fresh, stale but usable, or not usable.
    pub fn judge(&self, page: Arc<CachedPage>, now: Instant) -> Lookup {
        let age = now.saturating_duration_since(page.stored_at);
        // `Age` and the Cache-Status ttl always add up to `cache.ttl` (whole seconds): the age
        // is rounded down while fresh and up once stale, so a stale page never reads `ttl=0`.
        let ttl_secs = i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX);
        if age < self.ttl {
            let age_secs = age.as_secs();
            return Lookup::Fresh(HeldPage {
                page,
                age_secs,
                ttl_secs: ttl_secs.saturating_sub_unsigned(age_secs).max(0),
            });
        }
        let past = age.saturating_sub(self.ttl);
        let revalidate = past < self.stale_while_revalidate;
        if !revalidate && past >= self.stale_if_error {
            return Lookup::Missing;
        }
        let rounded_up = age.as_secs() + u64::from(age.subsec_nanos() > 0);
        let age_secs = rounded_up.max(self.ttl.as_secs() + 1);
        let held = HeldPage {
            page,
            age_secs,
            ttl_secs: ttl_secs.saturating_sub_unsigned(age_secs).min(-1),
        };
        Lookup::Stale { held, revalidate }
    }

    /// Whether any page, fresh or not, is held under `key`.
    pub fn contains(&self, key: &CacheKey) -> bool {
        self.pages.contains_key(key)
    }

    /// Stores `page` under `key`, replacing what was there, unless a purge happened since
    /// `epoch` (then the page may predate the change that caused the purge); its gzip variant
    /// is made now. Returns the page stored, `None` when it does not stay stored.
    pub fn store(
        &self,
        key: CacheKey,
        mut page: CachedPage,
        epoch: u64,
    ) -> Option<Arc<CachedPage>> {
        if self.epoch() != epoch {
            return None;
        }
        if page.gzip.is_none() {
            page.gzip = Gzipped::of(&page.headers, &page.body);
        }
        let page = Arc::new(page);
        self.pages.insert(key.clone(), Arc::clone(&page));
        if self.epoch() != epoch {
            self.pages.invalidate(&key);
            return None;
        }
        Some(page)
    }

    /// Applies pending inserts and evictions so that the counts below are exact.
    pub fn settle(&self) {
        self.pages.run_pending_tasks();
    }

    /// How many pages are held (approximate until pending work runs).
    pub fn entry_count(&self) -> u64 {
        self.pages.entry_count()
    }

    /// How many bytes the held pages weigh (approximate until pending work runs).
    pub fn weighted_size(&self) -> u64 {
        self.pages.weighted_size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Subject;
    use crate::cache::PageQuery;
    use http::HeaderValue;

    fn settings(max_bytes: u64) -> CacheSettings {
        CacheSettings {
            ttl: Duration::from_secs(60),
            stale_if_error: Duration::from_secs(300),
            stale_while_revalidate: Duration::ZERO,
            max_bytes,
        }
    }

    fn key(page: &str) -> CacheKey {
        let query = PageQuery::parse(Some(&format!("imodelId=m&$skip={page}"))).unwrap();
        CacheKey::new(Subject::Claim("alice".into()), query, &HeaderMap::new())
    }

    #[tokio::test(start_paused = true)]
    async fn pages_are_fresh_for_ttl() {
        let cache = PageCache::new(&settings(1 << 20));
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(header::DATE, HeaderValue::from_static("today"));
        headers.insert(header::SET_COOKIE, HeaderValue::from_static("a=b"));
        let page = CachedPage::new(&headers, Bytes::from_static(b"{}"), Instant::now());
        assert!(cache.store(key("0"), page, cache.epoch()).is_some());
        tokio::time::advance(Duration::from_secs(15)).await;
        let Lookup::Fresh(fresh) = cache.lookup(&key("0"), Instant::now()) else {
            panic!("fresh after 15 s");
        };
        assert_eq!((fresh.age_secs, fresh.ttl_secs), (15, 45));
        let kept: Vec<_> = fresh
            .page
            .headers
            .keys()
            .map(|name| name.as_str())
            .collect();
        assert_eq!(
            kept,
            ["content-type", "cache-control", "vary"],
            "only replayable headers are kept, and the cached route's own added"
        );
        assert_eq!(fresh.page.headers[header::CACHE_CONTROL], "private");
        tokio::time::advance(Duration::from_secs(50)).await;
        let Lookup::Stale { held, revalidate } = cache.lookup(&key("0"), Instant::now()) else {
            panic!("stale after 65 s");
        };
        assert_eq!((held.age_secs, held.ttl_secs, revalidate), (65, -5, false));
        tokio::time::advance(Duration::from_secs(300)).await;
        assert!(matches!(
            cache.lookup(&key("0"), Instant::now()),
            Lookup::Missing
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn age_and_ttl_always_add_up_to_the_ttl() {
        let cache = PageCache::new(&settings(1 << 20));
        let stored = Instant::now();
        let page = CachedPage::new(&HeaderMap::new(), Bytes::from_static(b"{}"), stored);
        assert!(cache.store(key("0"), page, cache.epoch()).is_some());
        for (millis, age, ttl) in [
            (10_400, 10, 50),
            (59_900, 59, 1),
            (60_000, 61, -1),
            (60_300, 61, -1),
            (61_500, 62, -2),
        ] {
            let at = stored + Duration::from_millis(millis);
            let held = match cache.lookup(&key("0"), at) {
                Lookup::Fresh(held) | Lookup::Stale { held, .. } => held,
                Lookup::Missing => panic!("held at {millis} ms"),
            };
            assert_eq!((held.age_secs, held.ttl_secs), (age, ttl), "at {millis} ms");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn stale_while_revalidate_is_told_apart() {
        let mut settings = settings(1 << 20);
        settings.stale_while_revalidate = Duration::from_secs(10);
        let cache = PageCache::new(&settings);
        let page = CachedPage::new(&HeaderMap::new(), Bytes::from_static(b"{}"), Instant::now());
        assert!(cache.store(key("0"), page, cache.epoch()).is_some());
        tokio::time::advance(Duration::from_secs(65)).await;
        assert!(matches!(
            cache.lookup(&key("0"), Instant::now()),
            Lookup::Stale {
                revalidate: true,
                ..
            }
        ));
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(matches!(
            cache.lookup(&key("0"), Instant::now()),
            Lookup::Stale {
                revalidate: false,
                ..
            }
        ));
    }

    #[tokio::test]
    async fn purges_evict_and_keep_older_fills_out() {
        let cache = PageCache::new(&settings(1 << 20));
        let page = || CachedPage::new(&HeaderMap::new(), Bytes::from_static(b"{}"), Instant::now());
        let other_imodel = {
            let query = PageQuery::parse(Some("imodelId=other")).unwrap();
            CacheKey::new(Subject::Claim("alice".into()), query, &HeaderMap::new())
        };
        assert!(cache.store(key("0"), page(), cache.epoch()).is_some());
        assert!(
            cache
                .store(other_imodel.clone(), page(), cache.epoch())
                .is_some()
        );
        let before = cache.epoch();
        cache.purge(&Purge::IModel("m".into()));
        cache.settle();
        assert!(!cache.contains(&key("0")));
        assert!(cache.contains(&other_imodel));
        assert!(
            cache.store(key("1"), page(), before).is_none(),
            "a fill that started before the purge is not stored"
        );
        cache.purge(&Purge::All);
        cache.settle();
        assert!(!cache.contains(&other_imodel));
    }

    #[tokio::test]
    async fn bytes_bound_the_cache() {
        let cache = PageCache::new(&settings(64 * 1024));
        for page in 0..64 {
            let body = Bytes::from(vec![b' '; 4096]);
            let stored = CachedPage::new(&HeaderMap::new(), body, Instant::now());
            cache.store(key(&page.to_string()), stored, 0);
        }
        cache.pages.run_pending_tasks();
        assert!(
            cache.weighted_size() <= 64 * 1024,
            "{}",
            cache.weighted_size()
        );
        assert!(cache.entry_count() < 64);
    }
}
