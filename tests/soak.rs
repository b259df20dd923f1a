//! A soak of mixed traffic through upstream faults: every request gets a whole answer.
//!
//! Clients on keep-alive connections send cached-route reads (genuine and forged tokens),
//! writes, writes with bodies over `server.max_request_body`, pass-through reads and
//! requests without a token, while the upstream fails now and then (5xx, 429 with a
//! `Retry-After` that pauses every call, dropped connections) and a tight budget refuses
//! calls. No request may end without an answer (a closed connection, a broken pipe, a cut
//! body), and every status is one the contract names. It runs for `SOAK_SECONDS` (3 by
//! default; 45 for the soak the hardening work was judged by).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method};
use itwin_proxy_sim::{DEMO_IMODEL_ID, Failure, SimConfig, TokenSpec};
use support::{Harness, rate_limit};
use tokio::time::Instant;

/// Statuses the proxy or the upstream may answer with in this traffic.
const EXPECTED: [u16; 11] = [200, 201, 204, 401, 403, 404, 413, 429, 500, 502, 503];

/// One request of the mix.
fn nth_request(n: usize, genuine: &str, forged: &str) -> (Method, String, HeaderMap, Bytes) {
    let page = |skip: usize| {
        format!(
            "/export/connections?imodelId={DEMO_IMODEL_ID}&$top=3&$skip={}",
            skip % 6
        )
    };
    let json = |token: &str| {
        let mut headers = support::bearer(token);
        headers.insert("content-type", "application/json".parse().unwrap());
        headers
    };
    let create = Bytes::from(
        serde_json::json!({
            "iModelId": DEMO_IMODEL_ID, "displayName": format!("soak-{n}"),
            "authenticationType": "User"
        })
        .to_string(),
    );
    match n % 7 {
        0 | 1 => (Method::GET, page(n), support::bearer(genuine), Bytes::new()),
        2 => (Method::GET, page(n), support::bearer(forged), Bytes::new()),
        3 => (
            Method::POST,
            "/export/connections".into(),
            json(genuine),
            create,
        ),
        // Over `server.max_request_body`: answered before the body is read.
        4 => (
            Method::POST,
            "/export/connections".into(),
            json(genuine),
            Bytes::from(vec![b' '; 96 * 1024]),
        ),
        5 => (
            Method::GET,
            format!("/export/connections/soak-{}", n % 3),
            support::bearer(genuine),
            Bytes::new(),
        ),
        _ => (Method::GET, page(n), HeaderMap::new(), Bytes::new()),
    }
}

/// The upstream failure injected `n`-th: mostly failures of one call, now and then a
/// `Retry-After` that pauses every call for a second.
fn nth_failure(n: usize) -> Failure {
    match n % 8 {
        0 | 4 => Failure::Status(500),
        1 | 5 => Failure::Close,
        2 | 6 => Failure::ServiceUnavailable { retry_after: None },
        3 => Failure::TooManyRequests {
            retry_after: Some("1".into()),
        },
        _ => Failure::ServiceUnavailable {
            retry_after: Some("1".into()),
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_traffic_through_upstream_faults_always_gets_an_answer() {
    let seconds: u64 = std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let h = Arc::new(
        Harness::start_with(SimConfig::default(), |settings| {
            rate_limit(settings, 100.0, 20, Duration::from_millis(100));
            settings.server.max_request_body = 64 * 1024;
        })
        .await,
    );
    let genuine = h.sim.token(&TokenSpec::new("alice"));
    let forged = h.sim.forged_token(&TokenSpec::new("alice"));
    let deadline = Instant::now() + Duration::from_secs(seconds);

    let faults = tokio::spawn({
        let sim = h.sim.clone();
        async move {
            let mut n = 0;
            while Instant::now() < deadline {
                sim.fail_next(1, nth_failure(n));
                n += 1;
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
        }
    });
    let clients: Vec<_> = (0..8)
        .map(|client| {
            let (h, genuine, forged) = (Arc::clone(&h), genuine.clone(), forged.clone());
            tokio::spawn(async move {
                let http = support::client();
                let (mut statuses, mut failures) = (BTreeMap::new(), Vec::new());
                let mut n = client;
                while Instant::now() < deadline {
                    let (method, path, headers, body) = nth_request(n, &genuine, &forged);
                    let uri = format!("{}{path}", h.url());
                    let sent = support::within(support::try_request(
                        &http,
                        method.clone(),
                        &uri,
                        headers,
                        body,
                    ))
                    .await;
                    match sent {
                        Ok(answer) => *statuses.entry(answer.status.as_u16()).or_insert(0) += 1,
                        Err(error) => failures.push(format!("{method} {path}: {error}")),
                    }
                    n += 8;
                }
                (statuses, failures)
            })
        })
        .collect();

    let mut statuses = BTreeMap::new();
    let mut failures = Vec::new();
    for client in clients {
        let (seen, failed) = client.await.unwrap();
        for (status, count) in seen {
            *statuses.entry(status).or_insert(0) += count;
        }
        failures.extend(failed);
    }
    faults.await.unwrap();

    assert!(
        failures.is_empty(),
        "{} requests got no whole answer, e.g. {:?}; answered: {statuses:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    let unexpected: Vec<_> = statuses
        .keys()
        .filter(|status| !EXPECTED.contains(status))
        .collect();
    assert!(unexpected.is_empty(), "unexpected statuses in {statuses:?}");
    let answered: u64 = statuses.values().sum();
    assert!(answered >= 100, "too little traffic to judge: {statuses:?}");
    for status in [200, 401, 413, 429] {
        assert!(
            statuses.contains_key(&status),
            "the mix never met {status}: {statuses:?}"
        );
    }
}
