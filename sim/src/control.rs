//! Test controls: what the simulator records of each request, the failures queued with
//! `fail_next`, the answer delay, holds that park requests, and per-subject denials.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use tokio::sync::watch;

use super::lock;

/// How many requests [`Control`] keeps for `requests()`.
const RECORDED_REQUESTS: usize = 1_000;

/// How many distinct method and path pairs are counted; later new pairs are not.
const COUNTED_PATHS: usize = 10_000;

/// One request as the simulator received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// Its method.
    pub method: http::Method,
    /// Path and query as received.
    pub uri: String,
    /// Its headers.
    pub headers: http::HeaderMap,
    /// Its whole body.
    pub body: Bytes,
}

/// An answer forced on the next requests by `Simulator::fail_next`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// That status with a JSON error body.
    Status(u16),
    /// 429 `TooManyRequests` with this `Retry-After` value verbatim (seconds or an HTTP-date)
    /// and the `ITwinPlatform-RateLimited-*` headers.
    TooManyRequests {
        /// The `Retry-After` value, if any.
        retry_after: Option<String>,
    },
    /// 503 `ServiceUnavailable` with this `Retry-After` value verbatim.
    ServiceUnavailable {
        /// The `Retry-After` value, if any.
        retry_after: Option<String>,
    },
    /// Drop the connection without answering.
    Close,
}

/// Parks requests while it lives; see `Simulator::hold`.
#[derive(Debug)]
pub struct Hold {
    state: Arc<HoldState>,
}

#[derive(Debug)]
struct HoldState {
    parked: watch::Sender<usize>,
    released: watch::Sender<bool>,
}

impl Hold {
    /// Resolves once at least `n` requests are parked by this hold.
    pub async fn waiting_at_least(&self, n: usize) {
        let mut parked = self.state.parked.subscribe();
        // The sender lives as long as `self`, so this cannot fail.
        let _ = parked.wait_for(|count| *count >= n).await;
    }

    /// Lets the parked requests go (dropping the hold does the same).
    pub fn release(self) {
        drop(self);
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.state.released.send_replace(true);
    }
}

impl HoldState {
    async fn park(&self) {
        let mut released = self.released.subscribe();
        self.parked.send_modify(|count| *count += 1);
        // Parked requests keep the state alive, so the sender outlives this wait.
        let _ = released.wait_for(|released| *released).await;
    }
}

/// What the test controls share.
#[derive(Debug)]
pub(crate) struct Control {
    total: AtomicU64,
    quota_rejections: AtomicU64,
    log: Mutex<Log>,
    failures: Mutex<VecDeque<Failure>>,
    delay: Mutex<Duration>,
    hold: Mutex<Option<Arc<HoldState>>>,
    denied: Mutex<HashSet<(String, String)>>,
}

#[derive(Debug, Default)]
struct Log {
    recent: VecDeque<RecordedRequest>,
    counts: HashMap<(String, String), u64>,
}

impl Control {
    pub(crate) fn new(delay: Duration) -> Self {
        Self {
            total: AtomicU64::new(0),
            quota_rejections: AtomicU64::new(0),
            log: Mutex::new(Log::default()),
            failures: Mutex::new(VecDeque::new()),
            delay: Mutex::new(delay),
            hold: Mutex::new(None),
            denied: Mutex::new(HashSet::new()),
        }
    }

    /// Counts and records a request; returns the failure it must answer with, if one is queued.
    pub(crate) fn record(&self, parts: &Parts, body: &Bytes) -> Option<Failure> {
        self.total.fetch_add(1, Ordering::Relaxed);
        {
            let mut log = lock(&self.log);
            let key = (parts.method.to_string(), parts.uri.path().to_owned());
            if log.counts.len() < COUNTED_PATHS || log.counts.contains_key(&key) {
                *log.counts.entry(key).or_default() += 1;
            }
            if log.recent.len() == RECORDED_REQUESTS {
                log.recent.pop_front();
            }
            log.recent.push_back(RecordedRequest {
                method: parts.method.clone(),
                uri: path_and_query(&parts.uri).to_owned(),
                headers: parts.headers.clone(),
                body: body.clone(),
            });
        }
        lock(&self.failures).pop_front()
    }

    /// Waits while a hold is in place.
    pub(crate) async fn park(&self) {
        let hold = lock(&self.hold).clone();
        if let Some(hold) = hold {
            hold.park().await;
        }
    }

    pub(crate) fn hold(&self) -> Hold {
        let state = Arc::new(HoldState {
            parked: watch::Sender::new(0),
            released: watch::Sender::new(false),
        });
        *lock(&self.hold) = Some(Arc::clone(&state));
        Hold { state }
    }

    pub(crate) fn fail_next(&self, n: u32, failure: Failure) {
        let mut failures = lock(&self.failures);
        failures.extend(std::iter::repeat_n(failure, n as usize));
    }

    pub(crate) fn delay(&self) -> Duration {
        *lock(&self.delay)
    }

    pub(crate) fn set_delay(&self, delay: Duration) {
        *lock(&self.delay) = delay;
    }

    pub(crate) fn deny(&self, sub: &str, imodel_id: &str) {
        lock(&self.denied).insert((sub.to_owned(), imodel_id.to_owned()));
    }

    pub(crate) fn is_denied(&self, sub: &str, imodel_id: &str) -> bool {
        lock(&self.denied).contains(&(sub.to_owned(), imodel_id.to_owned()))
    }

    pub(crate) fn count_quota_rejection(&self) {
        self.quota_rejections.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn quota_rejections(&self) -> u64 {
        self.quota_rejections.load(Ordering::Relaxed)
    }

    pub(crate) fn request_count(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    pub(crate) fn count(&self, method: &str, path: &str) -> u64 {
        let key = (method.to_owned(), path.to_owned());
        lock(&self.log).counts.get(&key).copied().unwrap_or(0)
    }

    pub(crate) fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.log).recent.iter().cloned().collect()
    }
}

/// The path and query of a request target, as received.
pub(crate) fn path_and_query(uri: &http::Uri) -> &str {
    uri.path_and_query().map_or("/", |pq| pq.as_str())
}
