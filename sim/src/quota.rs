//! The simulator's own quota: a GCRA budget per token `client_id`, like the platform's
//! per-subscription limits, telling callers over it how many whole seconds to wait.

use std::io;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::SimQuota;

/// Above this many tracked clients, those back at full budget are forgotten.
const TRACKED_CLIENTS: usize = 1_024;

/// The per-client rate limiter.
#[derive(Debug)]
pub(crate) struct Limiter {
    limiter: DefaultKeyedRateLimiter<String>,
}

impl Limiter {
    /// Builds the limiter; a rate that is not a positive number or a zero burst is refused.
    pub(crate) fn new(quota: SimQuota) -> io::Result<Self> {
        let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, what.to_owned());
        let burst =
            NonZeroU32::new(quota.burst).ok_or_else(|| invalid("quota burst must be >= 1"))?;
        let period = Some(quota.requests_per_second)
            .filter(|rps| rps.is_finite() && *rps > 0.0)
            .and_then(|rps| Duration::try_from_secs_f64(1.0 / rps).ok())
            .and_then(Quota::with_period)
            .ok_or_else(|| invalid("quota requests_per_second must be a positive number"))?;
        Ok(Self {
            limiter: RateLimiter::keyed(period.allow_burst(burst)),
        })
    }

    /// Takes a call from `client_id`'s budget, or says in whole seconds (>= 1) when one is
    /// allowed again.
    pub(crate) fn check(&self, client_id: &str) -> Result<(), u64> {
        let key = client_id.to_owned();
        let outcome = self.limiter.check_key(&key);
        if self.limiter.len() > TRACKED_CLIENTS {
            self.limiter.retain_recent();
        }
        outcome.map_err(|not_until| {
            let wait = not_until.wait_time_from(self.limiter.clock().now());
            wait.as_secs_f64().ceil().max(1.0) as u64
        })
    }
}
