//! What one request's phases learn about it, shared from the first phase to the last.

use std::time::Duration;

use crate::cache::CacheStatus;

/// The route template of the cached connections list.
pub(crate) const CONNECTIONS_ROUTE: &str = "/export/connections";

/// The route template of one connection.
pub(crate) const CONNECTION_ROUTE: &str = "/export/connections/{id}";

/// The route template of a connection's runs.
pub(crate) const RUNS_ROUTE: &str = "/export/connections/{id}/runs";

/// The route template of one run.
pub(crate) const RUN_ROUTE: &str = "/export/connections/{id}/runs/{runId}";

/// The route template of everything else.
pub(crate) const OTHER_ROUTE: &str = "other";

/// The route template a path (the public prefix stripped) falls under.
pub(crate) fn route_template(path: &str) -> &'static str {
    let Some(rest) = path.strip_prefix(CONNECTIONS_ROUTE) else {
        return OTHER_ROUTE;
    };
    if rest.is_empty() {
        return CONNECTIONS_ROUTE;
    }
    let Some(rest) = rest.strip_prefix('/') else {
        return OTHER_ROUTE;
    };
    let mut segments = rest.split('/');
    let id = segments.next().filter(|id| !id.is_empty());
    match (id, segments.next(), segments.next(), segments.next()) {
        (Some(_), None, _, _) => CONNECTION_ROUTE,
        (Some(_), Some("runs"), None, _) => RUNS_ROUTE,
        (Some(_), Some("runs"), Some(run), None) if !run.is_empty() => RUN_ROUTE,
        _ => OTHER_ROUTE,
    }
}

/// The per-request context, filled as the phases learn things and read once at the end for
/// the metric and the log line.
#[derive(Debug)]
pub(crate) struct RequestContext {
    /// The route template.
    pub route: &'static str,
    /// Whether the request is on the cached route (a GET or HEAD of the connections list).
    pub cached_route: bool,
    /// What the cache did, on the cached route.
    pub cache: Option<CacheStatus>,
    /// The answer is a page from memory, whose headers already carry the cached route's
    /// `Cache-Control` and `Vary`.
    pub page_from_memory: bool,
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
            cached_route: false,
            cache: None,
            page_from_memory: false,
            upstream_latency: None,
            epoch: 0,
        }
    }
}

impl RequestContext {
    /// Whether the request is on the cached route.
    pub(crate) fn is_cached_route(&self) -> bool {
        self.cached_route
    }

    /// The `cache` label: the cache outcome; `refused` on the cached route when the proxy
    /// answered before any lookup (no or an invalid token); `none` off the cached route.
    pub(crate) fn cache_label(&self) -> &'static str {
        match (self.cache, self.cached_route) {
            (Some(status), _) => status.label(),
            (None, true) => "refused",
            (None, false) => "none",
        }
    }

    /// Adds the time of one upstream call, if one was made.
    pub(crate) fn add_upstream_latency(&mut self, latency: Option<Duration>) {
        if let Some(latency) = latency {
            self.upstream_latency = Some(self.upstream_latency.unwrap_or_default() + latency);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_export_route_has_its_template() {
        assert_eq!(route_template("/export/connections"), CONNECTIONS_ROUTE);
        assert_eq!(route_template("/export/connections/abc"), CONNECTION_ROUTE);
        assert_eq!(route_template("/export/connections/abc/runs"), RUNS_ROUTE);
        assert_eq!(route_template("/export/connections/abc/runs/1"), RUN_ROUTE);
        for other in [
            "/export/connections/",
            "/export/connectionsX",
            "/export/connections//runs",
            "/export/connections/abc/runs/",
            "/export/connections/abc/runs/1/x",
            "/export/connections/abc/other",
            "/export",
            "/",
        ] {
            assert_eq!(route_template(other), OTHER_ROUTE, "{other}");
        }
    }

    #[test]
    fn refusals_on_the_cached_route_are_labelled_so() {
        let mut ctx = RequestContext::default();
        assert_eq!(ctx.cache_label(), "none");
        ctx.cached_route = true;
        assert_eq!(ctx.cache_label(), "refused");
        ctx.cache = Some(CacheStatus::Request);
        assert_eq!(ctx.cache_label(), "request");
    }
}
