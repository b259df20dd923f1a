//! Counting requests in flight, from arrival until the last byte of their response body, so
//! that a shutdown can say how many it had to cut.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use http_body::{Body, Frame, SizeHint};

/// The number of requests in flight (of a listener, or of one connection), and how many
/// ever started.
#[derive(Debug, Clone, Default)]
pub(crate) struct InFlight(Arc<Counts>);

#[derive(Debug, Default)]
struct Counts {
    now: AtomicUsize,
    started: AtomicU64,
}

impl InFlight {
    /// Counts one more request until the returned guard drops.
    pub(crate) fn enter(&self) -> InFlightGuard {
        self.0.now.fetch_add(1, Ordering::SeqCst);
        self.0.started.fetch_add(1, Ordering::SeqCst);
        InFlightGuard(Arc::clone(&self.0))
    }

    /// Requests in flight now.
    pub(crate) fn count(&self) -> usize {
        self.0.now.load(Ordering::SeqCst)
    }

    /// Requests started so far.
    pub(crate) fn started(&self) -> u64 {
        self.0.started.load(Ordering::SeqCst)
    }
}

/// Holds one request's place in the count.
#[derive(Debug)]
pub(crate) struct InFlightGuard(Arc<Counts>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A response body that keeps its request counted until it is finished or dropped.
#[derive(Debug)]
pub(crate) struct Tracked<B, G = InFlightGuard> {
    inner: B,
    _guard: G,
}

impl<B, G> Tracked<B, G> {
    /// Wraps `inner`, holding `guard` (one or several counts) as long as it lives.
    pub(crate) fn new(inner: B, guard: G) -> Self {
        Self {
            inner,
            _guard: guard,
        }
    }
}

impl<B: Body + Unpin, G: Unpin> Body for Tracked<B, G> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_count_until_dropped() {
        let in_flight = InFlight::default();
        let body = Tracked::new(crate::body::empty(), in_flight.enter());
        let other = in_flight.enter();
        assert_eq!(in_flight.count(), 2);
        drop(body);
        drop(other);
        assert_eq!(in_flight.count(), 0);
        assert_eq!(in_flight.started(), 2);
    }
}
