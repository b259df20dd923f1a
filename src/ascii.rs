//! ASCII text: compared ignoring case, as URL schemes, hosts and the API's paths are, and
//! numbers written as decimal digits without the formatting machinery (on every request).

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

#[cfg(test)]
mod tests {
    use super::*;

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
