//! What the proxy did over the last minutes, for the admin status page: a small ring of
//! per-interval counters (cache lookups and hits, upstream calls and errors), totals since
//! start, and the last few upstream errors with their time.
//!
//! Unlike the Prometheus counters, which only ever grow and leave rates to the scraper, this
//! answers "what is happening now" without one. Memory is fixed: [`SLOTS`] intervals and at
//! most [`ERRORS_KEPT`] errors.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::time::Instant;

/// The span of one slot of the ring.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// Slots in the ring: [`INTERVAL`] × `SLOTS` is the longest span looked back on (5 min).
pub const SLOTS: usize = 30;

/// The most recent upstream errors kept.
pub const ERRORS_KEPT: usize = 10;

/// Counts of one interval (or of a span of them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Requests answered (every route, every outcome).
    pub requests: u64,
    /// Requests of the cached route that looked a page up: `hit`, `shared`, `stale`,
    /// `miss`, `collapsed` and `request` (not `refused`, `bypass` or pass-through).
    pub lookups: u64,
    /// Lookups answered from a page (`hit`, `shared`, `stale`).
    pub hits: u64,
    /// Calls made to the upstream.
    pub upstream_calls: u64,
    /// Upstream calls that failed (no answer) or were answered 429 or 5xx.
    pub upstream_errors: u64,
}

impl Counts {
    fn add(&mut self, other: &Self) {
        self.requests += other.requests;
        self.lookups += other.lookups;
        self.hits += other.hits;
        self.upstream_calls += other.upstream_calls;
        self.upstream_errors += other.upstream_errors;
    }

    /// Hits over lookups, `None` without lookups.
    pub fn hit_ratio(&self) -> Option<f64> {
        (self.lookups > 0).then(|| self.hits as f64 / self.lookups as f64)
    }
}

/// One upstream error as the status page lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UpstreamError {
    /// When it happened, in seconds since the Unix epoch.
    pub at_unix: u64,
    /// The status the upstream answered (`429`, `503`, ...) or the class of failure
    /// (`dns`, `connect`, `tls`, `timeout`, `reset`).
    pub what: String,
}

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    /// The interval number (since start) the counts belong to.
    interval: u64,
    counts: Counts,
}

#[derive(Debug)]
struct Ring {
    slots: [Slot; SLOTS],
    totals: Counts,
    errors: VecDeque<UpstreamError>,
}

/// The recent activity of one proxy.
#[derive(Debug)]
pub struct Recent {
    started: Instant,
    ring: Mutex<Ring>,
}

impl Default for Recent {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            ring: Mutex::new(Ring {
                slots: [Slot::default(); SLOTS],
                totals: Counts::default(),
                errors: VecDeque::with_capacity(ERRORS_KEPT),
            }),
        }
    }
}

/// What [`Recent::snapshot`] reads.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecentSnapshot {
    /// Seconds since the proxy started.
    pub uptime_seconds: u64,
    /// Seconds each entry of `intervals` spans.
    pub interval_seconds: u64,
    /// The counts of the last [`SLOTS`] intervals, oldest first, the current (partial) one
    /// last.
    pub intervals: Vec<Counts>,
    /// The counts since start.
    pub totals: Counts,
    /// The last upstream errors, newest first.
    pub upstream_errors: Vec<UpstreamError>,
}

impl Recent {
    fn ring(&self) -> MutexGuard<'_, Ring> {
        // Every update is a few additions: a panic cannot leave it half-done in a harmful way.
        self.ring.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn interval_at(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.started);
        elapsed.as_secs() / INTERVAL.as_secs()
    }

    /// Adds `counts` to the current interval and to the totals.
    fn add(&self, counts: Counts, now: Instant) {
        let interval = self.interval_at(now);
        let mut ring = self.ring();
        ring.totals.add(&counts);
        let index = usize::try_from(interval % SLOTS as u64).unwrap_or_default();
        let slot = &mut ring.slots[index];
        if slot.interval != interval {
            *slot = Slot {
                interval,
                counts: Counts::default(),
            };
        }
        slot.counts.add(&counts);
    }

    /// Counts one answered request with its `cache` label (see the request metric), answered
    /// `now`.
    pub fn record_request(&self, cache: &str, now: Instant) {
        let lookup = matches!(
            cache,
            "hit" | "shared" | "stale" | "miss" | "collapsed" | "request"
        );
        let hit = matches!(cache, "hit" | "shared" | "stale");
        self.add(
            Counts {
                requests: 1,
                lookups: u64::from(lookup),
                hits: u64::from(hit),
                ..Counts::default()
            },
            now,
        );
    }

    /// Counts one upstream call answered with `status`; a 429 or a 5xx is also listed as an
    /// error.
    pub fn record_upstream(&self, status: u16) {
        let error = status == 429 || status >= 500;
        self.add(
            Counts {
                upstream_calls: 1,
                upstream_errors: u64::from(error),
                ..Counts::default()
            },
            Instant::now(),
        );
        if error {
            self.list_error(status.to_string());
        }
    }

    /// Counts one upstream call that got no answer, listed as an error of `class`.
    pub fn record_upstream_failure(&self, class: &str) {
        self.add(
            Counts {
                upstream_calls: 1,
                upstream_errors: 1,
                ..Counts::default()
            },
            Instant::now(),
        );
        self.list_error(class.to_owned());
    }

    fn list_error(&self, what: String) {
        let at_unix = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        let mut ring = self.ring();
        if ring.errors.len() == ERRORS_KEPT {
            ring.errors.pop_back();
        }
        ring.errors.push_front(UpstreamError { at_unix, what });
    }

    /// The last [`SLOTS`] intervals, the totals and the last upstream errors, as of now.
    pub fn snapshot(&self) -> RecentSnapshot {
        let now = Instant::now();
        let current = self.interval_at(now);
        let ring = self.ring();
        let intervals = (0..SLOTS as u64)
            .rev()
            .map(|back| {
                let Some(interval) = current.checked_sub(back) else {
                    return Counts::default();
                };
                let index = usize::try_from(interval % SLOTS as u64).unwrap_or_default();
                let slot = ring.slots[index];
                match slot.interval == interval {
                    true => slot.counts,
                    false => Counts::default(),
                }
            })
            .collect();
        RecentSnapshot {
            uptime_seconds: now.saturating_duration_since(self.started).as_secs(),
            interval_seconds: INTERVAL.as_secs(),
            intervals,
            totals: ring.totals,
            upstream_errors: ring.errors.iter().cloned().collect(),
        }
    }
}

impl RecentSnapshot {
    /// The counts of the last `intervals` intervals (the current one included).
    pub fn last(&self, intervals: usize) -> Counts {
        let mut sum = Counts::default();
        for counts in self.intervals.iter().rev().take(intervals) {
            sum.add(counts);
        }
        sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn intervals_roll_and_old_ones_are_forgotten() {
        let recent = Recent::default();
        recent.record_request("hit", Instant::now());
        recent.record_request("miss", Instant::now());
        recent.record_request("none", Instant::now());
        recent.record_upstream(200);
        let snapshot = recent.snapshot();
        assert_eq!(snapshot.intervals.len(), SLOTS);
        let current = snapshot.intervals[SLOTS - 1];
        assert_eq!((current.requests, current.lookups, current.hits), (3, 2, 1));
        assert_eq!(current.hit_ratio(), Some(0.5));
        assert_eq!(current.upstream_calls, 1);

        tokio::time::advance(INTERVAL).await;
        recent.record_request("stale", Instant::now());
        let snapshot = recent.snapshot();
        assert_eq!(snapshot.intervals[SLOTS - 2].lookups, 2);
        assert_eq!(snapshot.intervals[SLOTS - 1].hits, 1);
        assert_eq!(snapshot.last(2).lookups, 3);
        assert_eq!(snapshot.last(1).lookups, 1);

        // A full turn later the slot of the first interval is reused, not added to.
        tokio::time::advance(INTERVAL * (SLOTS as u32 - 1)).await;
        recent.record_request("miss", Instant::now());
        let snapshot = recent.snapshot();
        assert_eq!(
            snapshot.last(SLOTS).lookups,
            2,
            "the first interval is gone"
        );
        assert_eq!(snapshot.intervals[SLOTS - 1].hits, 0);
        assert_eq!(snapshot.totals.lookups, 4);
        assert_eq!(snapshot.totals.requests, 5);
        assert_eq!(snapshot.uptime_seconds, INTERVAL.as_secs() * SLOTS as u64);

        tokio::time::advance(INTERVAL * SLOTS as u32).await;
        let snapshot = recent.snapshot();
        assert_eq!(snapshot.last(SLOTS), Counts::default());
        assert_eq!(snapshot.last(SLOTS).hit_ratio(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn only_the_last_upstream_errors_are_kept_newest_first() {
        let recent = Recent::default();
        recent.record_upstream(404);
        recent.record_upstream(429);
        for _ in 0..ERRORS_KEPT {
            recent.record_upstream(503);
        }
        recent.record_upstream_failure("connect");
        let snapshot = recent.snapshot();
        assert_eq!(snapshot.upstream_errors.len(), ERRORS_KEPT);
        assert_eq!(snapshot.upstream_errors[0].what, "connect");
        assert!(
            snapshot.upstream_errors[1..]
                .iter()
                .all(|e| e.what == "503")
        );
        assert_eq!(snapshot.totals.upstream_calls, ERRORS_KEPT as u64 + 3);
        assert_eq!(snapshot.totals.upstream_errors, ERRORS_KEPT as u64 + 2);
    }
}
