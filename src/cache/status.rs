//! The cache's one vocabulary: what happened to a request, as the `Cache-Status` header
//! (RFC 9211) and as the `cache` label of the request metric.

use std::sync::LazyLock;

use http::{HeaderName, HeaderValue};

use crate::ascii::decimal;

/// The `Cache-Status` header (RFC 9211).
pub(crate) const CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");

/// The cache's name in `Cache-Status`.
const CACHE_NAME: &str = "itwin-proxy";

/// Whole seconds below this have their header values made once, on the first hit, and
/// shared (read-only tables, never changed once made): every hit sends its page's `Age` and
/// its `Cache-Status` ttl, and with any usual `cache.ttl` both stay below it. Past it they
/// are written per request.
const PREMADE_SECONDS: usize = 601;

/// `Cache-Status` of a hit with so many seconds of freshness left.
static HIT_VALUES: LazyLock<Box<[HeaderValue]>> = LazyLock::new(|| {
    (0..PREMADE_SECONDS as i64)
        .map(|ttl| written(ttl, ""))
        .collect()
});

/// `Age` of so many seconds.
static AGE_VALUES: LazyLock<Box<[HeaderValue]>> =
    LazyLock::new(|| (0..PREMADE_SECONDS as u64).map(HeaderValue::from).collect());

/// The `Age` header value of a page `secs` old.
pub(crate) fn age_value(secs: u64) -> HeaderValue {
    usize::try_from(secs)
        .ok()
        .and_then(|at| AGE_VALUES.get(at))
        .cloned()
        .unwrap_or_else(|| HeaderValue::from(secs))
}

/// `Cache-Status` of a page served from memory with `ttl_secs` of freshness left and this
/// `detail` (empty, or `; detail=...`).
fn written(ttl_secs: i64, detail: &str) -> HeaderValue {
    // Written by hand: `format!` costs more than the rest.
    let mut text = String::with_capacity(48);
    text.push_str("itwin-proxy; hit; ttl=");
    if ttl_secs < 0 {
        text.push('-');
    }
    decimal(&mut text, ttl_secs.unsigned_abs());
    text.push_str(detail);
    HeaderValue::from_maybe_shared(bytes::Bytes::from(text))
        .unwrap_or(HeaderValue::from_static(CACHE_NAME))
}

/// What the cache did for one request of the cached route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CacheStatus {
    /// Served from a fresh page that has `ttl_secs` of freshness left.
    Hit {
        /// Whole seconds of freshness left.
        ttl_secs: i64,
    },
    /// Served from a fresh page another replica stored in the cluster's shared tier (copied
    /// into this one's memory on the way).
    Shared {
        /// Whole seconds of freshness left.
        ttl_secs: i64,
    },
    /// Served from a page past its freshness, because the upstream failed or was paused, the
    /// budget had no permit now, or a refresh runs behind it (`stale-while-revalidate`).
    Stale {
        /// Whole seconds of freshness left: negative.
        ttl_secs: i64,
    },
    /// Fetched from the upstream; `stored` when the answer was kept.
    Miss {
        /// Whether the answer was stored.
        stored: bool,
    },
    /// Waited on another request's upstream call and shared its answer.
    Collapsed,
    /// A page was present but this request could not use it (its token is not yet
    /// known-valid, or it asked for `no-cache`), so it went upstream.
    Request,
    /// Not cacheable (another method or query shape): forwarded as is.
    Bypass,
}

impl CacheStatus {
    /// The `Cache-Status` header value.
    pub(crate) fn header_value(&self) -> HeaderValue {
        let (ttl_secs, detail) = match *self {
            Self::Hit { ttl_secs } => {
                let premade = usize::try_from(ttl_secs)
                    .ok()
                    .and_then(|at| HIT_VALUES.get(at));
                if let Some(value) = premade {
                    return value.clone();
                }
                (ttl_secs, "")
            }
            Self::Shared { ttl_secs } => (ttl_secs, "; detail=shared"),
            Self::Stale { ttl_secs } => (ttl_secs, "; detail=stale"),
            Self::Miss { stored: true } => {
                return HeaderValue::from_static("itwin-proxy; fwd=uri-miss; stored");
            }
            Self::Miss { stored: false } => {
                return HeaderValue::from_static("itwin-proxy; fwd=uri-miss");
            }
            Self::Collapsed => {
                return HeaderValue::from_static("itwin-proxy; fwd=uri-miss; collapsed");
            }
            Self::Request => return HeaderValue::from_static("itwin-proxy; fwd=request"),
            Self::Bypass => return HeaderValue::from_static("itwin-proxy; fwd=bypass"),
        };
        written(ttl_secs, detail)
    }

    /// The `cache` label of `itwin_proxy_requests_total`.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Self::Hit { .. } => "hit",
            Self::Shared { .. } => "shared",
            Self::Stale { .. } => "stale",
            Self::Miss { .. } => "miss",
            Self::Request => "request",
            Self::Collapsed => "collapsed",
            Self::Bypass => "bypass",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn premade_values_are_the_written_ones() {
        for secs in [
            0,
            1,
            59,
            PREMADE_SECONDS as u64 - 1,
            PREMADE_SECONDS as u64,
            86_400,
        ] {
            assert_eq!(age_value(secs), secs.to_string().as_str());
            let ttl_secs = secs as i64;
            assert_eq!(
                CacheStatus::Hit { ttl_secs }.header_value(),
                format!("itwin-proxy; hit; ttl={secs}").as_str()
            );
        }
        assert_eq!(
            CacheStatus::Stale { ttl_secs: -3 }.header_value(),
            "itwin-proxy; hit; ttl=-3; detail=stale"
        );
    }

    #[test]
    fn header_values_follow_rfc_9211() {
        assert_eq!(
            CacheStatus::Hit { ttl_secs: 42 }.header_value(),
            "itwin-proxy; hit; ttl=42"
        );
        assert_eq!(
            CacheStatus::Miss { stored: true }.header_value(),
            "itwin-proxy; fwd=uri-miss; stored"
        );
        assert_eq!(
            CacheStatus::Collapsed.header_value(),
            "itwin-proxy; fwd=uri-miss; collapsed"
        );
        assert_eq!(
            CacheStatus::Request.header_value(),
            "itwin-proxy; fwd=request"
        );
        assert_eq!(
            CacheStatus::Bypass.header_value(),
            "itwin-proxy; fwd=bypass"
        );
        assert_eq!(CacheStatus::Request.label(), "request");
        let shared = CacheStatus::Shared { ttl_secs: 7 };
        assert_eq!(
            shared.header_value(),
            "itwin-proxy; hit; ttl=7; detail=shared"
        );
        assert_eq!(shared.label(), "shared");
        for ttl_secs in [0, 9, 10, 3600, -5, i64::MAX, i64::MIN] {
            assert_eq!(
                CacheStatus::Stale { ttl_secs }.header_value(),
                format!("itwin-proxy; hit; ttl={ttl_secs}; detail=stale").as_str()
            );
        }
    }
}
