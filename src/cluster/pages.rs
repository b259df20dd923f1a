//! The shared page tier: pages in Redis beside each process's memory cache, so one replica's
//! fill serves all, and concurrent misses for one page on several replicas make one upstream
//! call.
//!
//! A page's Redis key is the keyed hash (the cluster's hash key) of its cache key plus the
//! link settings it was rewritten for, so replicas with different public URLs never share
//! rewritten pages, and nothing readable about the subject reaches Redis. Its age is kept on
//! Redis's clock, so a page copied into a process keeps its original age.
//!
//! Every write or purge raises a generation (per iModel, or of all pages); a page is served
//! only under the generations it was filled under, and a fill stores its page only if they
//! have not moved since it looked: no fill stores a page older than a write it raced with.
//! The fill lock (`SET NX PX`) lets one replica fill while the others wait a bounded time for
//! its page; a filler that dies frees the lock by expiry.

use std::sync::LazyLock;
use std::time::Duration;

use aws_lc_rs::hmac;
use bytes::Bytes;
use http::HeaderMap;
use redis::Script;
use tokio::time::Instant;

use super::codec;
use super::error::ClusterError;
use super::keys::{Keys, hex};
use super::link::Link;
use crate::auth::Subject;
use crate::cache::CacheKey;

/// How often a replica waiting for another's fill looks for its page.
pub(crate) const FILL_POLL: Duration = Duration::from_millis(20);

static SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("pages.lua")));

/// Names pages by the keyed hash of their cache key and link settings.
#[derive(Clone)]
pub struct PageNamer {
    key: hmac::Key,
}

impl std::fmt::Debug for PageNamer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PageNamer")
    }
}

/// One page's place in Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRef {
    imodel_id: String,
    id: String,
}

impl PageNamer {
    /// A namer keyed with the cluster's hash key.
    pub fn new(hash_key: &[u8]) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, hash_key),
        }
    }

    /// The place of the page `key` rewritten for `links` (a description of the link
    /// settings: public base URL and upstream origins).
    pub fn page(&self, key: &CacheKey, links: &str) -> PageRef {
        let mut ctx = hmac::Context::with_key(&self.key);
        let mut field = |bytes: &[u8]| {
            ctx.update(&u64::try_from(bytes.len()).unwrap_or(u64::MAX).to_be_bytes());
            ctx.update(bytes);
        };
        match &key.subject {
            Subject::Claim(claim) => {
                field(b"claim");
                field(claim.as_bytes());
            }
            Subject::Opaque(hash) => {
                field(b"opaque");
                field(hash.as_bytes());
            }
        }
        field(key.query.imodel_id().as_bytes());
        for value in [
            key.query.top().map(str::as_bytes),
            key.query.skip().map(str::as_bytes),
            key.accept.as_ref().map(http::HeaderValue::as_bytes),
            key.prefer.as_ref().map(http::HeaderValue::as_bytes),
        ] {
            field(&[u8::from(value.is_some())]);
            field(value.unwrap_or_default());
        }
        field(links.as_bytes());
        let tag = ctx.sign();
        PageRef {
            imodel_id: key.query.imodel_id().to_owned(),
            id: hex(&tag.as_ref()[..16]),
        }
    }
}

/// The generations a looker saw: a fill stores its page only under these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generations {
    imodel: String,
    all: String,
}

/// A page found in Redis.
#[derive(Debug, Clone)]
pub struct SharedPage {
    /// Its kept headers.
    pub headers: HeaderMap,
    /// Its body, links already rewritten.
    pub body: Bytes,
    /// Time since it was stored, on Redis's clock.
    pub age: Duration,
}

/// The fill lock of a page, as a lookup left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FillLock {
    /// Not asked for (the page was fresh, or the lookup did not want it).
    NotAsked,
    /// Taken by this lookup: fill, then store (or release) with this token.
    Taken(LockToken),
    /// Another replica fills the page now.
    Busy,
}

/// Proof of holding a fill lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockToken(String);

/// What a lookup found.
#[derive(Debug, Clone)]
pub struct SharedLookup {
    /// The page, valid under the current generations (fresh or not).
    pub page: Option<SharedPage>,
    /// The fill lock.
    pub lock: FillLock,
    /// The generations seen, for a fill's store.
    pub seen: Generations,
}

/// The shared page tier of one cluster.
#[derive(Debug, Clone)]
pub struct SharedPages {
    link: Link,
    keys: Keys,
}

/// How long pages live and locks last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageTimes {
    /// How long a page is fresh (`cache.ttl`).
    pub fresh: Duration,
    /// How long a page is kept: freshness plus the longest stale window.
    pub keep: Duration,
    /// How long a fill lock holds if its filler never releases it.
    pub lock: Duration,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl SharedPages {
    /// Pages kept through `link` under `keys`.
    pub fn new(link: Link, keys: Keys) -> Self {
        Self { link, keys }
    }

    fn invocation(&self, page: &PageRef, mode: &str) -> redis::ScriptInvocation<'static> {
        let mut invocation = SCRIPT.prepare_invoke();
        invocation
            .key(self.keys.page(&page.imodel_id, &page.id))
            .key(self.keys.fill_lock(&page.imodel_id, &page.id))
            .key(self.keys.imodel_generation(&page.imodel_id))
            .key(self.keys.all_generation())
            .arg(mode);
        invocation
    }

    /// Looks the page up; with `lock`, takes its fill lock when no fresh page is there.
    pub async fn lookup(
        &self,
        page: &PageRef,
        times: &PageTimes,
        lock: bool,
    ) -> Result<SharedLookup, ClusterError> {
        let token = match lock {
            true => lock_token()?,
            false => String::new(),
        };
        let mut invocation = self.invocation(page, "lookup");
        invocation
            .arg(micros(times.fresh))
            .arg(&token)
            .arg(millis(times.lock));
        let (bytes, age, locked, imodel, all): (Vec<u8>, i64, i64, String, String) = self
            .link
            .call(|mut conn| async move { invocation.invoke_async(&mut conn).await })
            .await?;
        let page = match u64::try_from(age) {
            Ok(age) if !bytes.is_empty() => {
                let (headers, body) = codec::decode(Bytes::from(bytes))
                    .ok_or(ClusterError::Malformed("a shared page does not decode"))?;
                Some(SharedPage {
                    headers,
                    body,
                    age: Duration::from_micros(age),
                })
            }
            _ => None,
        };
        let lock = match locked {
            1 => FillLock::Taken(LockToken(token)),
            2 => FillLock::Busy,
            _ => FillLock::NotAsked,
        };
        Ok(SharedLookup {
            page,
            lock,
            seen: Generations { imodel, all },
        })
    }

    /// Waits, until `deadline`, for another replica's fill: returns once a fresh page is
    /// there, or the lock could be taken (the filler gave up or died), or at the deadline
    /// with what the last look found.
    pub async fn wait_for_fill(
        &self,
        page: &PageRef,
        times: &PageTimes,
        deadline: Instant,
    ) -> Result<SharedLookup, ClusterError> {
        loop {
            tokio::time::sleep(FILL_POLL).await;
            let found = self.lookup(page, times, true).await?;
            let fresh = found.page.as_ref().is_some_and(|p| p.age < times.fresh);
            if fresh || found.lock != FillLock::Busy || Instant::now() >= deadline {
                return Ok(found);
            }
        }
    }

    /// Stores a filled page (unless a write or purge came since `seen`) and releases the
    /// fill lock if `lock` holds it. Returns whether the page was stored.
    pub async fn store(
        &self,
        page: &PageRef,
        times: &PageTimes,
        headers: &HeaderMap,
        body: &[u8],
        seen: &Generations,
        lock: Option<&LockToken>,
    ) -> Result<bool, ClusterError> {
        let mut invocation = self.invocation(page, "store");
        invocation
            .arg(codec::encode(headers, body))
            .arg(&seen.imodel)
            .arg(&seen.all)
            .arg(millis(times.keep))
            .arg(lock.map_or("", |token| token.0.as_str()));
        let stored: i64 = self
            .link
            .call(|mut conn| async move { invocation.invoke_async(&mut conn).await })
            .await?;
        Ok(stored == 1)
    }

    /// Releases a fill lock that produced no page to store.
    pub async fn release(&self, page: &PageRef, lock: &LockToken) -> Result<(), ClusterError> {
        let mut invocation = self.invocation(page, "release");
        invocation.arg(&lock.0);
        self.link
            .call(|mut conn| async move { invocation.invoke_async::<i64>(&mut conn).await })
            .await
            .map(|_| ())
    }
}

/// A random lock token.
fn lock_token() -> Result<String, ClusterError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|_| ClusterError::Malformed("no random lock token"))?;
    Ok(hex(&bytes))
}
