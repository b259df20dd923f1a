//! ASCII text: compared ignoring case, as URL schemes, hosts and the API's paths are,
//! numbers written as decimal digits without the formatting machinery, and bytes searched for
//! eight at a time (on every request).

/// `text` without `prefix`, compared ignoring ASCII case.
pub(crate) fn strip_prefix_ignore_case<'a>(text: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    let (head, rest) = text.split_at_checked(prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then_some(rest)
}

/// Appends `n` in decimal.
pub(crate) fn decimal(out: &mut String, mut n: u64) {
    if n < 10 {
        out.push(char::from(b'0' + n as u8));
        return;
    }
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    while n > 0 {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    for &digit in &digits[start..] {
        out.push(char::from(digit));
    }
}

/// Whether every byte of `text` is visible ASCII (`!` to `~`). One pass without an early exit,
/// as a maximum, which the compiler turns into wide compares: this runs on every request, over
/// tokens of a kilobyte or more.
pub(crate) fn all_visible(text: &[u8]) -> bool {
    let highest = text
        .iter()
        .fold(0u8, |highest, &b| highest.max(b.wrapping_sub(b'!')));
    highest <= b'~' - b'!'
}

/// `byte` in each of a word's eight bytes.
pub(crate) const fn repeated(byte: u8) -> u64 {
    u64::from_ne_bytes([byte; 8])
}

/// The high bit of each byte of `word` below `bound` (at most 0x80), eight bytes at once. A
/// byte above the lowest one flagged may be flagged too (a borrow runs into it): only the
/// lowest flag, and whether there is any, are exact.
pub(crate) const fn bytes_below(word: u64, bound: u8) -> u64 {
    word.wrapping_sub(repeated(bound)) & !word & repeated(0x80)
}

/// The high bit of each byte of `word` equal to `byte` (see [`bytes_below`] for which flags
/// are exact).
pub(crate) const fn bytes_equal(word: u64, byte: u8) -> u64 {
    bytes_below(word ^ repeated(byte), 1)
}

/// Where the first of `needles` is in `text` at or after `from`; `text.len()` if none is.
/// Eight bytes at a time, as a word (the lowest flag of [`bytes_equal`] is exact).
pub(crate) fn find_any(text: &[u8], mut from: usize, needles: [u8; 4]) -> usize {
    while let Some(chunk) = text.get(from..from + 8) {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        let word = u64::from_le_bytes(bytes);
        let found = needles
            .iter()
            .fold(0, |found, &needle| found | bytes_equal(word, needle));
        if found != 0 {
            return from + (found.trailing_zeros() / 8) as usize;
        }
        from += 8;
    }
    text.get(from..)
        .and_then(|rest| rest.iter().position(|b| needles.contains(b)))
        .map_or(text.len(), |at| from + at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn find_any_finds_what_a_byte_scan_finds(
            text in proptest::collection::vec(prop_oneof![Just(b'&'), Just(b'='), any::<u8>()], 0..40),
            from in 0usize..45,
        ) {
            let needles = [b'&', b'=', b'%', b'+'];
            let expected = text
                .get(from..)
                .and_then(|rest| rest.iter().position(|b| needles.contains(b)))
                .map_or(text.len(), |at| from + at);
            prop_assert_eq!(find_any(&text, from, needles), expected);
        }
    }

    proptest! {
        #[test]
        fn all_visible_agrees_with_a_byte_test(text in proptest::collection::vec(any::<u8>(), 0..80)) {
            prop_assert_eq!(all_visible(&text), text.iter().all(u8::is_ascii_graphic));
        }
    }

    #[test]
    fn visible_ascii_is_bang_to_tilde() {
        assert!(all_visible(b"!azAZ09~"));
        assert!(all_visible(b""));
        for invisible in [b' ', b'\t', 0x7f, 0x80, 0xff, 0] {
            assert!(!all_visible(&[b'a', invisible, b'b']), "{invisible:#x}");
        }
    }

    #[test]
    fn numbers_are_written_whole() {
        for n in [0, 7, 10, 5222, u64::MAX] {
            let mut out = String::new();
            decimal(&mut out, n);
            assert_eq!(out, n.to_string());
        }
    }

    #[test]
    fn prefixes_match_in_any_ascii_case() {
        assert_eq!(
            strip_prefix_ignore_case(b"/Export/Connections/c1", b"/export/connections"),
            Some(&b"/c1"[..])
        );
        assert_eq!(
            strip_prefix_ignore_case(b"HTTPS://x", b"https://"),
            Some(&b"x"[..])
        );
        assert_eq!(strip_prefix_ignore_case(b"/exp", b"/export"), None);
        assert_eq!(strip_prefix_ignore_case(b"/import/x", b"/export"), None);
    }
}
