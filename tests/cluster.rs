//! Several proxies sharing one Redis act as one toward the upstream: one budget and one pause
//! per app, shared proofs and pages, writes seen everywhere, and Redis failing never fails a
//! request. Three proxies run in-process against one simulator (which enforces the quota)
//! and the Redis on 127.0.0.1:6379, each test under a key prefix of its own; the test that
//! kills Redis runs a `redis-server` of its own.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method};
use itwin_proxy::app::{self, RunningProxy};
use itwin_proxy::config::{RateLimitKey, Settings};
use itwin_proxy_sim::{DEMO_IMODEL_ID, Failure, SimConfig, SimQuota, Simulator, TokenSpec};
use support::{Answer, bearer, client, page_at, rate_limit, request, settings_for, within};

/// Three proxies in front of one simulator, sharing one Redis.
struct Cluster {
    sim: Simulator,
    proxies: Vec<RunningProxy>,
    client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        http_body_util::Full<Bytes>,
    >,
}

/// A key prefix no other test (or run) uses.
fn prefix(test: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("it-{test}-{}-{n}-{nanos}", std::process::id())
}

impl Cluster {
    /// `replicas` proxies on `redis_url`; `adjust` changes every proxy's settings.
    async fn start(
        redis_url: &str,
        test: &str,
        sim: SimConfig,
        replicas: usize,
        adjust: impl Fn(&mut Settings),
    ) -> Self {
        let sim = Simulator::start(sim).await.expect("simulator starts");
        let prefix = prefix(test);
        let mut proxies = Vec::new();
        for _ in 0..replicas {
            let mut settings = settings_for(&sim);
            settings.cluster.redis_url = Some(redis_url.parse().unwrap());
            settings.cluster.key_prefix = prefix.clone();
            // Generous for a busy machine: a slow call would switch to the local budgets.
            settings.cluster.timeout = Duration::from_secs(1);
            settings.cluster.replicas_hint = u32::try_from(replicas).unwrap();
            adjust(&mut settings);
            proxies.push(app::start(settings).await.expect("proxy starts"));
        }
        Self {
            sim,
            proxies,
            client: client(),
        }
    }

    async fn get(&self, replica: usize, path: &str, token: &str) -> Answer {
        let uri = format!("http://{}{path}", self.proxies[replica].addr());
        request(&self.client, Method::GET, &uri, bearer(token), Bytes::new()).await
    }

    async fn metrics(&self, replica: usize) -> String {
        let uri = format!("http://{}/metrics", self.proxies[replica].admin_addr());
        let answer = request(
            &self.client,
            Method::GET,
            &uri,
            HeaderMap::new(),
            Bytes::new(),
        )
        .await;
        String::from_utf8_lossy(&answer.body).into_owned()
    }

    fn token(&self, sub: &str) -> String {
        self.sim.token(&TokenSpec::new(sub))
    }

    fn list_calls(&self) -> u64 {
        self.sim.count("GET", "/export/connections")
    }
}

const REDIS: &str = "redis://127.0.0.1:6379";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_under_eightfold_overload_keep_the_quota() {
    let (rps, burst) = (10.0, 5);
    let sim = SimConfig {
        // The upstream counts with a little slack, as a real counting window does.
        quota: Some(SimQuota {
            requests_per_second: rps * 1.05,
            burst: burst + 1,
        }),
        ..SimConfig::default()
    };
    let cluster = Arc::new(
        Cluster::start(REDIS, "overload", sim, 3, |settings| {
            rate_limit(settings, rps, burst, Duration::from_millis(500));
            settings.rate_limit.key = RateLimitKey::Global;
        })
        .await,
    );
    let token = cluster.token("alice");
    // 8x the rate for 3 s, spread evenly over the three replicas, every request a new page.
    let load = Duration::from_secs(3);
    let offered = (8.0 * rps * load.as_secs_f64()) as u32;
    let gap = load / offered;
    let started = Instant::now();
    let mut requests = Vec::new();
    for n in 0..offered {
        let (cluster, token) = (Arc::clone(&cluster), token.clone());
        requests.push(tokio::spawn(async move {
            cluster.get(n as usize % 3, &page_at(1, n), &token).await
        }));
        tokio::time::sleep_until((started + gap * (n + 1)).into()).await;
    }
    let (mut served, mut refused) = (0u32, 0u32);
    for request in requests {
        let answer = within(request).await.unwrap();
        match answer.status.as_u16() {
            200 => served += 1,
            429 => {
                assert_eq!(
                    answer.json()["error"]["code"],
                    "TooManyRequests",
                    "the proxy's own"
                );
                refused += 1;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(cluster.sim.quota_rejections(), 0, "no upstream 429");
    let calls = cluster.list_calls();
    assert_eq!(calls, u64::from(served));
    let allowed = f64::from(burst) + rps * load.as_secs_f64();
    assert!(
        calls as f64 >= 0.9 * allowed,
        "{calls} upstream calls of the {allowed} allowed in {load:?} ({refused} refused)"
    );
    assert!(
        calls as f64 <= allowed + rps,
        "{calls} of {allowed}: over the quota"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_met_by_one_replica_holds_the_others() {
    let cluster = Cluster::start(REDIS, "pause", SimConfig::default(), 3, |settings| {
        settings.rate_limit.max_wait = Duration::ZERO;
    })
    .await;
    let token = cluster.token("alice");
    // Trusted on every replica first (its calls then draw from the app's budget).
    for replica in 0..3 {
        assert_eq!(
            cluster.get(replica, &page_at(1, 100), &token).await.status,
            200
        );
    }
    cluster.sim.fail_next(
        1,
        Failure::TooManyRequests {
            retry_after: Some("30".into()),
        },
    );
    let met = cluster.get(0, &page_at(1, 1), &token).await;
    assert_eq!(met.status, 429, "the upstream's 429 passes through");
    let calls = cluster.sim.request_count();
    for replica in 1..3 {
        let held = cluster.get(replica, &page_at(1, 2), &token).await;
        assert_eq!(held.status, 429);
        assert_eq!(held.json()["error"]["code"], "TooManyRequests");
        let retry_after: u64 = held.header("retry-after").unwrap().parse().unwrap();
        assert!((25..=30).contains(&retry_after), "{retry_after}");
    }
    assert_eq!(
        cluster.sim.request_count(),
        calls,
        "nothing reached the upstream"
    );
    // Cached pages are still served during the pause.
    let hit = cluster.get(1, &page_at(1, 100), &token).await;
    assert_eq!(hit.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_filled_on_one_replica_is_a_hit_on_the_others() {
    let cluster = Cluster::start(REDIS, "shared", SimConfig::default(), 3, |_| {}).await;
    let token = cluster.token("alice");
    let first = cluster.get(0, &page_at(1, 0), &token).await;
    assert_eq!(first.cache_status(), "itwin-proxy; fwd=uri-miss; stored");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for replica in 1..3 {
        let shared = cluster.get(replica, &page_at(1, 0), &token).await;
        assert_eq!(shared.status, 200);
        let status = shared.cache_status();
        assert!(
            status.starts_with("itwin-proxy; hit; ttl=") && status.ends_with("; detail=shared"),
            "{status}"
        );
        assert_eq!(shared.body, first.body);
        let age: u64 = shared.header("age").unwrap().parse().unwrap();
        assert!(age >= 1, "the page keeps its original age: {age}");
        let again = cluster.get(replica, &page_at(1, 0), &token).await;
        let status = again.cache_status();
        assert!(
            status.starts_with("itwin-proxy; hit; ttl=") && !status.contains("shared"),
            "{status}"
        );
        let metrics = cluster.metrics(replica).await;
        assert!(
            metrics.contains(
                "route=\"/export/connections\",method=\"GET\",status=\"200\",cache=\"shared\"} 1"
            ),
            "{metrics}"
        );
    }
    assert_eq!(cluster.list_calls(), 1);
    // Another subject does not get alice's page.
    let bob = cluster.token("bob");
    let other = cluster.get(1, &page_at(1, 0), &bob).await;
    assert!(
        !other.cache_status().contains("hit"),
        "{}",
        other.cache_status()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_misses_on_three_replicas_make_one_upstream_call() {
    let cluster =
        Arc::new(Cluster::start(REDIS, "collapse", SimConfig::default(), 3, |_| {}).await);
    let token = cluster.token("alice");
    // The token proven once (on one replica) is known-valid on all.
    assert_eq!(cluster.get(0, &page_at(1, 50), &token).await.status, 200);
    let before = cluster.list_calls();
    cluster.sim.set_delay(Duration::from_millis(300));
    let requests: Vec<_> = (0..3 * 64)
        .map(|n| {
            let (cluster, token) = (Arc::clone(&cluster), token.clone());
            tokio::spawn(async move { cluster.get(n % 3, &page_at(1, 7), &token).await })
        })
        .collect();
    let mut bodies = Vec::new();
    for request in requests {
        let answer = within(request).await.unwrap();
        assert_eq!(answer.status, 200);
        bodies.push(answer.body);
    }
    assert!(bodies.windows(2).all(|pair| pair[0] == pair[1]));
    assert_eq!(
        cluster.list_calls() - before,
        1,
        "one upstream call for 3 x 64 clients"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_through_one_replica_reaches_the_others() {
    let cluster = Cluster::start(REDIS, "writes", SimConfig::default(), 3, |_| {}).await;
    let token = cluster.token("alice");
    let list = format!("/export/connections?imodelId={DEMO_IMODEL_ID}");
    for replica in 0..3 {
        assert_eq!(cluster.get(replica, &list, &token).await.status, 200);
    }
    let created = {
        let uri = format!("http://{}/export/connections", cluster.proxies[0].addr());
        let body = serde_json::json!({
            "iModelId": DEMO_IMODEL_ID, "displayName": "fresh", "authenticationType": "User"
        });
        request(
            &cluster.client,
            Method::POST,
            &uri,
            bearer(&token),
            Bytes::from(body.to_string()),
        )
        .await
    };
    assert_eq!(created.status, 201);
    let id = created.json()["connection"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let written = Instant::now();
    for replica in 1..3 {
        loop {
            let answer = cluster.get(replica, &list, &token).await;
            let listed = answer.json()["connections"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["id"] == id.as_str());
            if listed {
                break;
            }
            assert!(
                written.elapsed() < Duration::from_secs(2),
                "replica {replica} still serves the old list"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// A `redis-server` of the test's own, on a free port; killed on drop.
struct OwnRedis {
    port: u16,
    child: Child,
}

impl OwnRedis {
    fn start(port: Option<u16>) -> Self {
        let port = port.unwrap_or_else(|| {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        });
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| {
                panic!("redis-server is not on PATH ({error}): the cluster tests need Redis 7")
            });
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { port, child }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Stops it (by its PID) and waits until it is gone.
    fn kill(&mut self) {
        let _killed = self.child.kill();
        let _reaped = self.child.wait();
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits until `metrics` of every replica shows the cluster's Redis as `up`.
async fn until_cluster(cluster: &Cluster, up: bool) {
    let wanted = format!("itwin_proxy_cluster_up {}", u8::from(up));
    let started = Instant::now();
    for replica in 0..cluster.proxies.len() {
        while !cluster
            .metrics(replica)
            .await
            .lines()
            .any(|line| line == wanted)
        {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "never {wanted}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_killed_and_restarted_fails_no_request_and_sharing_resumes() {
    let mut redis = OwnRedis::start(None);
    let cluster = Arc::new(
        Cluster::start(
            &redis.url(),
            "restart",
            SimConfig::default(),
            2,
            |settings| {
                settings.rate_limit.requests_per_second = 100.0;
                settings.rate_limit.burst = 50;
                settings.cluster.timeout = Duration::from_millis(100);
            },
        )
        .await,
    );
    let token = cluster.token("alice");
    assert_eq!(cluster.get(0, &page_at(1, 0), &token).await.status, 200);
    until_cluster(&cluster, true).await;

    // Traffic keeps flowing on both replicas while Redis goes away and comes back.
    let running = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let traffic: Vec<_> = (0..2)
        .map(|replica| {
            let (cluster, token, running) =
                (Arc::clone(&cluster), token.clone(), Arc::clone(&running));
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                let mut n = 0;
                while running.load(Ordering::SeqCst) {
                    // A cached page and a new one, in turn.
                    let path = if n % 2 == 0 {
                        page_at(1, 0)
                    } else {
                        page_at(1, 1000 + n)
                    };
                    statuses.push(cluster.get(replica, &path, &token).await.status.as_u16());
                    n += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                statuses
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let port = redis.port;
    redis.kill();
    until_cluster(&cluster, false).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(redis);
    let _redis = OwnRedis::start(Some(port));
    until_cluster(&cluster, true).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    running.store(false, Ordering::SeqCst);
    for replica in traffic {
        let statuses = within(replica).await.unwrap();
        assert!(statuses.len() > 10, "{statuses:?}");
        assert!(
            statuses.iter().all(|s| *s == 200 || *s == 429),
            "no 5xx while Redis was away: {statuses:?}"
        );
        assert!(statuses.iter().filter(|s| **s == 200).count() > statuses.len() / 2);
    }
    // Sharing resumes: a page filled on one replica is a shared hit on the other.
    let fresh = page_at(1, 5000);
    assert_eq!(cluster.get(0, &fresh, &token).await.status, 200);
    let shared = cluster.get(1, &fresh, &token).await;
    let cluster_lines = |text: String| {
        text.lines()
            .filter(|line| {
                line.starts_with("itwin_proxy_cluster_errors")
                    || line.starts_with("itwin_proxy_cluster_up")
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    assert!(
        shared.cache_status().ends_with("detail=shared"),
        "{}; {}; {}",
        shared.cache_status(),
        cluster_lines(cluster.metrics(0).await),
        cluster_lines(cluster.metrics(1).await)
    );
}
