//! Every metric the proxy exports, with its name and labels, in one place.
//!
//! Labels are route templates and outcome classes, never raw paths, subjects or client ids,
//! so the number of series stays small whatever the traffic.

use http::Method;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The `method` label: a standard method, or `other`, so made-up methods cannot add series.
pub fn method_label(method: &Method) -> &'static str {
    const STANDARD: [Method; 9] = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
        Method::OPTIONS,
        Method::CONNECT,
        Method::TRACE,
    ];
    STANDARD
        .iter()
        .find(|standard| *standard == method)
        .map_or("other", Method::as_str)
}

/// Labels of `itwin_proxy_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// A route template such as `/export/connections`, or `other`.
    pub route: &'static str,
    /// The request method: a standard one, or `other`.
    pub method: &'static str,
    /// The response status code.
    pub status: u16,
    /// `hit`, `miss`, `collapsed`, `stale`, `bypass`, or `none` on pass-through routes.
    pub cache: &'static str,
}

/// Labels of `itwin_proxy_upstream_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    /// The upstream's status code, or `error` when no answer came.
    status: String,
}

/// The proxy's metrics and their registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    upstream_requests: Family<UpstreamLabels, Counter>,
    upstream_duration: Histogram,
    cache_entries: Gauge,
    cache_bytes: Gauge,
    ratelimit_delayed: Counter,
    ratelimit_rejected: Counter,
    upstream_retry_after: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "itwin_proxy_requests",
            "Requests answered, by route template, method, status and cache outcome",
            requests.clone(),
        );
        let upstream_requests = Family::<UpstreamLabels, Counter>::default();
        registry.register(
            "itwin_proxy_upstream_requests",
            "Calls made to the upstream, by its status (or error)",
            upstream_requests.clone(),
        );
        let upstream_duration = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        registry.register(
            "itwin_proxy_upstream_request_duration_seconds",
            "Time from sending an upstream call to its response head",
            upstream_duration.clone(),
        );
        let cache_entries = Gauge::default();
        registry.register(
            "itwin_proxy_cache_entries",
            "Pages held in the cache",
            cache_entries.clone(),
        );
        let cache_bytes = Gauge::default();
        registry.register(
            "itwin_proxy_cache_bytes",
            "Bytes the cached pages weigh",
            cache_bytes.clone(),
        );
        let ratelimit_delayed = Counter::default();
        registry.register(
            "itwin_proxy_ratelimit_delayed",
            "Upstream calls that waited for a permit of their budget",
            ratelimit_delayed.clone(),
        );
        let ratelimit_rejected = Counter::default();
        registry.register(
            "itwin_proxy_ratelimit_rejected",
            "Requests answered 429 by the proxy because their budget had no permit in time",
            ratelimit_rejected.clone(),
        );
        let upstream_retry_after = Counter::default();
        registry.register(
            "itwin_proxy_upstream_retry_after",
            "Upstream 429/503 answers that paused a budget",
            upstream_retry_after.clone(),
        );
        Self {
            registry,
            requests,
            upstream_requests,
            upstream_duration,
            cache_entries,
            cache_bytes,
            ratelimit_delayed,
            ratelimit_rejected,
            upstream_retry_after,
        }
    }
}

impl Metrics {
    /// Counts one answered request.
    pub fn record_request(&self, labels: RequestLabels) {
        self.requests.get_or_create(&labels).inc();
    }

    /// Counts one upstream call: its status (None when it failed) and how long it took.
    pub fn record_upstream(&self, status: Option<u16>, seconds: f64) {
        let status = status.map_or_else(|| "error".to_owned(), |s| s.to_string());
        self.upstream_requests
            .get_or_create(&UpstreamLabels { status })
            .inc();
        self.upstream_duration.observe(seconds);
    }

    /// Counts a call that had to wait for a permit.
    pub fn record_ratelimit_delayed(&self) {
        self.ratelimit_delayed.inc();
    }

    /// Counts a request refused for lack of a permit.
    pub fn record_ratelimit_rejected(&self) {
        self.ratelimit_rejected.inc();
    }

    /// Counts an upstream answer that paused a budget.
    pub fn record_upstream_retry_after(&self) {
        self.upstream_retry_after.inc();
    }

    /// The Prometheus text exposition, with the cache gauges set to the given sizes.
    pub fn render(&self, cache_entries: u64, cache_bytes: u64) -> String {
        self.cache_entries
            .set(i64::try_from(cache_entries).unwrap_or(i64::MAX));
        self.cache_bytes
            .set(i64::try_from(cache_bytes).unwrap_or(i64::MAX));
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            text.clear();
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_labels_are_bounded() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::from_bytes(b"JUNK").unwrap()), "other");
    }

    #[test]
    fn every_contract_metric_is_exported() {
        let metrics = Metrics::default();
        metrics.record_request(RequestLabels {
            route: "/export/connections",
            method: "GET",
            status: 200,
            cache: "hit",
        });
        metrics.record_upstream(Some(200), 0.01);
        metrics.record_ratelimit_delayed();
        let text = metrics.render(3, 1024);
        for name in [
            "itwin_proxy_requests_total{route=\"/export/connections\",method=\"GET\",status=\"200\",cache=\"hit\"} 1",
            "itwin_proxy_upstream_requests_total{status=\"200\"} 1",
            "itwin_proxy_upstream_request_duration_seconds_count 1",
            "itwin_proxy_cache_entries 3",
            "itwin_proxy_cache_bytes 1024",
            "itwin_proxy_ratelimit_delayed_total 1",
            "itwin_proxy_ratelimit_rejected_total 0",
            "itwin_proxy_upstream_retry_after_total 0",
        ] {
            assert!(text.contains(name), "{name} missing in\n{text}");
        }
    }
}
