//! Text compared ignoring ASCII case, as URL schemes, hosts and the API's paths are.

/// `text` without `prefix`, compared ignoring ASCII case.
pub(crate) fn strip_prefix_ignore_case<'a>(text: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    let (head, rest) = text.split_at_checked(prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then_some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

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
