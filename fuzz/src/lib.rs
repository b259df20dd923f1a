//! The properties the fuzz targets check, one function per target: each takes arbitrary bytes,
//! feeds them to one of itwin-proxy's parsers of untrusted input, and panics when the parser
//! panics or breaks a stated property.
//!
//! The same functions run under `cargo test` (`tests/fuzz_properties.rs` includes this file and
//! feeds them proptest's bytes), so a change of the parsers' API is caught by the ordinary test
//! suite, not only by a fuzzing run.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderValue, header};
use itwin_proxy::auth::{Subject, Token, TokenHasher, bearer_token};
use itwin_proxy::cache::PageQuery;
use itwin_proxy::ratelimit::parse_retry_after;
use itwin_proxy::rewrite::LinkRewriter;
use serde_json::Value;
use url::Url;

/// The replacement origin: not itself an upstream origin, so a rewrite is never rewritten again.
const PUBLIC: &str = "http://gw/bentley/";

/// The rewriter every target uses: two upstream origins, one with a path, and a public base
/// URL with a path prefix.
fn rewriter() -> &'static LinkRewriter {
    static REWRITER: OnceLock<LinkRewriter> = OnceLock::new();
    REWRITER.get_or_init(|| {
        let origins: Vec<Url> = ["https://api.bentley.com", "http://127.0.0.1:5000/api/"]
            .iter()
            .filter_map(|o| Url::parse(o).ok())
            .collect();
        let public = Url::parse(PUBLIC).unwrap_or_else(|e| panic!("{PUBLIC}: {e}"));
        LinkRewriter::new(&origins, &public)
    })
}

/// Whether `serde_json` accepts the text, leaving aside numbers too large for an `f64` (RFC
/// 8259 allows them, `serde_json` refuses them, the rewriter keeps them as they are).
fn serde_reading(bytes: &[u8]) -> Option<Result<Value, ()>> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(value) => Some(Ok(value)),
        Err(e) if e.to_string().starts_with("number out of range") => None,
        Err(_) => Some(Err(())),
    }
}

/// The slow, obviously right rewrite: every string `href` member inside a `_links` value.
fn reference(value: &mut Value, in_links: bool) {
    match value {
        Value::Object(members) => {
            for (key, member) in members.iter_mut() {
                match member {
                    Value::String(href) if in_links && key == "href" => {
                        if let Some(rewritten) = rewriter().rewrite_href(href) {
                            *href = rewritten;
                        }
                    }
                    _ => reference(member, in_links || key == "_links"),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| reference(item, in_links)),
        _ => {}
    }
}

/// `LinkRewriter::rewrite_json` on any bytes: never panics; on JSON that `serde_json` reads,
/// its answer equals the slow rewrite over `serde_json::Value` (and is `None` exactly when
/// that changes nothing); on anything else it answers `None`; and a rewritten body has nothing
/// left to rewrite.
pub fn rewrite_json(data: &[u8]) {
    let rewritten = rewriter().rewrite_json(data);
    match (serde_reading(data), &rewritten) {
        (Some(Err(())), Some(_)) => panic!("rewrote text that is not JSON"),
        (Some(Ok(original)), out) => {
            let mut expected = original.clone();
            reference(&mut expected, false);
            match out {
                None => assert_eq!(expected, original, "an href was left unrewritten"),
                Some(out) => {
                    let got = serde_json::from_slice::<Value>(out)
                        .unwrap_or_else(|e| panic!("the rewrite is not JSON: {e}"));
                    assert_eq!(got, expected, "the rewrite differs from the reference");
                    // Not `got != original`: with duplicate keys the rewritten member may be
                    // one that `serde_json` drops.
                    assert_ne!(out.as_slice(), data, "a rewrite that changed nothing");
                }
            }
        }
        _ => {}
    }
    if let Some(out) = rewritten {
        assert_eq!(
            rewriter().rewrite_json(&out),
            None,
            "a rewrite is not final"
        );
    }
}

/// `LinkRewriter::rewrite_link_header` and `rewrite_href` on any text: never panic; a
/// rewritten href is the public prefix followed by a tail of the original, byte for byte; a
/// rewritten header has nothing left to rewrite.
pub fn rewrite_link_header(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let rw = rewriter();
    if let Some(out) = rw.rewrite_link_header(text) {
        assert_ne!(out, text, "a Link rewrite that changed nothing");
        assert_eq!(
            rw.rewrite_link_header(&out),
            None,
            "a Link rewrite is not final"
        );
    }
    if let Some(out) = rw.rewrite_href(text) {
        let public = PUBLIC.trim_end_matches('/');
        let tail = out
            .strip_prefix(public)
            .unwrap_or_else(|| panic!("{out:?} does not start with the public prefix"));
        assert!(text.ends_with(tail), "{text:?} lost bytes in {out:?}");
        assert_eq!(rw.rewrite_href(&out), None, "an href rewrite is not final");
    }
}

/// `PageQuery::parse` on any query string: never panics; a cacheable query names a non-empty
/// iModel; the order of the parameters never matters.
pub fn page_query(data: &[u8]) {
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = PageQuery::parse(Some(query));
    if let Some(page) = &parsed {
        assert!(!page.imodel_id().is_empty(), "a page of no iModel");
    }
    let reversed = query.rsplit('&').collect::<Vec<_>>().join("&");
    assert_eq!(
        PageQuery::parse(Some(&reversed)),
        parsed,
        "order matters: {query:?} vs {reversed:?}"
    );
}

fn hasher() -> &'static TokenHasher {
    static HASHER: OnceLock<TokenHasher> = OnceLock::new();
    HASHER.get_or_init(|| TokenHasher::random().unwrap_or_else(|e| panic!("{e}")))
}

/// `bearer_token` and `Token::parse` on any `Authorization` value: never panic; the token
/// found is non-empty, has no whitespace and comes from the header; a token's subject is the
/// same on every reading, and an opaque subject is the token's own hash; the time window and
/// the scope check agree with the claims read.
pub fn token(data: &[u8]) {
    let Ok(value) = HeaderValue::from_bytes(data) else {
        return;
    };
    let mut headers = HeaderMap::new();
    headers.insert(header::AUTHORIZATION, value);
    let Some(token) = bearer_token(&headers) else {
        return;
    };
    assert!(!token.is_empty() && !token.bytes().any(|b| b.is_ascii_whitespace()));
    assert!(data.ends_with(token.as_bytes()) || data.trim_ascii_end().ends_with(token.as_bytes()));
    let parsed = Token::parse(token, hasher());
    let again = Token::parse(token, hasher());
    assert_eq!(
        parsed.subject, again.subject,
        "the subject changed between readings"
    );
    assert_eq!(parsed.hash, again.hash);
    if let Subject::Opaque(hash) = &parsed.subject {
        assert_eq!(
            *hash, parsed.hash,
            "an opaque subject that is not the token's hash"
        );
    }
    if let Some(exp) = parsed.expires_at {
        assert!(!parsed.is_current(exp), "current at its own exp");
    }
    if let Some(nbf) = parsed.not_before {
        assert!(
            nbf == 0 || !parsed.is_current(nbf - 1),
            "current before its nbf"
        );
    }
    assert_eq!(parsed.has_accepted_scope(&[]), parsed.scopes.is_none());
}

/// `parse_retry_after` on any header value: never panics; delta-seconds always count (too
/// large saturates); a date is read as the time left until it, so that read again at that
/// moment it leaves nothing.
pub fn retry_after(data: &[u8]) {
    let Ok(value) = HeaderValue::from_bytes(data) else {
        return;
    };
    // 2026-01-01T00:00:00Z.
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600);
    let parsed = parse_retry_after(&value, now);
    let text = value.to_str().map(str::trim).unwrap_or_default();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        let secs = text.parse::<u64>().unwrap_or(u64::MAX);
        assert_eq!(parsed, Some(Duration::from_secs(secs)));
    } else if let Some(wait) = parsed {
        let then = now + wait;
        assert_eq!(parse_retry_after(&value, then), Some(Duration::ZERO));
    }
}
