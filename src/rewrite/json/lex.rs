//! JSON tokens over a byte slice: each function takes the position where a token starts and
//! returns the position just past it, or [`InvalidJson`] when the bytes there are not that
//! token as `serde_json` reads it.

use super::InvalidJson;

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// Where a string literal's content lies (between the quotes) and where its first escape is.
#[derive(Clone, Copy, Debug)]
pub(super) struct StrLit {
    pub(super) start: usize,
    pub(super) end: usize,
    pub(super) first_escape: Option<usize>,
}

/// Skips JSON whitespace.
pub(super) fn skip_ws(buf: &[u8], mut pos: usize) -> usize {
    // Pretty-printed bodies indent with runs of spaces.
    while buf
        .get(pos..)
        .and_then(<[u8]>::first_chunk::<8>)
        .is_some_and(|chunk| *chunk == [b' '; 8])
    {
        pos += 8;
    }
    while matches!(buf.get(pos), Some(b' ' | b'\n' | b'\r' | b'\t')) {
        pos += 1;
    }
    pos
}

/// Reads a string literal whose opening quote is at `pos`.
pub(super) fn string(buf: &[u8], pos: usize) -> Result<StrLit, InvalidJson> {
    let start = pos + 1;
    let mut pos = start;
    let mut first_escape = None;
    let mut seen = 0u64;
    loop {
        pos = skip_plain(buf, pos, &mut seen);
        match buf.get(pos) {
            Some(b'"') => break,
            Some(b'\\') => {
                first_escape.get_or_insert(pos);
                pos = escape(buf, pos)?;
            }
            _ => return Err(InvalidJson),
        }
    }
    // Escapes are ASCII, so checking the raw content checks every unescaped character.
    if seen & HIGH != 0 {
        std::str::from_utf8(buf.get(start..pos).ok_or(InvalidJson)?).map_err(|_| InvalidJson)?;
    }
    Ok(StrLit {
        start,
        end: pos,
        first_escape,
    })
}

/// Skips string content up to the next quote, backslash or control character (or the end),
/// OR-ing every skipped byte into `seen` so the caller learns whether any was non-ASCII.
fn skip_plain(buf: &[u8], mut pos: usize, seen: &mut u64) -> usize {
    while let Some(chunk) = buf.get(pos..).and_then(<[u8]>::first_chunk::<8>) {
        let x = u64::from_le_bytes(*chunk);
        let quote = x ^ (ONES * u64::from(b'"'));
        let backslash = x ^ (ONES * u64::from(b'\\'));
        // Each term flags (in a byte's high bit) a zero byte, resp. a byte below 0x20; a
        // flag can be spurious only above a genuine one, so "any flag" is exact.
        let stop = (quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash)
            | (x.wrapping_sub(ONES * 0x20) & !x);
        if stop & HIGH != 0 {
            break;
        }
        *seen |= x;
        pos += 8;
    }
    while let Some(&b) = buf.get(pos) {
        if b == b'"' || b == b'\\' || b < 0x20 {
            break;
        }
        *seen |= u64::from(b);
        pos += 1;
    }
    pos
}

/// Checks the escape whose backslash is at `pos`; UTF-16 surrogates must come in pairs.
fn escape(buf: &[u8], pos: usize) -> Result<usize, InvalidJson> {
    match buf.get(pos + 1) {
        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => Ok(pos + 2),
        Some(b'u') => match hex4(buf.get(pos + 2..)).ok_or(InvalidJson)? {
            0xD800..=0xDBFF => match buf.get(pos + 6..pos + 8) {
                Some(b"\\u")
                    if hex4(buf.get(pos + 8..)).is_some_and(|n| (0xDC00..=0xDFFF).contains(&n)) =>
                {
                    Ok(pos + 12)
                }
                _ => Err(InvalidJson),
            },
            0xDC00..=0xDFFF => Err(InvalidJson),
            _ => Ok(pos + 6),
        },
        _ => Err(InvalidJson),
    }
}

/// The value of the four hex digits that `digits` starts with.
fn hex4(digits: Option<&[u8]>) -> Option<u32> {
    digits?
        .first_chunk::<4>()?
        .iter()
        .try_fold(0, |n, &d| Some(n * 16 + char::from(d).to_digit(16)?))
}

/// Whether the (already validated) raw content of a string literal that contains escapes
/// decodes to `target`, an ASCII string; allocates nothing.
pub(super) fn escaped_eq(mut raw: &[u8], target: &[u8]) -> bool {
    let mut target = target.iter();
    loop {
        let (decoded, rest) = match raw {
            [] => return target.next().is_none(),
            [b'\\', b'u', rest @ ..] => match (hex4(Some(rest)), rest.get(4..)) {
                (Some(n), Some(rest)) => (n, rest),
                _ => return false,
            },
            [b'\\', b'b', rest @ ..] => (0x08, rest),
            [b'\\', b'f', rest @ ..] => (0x0C, rest),
            [b'\\', b'n', rest @ ..] => (u32::from(b'\n'), rest),
            [b'\\', b'r', rest @ ..] => (u32::from(b'\r'), rest),
            [b'\\', b't', rest @ ..] => (u32::from(b'\t'), rest),
            [b'\\', b, rest @ ..] | [b, rest @ ..] => (u32::from(*b), rest),
        };
        if target.next().map(|&t| u32::from(t)) != Some(decoded) {
            return false;
        }
        raw = rest;
    }
}

/// Reads a number (`-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`) starting at `pos`.
pub(super) fn number(buf: &[u8], mut pos: usize) -> Result<usize, InvalidJson> {
    if buf.get(pos) == Some(&b'-') {
        pos += 1;
    }
    match buf.get(pos) {
        Some(b'0') => pos += 1,
        Some(b'1'..=b'9') => pos = digits(buf, pos + 1),
        _ => return Err(InvalidJson),
    }
    if buf.get(pos) == Some(&b'.') {
        pos = some_digits(buf, pos + 1)?;
    }
    if matches!(buf.get(pos), Some(b'e' | b'E')) {
        pos += 1;
        if matches!(buf.get(pos), Some(b'+' | b'-')) {
            pos += 1;
        }
        pos = some_digits(buf, pos)?;
    }
    Ok(pos)
}

fn digits(buf: &[u8], mut pos: usize) -> usize {
    while buf.get(pos).is_some_and(u8::is_ascii_digit) {
        pos += 1;
    }
    pos
}

fn some_digits(buf: &[u8], pos: usize) -> Result<usize, InvalidJson> {
    let end = digits(buf, pos);
    if end == pos {
        Err(InvalidJson)
    } else {
        Ok(end)
    }
}

/// Reads the literal `word` (`true`, `false`, `null`) at `pos`.
pub(super) fn literal(buf: &[u8], pos: usize, word: &[u8]) -> Result<usize, InvalidJson> {
    if buf.get(pos..).is_some_and(|rest| rest.starts_with(word)) {
        Ok(pos + word.len())
    } else {
        Err(InvalidJson)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaped_names_compare_decoded() {
        assert!(escaped_eq(br"hr\u0065f", b"href"));
        assert!(escaped_eq(br"\u0068\u0072\u0065\u0066", b"href"));
        assert!(escaped_eq(br"\/", b"/"));
        assert!(!escaped_eq(br"hr\u0065", b"href"));
        assert!(!escaped_eq(br"hr\u0065ff", b"href"));
        assert!(!escaped_eq(br"hr\u00e9f", b"href"));
        assert!(!escaped_eq(br"hr\nf", b"href"));
    }

    #[test]
    fn numbers_follow_the_grammar() {
        for ok in ["0", "-0", "1.0e+3", "12.50", "-1E-7", "9e9"] {
            assert_eq!(number(ok.as_bytes(), 0).ok(), Some(ok.len()), "{ok}");
        }
        for bad in ["-", "1.", ".5", "1e", "1e+", "+1", "-a"] {
            let end = number(bad.as_bytes(), 0);
            assert!(end.is_err() || end.ok() != Some(bad.len()), "{bad}");
        }
        assert_eq!(number(b"01", 0).ok(), Some(1));
    }

    #[test]
    fn strings_stop_at_the_closing_quote_past_long_plain_runs() {
        let text = r#""0123456789abcdef\"0123456789é\u00e9" tail"#.as_bytes();
        let lit = string(text, 0).unwrap();
        assert_eq!(lit.start, 1);
        assert_eq!(&text[lit.end..], b"\" tail");
        assert_eq!(lit.first_escape, Some(17));
    }
}
