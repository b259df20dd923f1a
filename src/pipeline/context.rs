//! What one request's phases learn about it, shared from the first phase to the last.

use std::time::Duration;

use crate::cache::CacheStatus;

/// The route template of the cached connections list.
pub const CONNECTIONS_ROUTE: &str = "/export/connections";

/// The route template of everything else.
pub const OTHER_ROUTE: &str = "other";

/// The per-request context, filled as the phases learn things and read once at the end for
/// the metric and the log line.
#[derive(Debug)]
pub struct RequestContext {
    /// The route template.
    pub route: &'static str,
    /// What the cache did, on the cached route.
    pub cache: Option<CacheStatus>,
    /// Time spent waiting for upstream response heads.
    pub upstream_latency: Option<Duration>,
    /// The cache's purge epoch when the request arrived, read before its settings: a page
    /// fetched for it is stored only if no purge (a write, a reload) happened since.
    pub epoch: u64,
}

impl Default for RequestContext {
    fn default() -> Self {
        Self {
            route: OTHER_ROUTE,
            cache: None,
            upstream_latency: None,
            epoch: 0,
        }
    }
}

impl RequestContext {
    /// Whether the request is on the cached route.
    pub fn is_cached_route(&self) -> bool {
        self.route == CONNECTIONS_ROUTE
    }

    /// The `cache` label: the cache outcome, or `none` off the cached route.
    pub fn cache_label(&self) -> &'static str {
        self.cache.map_or("none", |status| status.label())
    }

    /// Adds the time of one upstream call.
    pub fn add_upstream_latency(&mut self, latency: Duration) {
        self.upstream_latency = Some(self.upstream_latency.unwrap_or_default() + latency);
    }
}
