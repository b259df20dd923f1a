//! Every metric the proxy exports, with its name and labels, in one place, and the two text
//! formats `/metrics` writes them in.
//!
//! Labels are route templates and outcome classes, never raw paths, subjects or client ids,
//! so the number of series stays small whatever the traffic.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};

use http::{HeaderMap, Method, header};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::time::Instant;

use crate::recent::Recent;

/// The `method` label: a standard method, or `other`, so made-up methods cannot add series.
pub(crate) fn method_label(method: &Method) -> &'static str {
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
    /// A route template such as `/export/connections/{id}/runs`, or `other`.
    pub route: &'static str,
    /// The request method: a standard one, or `other`.
    pub method: &'static str,
    /// The response status code.
    pub status: u16,
    /// `hit`, `shared`, `miss`, `collapsed`, `stale`, `request`, `refused`, `bypass`, or
    /// `none` on pass-through routes.
    pub cache: &'static str,
}

/// Labels of `itwin_proxy_request_duration_seconds`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DurationLabels {
    route: &'static str,
    cache: &'static str,
}

/// Labels of `itwin_proxy_upstream_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    /// The upstream's status code, or the class of failure when no answer came (`dns`,
    /// `connect`, `tls`, `timeout`, `reset`).
    status: UpstreamStatus,
}

/// The `status` label of an upstream call.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
enum UpstreamStatus {
    Code(u16),
    Failed(&'static str),
}

impl prometheus_client::encoding::EncodeLabelValue for UpstreamStatus {
    fn encode(
        &self,
        encoder: &mut prometheus_client::encoding::LabelValueEncoder<'_>,
    ) -> Result<(), std::fmt::Error> {
        match self {
            Self::Code(code) => code.encode(encoder),
            Self::Failed(class) => class.encode(encoder),
        }
    }
}

/// Labels with one `result` (`ok` or `error`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// Labels of `itwin_proxy_build_info`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

/// Labels of `itwin_proxy_cache_evictions_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EvictionLabels {
    /// `size` (room for newer pages under `cache.max_bytes`), `expired` (past every window
    /// it could be served in) or `purged` (a write, a purge, a reload).
    reason: &'static str,
}

/// Why a page left the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eviction {
    /// Room was needed under `cache.max_bytes`.
    Size,
    /// It could no longer be served, not even stale.
    Expired,
    /// A write, a purge or a reload removed it.
    Purged,
}

/// Counts pages leaving the cache; handed to the cache, which reports each eviction.
#[derive(Debug, Clone, Default)]
pub struct CacheEvictions(Family<EvictionLabels, Counter>);

impl CacheEvictions {
    /// Counts one page evicted for `why`.
    pub fn record(&self, why: Eviction) {
        let reason = match why {
            Eviction::Size => "size",
            Eviction::Expired => "expired",
            Eviction::Purged => "purged",
        };
        self.0.get_or_create(&EvictionLabels { reason }).inc();
    }
}

/// Counts fetches of the issuer's signing keys; handed to the token verifier.
#[derive(Debug, Clone, Default)]
pub struct KeyFetches(Family<ResultLabels, Counter>);

impl KeyFetches {
    /// Counts one fetch, successful or not.
    pub fn record(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.0.get_or_create(&ResultLabels { result }).inc();
    }
}

/// The exposition formats `/metrics` can write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0.0 text.
    OpenMetrics,
    /// The Prometheus text format 0.0.4.
    Prometheus,
}

impl Format {
    /// The format a scraper asks for in `Accept`: OpenMetrics when it prefers it (as
    /// Prometheus itself does), the 0.0.4 text format otherwise.
    pub fn negotiate(headers: &HeaderMap) -> Self {
        let mut open_metrics = 0.0_f32;
        let mut text = 0.0_f32;
        let ranges = headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','));
        for range in ranges {
            let mut params = range.split(';').map(str::trim);
            let media = params.next().unwrap_or_default().to_ascii_lowercase();
            let mut q = 1.0_f32;
            let mut version = None;
            for param in params {
                match param.split_once('=') {
                    Some((name, value)) if name.trim().eq_ignore_ascii_case("q") => {
                        q = value.trim().parse().unwrap_or(0.0);
                    }
                    Some((name, value)) if name.trim().eq_ignore_ascii_case("version") => {
                        version = Some(value.trim().trim_matches('"').to_owned());
                    }
                    _ => {}
                }
            }
            match media.as_str() {
                "application/openmetrics-text"
                    if version.as_deref().is_none_or(|v| v == "1.0.0") =>
                {
                    open_metrics = open_metrics.max(q);
                }
                "text/plain" | "text/*" | "*/*" => text = text.max(q),
                _ => {}
            }
        }
        if open_metrics > 0.0 && open_metrics >= text {
            Self::OpenMetrics
        } else {
            Self::Prometheus
        }
    }

    /// The `Content-Type` of a body in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Self::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

/// What is read at scrape time rather than counted as it happens.
#[derive(Debug, Clone, Copy, Default)]
pub struct Snapshot {
    /// Pages held in the cache.
    pub cache_entries: u64,
    /// Bytes they weigh.
    pub cache_bytes: u64,
    /// Requests being answered now.
    pub in_flight: u64,
}

/// Where a request's series is remembered: its labels by where each text is and how long it
/// is (all of them static), so that finding it hashes a few words and compares no text.
/// Equal texts elsewhere only make another entry for the same series (the families are keyed
/// by value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct SeriesKey([(usize, usize); 3], u16);

impl SeriesKey {
    fn of(labels: &RequestLabels) -> Self {
        let text = |text: &'static str| (text.as_ptr().addr(), text.len());
        Self(
            [text(labels.route), text(labels.method), text(labels.cache)],
            labels.status,
        )
    }
}

/// The series a request is counted in.
#[derive(Debug, Clone)]
struct RequestSeries {
    count: Counter,
    duration: Histogram,
}

/// The proxy's metrics and their registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_duration: Family<DurationLabels, Histogram, fn() -> Histogram>,
    /// The two series above of each label set seen, found once: a family hashes its labels
    /// with SipHash and takes its lock on every call, which every hit would pay.
    request_series: RwLock<HashMap<SeriesKey, RequestSeries, foldhash::fast::RandomState>>,
    in_flight: Gauge,
    upstream_requests: Family<UpstreamLabels, Counter>,
    upstream_duration: Histogram,
    cache_entries: Gauge,
    cache_bytes: Gauge,
    cache_evictions: CacheEvictions,
    ratelimit_delayed: Counter,
    ratelimit_rejected: Counter,
    ratelimit_queued: Gauge,
    upstream_retry_after: Counter,
    key_fetches: KeyFetches,
    resident_memory: Gauge,
    open_fds: Gauge,
    cluster_up: Gauge,
    cluster_errors: Counter,
    cluster_call_duration: Histogram,
    config_reloads: Family<ResultLabels, Counter>,
    config_loaded_at: Gauge,
    config_restart_pending: Gauge,
    recent: Recent,
}

/// Histogram buckets for durations: 5 ms to about 41 s.
fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let build_info = Family::<BuildLabels, Gauge>::default();
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register(
            "itwin_proxy_build_info",
            "Always 1; the version label names the running build",
            build_info,
        );
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "itwin_proxy_requests",
            "Requests answered, by route template, method, status and cache outcome",
            requests.clone(),
        );
        let request_duration =
            Family::<DurationLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                duration_histogram,
            );
        registry.register(
            "itwin_proxy_request_duration_seconds",
            "Time from a request's arrival to its response head, by route and cache outcome",
            request_duration.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "itwin_proxy_requests_in_flight",
            "Requests being answered now (until the last byte of their response)",
            in_flight.clone(),
        );
        let upstream_requests = Family::<UpstreamLabels, Counter>::default();
        registry.register(
            "itwin_proxy_upstream_requests",
            "Calls made to the upstream, by its status or the class of failure",
            upstream_requests.clone(),
        );
        let upstream_duration = duration_histogram();
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
        let cache_evictions = CacheEvictions::default();
        registry.register(
            "itwin_proxy_cache_evictions",
            "Pages removed from the cache, by reason",
            cache_evictions.0.clone(),
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
        let ratelimit_queued = Gauge::default();
        registry.register(
            "itwin_proxy_ratelimit_queue_depth",
            "Upstream calls waiting for a permit of their budget now",
            ratelimit_queued.clone(),
        );
        let upstream_retry_after = Counter::default();
        registry.register(
            "itwin_proxy_upstream_retry_after",
            "Upstream 429/503 answers that paused a budget",
            upstream_retry_after.clone(),
        );
        let key_fetches = KeyFetches::default();
        registry.register(
            "itwin_proxy_signing_key_fetches",
            "Fetches of the issuer's signing keys, by result",
            key_fetches.0.clone(),
        );
        let resident_memory = Gauge::default();
        registry.register(
            "process_resident_memory_bytes",
            "Resident memory of the process",
            resident_memory.clone(),
        );
        let open_fds = Gauge::default();
        registry.register(
            "process_open_fds",
            "Open file descriptors of the process",
            open_fds.clone(),
        );
        let cluster_up = Gauge::default();
        registry.register(
            "itwin_proxy_cluster_up",
            "1 while the cluster's Redis answers, else 0 (also 0 without a cluster)",
            cluster_up.clone(),
        );
        let cluster_errors = Counter::default();
        registry.register(
            "itwin_proxy_cluster_errors",
            "Redis calls that failed or took longer than cluster.timeout",
            cluster_errors.clone(),
        );
        let cluster_call_duration = Histogram::new(exponential_buckets(0.0001, 2.0, 14));
        registry.register(
            "itwin_proxy_cluster_call_duration_seconds",
            "Time of each Redis call, failed ones included",
            cluster_call_duration.clone(),
        );
        let config_reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "itwin_proxy_config_reload",
            "Reloads of the config file (SIGHUP), by result: ok, or error (invalid, kept the running one)",
            config_reloads.clone(),
        );
        let config_loaded_at = Gauge::default();
        registry.register(
            "itwin_proxy_config_last_reload_success_timestamp_seconds",
            "Unix time the running config was loaded: the last good reload, or the start",
            config_loaded_at.clone(),
        );
        let config_restart_pending = Gauge::default();
        registry.register(
            "itwin_proxy_config_restart_pending_keys",
            "Keys changed by reloads since the start that only a restart applies",
            config_restart_pending.clone(),
        );
        Self {
            registry,
            requests,
            request_duration,
            request_series: RwLock::default(),
            in_flight,
            upstream_requests,
            upstream_duration,
            cache_entries,
            cache_bytes,
            cache_evictions,
            ratelimit_delayed,
            ratelimit_rejected,
            ratelimit_queued,
            upstream_retry_after,
            key_fetches,
            resident_memory,
            open_fds,
            cluster_up,
            cluster_errors,
            cluster_call_duration,
            config_reloads,
            config_loaded_at,
            config_restart_pending,
            recent: Recent::default(),
        }
    }
}

/// Holds one call's place in `itwin_proxy_ratelimit_queue_depth` until dropped.
#[derive(Debug)]
pub struct Queued<'m>(&'m Gauge);

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Metrics {
    /// Counts one answered request, which started at `started`, and the time from then to
    /// now, its response head.
    pub fn record_request(&self, labels: RequestLabels, started: Instant) {
        let now = Instant::now();
        let seconds = now.saturating_duration_since(started).as_secs_f64();
        self.recent.record_request(labels.cache, now);
        let count = |series: &RequestSeries| {
            series.duration.observe(seconds);
            series.count.inc();
        };
        let key = SeriesKey::of(&labels);
        {
            let known = (self.request_series.read()).unwrap_or_else(PoisonError::into_inner);
            if let Some(series) = known.get(&key) {
                count(series);
                return;
            }
        }
        let series = RequestSeries {
            count: self.requests.get_or_create(&labels).clone(),
            duration: (self.request_duration)
                .get_or_create(&DurationLabels {
                    route: labels.route,
                    cache: labels.cache,
                })
                .clone(),
        };
        let mut known = (self.request_series.write()).unwrap_or_else(PoisonError::into_inner);
        count(known.entry(key).or_insert(series));
    }

    /// Counts one upstream call that was answered with `status`, and how long it took.
    pub fn record_upstream(&self, status: u16, seconds: f64) {
        self.upstream_requests
            .get_or_create(&UpstreamLabels {
                status: UpstreamStatus::Code(status),
            })
            .inc();
        self.recent.record_upstream(status);
        self.upstream_duration.observe(seconds);
    }

    /// Counts one upstream call that got no answer, by the class of its failure, and how long
    /// it took to fail.
    pub fn record_upstream_failure(&self, class: &'static str, seconds: f64) {
        self.upstream_requests
            .get_or_create(&UpstreamLabels {
                status: UpstreamStatus::Failed(class),
            })
            .inc();
        self.recent.record_upstream_failure(class);
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

    /// Counts a call waiting for a permit until the returned guard drops.
    pub fn queued(&self) -> Queued<'_> {
        self.ratelimit_queued.inc();
        Queued(&self.ratelimit_queued)
    }

    /// Counts an upstream answer that paused a budget.
    pub fn record_upstream_retry_after(&self) {
        self.upstream_retry_after.inc();
    }

    /// The counter the cache reports its evictions to.
    pub fn cache_evictions(&self) -> CacheEvictions {
        self.cache_evictions.clone()
    }

    /// The counter the token verifier reports its key fetches to.
    pub fn key_fetches(&self) -> KeyFetches {
        self.key_fetches.clone()
    }

    /// Sets whether the cluster's Redis answers.
    pub fn set_cluster_up(&self, up: bool) {
        self.cluster_up.set(i64::from(up));
    }

    /// Records that the running config was loaded (at start, or by a reload) at `unix_seconds`,
    /// with `restart_pending` keys changed since the start that only a restart applies.
    pub fn record_config_loaded(&self, unix_seconds: i64, restart_pending: usize) {
        self.config_loaded_at.set(unix_seconds);
        self.config_restart_pending
            .set(i64::try_from(restart_pending).unwrap_or(i64::MAX));
    }

    /// Counts one reload of the config file, applied or refused.
    pub fn record_config_reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.config_reloads
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    /// Redis calls that failed or were too slow, since start.
    pub fn cluster_errors(&self) -> u64 {
        self.cluster_errors.get()
    }

    /// What the proxy did over the last minutes (for the status page).
    pub fn recent(&self) -> &Recent {
        &self.recent
    }

    /// Records one Redis call: how long it took and whether it failed.
    pub fn record_cluster_call(&self, seconds: f64, failed: bool) {
        self.cluster_call_duration.observe(seconds);
        if failed {
            self.cluster_errors.inc();
        }
    }

    /// The exposition in `format`, with the gauges read at scrape time set from `now` and
    /// from the process's own accounting.
    pub fn render(&self, now: Snapshot, format: Format) -> String {
        let gauge = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
        self.cache_entries.set(gauge(now.cache_entries));
        self.cache_bytes.set(gauge(now.cache_bytes));
        self.in_flight.set(gauge(now.in_flight));
        if let Some(bytes) = process::resident_memory_bytes() {
            self.resident_memory.set(gauge(bytes));
        }
        if let Some(fds) = process::open_fds() {
            self.open_fds.set(gauge(fds));
        }
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            text.clear();
        }
        match format {
            Format::OpenMetrics => text,
            Format::Prometheus => to_prometheus_text(&text),
        }
    }
}

/// The Prometheus 0.0.4 text of an OpenMetrics exposition. The two differ, for what this
/// registry holds, in three ways: a 0.0.4 counter's family is named as its samples are (with
/// `_total`), and 0.0.4 has no `# UNIT` and no `# EOF` line.
fn to_prometheus_text(open_metrics: &str) -> String {
    let counters: Vec<&str> = open_metrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut text = String::with_capacity(open_metrics.len() + 16 * counters.len());
    for line in open_metrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let descriptor = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|prefix| Some((prefix, line.strip_prefix(prefix)?)));
        match descriptor {
            Some((prefix, rest))
                if counters.contains(&rest.split(' ').next().unwrap_or_default()) =>
            {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                text.push_str(prefix);
                text.push_str(name);
                text.push_str("_total ");
                text.push_str(tail);
            }
            _ => text.push_str(line),
        }
        text.push('\n');
    }
    text
}

/// What the process takes of the machine, read from `/proc/self` (Linux); `None` elsewhere.
mod process {
    /// Resident memory, from `VmRSS` in `/proc/self/status`.
    pub(super) fn resident_memory_bytes() -> Option<u64> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    }

    /// Open file descriptors, the entries of `/proc/self/fd`.
    pub(super) fn open_fds() -> Option<u64> {
        let entries = std::fs::read_dir("/proc/self/fd").ok()?;
        Some(entries.count() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn method_labels_are_bounded() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::from_bytes(b"JUNK").unwrap()), "other");
    }

    fn accepting(value: &'static str) -> Format {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_static(value));
        Format::negotiate(&headers)
    }

    #[test]
    fn the_format_follows_accept() {
        assert_eq!(Format::negotiate(&HeaderMap::new()), Format::Prometheus);
        assert_eq!(accepting("*/*"), Format::Prometheus);
        assert_eq!(
            accepting("application/openmetrics-text; version=1.0.0"),
            Format::OpenMetrics
        );
        // What Prometheus sends.
        assert_eq!(
            accepting(
                "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
            ),
            Format::OpenMetrics
        );
        assert_eq!(
            accepting("application/openmetrics-text;version=1.0.0;q=0.2,text/plain;q=0.9"),
            Format::Prometheus
        );
        assert_eq!(
            accepting("application/openmetrics-text;version=0.0.1"),
            Format::Prometheus
        );
        assert_eq!(
            accepting("application/openmetrics-text;q=0"),
            Format::Prometheus
        );
    }

    fn recorded() -> Metrics {
        let metrics = Metrics::default();
        metrics.record_request(
            RequestLabels {
                route: "/export/connections",
                method: "GET",
                status: 200,
                cache: "hit",
            },
            Instant::now(),
        );
        metrics.record_upstream(200, 0.01);
        metrics.record_upstream_failure("connect", 0.01);
        metrics.record_ratelimit_delayed();
        metrics.cache_evictions().record(Eviction::Size);
        metrics.key_fetches().record(true);
        metrics.set_cluster_up(true);
        metrics.record_cluster_call(0.001, true);
        metrics
    }

    #[test]
    fn equal_labels_count_in_one_series_wherever_their_texts_are() {
        let metrics = Metrics::default();
        let elsewhere =
            |text: &str| -> &'static str { Box::leak(text.to_owned().into_boxed_str()) };
        for cache in ["hit", elsewhere("hit"), "miss", elsewhere("miss"), "hit"] {
            let labels = RequestLabels {
                route: elsewhere("/export/connections"),
                method: "GET",
                status: 200,
                cache,
            };
            metrics.record_request(labels, Instant::now());
        }
        let text = metrics.render(Snapshot::default(), Format::Prometheus);
        for series in [
            "itwin_proxy_requests_total{route=\"/export/connections\",method=\"GET\",status=\"200\",cache=\"hit\"} 3",
            "itwin_proxy_requests_total{route=\"/export/connections\",method=\"GET\",status=\"200\",cache=\"miss\"} 2",
            "itwin_proxy_request_duration_seconds_count{route=\"/export/connections\",cache=\"hit\"} 3",
        ] {
            assert!(text.contains(series), "{series} not in\n{text}");
        }
    }

    #[test]
    fn every_contract_metric_is_exported() {
        let snapshot = Snapshot {
            cache_entries: 3,
            cache_bytes: 1024,
            in_flight: 2,
        };
        let text = recorded().render(snapshot, Format::Prometheus);
        for name in [
            "itwin_proxy_build_info{version=\"",
            "itwin_proxy_requests_total{route=\"/export/connections\",method=\"GET\",status=\"200\",cache=\"hit\"} 1",
            "itwin_proxy_request_duration_seconds_count{route=\"/export/connections\",cache=\"hit\"} 1",
            "itwin_proxy_requests_in_flight 2",
            "itwin_proxy_upstream_requests_total{status=\"200\"} 1",
            "itwin_proxy_upstream_requests_total{status=\"connect\"} 1",
            "itwin_proxy_upstream_request_duration_seconds_count 2",
            "itwin_proxy_cache_entries 3",
            "itwin_proxy_cache_bytes 1024",
            "itwin_proxy_cache_evictions_total{reason=\"size\"} 1",
            "itwin_proxy_ratelimit_delayed_total 1",
            "itwin_proxy_ratelimit_rejected_total 0",
            "itwin_proxy_ratelimit_queue_depth 0",
            "itwin_proxy_upstream_retry_after_total 0",
            "itwin_proxy_signing_key_fetches_total{result=\"ok\"} 1",
            "process_resident_memory_bytes ",
            "process_open_fds ",
            "itwin_proxy_cluster_up 1",
            "itwin_proxy_cluster_errors_total 1",
            "itwin_proxy_cluster_call_duration_seconds_count 1",
        ] {
            assert!(text.contains(name), "{name} missing in\n{text}");
        }
    }

    #[test]
    fn counters_are_named_as_their_samples_in_the_text_format() {
        let metrics = recorded();
        let text = metrics.render(Snapshot::default(), Format::Prometheus);
        assert!(text.contains("# TYPE itwin_proxy_requests_total counter\n"));
        assert!(text.contains("# HELP itwin_proxy_requests_total Requests answered"));
        assert!(text.contains("# TYPE itwin_proxy_cache_entries gauge\n"));
        assert!(!text.contains("# EOF"));
        let open = metrics.render(Snapshot::default(), Format::OpenMetrics);
        assert!(open.contains("# TYPE itwin_proxy_requests counter\n"));
        assert!(open.ends_with("# EOF\n"));
    }

    #[test]
    fn a_queued_call_counts_until_it_leaves() {
        let metrics = Metrics::default();
        let queued = metrics.queued();
        assert_eq!(metrics.ratelimit_queued.get(), 1);
        drop(queued);
        assert_eq!(metrics.ratelimit_queued.get(), 0);
    }
}
