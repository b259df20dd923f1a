//! Back-off for stale-while-revalidate refreshes that failed: a page whose refresh met an
//! upstream failure is not refreshed again on every request, but after a delay that doubles
//! with each failure in a row (1 s, 2 s, 4 s, ... at most a minute); its stale page is served
//! meanwhile. One success forgets the failures.

use std::time::Duration;

use moka::sync::Cache;
use tokio::time::Instant;

use super::CacheKey;

/// The delay after the first failure.
const FIRST_DELAY: Duration = Duration::from_secs(1);

/// The longest delay.
const MAX_DELAY: Duration = Duration::from_secs(60);

/// How many pages' failures are remembered at most.
const MAX_KEYS: u64 = 10_000;

/// Failed refreshes per page: since when a refresh may run again, and how many failed in a
/// row.
#[derive(Clone)]
pub(crate) struct RefreshBackoff {
    failures: Cache<CacheKey, (Instant, u32)>,
}

impl std::fmt::Debug for RefreshBackoff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshBackoff")
            .field("keys", &self.failures.entry_count())
            .finish()
    }
}

impl Default for RefreshBackoff {
    fn default() -> Self {
        Self {
            failures: Cache::builder()
                .max_capacity(MAX_KEYS)
                .time_to_live(MAX_DELAY * 2)
                .build(),
        }
    }
}

impl RefreshBackoff {
    /// Whether a refresh of `key` may start at `now`.
    pub(crate) fn allows(&self, key: &CacheKey, now: Instant) -> bool {
        self.failures.get(key).is_none_or(|(next, _)| now >= next)
    }

    /// Notes that a refresh of `key` failed at `now`.
    pub(crate) fn failed(&self, key: CacheKey, now: Instant) {
        let in_a_row = self.failures.get(&key).map_or(0, |(_, n)| n) + 1;
        let delay = FIRST_DELAY
            .saturating_mul(1 << in_a_row.saturating_sub(1).min(16))
            .min(MAX_DELAY);
        self.failures.insert(key, (now + delay, in_a_row));
    }

    /// Notes that a refresh of `key` succeeded.
    pub(crate) fn succeeded(&self, key: &CacheKey) {
        self.failures.invalidate(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Subject;
    use crate::cache::PageQuery;
    use http::HeaderMap;

    fn key() -> CacheKey {
        let query = PageQuery::parse(Some("imodelId=m")).unwrap();
        CacheKey::new(Subject::Claim("alice".into()), query, &HeaderMap::new())
    }

    #[test]
    fn failures_double_the_delay_and_a_success_forgets_them() {
        let backoff = RefreshBackoff::default();
        let start = Instant::now();
        assert!(backoff.allows(&key(), start));
        backoff.failed(key(), start);
        assert!(!backoff.allows(&key(), start));
        assert!(backoff.allows(&key(), start + FIRST_DELAY));
        backoff.failed(key(), start);
        assert!(!backoff.allows(&key(), start + FIRST_DELAY));
        assert!(backoff.allows(&key(), start + FIRST_DELAY * 2));
        for _ in 0..40 {
            backoff.failed(key(), start);
        }
        assert!(!backoff.allows(&key(), start + MAX_DELAY - FIRST_DELAY));
        assert!(backoff.allows(&key(), start + MAX_DELAY));
        backoff.succeeded(&key());
        assert!(backoff.allows(&key(), start));
    }
}
