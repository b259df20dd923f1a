//! The monitoring shipped in deploy/monitoring reads only what the proxy exports: every
//! `itwin_proxy_*` metric the Grafana dashboard and the alert rules use, with every label they
//! select on, is in `/metrics` of a running proxy that has served a miss and a hit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use itwin_proxy_sim::DEMO_IMODEL_ID;
use support::{Harness, starts_with_hit};

const DASHBOARD: &str = "deploy/monitoring/grafana-dashboard.json";
const RULES: &str = "deploy/monitoring/alerts.yaml";

/// Labels Prometheus adds to what it scrapes: not the proxy's to export.
const TARGET_LABELS: [&str; 4] = ["instance", "job", "namespace", "pod"];

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every `expr` of the dashboard's panels and variables' queries.
fn dashboard_queries() -> Vec<String> {
    fn walk(value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(members) => {
                for (key, member) in members {
                    match member {
                        serde_json::Value::String(s) if key == "expr" || key == "definition" => {
                            out.push(s.clone());
                        }
                        _ => walk(member, out),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|item| walk(item, out)),
            _ => {}
        }
    }
    let dashboard: serde_json::Value = serde_json::from_str(&read(DASHBOARD)).unwrap();
    let mut queries = Vec::new();
    walk(&dashboard, &mut queries);
    queries
}

/// The metric names of a query that start with `itwin_proxy_`, each with the label names
/// selected on at each use (`name{label="..", other=~".."}`).
fn used_metrics(query: &str, used: &mut BTreeMap<String, BTreeSet<String>>) {
    let mut rest = query;
    while let Some(at) = rest.find("itwin_proxy_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        rest = &tail[end..];
        if end == "itwin_proxy_".len() {
            continue;
        }
        let labels = used.entry(tail[..end].to_owned()).or_default();
        if let Some(selector) = rest.strip_prefix('{') {
            let close = selector.find('}').expect("a closed label selector");
            for matcher in selector[..close].split(',') {
                let name = matcher.split(['=', '!']).next().unwrap_or_default().trim();
                if !name.is_empty() && !TARGET_LABELS.contains(&name) {
                    labels.insert(name.to_owned());
                }
            }
            rest = &selector[close..];
        }
    }
}

/// The sample names of an exposition with the label names each has, plus the names implied by
/// each family's `# TYPE` (a counter's `_total`, a histogram's `_bucket`, `_sum`, `_count`),
/// so that a family with no sample yet still counts as exported.
fn exported(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut names: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text.lines() {
        if let Some(declared) = line.strip_prefix("# TYPE ") {
            let mut parts = declared.split_whitespace();
            let (name, kind) = (parts.next().unwrap(), parts.next().unwrap());
            let suffixes: &[&str] = match kind {
                "counter" => &["_total"],
                "histogram" => &["_bucket", "_sum", "_count"],
                _ => &[""],
            };
            for suffix in suffixes {
                names.entry(format!("{name}{suffix}")).or_default();
            }
        } else if !line.starts_with('#') && !line.is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            let labels = names.entry(line[..end].to_owned()).or_default();
            if let Some(pairs) = line[end..].strip_prefix('{') {
                for pair in pairs.split(',') {
                    if let Some((label, _)) = pair.split_once('=') {
                        labels.insert(label.trim().to_owned());
                    }
                }
            }
        }
    }
    names
}

#[test]
fn the_dashboard_and_the_rules_are_what_they_claim() {
    let queries = dashboard_queries();
    assert!(queries.len() >= 10, "{queries:?}");
    let rules = read(RULES);
    for alert in [
        "ItwinProxyUpstreamErrors",
        "ItwinProxyTooManyRequests",
        "ItwinProxyUpstreamPaused",
        "ItwinProxyHitRatioCollapsed",
        "ItwinProxyNotReady",
    ] {
        assert!(rules.contains(&format!("alert: {alert}\n")), "{alert}");
    }
}

#[tokio::test]
async fn every_metric_the_monitoring_uses_is_exported() {
    let mut used = BTreeMap::new();
    for query in dashboard_queries() {
        used_metrics(&query, &mut used);
    }
    // Comments and descriptions included: a metric they name must exist too.
    used_metrics(&read(RULES), &mut used);
    for name in [
        "itwin_proxy_requests_total",
        "itwin_proxy_upstream_requests_total",
        "itwin_proxy_upstream_request_duration_seconds_bucket",
        "itwin_proxy_cache_bytes",
        "itwin_proxy_ratelimit_delayed_total",
        "itwin_proxy_ratelimit_rejected_total",
        "itwin_proxy_upstream_retry_after_total",
    ] {
        assert!(
            used.contains_key(name),
            "the monitoring does not use {name}"
        );
    }

    let h = Harness::start().await;
    let token = h.token("alice");
    let page = format!("/export/connections?imodelId={DEMO_IMODEL_ID}&$top=5");
    assert_eq!(h.get(&page, Some(&token)).await.status, 200);
    assert!(starts_with_hit(
        h.get(&page, Some(&token)).await.cache_status()
    ));
    let metrics = h.admin("/metrics").await;
    assert_eq!(metrics.status, 200);
    let exported = exported(&String::from_utf8_lossy(&metrics.body));

    for (name, labels) in &used {
        let have = exported
            .get(name)
            .unwrap_or_else(|| panic!("{name} is used but not exported"));
        let histogram_le = name.ends_with("_bucket");
        for label in labels {
            assert!(
                have.contains(label) || (histogram_le && label == "le"),
                "{name} has no label {label} (it has {have:?})"
            );
        }
    }
}
