//! Properties of the JSON rewriter against `serde_json`: on generated documents it agrees with
//! a slow rewrite over `serde_json::Value`, and on arbitrary or mutated bytes it never panics
//! and accepts exactly what `serde_json` accepts.

use proptest::prelude::*;
use serde_json::{Map, Value};
use url::Url;

use super::{InvalidJson, rewrite};
use crate::rewrite::LinkRewriter;

fn rewriter() -> LinkRewriter {
    let origins = [
        Url::parse("https://api.bentley.com").unwrap(),
        Url::parse("http://127.0.0.1:5000/api/").unwrap(),
    ];
    LinkRewriter::new(&origins, &Url::parse("http://gw/bentley/").unwrap())
}

/// The slow, obviously right version: rewrite hrefs under `_links` in a parsed document.
fn reference(rw: &LinkRewriter, value: &mut Value, in_links: bool) {
    match value {
        Value::Object(members) => {
            for (key, member) in members.iter_mut() {
                if in_links
                    && key == "href"
                    && let Value::String(href) = member
                {
                    if let Some(rewritten) = rw.rewrite_href(href) {
                        *href = rewritten;
                    }
                } else {
                    reference(rw, member, in_links || key == "_links");
                }
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|item| reference(rw, item, in_links)),
        _ => {}
    }
}

fn href() -> impl Strategy<Value = String> {
    let origin = prop::sample::select(vec![
        "https://api.bentley.com",
        "HTTPS://API.bentley.COM",
        "https://api.bentley.com:443",
        "https://api.bentley.com.evil.example",
        "https://api.bentley.comx",
        "http://127.0.0.1:5000/api",
        "http://127.0.0.1:5000",
        "http://127.0.0.1:5000/apix",
        "https://example.com",
        "",
    ]);
    let tail = prop::sample::select(vec![
        "",
        "/",
        "/export/connections?$skip=0&$top=50",
        "/runs&$skip=50&$top=50",
        "?$skip=0",
        "#frag",
        "x",
        "/é \"\\\u{1}\u{1F600}/%zz",
    ]);
    (origin, tail).prop_map(|(o, t)| format!("{o}{t}"))
}

fn key() -> BoxedStrategy<String> {
    prop_oneof![
        3 => prop::sample::select(vec!["_links", "href", "self", "next", "a"]).prop_map(String::from),
        1 => ".{0,6}",
    ]
    .boxed()
}

fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        href().prop_map(Value::String),
        ".{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 5, |inner| {
        let members = prop::collection::vec((key(), inner.clone()), 0..4).boxed();
        prop_oneof![
            1 => prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            1 => members.clone().prop_map(|m| Value::Object(m.into_iter().collect())),
            // A links member or a link object, so that documents often have hrefs to rewrite.
            2 => (members.clone(), inner).prop_map(|(m, links)| object_with(m, "_links", links)),
            2 => (members, href()).prop_map(|(m, href)| object_with(m, "href", Value::String(href))),
        ]
    })
}

/// Any JSON, often an object with a `_links` member.
fn document() -> impl Strategy<Value = Value> {
    let link = (prop::collection::vec((key(), json()), 0..2), href())
        .prop_map(|(m, href)| object_with(m, "href", Value::String(href)))
        .boxed();
    let links = prop_oneof![
        1 => json(),
        2 => prop::collection::vec((key(), link.clone()), 0..4)
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        1 => prop::collection::vec(link, 0..4).prop_map(Value::Array),
    ];
    prop_oneof![
        1 => json(),
        3 => (prop::collection::vec((key(), json()), 0..3), links)
            .prop_map(|(m, links)| object_with(m, "_links", links)),
    ]
}

fn object_with(members: Vec<(String, Value)>, key: &str, value: Value) -> Value {
    let mut object: Map<String, Value> = members.into_iter().collect();
    object.insert(key.to_owned(), value);
    Value::Object(object)
}

#[derive(Clone, Copy, Debug)]
enum Layout {
    Compact,
    Pretty,
    /// Every `/` escaped as `\/`, as some serialisers do.
    EscapedSlashes,
}

fn layout(value: &Value, layout: Layout) -> String {
    match layout {
        Layout::Compact => serde_json::to_string(value).unwrap(),
        Layout::Pretty => serde_json::to_string_pretty(value).unwrap(),
        Layout::EscapedSlashes => serde_json::to_string(value).unwrap().replace('/', "\\/"),
    }
}

/// Whether `serde_json` accepts the text, leaving aside the numbers it cannot hold (RFC 8259
/// allows them; the rewriter passes them on as they are).
fn serde_accepts(bytes: &[u8]) -> Option<bool> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(_) => Some(true),
        Err(e) if e.to_string().starts_with("number out of range") => None,
        Err(_) => Some(false),
    }
}

fn mutate(text: &[u8], at: usize, op: u8, byte: u8) -> Vec<u8> {
    let mut bytes = text.to_vec();
    let at = at % (bytes.len() + 1);
    match op % 4 {
        0 => bytes.truncate(at),
        1 => bytes.insert(at, byte),
        2 if at < bytes.len() => {
            bytes.remove(at);
        }
        _ if at < bytes.len() => bytes[at] = byte,
        _ => bytes.push(byte),
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn matches_the_reference(value in document(), how in prop::sample::select(vec![Layout::Compact, Layout::Pretty, Layout::EscapedSlashes])) {
        let rw = rewriter();
        let text = layout(&value, how);
        let original: Value = serde_json::from_str(&text).unwrap();
        let mut expected = original.clone();
        reference(&rw, &mut expected, false);
        match rw.rewrite_json(text.as_bytes()) {
            Some(out) => {
                let got: Value = serde_json::from_slice(&out).unwrap();
                prop_assert_eq!(&got, &expected);
                prop_assert_ne!(&got, &original);
                if !matches!(how, Layout::EscapedSlashes) && layout(&original, how) == text {
                    prop_assert_eq!(String::from_utf8(out).unwrap(), layout(&expected, how));
                }
            }
            None => prop_assert_eq!(&expected, &original),
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_validity_agrees_with_serde(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let rw = rewriter();
        let ours = rewrite(&rw, &bytes);
        if let Some(accepted) = serde_accepts(&bytes) {
            prop_assert_eq!(ours.is_ok(), accepted);
        }
        prop_assert!(rw.rewrite_json(&bytes).is_none() || ours.is_ok());
    }

    #[test]
    fn mutated_json_validity_agrees_with_serde(value in document(), at in any::<usize>(), op in any::<u8>(), byte in prop::sample::select(b"{}[]\",:\\u0e9 \x01\x7f\xc3\xa9\xffnt-.+".to_vec())) {
        let rw = rewriter();
        let bytes = mutate(layout(&value, Layout::Compact).as_bytes(), at, op, byte);
        let ours: Result<Option<Vec<u8>>, InvalidJson> = rewrite(&rw, &bytes);
        // Numbers beyond f64 are valid JSON that serde_json refuses: nothing to compare.
        if let Some(accepted) = serde_accepts(&bytes) {
            prop_assert_eq!(ours.is_ok(), accepted, "{}", String::from_utf8_lossy(&bytes));
            if let Ok(out) = ours {
                let mut expected: Value = serde_json::from_slice(&bytes).unwrap();
                reference(&rw, &mut expected, false);
                let got: Value = serde_json::from_slice(out.as_deref().unwrap_or(&bytes)).unwrap();
                prop_assert_eq!(got, expected);
            }
        }
    }
}
