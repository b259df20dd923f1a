//! Cluster measurements (not a criterion bench: each number is one bounded scenario).
//! Needs the Redis on 127.0.0.1:6379. Run: `cargo bench --bench cluster`.
//!
//! 1. Invalidation propagation: a write through one replica until another serves the new
//!    list (polled every millisecond), 30 times.
//! 2. Added miss latency: sequential misses (each a new page) through a proxy alone and
//!    through a replica of a cluster, 200 each, the simulator answering at once.
//! 3. Upstream calls and 429s for 1, 3 and 6 replicas under the same offered load (8x the
//!    quota for 4 s), each replica alone (no Redis) and as a cluster.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use itwin_proxy::app::{self, RunningProxy};
use itwin_proxy::config::{RateLimitKey, Settings};
use itwin_proxy_sim::{DEMO_IMODEL_ID, SimConfig, SimQuota, Simulator, TokenSpec};

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// Status, whether the upstream's own 429 headers came with it, and the body.
async fn send(
    client: &HttpClient,
    method: Method,
    uri: &str,
    token: &str,
    body: &str,
) -> (u16, bool, Bytes) {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    let response = client.request(request).await.unwrap();
    let status = response.status().as_u16();
    let upstream = response
        .headers()
        .contains_key("itwinplatform-ratelimited-tier");
    (
        status,
        upstream,
        response.into_body().collect().await.unwrap().to_bytes(),
    )
}

async fn proxies(
    sim: &Simulator,
    n: usize,
    redis: Option<&str>,
    adjust: impl Fn(&mut Settings),
) -> Vec<RunningProxy> {
    let prefix = format!(
        "bench-{}-{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos()
    );
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let mut running = Vec::new();
    for _ in 0..n {
        let mut settings = Settings::default();
        settings.server.listen = "127.0.0.1:0".parse().unwrap();
        settings.server.admin_listen = "127.0.0.1:0".parse().unwrap();
        settings.upstream.base_url = sim.base_url().parse().unwrap();
        settings.log.level = "error".into();
        if let Some(url) = redis {
            settings.cluster.redis_url = Some(url.parse().unwrap());
            settings.cluster.key_prefix = format!("{prefix}-{stamp}");
            settings.cluster.replicas_hint = u32::try_from(n).unwrap();
        }
        adjust(&mut settings);
        running.push(app::start(settings).await.unwrap());
    }
    running
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    samples[((samples.len() - 1) as f64 * p).round() as usize]
}

async fn propagation(client: &HttpClient) {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let token = sim.token(&TokenSpec::new("alice"));
    // A budget that never makes a call wait: only propagation is measured.
    let replicas = proxies(&sim, 2, Some("redis://127.0.0.1:6379"), |s| {
        s.rate_limit.requests_per_second = 1e6;
        s.rate_limit.burst = 1_000_000;
    })
    .await;
    let list = format!("/export/connections?imodelId={DEMO_IMODEL_ID}");
    let url = |r: usize, path: &str| format!("http://{}{path}", replicas[r].addr());
    let mut samples = Vec::new();
    for n in 0..30 {
        for r in 0..2 {
            send(client, Method::GET, &url(r, &list), &token, "").await;
        }
        let body = format!(
            r#"{{"iModelId":"{DEMO_IMODEL_ID}","displayName":"bench-{n}","authenticationType":"User"}}"#
        );
        let (status, _, created) = send(
            client,
            Method::POST,
            &url(0, "/export/connections"),
            &token,
            &body,
        )
        .await;
        assert_eq!(status, 201);
        let id: serde_json::Value = serde_json::from_slice(&created).unwrap();
        let id = id["connection"]["id"].as_str().unwrap().to_owned();
        let written = Instant::now();
        loop {
            let (_, _, page) = send(client, Method::GET, &url(1, &list), &token, "").await;
            if String::from_utf8_lossy(&page).contains(&id) {
                samples.push(written.elapsed());
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    println!(
        "propagation (write on A until B lists it), 30 writes: median {:?}, p95 {:?}, max {:?}",
        percentile(&mut samples, 0.5),
        percentile(&mut samples, 0.95),
        percentile(&mut samples, 1.0)
    );
}

async fn miss_latency(client: &HttpClient) {
    for (label, redis) in [("alone", None), ("cluster", Some("redis://127.0.0.1:6379"))] {
        let sim = Simulator::start(SimConfig::default()).await.unwrap();
        let token = sim.token(&TokenSpec::new("alice"));
        let proxy = proxies(&sim, 1, redis, |s| {
            s.rate_limit.requests_per_second = 1e6;
            s.rate_limit.burst = 1_000_000;
        })
        .await;
        let url = |skip: u32| {
            format!(
                "http://{}/export/connections?imodelId={DEMO_IMODEL_ID}&$top=1&$skip={skip}",
                proxy[0].addr()
            )
        };
        // Known-valid first, so every miss looks in the shared tier too.
        send(client, Method::GET, &url(100_000), &token, "").await;
        let mut samples = Vec::new();
        for skip in 0..200 {
            let started = Instant::now();
            let (status, _, _) = send(client, Method::GET, &url(skip), &token, "").await;
            samples.push(started.elapsed());
            assert_eq!(status, 200);
        }
        println!(
            "miss latency {label}: median {:?}, p95 {:?}",
            percentile(&mut samples, 0.5),
            percentile(&mut samples, 0.95)
        );
    }
}

async fn replicas(client: &HttpClient) {
    let (rps, burst) = (10.0, 5);
    let load = Duration::from_secs(4);
    println!("| replicas | mode | offered | upstream calls | upstream 429s | proxy 429s |");
    println!("|---|---|---|---|---|---|");
    for n in [1, 3, 6] {
        for (label, redis) in [("alone", None), ("cluster", Some("redis://127.0.0.1:6379"))] {
            let sim = Simulator::start(SimConfig {
                quota: Some(SimQuota {
                    requests_per_second: rps * 1.05,
                    burst: burst + 1,
                }),
                ..SimConfig::default()
            })
            .await
            .unwrap();
            let token = sim.token(&TokenSpec::new("alice"));
            let running = Arc::new(
                proxies(&sim, n, redis, |s| {
                    s.rate_limit.requests_per_second = rps;
                    s.rate_limit.burst = burst;
                    s.rate_limit.max_wait = Duration::from_millis(500);
                    s.rate_limit.key = RateLimitKey::Global;
                })
                .await,
            );
            let offered = (8.0 * rps * load.as_secs_f64()) as u32;
            let gap = load / offered;
            let started = Instant::now();
            let mut tasks = Vec::new();
            for i in 0..offered {
                let (client, token, running) =
                    (client.clone(), token.clone(), Arc::clone(&running));
                tasks.push(tokio::spawn(async move {
                    let proxy = &running[i as usize % running.len()];
                    let uri = format!(
                        "http://{}/export/connections?imodelId={DEMO_IMODEL_ID}&$top=1&$skip={i}",
                        proxy.addr()
                    );
                    let (status, upstream, _) = send(&client, Method::GET, &uri, &token, "").await;
                    status == 429 && !upstream
                }));
                tokio::time::sleep_until((started + gap * (i + 1)).into()).await;
            }
            let mut proxy_429 = 0;
            for task in tasks {
                proxy_429 += u32::from(task.await.unwrap());
            }
            let upstream_429 = sim.quota_rejections();
            let calls = sim.count("GET", "/export/connections");
            println!("| {n} | {label} | {offered} | {calls} | {upstream_429} | {proxy_429} |");
        }
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client: HttpClient = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
        propagation(&client).await;
        miss_latency(&client).await;
        replicas(&client).await;
    });
}
