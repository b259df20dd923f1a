//! The admin status page: `GET /` serves a self-contained HTML page (inline CSS and script,
//! no external assets) whose script reads `GET /status.json` every few seconds and shows
//! what the proxy is doing: version, uptime, hit ratio over the last minutes, the cache
//! against its bound, each budget's use and pauses, the upstream's recent errors and the
//! cluster's Redis.
//!
//! The page carries a Content-Security-Policy that admits only its own inline style and
//! script (by hash) and fetches to its own origin, so nothing it shows can run as code.

use std::sync::LazyLock;

use aws_lc_rs::digest;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;

use crate::pipeline::Proxy;
use crate::ratelimit::BudgetsUsage;
use crate::recent::{Counts, RecentSnapshot};

/// Client budgets listed at most; the status shows how many there are in all.
const MOST_CLIENT_BUDGETS: usize = 50;

/// Intervals of the ring in one minute.
const MINUTE_INTERVALS: usize = 6;

const TEMPLATE: &str = include_str!("status/page.html");
const STYLE: &str = include_str!("status/page.css");
const SCRIPT: &str = include_str!("status/page.js");

/// The page, its inline style and script in place.
pub(super) static PAGE: LazyLock<String> = LazyLock::new(|| {
    TEMPLATE
        .replace("/*STYLE*/", STYLE)
        .replace("/*SCRIPT*/", SCRIPT)
});

/// The page's Content-Security-Policy: its own inline style and script only (by their
/// hashes), data: images, fetches to its own origin.
pub(super) static CONTENT_SECURITY_POLICY: LazyLock<String> = LazyLock::new(|| {
    format!(
        "default-src 'none'; style-src '{}'; script-src '{}'; connect-src 'self'; \
         img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        source_hash(STYLE),
        source_hash(SCRIPT)
    )
});

/// A CSP source expression admitting exactly `text` inline.
fn source_hash(text: &str) -> String {
    let digest = digest::digest(&digest::SHA256, text.as_bytes());
    format!("sha256-{}", STANDARD.encode(digest.as_ref()))
}

/// Everything `/status.json` tells.
#[derive(Debug, Serialize)]
pub(super) struct Status {
    version: &'static str,
    uptime_seconds: u64,
    /// Whether shutdown began (`/readyz` answers 503).
    draining: bool,
    /// Requests being answered now.
    in_flight: u64,
    /// Hits over lookups in the last minute and the last five, `null` without lookups.
    hit_ratio_1m: Option<f64>,
    hit_ratio_5m: Option<f64>,
    recent: RecentSnapshot,
    cache: CacheStatus,
    rate_limit: BudgetsUsage,
    /// `null` without `cluster.redis_url`.
    cluster: Option<ClusterStatus>,
}

/// The page cache against its bound.
#[derive(Debug, Serialize)]
struct CacheStatus {
    entries: u64,
    bytes: u64,
    max_bytes: u64,
}

/// The cluster's Redis as this replica sees it.
#[derive(Debug, Serialize)]
struct ClusterStatus {
    /// Whether Redis answers now.
    up: bool,
    key_prefix: String,
    replicas_hint: u32,
    shared_cache: bool,
    /// Whether the cluster's token-hash key was adopted (proofs shared with the others).
    hash_key_adopted: bool,
    /// Redis calls that failed or were too slow, since start.
    errors: u64,
}

/// Reads the status of `proxy` now. `in_flight` counts the proxy listener's requests.
pub(super) async fn read(proxy: &Proxy, draining: bool, in_flight: u64) -> Status {
    let live = proxy.settings_state();
    let cache = proxy.cache();
    cache.settle();
    let recent = proxy.metrics().recent().snapshot();
    let ratio = |counts: Counts| counts.hit_ratio();
    Status {
        version: env!("CARGO_PKG_VERSION"),
        uptime_seconds: recent.uptime_seconds,
        draining,
        in_flight,
        hit_ratio_1m: ratio(recent.last(MINUTE_INTERVALS)),
        hit_ratio_5m: ratio(recent.last(recent.intervals.len())),
        cache: CacheStatus {
            entries: cache.entry_count(),
            bytes: cache.weighted_size(),
            max_bytes: live.settings.cache.max_bytes,
        },
        rate_limit: live.budgets.usage(MOST_CLIENT_BUDGETS),
        cluster: proxy.cluster().map(|cluster| ClusterStatus {
            up: cluster.link().is_up(),
            key_prefix: live.settings.cluster.key_prefix.clone(),
            replicas_hint: cluster.replicas_hint(),
            shared_cache: cluster.pages().is_some(),
            hash_key_adopted: cluster.hash_key().is_some(),
            errors: proxy.metrics().cluster_errors(),
        }),
        recent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_is_self_contained_and_its_policy_admits_its_own_code() {
        let page = PAGE.as_str();
        assert!(page.contains(SCRIPT) && page.contains(STYLE));
        assert!(!page.contains("/*STYLE*/") && !page.contains("/*SCRIPT*/"));
        for external in ["src=\"http", "href=\"http", "@import", "url(http", "//cdn"] {
            assert!(!page.contains(external), "{external} in the page");
        }
        assert!(page.contains("status.json"));
        let policy = CONTENT_SECURITY_POLICY.as_str();
        assert!(policy.contains(&source_hash(SCRIPT)));
        assert!(policy.contains(&source_hash(STYLE)));
        assert!(policy.starts_with("default-src 'none';"));
    }

    #[test]
    fn a_source_hash_is_the_base64_sha256() {
        // echo -n 'alert(1)' | openssl dgst -sha256 -binary | base64
        assert_eq!(
            source_hash("alert(1)"),
            "sha256-bhHHL3z2vDgxUt0W3dWQOrprscmda2Y5pLsLg4GF+pI="
        );
    }
}
