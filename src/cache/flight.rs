//! Request collapsing: concurrent requests for the same thing share one upstream call.
//!
//! The first caller for a key starts the work on its own task, so the work finishes (and its
//! result is stored) even when that caller goes away; every caller, first or not, awaits the
//! shared result. A key is free again as soon as its work ends.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;

/// Whether a caller started the shared work or joined it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Started the work.
    Leader,
    /// Shared another caller's work.
    Follower,
}

/// The shared work ended without a result (its task panicked or the runtime shut down).
#[derive(Debug, Clone, thiserror::Error)]
#[error("the shared upstream call ended without a result")]
pub(crate) struct Abandoned;

/// A work in flight: its result to come, and how many callers wait for it.
struct Slot<V> {
    result: watch::Receiver<Option<V>>,
    callers: Arc<AtomicUsize>,
}

type Slots<K, V> = Mutex<HashMap<K, Slot<V>>>;

/// The works in flight, by key.
pub(crate) struct Flights<K, V> {
    slots: Arc<Slots<K, V>>,
}

impl<K, V> Default for Flights<K, V> {
    fn default() -> Self {
        Self {
            slots: Arc::default(),
        }
    }
}

impl<K, V> std::fmt::Debug for Flights<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Flights")
    }
}

/// Frees the key when the work ends, however it ends.
struct Release<K: Hash + Eq, V> {
    slots: Arc<Slots<K, V>>,
    key: K,
}

impl<K: Hash + Eq, V> Drop for Release<K, V> {
    fn drop(&mut self) {
        self.slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.key);
    }
}

impl<K, V> Flights<K, V>
where
    K: Hash + Eq + Clone + Send + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// The result of the work for `key`: joins the work in flight, or starts `work` on a new
    /// task when there is none.
    pub(crate) async fn run<F>(&self, key: K, work: F) -> Result<(V, Role), Abandoned>
    where
        F: Future<Output = V> + Send + 'static,
    {
        let (mut receiver, role) = {
            let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
            match slots.get(&key) {
                Some(slot) => {
                    slot.callers.fetch_add(1, Ordering::Relaxed);
                    (slot.result.clone(), Role::Follower)
                }
                None => {
                    let (sender, receiver) = watch::channel(None);
                    let slot = Slot {
                        result: receiver.clone(),
                        callers: Arc::new(AtomicUsize::new(1)),
                    };
                    slots.insert(key.clone(), slot);
                    let release = Release {
                        slots: Arc::clone(&self.slots),
                        key,
                    };
                    tokio::spawn(async move {
                        let value = work.await;
                        sender.send_replace(Some(value));
                        drop(release);
                    });
                    (receiver, Role::Leader)
                }
            }
        };
        let value = receiver
            .wait_for(Option::is_some)
            .await
            .map_err(|_| Abandoned)?
            .clone();
        value.map(|value| (value, role)).ok_or(Abandoned)
    }

    /// Whether a work for `key` is in flight.
    pub(crate) fn is_running(&self, key: &K) -> bool {
        self.slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(key)
    }

    /// How many callers wait for works in flight, the starters included.
    pub(crate) fn callers(&self) -> usize {
        self.slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .map(|slot| slot.callers.load(Ordering::Relaxed))
            .sum()
    }

    /// Whether no work is in flight.
    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::sync::Notify;

    #[tokio::test]
    async fn concurrent_callers_share_one_work() {
        let flights: Arc<Flights<&str, u32>> = Arc::default();
        let calls = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(Notify::new());
        let mut joins = Vec::new();
        for _ in 0..8 {
            let (flights, calls, gate) = (flights.clone(), calls.clone(), gate.clone());
            joins.push(tokio::spawn(async move {
                flights
                    .run("page", async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        gate.notified().await;
                        7
                    })
                    .await
            }));
        }
        // On this single-threaded runtime the work task is queued behind all callers, so once
        // it runs every caller has joined.
        while calls.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(flights.callers(), 8);
        gate.notify_one();
        let mut leaders = 0;
        for join in joins {
            let (value, role) = join.await.unwrap().unwrap();
            assert_eq!(value, 7);
            leaders += usize::from(role == Role::Leader);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(leaders, 1);
        assert_eq!(flights.callers(), 0, "nothing waits once the work is done");
        assert!(flights.is_empty());
    }

    #[tokio::test]
    async fn work_survives_its_caller_and_frees_the_key() {
        let flights: Arc<Flights<u8, u8>> = Arc::default();
        let (started, gate, done) = (
            Arc::new(Notify::new()),
            Arc::new(Notify::new()),
            Arc::new(Notify::new()),
        );
        let caller = tokio::spawn({
            let (flights, started, gate, done) =
                (flights.clone(), started.clone(), gate.clone(), done.clone());
            async move {
                flights
                    .run(1, async move {
                        started.notify_one();
                        gate.notified().await;
                        done.notify_one();
                        1
                    })
                    .await
            }
        });
        let bound = std::time::Duration::from_secs(5);
        tokio::time::timeout(bound, started.notified())
            .await
            .unwrap();
        caller.abort();
        assert!(caller.await.is_err(), "the caller is gone");
        gate.notify_one();
        tokio::time::timeout(bound, done.notified()).await.unwrap();
        tokio::time::timeout(bound, async {
            while !flights.is_empty() {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the key is freed once the work ends");
        let (value, role) = flights.run(1, async { 2 }).await.unwrap();
        assert_eq!((value, role), (2, Role::Leader));
    }

    #[tokio::test]
    async fn a_panicking_work_abandons_its_callers() {
        let flights: Flights<u8, u8> = Flights::default();
        let outcome = flights.run(1, async { panic!("boom") }).await;
        assert!(outcome.is_err());
        assert!(flights.is_empty());
    }
}
