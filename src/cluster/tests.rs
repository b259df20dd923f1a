//! The cluster's parts against the real Redis on 127.0.0.1:6379, each test under a key
//! prefix of its own; two links stand for two replicas.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{HeaderMap, HeaderValue};
use tokio::time::Instant;

use super::error::ClusterError;
use super::sync::Handler;
use super::*;
use crate::auth::Subject;
use crate::cache::{CacheKey, PageQuery};

const REDIS: &str = "redis://127.0.0.1:6379/0";
const WAIT: Duration = Duration::from_secs(10);

/// A prefix no other test (or run) uses.
fn prefix(test: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("test-{test}-{}-{n}-{nanos}", std::process::id())
}

fn settings(url: &str, prefix: &str) -> ClusterSettings {
    ClusterSettings {
        redis_url: Some(url.parse().unwrap()),
        key_prefix: prefix.to_owned(),
        timeout: Duration::from_millis(500),
        replicas_hint: 3,
        shared_cache: true,
    }
}

/// A replica's link, up.
async fn link(prefix: &str) -> Link {
    let settings = settings(REDIS, prefix);
    let url = settings.redis_url.clone().unwrap();
    let link = Link::new(&settings, &url, None, Arc::new(Metrics::default())).unwrap();
    assert!(
        link.wait_up(WAIT).await,
        "the Redis on 127.0.0.1:6379 must run for these tests"
    );
    link
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

#[tokio::test]
async fn one_budget_across_replicas() {
    let prefix = prefix("budget");
    let (a, b) = (link(&prefix).await, link(&prefix).await);
    let (a, b) = (
        SharedBudgets::new(a, Keys::new(&prefix)),
        SharedBudgets::new(b, Keys::new(&prefix)),
    );
    // One permit a second, two at once.
    let limits = SharedLimits::new(1.0, 2, None);
    assert_eq!(
        a.take("app", &limits, Duration::ZERO).await.unwrap(),
        Decision::Granted(Duration::ZERO)
    );
    assert_eq!(
        b.take("app", &limits, Duration::ZERO).await.unwrap(),
        Decision::Granted(Duration::ZERO)
    );
    let Decision::Refused {
        retry_after,
        paused,
    } = a.take("app", &limits, Duration::ZERO).await.unwrap()
    else {
        panic!("the burst is spent on both replicas together");
    };
    assert!(!paused);
    assert!(
        retry_after > secs(0.5) && retry_after <= secs(1.0),
        "{retry_after:?}"
    );
    // Within max_wait: reserved, in line; the next one waits a period longer.
    let Decision::Granted(first) = b.take("app", &limits, secs(5.0)).await.unwrap() else {
        panic!("a permit due within max_wait is granted");
    };
    let Decision::Granted(second) = a.take("app", &limits, secs(5.0)).await.unwrap() else {
        panic!("a permit due within max_wait is granted");
    };
    assert!(second > first + secs(0.9), "{first:?} then {second:?}");
    // Past max_wait: refused at once, saying when.
    let Decision::Refused { retry_after, .. } = a.take("app", &limits, secs(1.5)).await.unwrap()
    else {
        panic!("a permit not due within max_wait is refused");
    };
    assert!(
        retry_after > secs(2.0) && retry_after <= secs(3.0),
        "{retry_after:?}"
    );
    // Other apps are untouched.
    assert_eq!(
        b.take("other", &limits, Duration::ZERO).await.unwrap(),
        Decision::Granted(Duration::ZERO)
    );
}

#[tokio::test]
async fn hourly_window_caps_the_hour() {
    let prefix = prefix("hourly");
    let budgets = SharedBudgets::new(link(&prefix).await, Keys::new(&prefix));
    // 3 an hour with a per-second burst of 10: all 3 at once, then one past every 3600 s.
    let limits = SharedLimits::new(100.0, 10, Some(3));
    for _ in 0..3 {
        let decision = budgets.take("app", &limits, secs(1.0)).await.unwrap();
        assert!(
            matches!(decision, Decision::Granted(wait) if wait < secs(0.1)),
            "{decision:?}"
        );
    }
    let Decision::Refused { retry_after, .. } =
        budgets.take("app", &limits, secs(60.0)).await.unwrap()
    else {
        panic!("the hourly window is spent");
    };
    assert!(retry_after > secs(3500.0), "{retry_after:?}");
}

#[tokio::test]
async fn a_pause_holds_every_replica_and_doubles_by_default() {
    let prefix = prefix("pause");
    let (link_a, b) = (link(&prefix).await, link(&prefix).await);
    let (a, b) = (
        SharedBudgets::new(link_a.clone(), Keys::new(&prefix)),
        SharedBudgets::new(b, Keys::new(&prefix)),
    );
    let limits = SharedLimits::new(100.0, 10, None);
    let cap = secs(60.0);
    let left = a
        .pause("app", &limits, PauseAsk::For(secs(5.0)), cap)
        .await
        .unwrap();
    assert!(left > secs(4.5) && left <= secs(5.0), "{left:?}");
    let Decision::Refused {
        retry_after,
        paused,
    } = b.take("app", &limits, secs(2.0)).await.unwrap()
    else {
        panic!("the pause met on one replica holds the other");
    };
    assert!(paused);
    assert!(retry_after > secs(4.0), "{retry_after:?}");
    // A pause that fits max_wait is waited out.
    let Decision::Granted(wait) = b.take("app", &limits, secs(10.0)).await.unwrap() else {
        panic!("a pause within max_wait is waited out");
    };
    assert!(wait > secs(4.0), "{wait:?}");
    // Never shortened; capped.
    let left = b
        .pause("app", &limits, PauseAsk::For(secs(1.0)), cap)
        .await
        .unwrap();
    assert!(left > secs(4.0), "{left:?}");
    let left = b
        .pause("app", &limits, PauseAsk::For(secs(3600.0)), cap)
        .await
        .unwrap();
    assert!(left > secs(59.0) && left <= cap, "{left:?}");
    let remaining = a.pause_remaining("app", &limits).await.unwrap();
    assert!(remaining.is_some_and(|r| r > secs(59.0)), "{remaining:?}");
    // Default pauses double across replicas until a success.
    let mut seen = Vec::new();
    for budgets in [&a, &b, &a] {
        seen.push(
            budgets
                .pause("fresh", &limits, PauseAsk::Default, cap)
                .await
                .unwrap(),
        );
    }
    assert!(seen[2] > secs(3.5) && seen[2] <= secs(4.0), "{seen:?}");
    b.end_streak("fresh", &limits).await.unwrap();
    let keys = Keys::new(&prefix);
    let streak: Option<u32> = link_a
        .call(|mut c| async move {
            redis::cmd("HGET")
                .arg(keys.budget("fresh"))
                .arg("streak")
                .query_async(&mut c)
                .await
        })
        .await
        .unwrap();
    assert_eq!(streak, None);
    assert_eq!(a.pause_remaining("idle", &limits).await.unwrap(), None);
}

#[tokio::test]
async fn debt_delays_later_calls_and_idle_budgets_expire() {
    let prefix = prefix("debt");
    let link = link(&prefix).await;
    let budgets = SharedBudgets::new(link.clone(), Keys::new(&prefix));
    let limits = SharedLimits::new(1.0, 1, None);
    for _ in 0..3 {
        budgets.charge("app", &limits).await.unwrap();
    }
    let Decision::Refused { retry_after, .. } =
        budgets.take("app", &limits, secs(1.0)).await.unwrap()
    else {
        panic!("an app in debt waits");
    };
    assert!(
        retry_after > secs(1.5) && retry_after <= secs(3.0),
        "{retry_after:?}"
    );
    let key = Keys::new(&prefix).budget("app");
    let ttl: i64 = link
        .call(|mut c| async move { redis::cmd("PTTL").arg(key).query_async(&mut c).await })
        .await
        .unwrap();
    assert!(
        ttl > 0 && ttl <= 4_500,
        "the budget expires once replenished: {ttl}"
    );
}

#[tokio::test]
async fn replicas_adopt_one_hash_key() {
    let prefix = prefix("hashkey");
    let keys = Keys::new(&prefix);
    let (a, b) = (link(&prefix).await, link(&prefix).await);
    let (first, second) = tokio::join!(
        hash_key::adopt_hash_key(&a, &keys, None),
        hash_key::adopt_hash_key(&b, &keys, None)
    );
    let first = first.unwrap();
    assert_eq!(first, second.unwrap());
    let other_keys = Keys::new(&format!("{prefix}-other"));
    let other = hash_key::adopt_hash_key(&a, &other_keys, None)
        .await
        .unwrap();
    assert_ne!(other, first);
    // A key offered again (after Redis lost it) is the one kept; a stored one wins.
    let offered = Some([9u8; HASH_KEY_LEN]);
    let fresh_keys = Keys::new(&format!("{prefix}-fresh"));
    let kept = hash_key::adopt_hash_key(&b, &fresh_keys, offered)
        .await
        .unwrap();
    assert_eq!(kept, [9u8; HASH_KEY_LEN]);
    let stored = hash_key::adopt_hash_key(&a, &other_keys, offered)
        .await
        .unwrap();
    assert_eq!(stored, other);
}

/// Collects what a follower hears.
fn collector() -> (Handler, Arc<Mutex<Vec<Event>>>) {
    let heard = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&heard);
    let handler: Handler = Arc::new(move |event| sink.lock().unwrap().push(event));
    (handler, heard)
}

async fn until_heard(heard: &Mutex<Vec<Event>>, event: &Event) -> Duration {
    let started = Instant::now();
    while !heard.lock().unwrap().contains(event) {
        assert!(
            started.elapsed() < WAIT,
            "{event:?} never heard: {:?}",
            heard.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    started.elapsed()
}

#[tokio::test]
async fn proofs_are_shared_and_forgetting_reaches_all() {
    let prefix = prefix("proofs");
    let (a, b) = (link(&prefix).await, link(&prefix).await);
    let keys = Keys::new(&prefix);
    let follower = Invalidations::new(b.clone(), keys.clone(), secs(60.0));
    let (handler, heard) = collector();
    follower.follow(handler);
    until_heard(&heard, &Event::Resync).await;
    let (a, b) = (
        SharedProofs::new(a, keys.clone()),
        SharedProofs::new(b, keys),
    );
    let hash = [7u8; 32];
    assert!(!b.is_known(&hash).await.unwrap());
    a.remember(&hash, secs(60.0)).await.unwrap();
    assert!(b.is_known(&hash).await.unwrap());
    b.forget(&hash).await.unwrap();
    assert!(!a.is_known(&hash).await.unwrap());
    until_heard(&heard, &Event::Forget(keys::hex(&hash))).await;
    a.remember(&[8u8; 32], secs(0.05)).await.unwrap();
    tokio::time::sleep(secs(0.2)).await;
    assert!(
        !a.is_known(&[8u8; 32]).await.unwrap(),
        "a proof ends with its token"
    );
}

fn cache_key(subject: &str, imodel: &str) -> CacheKey {
    let query = PageQuery::parse(Some(&format!("imodelId={imodel}"))).unwrap();
    CacheKey::new(Subject::Claim(subject.into()), query, &HeaderMap::new())
}

const TIMES: PageTimes = PageTimes {
    fresh: Duration::from_secs(60),
    keep: Duration::from_secs(120),
    lock: Duration::from_secs(5),
};

#[tokio::test]
async fn pages_fill_once_and_serve_every_replica() {
    let prefix = prefix("pages");
    let (a, b) = (link(&prefix).await, link(&prefix).await);
    let keys = Keys::new(&prefix);
    let (a, b) = (SharedPages::new(a, keys.clone()), SharedPages::new(b, keys));
    let namer = PageNamer::new(b"key");
    let page = namer.page(&cache_key("alice", "m1"), "http://proxy");
    assert_ne!(page, namer.page(&cache_key("bob", "m1"), "http://proxy"));
    assert_ne!(
        page,
        namer.page(&cache_key("alice", "m1"), "http://other-proxy")
    );
    assert_ne!(
        page,
        PageNamer::new(b"other").page(&cache_key("alice", "m1"), "http://proxy")
    );

    let filler = a.lookup(&page, &TIMES, true).await.unwrap();
    assert!(filler.page.is_none());
    let FillLock::Taken(token) = filler.lock.clone() else {
        panic!("the first miss takes the fill lock: {filler:?}");
    };
    let waiter = b.lookup(&page, &TIMES, true).await.unwrap();
    assert_eq!(waiter.lock, FillLock::Busy);

    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    let waited = tokio::spawn({
        let (b, page) = (b.clone(), page.clone());
        async move { b.wait_for_fill(&page, &TIMES, Instant::now() + WAIT).await }
    });
    tokio::time::sleep(secs(0.1)).await;
    let stored = a
        .store(
            &page,
            &TIMES,
            &headers,
            b"{\"connections\":[]}",
            &filler.seen,
            Some(&token),
        )
        .await
        .unwrap();
    assert!(stored);
    let found = waited.await.unwrap().unwrap();
    let shared = found.page.expect("the waiter gets the filler's page");
    assert_eq!(&shared.body[..], b"{\"connections\":[]}");
    assert_eq!(shared.headers, headers);
    assert!(shared.age < secs(5.0));
    assert_eq!(found.lock, FillLock::NotAsked, "a fresh page needs no lock");
    // The lock was released with the store.
    let other = namer.page(&cache_key("carol", "m1"), "http://proxy");
    assert!(matches!(
        b.lookup(&other, &TIMES, true).await.unwrap().lock,
        FillLock::Taken(_)
    ));
}

#[tokio::test]
async fn writes_invalidate_pages_and_fills_that_raced_them() {
    let prefix = prefix("writes");
    let (a, b) = (link(&prefix).await, link(&prefix).await);
    let keys = Keys::new(&prefix);
    let sync = Invalidations::new(a.clone(), keys.clone(), secs(600.0));
    let follower = Invalidations::new(b.clone(), keys.clone(), secs(600.0));
    let (handler, heard) = collector();
    follower.follow(handler);
    until_heard(&heard, &Event::Resync).await;
    assert!(follower.is_synced());
    let pages = SharedPages::new(a, keys);
    let namer = PageNamer::new(b"key");
    let page = namer.page(&cache_key("alice", "M1"), "links");
    let other = namer.page(&cache_key("alice", "m2"), "links");
    let headers = HeaderMap::new();

    for target in [&page, &other] {
        let look = pages.lookup(target, &TIMES, false).await.unwrap();
        assert!(
            pages
                .store(target, &TIMES, &headers, b"old", &look.seen, None)
                .await
                .unwrap()
        );
    }
    // A fill looks, then a write lands, then the fill answers: it must not store.
    let racing = pages.lookup(&page, &TIMES, false).await.unwrap();
    sync.announce_purge(Some("m1")).await.unwrap();
    let took = until_heard(&heard, &Event::PurgeIModel("m1".into())).await;
    assert!(took < secs(2.0), "{took:?}");
    assert!(
        pages
            .lookup(&page, &TIMES, false)
            .await
            .unwrap()
            .page
            .is_none(),
        "ids ignore case"
    );
    assert!(
        pages
            .lookup(&other, &TIMES, false)
            .await
            .unwrap()
            .page
            .is_some()
    );
    assert!(
        !pages
            .store(&page, &TIMES, &headers, b"older", &racing.seen, None)
            .await
            .unwrap()
    );
    let fresh = pages.lookup(&page, &TIMES, false).await.unwrap();
    assert!(
        pages
            .store(&page, &TIMES, &headers, b"new", &fresh.seen, None)
            .await
            .unwrap()
    );
    // A purge of everything.
    sync.announce_purge(None).await.unwrap();
    until_heard(&heard, &Event::PurgeAll).await;
    for target in [&page, &other] {
        assert!(
            pages
                .lookup(target, &TIMES, false)
                .await
                .unwrap()
                .page
                .is_none()
        );
    }
}

#[tokio::test]
async fn an_unreachable_redis_fails_fast_and_shows_down() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let prefix = prefix("down");
    let settings = settings(&format!("redis://127.0.0.1:{port}"), &prefix);
    let url = settings.redis_url.clone().unwrap();
    let metrics = Arc::new(Metrics::default());
    let link = Link::new(&settings, &url, None, Arc::clone(&metrics)).unwrap();
    assert!(!link.wait_up(secs(0.5)).await);
    let budgets = SharedBudgets::new(link, Keys::new(&prefix));
    let started = Instant::now();
    let result = budgets
        .take("app", &SharedLimits::new(1.0, 1, None), Duration::ZERO)
        .await;
    assert!(matches!(result, Err(ClusterError::Down)), "{result:?}");
    assert!(
        started.elapsed() < secs(0.4),
        "no wait for a timeout while down"
    );
    let text = metrics.render(
        crate::metrics::Snapshot::default(),
        crate::metrics::Format::Prometheus,
    );
    assert!(text.contains("itwin_proxy_cluster_up 0"));
}
