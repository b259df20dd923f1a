//! Parsing the upstream's `Retry-After` header (RFC 9110 §10.2.3).

use std::time::{Duration, SystemTime};

use http::HeaderValue;

/// How long a `Retry-After` value asks to wait, measured from `now` (the wall clock).
///
/// Accepts delta-seconds (`120`; values too large for a `u64` saturate) and an HTTP-date in
/// any of the three forms RFC 9110 allows (IMF-fixdate, RFC 850, asctime). Returns `None` for
/// anything else, including an HTTP-date in the past: such a date most likely reflects clock
/// skew rather than a request to retry at once, so it is treated as unusable (an upstream 429
/// then falls back to the default pause). `Retry-After: 0` is usable and asks for no pause.
pub fn parse_retry_after(value: &HeaderValue, now: SystemTime) -> Option<Duration> {
    let text = value.to_str().ok()?.trim();
    if text.is_empty() {
        return None;
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        let secs = text.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(secs));
    }
    let date = httpdate::parse_http_date(text).ok()?;
    date.duration_since(now).ok()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn parse(text: &str, now: SystemTime) -> Option<Duration> {
        parse_retry_after(&HeaderValue::from_str(text).ok()?, now)
    }

    // 1994-11-06T08:49:37Z, the RFC's example date.
    const RFC_EXAMPLE: u64 = 784_111_777;

    #[test]
    fn delta_seconds() {
        let now = at(RFC_EXAMPLE);
        assert_eq!(parse("120", now), Some(Duration::from_secs(120)));
        assert_eq!(parse(" 7 ", now), Some(Duration::from_secs(7)));
        assert_eq!(parse("0", now), Some(Duration::ZERO));
    }

    #[test]
    fn oversized_delta_saturates() {
        let huge = "99999999999999999999999999";
        assert_eq!(parse(huge, at(0)), Some(Duration::from_secs(u64::MAX)));
    }

    #[test]
    fn http_dates_in_all_three_forms() {
        let now = at(RFC_EXAMPLE - 30);
        let thirty = Some(Duration::from_secs(30));
        assert_eq!(parse("Sun, 06 Nov 1994 08:49:37 GMT", now), thirty);
        assert_eq!(parse("Sunday, 06-Nov-94 08:49:37 GMT", now), thirty);
        assert_eq!(parse("Sun Nov  6 08:49:37 1994", now), thirty);
    }

    #[test]
    fn past_date_is_unusable_and_now_is_zero() {
        let date = "Sun, 06 Nov 1994 08:49:37 GMT";
        assert_eq!(parse(date, at(RFC_EXAMPLE + 1)), None);
        assert_eq!(parse(date, at(RFC_EXAMPLE)), Some(Duration::ZERO));
    }

    #[test]
    fn garbage_is_unusable() {
        for text in [
            "",
            "  ",
            "-5",
            "+5",
            "1.5",
            "soon",
            "5 s",
            "Sun, 06 Nov 1994",
        ] {
            assert_eq!(parse(text, at(0)), None, "{text:?}");
        }
        let opaque = HeaderValue::from_bytes(b"\xff12").ok();
        assert_eq!(opaque.and_then(|v| parse_retry_after(&v, at(0))), None);
    }

    proptest! {
        #[test]
        fn any_delta_round_trips(secs in any::<u64>()) {
            prop_assert_eq!(parse(&secs.to_string(), at(0)), Some(Duration::from_secs(secs)));
        }

        #[test]
        fn never_panics(text in "\\PC{0,40}") {
            let _ = parse(&text, at(RFC_EXAMPLE));
        }

        #[test]
        fn formatted_future_dates_round_trip(now in 0u64..4_000_000_000, ahead in 0u64..1_000_000) {
            let text = httpdate::fmt_http_date(at(now + ahead));
            prop_assert_eq!(parse(&text, at(now)), Some(Duration::from_secs(ahead)));
        }
    }
}
