//! The time a log line was written, as tracing's own lines print it: RFC 3339 in UTC with
//! microseconds (`2024-02-29T12:34:56.123456Z`), written by hand: the formatting machinery
//! cost more than the rest of a request line.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

/// The first second of the year 10000, which RFC 3339 cannot write.
const YEAR_10000: u64 = 253_402_300_800;

thread_local! {
    /// The second last written on this thread, and its text up to the fraction: lines come
    /// many to a second, so most only write their microseconds.
    static LAST_SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

/// Appends `at` to `out`; a time before 1970 is written as 1970-01-01T00:00:00.000000Z, and a
/// time from the year 10000 on not at all.
pub(crate) fn write_rfc3339_micros(out: &mut String, at: SystemTime) {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    if secs >= YEAR_10000 {
        return;
    }
    let from_last = LAST_SECOND.try_with(|last| {
        let mut last = last.try_borrow_mut().ok()?;
        let (second, text) = &mut *last;
        if *second != secs {
            text.clear();
            push_up_to_fraction(text, secs);
            *second = secs;
        }
        out.push_str(text);
        Some(())
    });
    // A thread whose memo is busy or gone (never expected) writes the second in place.
    if !matches!(from_last, Ok(Some(()))) {
        push_up_to_fraction(out, secs);
    }
    let mut micros = [0; 6];
    digits(&mut micros, u64::from(since.subsec_micros()));
    for digit in micros {
        out.push(char::from(digit));
    }
    out.push('Z');
}

/// Appends `YYYY-MM-DDTHH:MM:SS.` of a second since the epoch (before the year 10000).
fn push_up_to_fraction(out: &mut String, secs: u64) {
    let (year, month, day) = civil_from_days(secs / 86_400);
    let of_day = secs % 86_400;
    let mut text = *b"0000-00-00T00:00:00.";
    digits(&mut text[0..4], year);
    digits(&mut text[5..7], month);
    digits(&mut text[8..10], day);
    digits(&mut text[11..13], of_day / 3600);
    digits(&mut text[14..16], of_day / 60 % 60);
    digits(&mut text[17..19], of_day % 60);
    for byte in text {
        out.push(char::from(byte));
    }
}

/// Writes `n` in decimal into all of `slot`, zero-padded (its lowest digits, were it longer).
fn digits(slot: &mut [u8], mut n: u64) {
    for byte in slot.iter_mut().rev() {
        *byte = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// The proleptic Gregorian (year, month, day) of a day counted from 1970-01-01 (Howard
/// Hinnant's `civil_from_days`, for days on or after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Counted from 0000-03-01, so that a leap day ends its year.
    let days = days + 719_468;
    let era = days / 146_097;
    let of_era = days % 146_097;
    let year_of_era = (of_era - of_era / 1460 + of_era / 36_524 - of_era / 146_096) / 365;
    let of_year = of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * of_year + 2) / 153;
    let day = of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
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

    proptest::proptest! {
        #[test]
        fn as_humantime_writes_it(secs in 0..YEAR_10000, nanos in 0..1_000_000_000u32) {
            // Twice in the same second, the second time from the thread's last second.
            for nanos in [nanos, nanos / 2] {
                let at = UNIX_EPOCH + Duration::new(secs, nanos);
                let mut out = String::new();
                write_rfc3339_micros(&mut out, at);
                proptest::prop_assert_eq!(out, humantime::format_rfc3339_micros(at).to_string());
            }
        }
    }

    #[test]
    fn a_time_before_1970_is_the_epoch() {
        let mut out = String::new();
        write_rfc3339_micros(&mut out, UNIX_EPOCH - Duration::from_secs(1));
        assert_eq!(out, "1970-01-01T00:00:00.000000Z");
    }
}
