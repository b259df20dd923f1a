//! The time a log line was written, as tracing's own lines print it: RFC 3339 in UTC with
//! microseconds (`2024-02-29T12:34:56.123456Z`), by `humantime`.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

/// Appends `at` to `out`; a time before 1970 is written as 1970-01-01T00:00:00.000000Z (which
/// `humantime` cannot write), and a time past the year 9999 not at all.
pub(crate) fn write_rfc3339_micros(out: &mut String, at: SystemTime) {
    let _ = write!(
        out,
        "{}",
        humantime::format_rfc3339_micros(at.max(UNIX_EPOCH))
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn written(secs: u64, micros: u32) -> String {
        let mut out = String::new();
        let at = UNIX_EPOCH + Duration::new(secs, micros * 1000 + 999);
        write_rfc3339_micros(&mut out, at);
        out
    }

    #[test]
    fn known_instants() {
        assert_eq!(written(0, 0), "1970-01-01T00:00:00.000000Z");
        // 2000 is a leap year (divisible by 400), 2024 one too, 2100 is not.
        assert_eq!(written(951_782_400, 1), "2000-02-29T00:00:00.000001Z");
        assert_eq!(
            written(1_709_210_096, 123_456),
            "2024-02-29T12:34:56.123456Z"
        );
        assert_eq!(
            written(4_107_542_399, 999_999),
            "2100-02-28T23:59:59.999999Z"
        );
        assert_eq!(written(4_107_542_400, 0), "2100-03-01T00:00:00.000000Z");
        assert_eq!(written(253_402_300_799, 10), "9999-12-31T23:59:59.000010Z");
        assert_eq!(
            written(253_402_300_800, 0),
            "",
            "past 9999: nothing, and no panic"
        );
    }

    #[test]
    fn a_time_before_1970_is_the_epoch() {
        let mut out = String::new();
        write_rfc3339_micros(&mut out, UNIX_EPOCH - Duration::from_secs(1));
        assert_eq!(out, "1970-01-01T00:00:00.000000Z");
    }
}
