//! The time a log line was written, as tracing's own lines print it: RFC 3339 in UTC with
//! microseconds (`2024-02-29T12:34:56.123456Z`), written without the formatting machinery.

use std::time::{SystemTime, UNIX_EPOCH};

/// Appends `at` to `out`; a time before 1970 is written as 1970-01-01T00:00:00.000000Z.
pub(crate) fn write_rfc3339_micros(out: &mut String, at: SystemTime) {
    let since_epoch = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since_epoch.as_secs();
    let (year, month, day) = civil_date(secs / 86_400);
    let of_day = secs % 86_400;
    match year < 10_000 {
        true => {
            two_digits(out, year / 100);
            two_digits(out, year % 100);
        }
        false => super::values::decimal(out, year),
    }
    out.push('-');
    two_digits(out, month);
    out.push('-');
    two_digits(out, day);
    out.push('T');
    two_digits(out, of_day / 3600);
    out.push(':');
    two_digits(out, of_day / 60 % 60);
    out.push(':');
    two_digits(out, of_day % 60);
    out.push('.');
    let micros = u64::from(since_epoch.subsec_micros());
    two_digits(out, micros / 10_000);
    two_digits(out, micros / 100 % 100);
    two_digits(out, micros % 100);
    out.push('Z');
}

/// The proleptic Gregorian (year, month, day) of the day `days` after 1970-01-01 (Howard
/// Hinnant's `civil_from_days`, for days on or after the epoch).
fn civil_date(days: u64) -> (u64, u64, u64) {
    // Counted from 0000-03-01, so that a leap day ends its year.
    let shifted = days + 719_468;
    let era = shifted / 146_097;
    let day_of_era = shifted % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = match month_from_march < 10 {
        true => month_from_march + 3,
        false => month_from_march - 9,
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Appends `n`, below 100, in two digits.
fn two_digits(out: &mut String, n: u64) {
    out.push(char::from(b'0' + (n / 10) as u8));
    out.push(char::from(b'0' + (n % 10) as u8));
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
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
        assert_eq!(written(253_402_300_800, 0), "10000-01-01T00:00:00.000000Z");
    }

    #[test]
    fn a_time_before_1970_is_the_epoch() {
        let mut out = String::new();
        write_rfc3339_micros(&mut out, UNIX_EPOCH - Duration::from_secs(1));
        assert_eq!(out, "1970-01-01T00:00:00.000000Z");
    }

    proptest! {
        #[test]
        fn agrees_with_humantime(secs in 0u64..253_402_300_800, micros in 0u32..1_000_000) {
            let at = UNIX_EPOCH + Duration::new(secs, micros * 1000);
            let mut out = String::new();
            write_rfc3339_micros(&mut out, at);
            prop_assert_eq!(out, humantime::format_rfc3339_micros(at).to_string());
        }
    }
}
