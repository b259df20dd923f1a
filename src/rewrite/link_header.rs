//! Rewriting of `Link` header values (RFC 8288): the `<URI>` target of each comma-separated
//! entry, leaving parameters and separators exactly as they were.

use super::LinkRewriter;

/// The value with every entry's `<URI>` target rewritten, or `None` when nothing changed.
pub(super) fn rewrite(rw: &LinkRewriter, value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut pos = 0;
    while pos < bytes.len() {
        pos = skip_separators(bytes, pos);
        if bytes.get(pos) == Some(&b'<') {
            let target_start = pos + 1;
            let Some(len) = bytes.get(target_start..)?.iter().position(|&b| b == b'>') else {
                break;
            };
            let target = bytes.get(target_start..target_start + len)?;
            if let Some(n) = rw.match_len(target) {
                let rewritten = out.get_or_insert_with(|| String::with_capacity(value.len() + 32));
                rewritten.push_str(value.get(copied..target_start)?);
                rewritten.push_str(&rw.public);
                copied = target_start + n;
            }
            pos = target_start + len + 1;
        }
        pos = skip_to_next_entry(bytes, pos);
    }
    let mut rewritten = out?;
    rewritten.push_str(value.get(copied..)?);
    Some(rewritten)
}

/// Skips whitespace and empty list elements before an entry.
fn skip_separators(bytes: &[u8], mut pos: usize) -> usize {
    while matches!(bytes.get(pos), Some(b' ' | b'\t' | b',')) {
        pos += 1;
    }
    pos
}

/// Skips an entry's parameters up to the comma that ends it, stepping over quoted strings.
fn skip_to_next_entry(bytes: &[u8], mut pos: usize) -> usize {
    let mut quoted = false;
    while let Some(&b) = bytes.get(pos) {
        match (quoted, b) {
            (false, b',') => return pos,
            (_, b'"') => quoted = !quoted,
            (true, b'\\') => pos += 1,
            _ => {}
        }
        pos += 1;
    }
    pos
}

#[cfg(test)]
mod tests {
    use url::Url;

    use super::*;

    fn rw() -> LinkRewriter {
        let origins = [
            Url::parse("https://api.bentley.com").unwrap(),
            Url::parse("http://127.0.0.1:5000").unwrap(),
        ];
        LinkRewriter::new(&origins, &Url::parse("http://gw/bentley/").unwrap())
    }

    #[test]
    fn every_target_is_rewritten_and_the_rest_kept() {
        let value = r#"<https://api.bentley.com/export/connections?$skip=50&$top=50>; rel="next",  <https://API.bentley.com?$skip=0&$top=50>;rel=prev , <http://127.0.0.1:5000/x>"#;
        assert_eq!(
            rw().rewrite_link_header(value).as_deref(),
            Some(
                r#"<http://gw/bentley/export/connections?$skip=50&$top=50>; rel="next",  <http://gw/bentley?$skip=0&$top=50>;rel=prev , <http://gw/bentley/x>"#
            )
        );
    }

    #[test]
    fn foreign_targets_are_kept() {
        let value =
            r#"<https://example.com/a>; rel="next", <https://api.bentley.com/b>; rel="prev""#;
        assert_eq!(
            rw().rewrite_link_header(value).as_deref(),
            Some(r#"<https://example.com/a>; rel="next", <http://gw/bentley/b>; rel="prev""#)
        );
    }

    #[test]
    fn nothing_to_rewrite_is_none() {
        assert_eq!(
            rw().rewrite_link_header(r#"<https://example.com/a>; rel="next""#),
            None
        );
        assert_eq!(rw().rewrite_link_header(r#"</relative>; rel="next""#), None);
        assert_eq!(rw().rewrite_link_header(""), None);
        assert_eq!(rw().rewrite_link_header(", ,"), None);
        assert_eq!(
            rw().rewrite_link_header("<https://api.bentley.com.evil.example/x>"),
            None
        );
    }

    #[test]
    fn quoted_parameters_may_hold_commas_and_brackets() {
        let value = r#"<https://example.com/a>; title="x, <https://api.bentley.com/no>, \"q\" ,", <https://api.bentley.com/yes>"#;
        assert_eq!(
            rw().rewrite_link_header(value).as_deref(),
            Some(
                r#"<https://example.com/a>; title="x, <https://api.bentley.com/no>, \"q\" ,", <http://gw/bentley/yes>"#
            )
        );
    }

    #[test]
    fn malformed_values_do_not_break_it() {
        assert_eq!(
            rw().rewrite_link_header(
                "<https://api.bentley.com/a>; rel=next, <https://api.bentley.com/b"
            )
            .as_deref(),
            Some("<http://gw/bentley/a>; rel=next, <https://api.bentley.com/b")
        );
        assert_eq!(
            rw().rewrite_link_header(
                r#"junk <https://api.bentley.com/a>, <https://api.bentley.com/b>"#
            )
            .as_deref(),
            Some(r#"junk <https://api.bentley.com/a>, <http://gw/bentley/b>"#)
        );
        assert_eq!(
            rw().rewrite_link_header(
                r#"<https://api.bentley.com/a>; t="unterminated, <https://api.bentley.com/b>"#
            )
            .as_deref(),
            Some(r#"<http://gw/bentley/a>; t="unterminated, <https://api.bentley.com/b>"#)
        );
        assert_eq!(rw().rewrite_link_header("<<>>, <"), None);
    }
}
