//! Retry-After pauses: what an upstream answer asks of a budget, and one budget's pause state
//! (until when it holds off, and the streak of 429s that came without a usable Retry-After).

use std::time::{Duration, SystemTime};

use http::{HeaderMap, StatusCode, header::RETRY_AFTER};
use tokio::time::Instant;

use super::clock::after;
use super::retry_after::parse_retry_after;

/// The pause after a 429 without a usable Retry-After, doubled on each repeat.
const DEFAULT_PAUSE: Duration = Duration::from_secs(1);

/// Doublings past this add nothing: 2^20 s is far beyond any sensible `max_pause`.
const MAX_DOUBLINGS: u32 = 20;

/// What an upstream answer asks of its budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ask {
    /// A 429 or 503 with a usable Retry-After.
    PauseFor(Duration),
    /// A 429 without a usable Retry-After: the default pause, doubling on repeats.
    DefaultPause,
    /// A 2xx: the upstream is answering again, so the doubling streak ends.
    EndStreak,
    /// Anything else.
    Nothing,
}

impl Ask {
    /// Classifies an upstream answer; `wall_now` resolves an HTTP-date Retry-After.
    pub(crate) fn of(status: StatusCode, headers: &HeaderMap, wall_now: SystemTime) -> Self {
        let retry_after = || {
            headers
                .get(RETRY_AFTER)
                .and_then(|value| parse_retry_after(value, wall_now))
        };
        match status {
            StatusCode::TOO_MANY_REQUESTS => {
                retry_after().map_or(Self::DefaultPause, Self::PauseFor)
            }
            StatusCode::SERVICE_UNAVAILABLE => retry_after().map_or(Self::Nothing, Self::PauseFor),
            status if status.is_success() => Self::EndStreak,
            _ => Self::Nothing,
        }
    }
}

/// One budget's pause.
#[derive(Debug, Default)]
pub(crate) struct Pause {
    until: Option<Instant>,
    streak: u32,
}

impl Pause {
    /// The end of the pause, if one is in force at `now`.
    pub(crate) fn until(&self, now: Instant) -> Option<Instant> {
        self.until.filter(|until| *until > now)
    }

    /// Time left on the pause at `now`, if one is in force.
    pub(crate) fn remaining(&self, now: Instant) -> Option<Duration> {
        self.until(now).map(|until| until - now)
    }

    /// Applies what an answer asked, each pause capped by `max_pause`; a pause only ever
    /// extends the one in force. Returns whether the pause end moved.
    pub(crate) fn apply(&mut self, ask: Ask, now: Instant, max_pause: Duration) -> bool {
        let asked = match ask {
            Ask::PauseFor(pause) => pause,
            Ask::DefaultPause => {
                let doubled = DEFAULT_PAUSE.saturating_mul(1 << self.streak.min(MAX_DOUBLINGS));
                self.streak = self.streak.saturating_add(1);
                doubled
            }
            Ask::EndStreak => {
                self.streak = 0;
                return false;
            }
            Ask::Nothing => return false,
        };
        let until = after(now, asked.min(max_pause));
        if self.until(now).is_some_and(|current| current >= until) || until <= now {
            return false;
        }
        self.until = Some(until);
        true
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    const MAX: Duration = Duration::from_secs(60);

    fn headers(retry_after: Option<&'static str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(value) = retry_after {
            headers.insert(RETRY_AFTER, HeaderValue::from_static(value));
        }
        headers
    }

    fn ask(status: u16, retry_after: Option<&'static str>) -> Ask {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::IM_A_TEAPOT);
        Ask::of(status, &headers(retry_after), SystemTime::UNIX_EPOCH)
    }

    #[test]
    fn classifies_answers() {
        let five = Ask::PauseFor(Duration::from_secs(5));
        assert_eq!(ask(429, Some("5")), five);
        assert_eq!(ask(429, None), Ask::DefaultPause);
        assert_eq!(ask(429, Some("later")), Ask::DefaultPause);
        assert_eq!(ask(503, Some("5")), five);
        assert_eq!(ask(503, None), Ask::Nothing);
        assert_eq!(ask(503, Some("later")), Ask::Nothing);
        assert_eq!(ask(200, Some("5")), Ask::EndStreak);
        assert_eq!(ask(204, None), Ask::EndStreak);
        assert_eq!(ask(500, Some("5")), Ask::Nothing);
        assert_eq!(ask(404, None), Ask::Nothing);
    }

    #[tokio::test(start_paused = true)]
    async fn default_pause_doubles_until_a_success() {
        let mut pause = Pause::default();
        let mut seen = Vec::new();
        for _ in 0..4 {
            let now = Instant::now();
            assert!(pause.apply(Ask::DefaultPause, now, MAX));
            seen.push(pause.remaining(now));
            tokio::time::advance(Duration::from_secs(10)).await;
        }
        let secs = |s| Some(Duration::from_secs(s));
        assert_eq!(seen, [secs(1), secs(2), secs(4), secs(8)]);
        pause.apply(Ask::EndStreak, Instant::now(), MAX);
        let now = Instant::now();
        assert!(pause.apply(Ask::DefaultPause, now, MAX));
        assert_eq!(pause.remaining(now), secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_streak_is_capped_and_never_overflows() {
        let mut pause = Pause::default();
        for _ in 0..100 {
            pause.apply(Ask::DefaultPause, Instant::now(), MAX);
        }
        assert_eq!(pause.remaining(Instant::now()), Some(MAX));
    }

    #[tokio::test(start_paused = true)]
    async fn longer_pause_extends_shorter_never_shortens() {
        let mut pause = Pause::default();
        let now = Instant::now();
        assert!(pause.apply(Ask::PauseFor(Duration::from_secs(10)), now, MAX));
        assert!(!pause.apply(Ask::PauseFor(Duration::from_secs(3)), now, MAX));
        assert_eq!(pause.remaining(now), Some(Duration::from_secs(10)));
        assert!(pause.apply(Ask::PauseFor(Duration::from_secs(20)), now, MAX));
        assert_eq!(pause.remaining(now), Some(Duration::from_secs(20)));
        assert!(pause.apply(Ask::PauseFor(Duration::from_secs(3600)), now, MAX));
        assert_eq!(pause.remaining(now), Some(MAX));
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_ends_and_zero_asks_for_none() {
        let mut pause = Pause::default();
        assert!(!pause.apply(Ask::PauseFor(Duration::ZERO), Instant::now(), MAX));
        assert_eq!(pause.until(Instant::now()), None);
        pause.apply(Ask::PauseFor(Duration::from_secs(2)), Instant::now(), MAX);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(pause.remaining(Instant::now()), None);
    }
}
