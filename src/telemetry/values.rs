//! Field values written as tracing's formatters write them, without their machinery: a
//! string as serde_json writes it (the JSON format) and as `{:?}` writes a `str` (the text
//! format). The strings keep a client-controlled value inside
//! its quotes: no newline, quote or control character gets through unescaped.

use crate::ascii::{bytes_below, bytes_equal, repeated};

/// Bytes a JSON string escapes: control characters, the quote and the backslash (DEL and
/// non-ASCII characters pass as they are).
const JSON_ESCAPED: [bool; 256] = escaped_bytes(u8::MAX);

/// Bytes `{:?}` may escape: those JSON escapes, DEL, and every byte of a non-ASCII
/// character (some of which are escaped, see [`debug_string`]).
const DEBUG_ESCAPED: [bool; 256] = escaped_bytes(b'~');

/// The table of bytes escaped: below space, above `last_plain`, the quote and the backslash.
const fn escaped_bytes(last_plain: u8) -> [bool; 256] {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 256 {
        table[byte] = byte < 0x20 || byte > last_plain as usize || byte == 0x22 || byte == 0x5c;
        byte += 1;
    }
    table
}

/// Whether a word's eight bytes may hold one that needs escaping (in either format): a byte
/// below space, above `~`, the quote or the backslash. Never false for such a word.
fn suspect(word: u64) -> bool {
    (word & repeated(0x80)
        | bytes_below(word, 0x20)
        | bytes_equal(word, b'"')
        | bytes_equal(word, b'\\')
        | bytes_equal(word, 0x7f))
        != 0
}

/// Whether no byte of `bytes` may need escaping, a word at a time: the last word overlaps the
/// one before it, and a value shorter than a word is padded with spaces.
fn all_plain(bytes: &[u8]) -> bool {
    let word = |chunk: &[u8]| {
        let mut word = [b' '; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        u64::from_ne_bytes(word)
    };
    match bytes.len().checked_sub(8) {
        None => !suspect(word(bytes)),
        Some(last) => {
            bytes.chunks_exact(8).all(|chunk| !suspect(word(chunk)))
                && !suspect(word(&bytes[last..]))
        }
    }
}

/// The length of the run of bytes at the start of `bytes` that `table` lets through as they
/// are, byte by byte (for the rare value that has some to escape).
fn plain_run(bytes: &[u8], table: &[bool; 256]) -> usize {
    bytes
        .iter()
        .position(|&byte| table[usize::from(byte)])
        .unwrap_or(bytes.len())
}

/// Appends `value` as a JSON string, escaped as serde_json escapes it.
pub(crate) fn json_string(out: &mut String, value: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(value.len() + 2);
    out.push('"');
    if all_plain(value.as_bytes()) {
        out.push_str(value);
        out.push('"');
        return;
    }
    let bytes = value.as_bytes();
    let mut at = 0;
    loop {
        let run = plain_run(&bytes[at..], &JSON_ESCAPED);
        // Escaped bytes are ASCII, so the run ends on a character boundary.
        out.push_str(&value[at..at + run]);
        at += run;
        let Some(&byte) = bytes.get(at) else {
            break;
        };
        at += 1;
        out.push('\\');
        match byte {
            b'"' => out.push('"'),
            b'\\' => out.push('\\'),
            b'\n' => out.push('n'),
            b'\r' => out.push('r'),
            b'\t' => out.push('t'),
            0x08 => out.push('b'),
            0x0c => out.push('f'),
            _ => {
                out.push_str("u00");
                out.push(char::from(HEX[usize::from(byte >> 4)]));
                out.push(char::from(HEX[usize::from(byte & 0xf)]));
            }
        }
    }
    out.push('"');
}

/// Appends `value` quoted and escaped as `{:?}` writes a `str`.
pub(crate) fn debug_string(out: &mut String, value: &str) {
    out.reserve(value.len() + 2);
    out.push('"');
    if all_plain(value.as_bytes()) {
        out.push_str(value);
        out.push('"');
        return;
    }
    let bytes = value.as_bytes();
    let mut at = 0;
    loop {
        let run = plain_run(&bytes[at..], &DEBUG_ESCAPED);
        // The run is printable ASCII, so it ends on a character boundary.
        out.push_str(&value[at..at + run]);
        at += run;
        let Some(c) = value[at..].chars().next() else {
            break;
        };
        // `escape_debug` escapes as `str`'s `Debug` does for every character but the single
        // quote, which is printable ASCII and never gets here.
        for escaped in c.escape_debug() {
            out.push(escaped);
        }
        at += c.len_utf8();
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn both(value: &str) -> (String, String) {
        let (mut json, mut debug) = (String::new(), String::new());
        json_string(&mut json, value);
        debug_string(&mut debug, value);
        (json, debug)
    }

    #[test]
    fn hostile_values_stay_inside_their_quotes() {
        let (json, debug) = both("a\"b\\c\nd\re\tf\0g\u{1b}[31mh\u{7f}i");
        assert_eq!(
            json,
            r#""a\"b\\c\nd\re\tf\u0000g\u001b[31mh"#.to_owned() + "\u{7f}i\""
        );
        assert_eq!(debug, r#""a\"b\\c\nd\re\tf\0g\u{1b}[31mh\u{7f}i""#);
        let (json, debug) = both("x\" cache=\"forged");
        assert_eq!(json, r#""x\" cache=\"forged""#);
        assert_eq!(debug, r#""x\" cache=\"forged""#);
    }

    #[test]
    fn other_characters_pass_as_the_formatters_pass_them() {
        let (json, debug) = both("caf\u{e9} 'q' e\u{301} \u{85}");
        assert_eq!(json, "\"caf\u{e9} 'q' e\u{301} \u{85}\"");
        assert_eq!(debug, "\"caf\u{e9} 'q' e\\u{301} \\u{85}\"");
    }

    #[test]
    fn a_byte_to_escape_is_seen_wherever_it_is() {
        for at in 0..20 {
            for escaped in ["\"", "\\", "\n", "\u{1f}", "\u{7f}", "\u{e9}"] {
                for after in ["", "b", "bcdefghijk"] {
                    let value = "a".repeat(at) + escaped + after;
                    assert!(!all_plain(value.as_bytes()), "{value:?}");
                    let json = escaped.as_bytes()[0] != 0x7f && escaped.is_ascii();
                    let table = if json { &JSON_ESCAPED } else { &DEBUG_ESCAPED };
                    assert_eq!(plain_run(value.as_bytes(), table), at, "{value:?}");
                }
            }
            let plain = "a~ !".repeat(at);
            assert!(all_plain(plain.as_bytes()), "{plain:?}");
            assert_eq!(plain_run(plain.as_bytes(), &DEBUG_ESCAPED), plain.len());
        }
    }

    proptest! {
        #[test]
        fn json_strings_are_serde_json_strings(value in any::<String>()) {
            let mut out = String::new();
            json_string(&mut out, &value);
            prop_assert_eq!(out, serde_json::to_string(&value).unwrap());
        }

        #[test]
        fn ascii_strings_are_escaped_as_both_formatters_do(value in "[\\x00-\\x7f]{0,64}") {
            let (json, debug) = both(&value);
            prop_assert_eq!(json, serde_json::to_string(&value).unwrap());
            prop_assert_eq!(debug, format!("{value:?}"));
        }

        #[test]
        fn text_strings_are_debug_strings(value in any::<String>()) {
            let mut out = String::new();
            debug_string(&mut out, &value);
            prop_assert_eq!(out, format!("{value:?}"));
        }
    }
}
