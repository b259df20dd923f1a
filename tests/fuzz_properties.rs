//! The fuzz targets' properties (`fuzz/src/lib.rs`) on proptest's inputs: the short,
//! deterministic stand-in for a fuzzing run that every `cargo test` makes, so that a parser
//! change that breaks a property, or the targets' build, is seen at once.

#[allow(unreachable_pub, dead_code)]
#[path = "../fuzz/src/lib.rs"]
mod checks;

use proptest::prelude::*;

/// Bytes that are mostly the parsers' own syntax, so that the short runs reach past the first
/// check of each parser.
fn syntax_bytes(alphabet: &'static [u8]) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            3 => prop::sample::select(alphabet.to_vec()),
            1 => any::<u8>(),
        ],
        0..96,
    )
}

fn with_fragments(
    fragments: &'static [&'static str],
    alphabet: &'static [u8],
) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            2 => prop::sample::select(fragments).prop_map(|f| f.as_bytes().to_vec()),
            1 => syntax_bytes(alphabet),
        ],
        0..8,
    )
    .prop_map(|parts| parts.concat())
}

const JSON: &[u8] = b"{}[]\",:\\ \n0123456789-.eEtrufalsn_linkshref/u";
const JSON_FRAGMENTS: &[&str] = &[
    r#"{"_links":{"self":{"href":"#,
    r#""https://api.bentley.com/export/connections?$top=1""#,
    r#""https:\/\/api.bentley.com\/x""#,
    r#""http://127.0.0.1:5000/api/runs/1""#,
    r#""http://127.0.0.1:5000/apix""#,
    r#"}}}"#,
    r#"[{"href":"https://api.bentley.com"}]"#,
    "1e400",
];

const LINK: &[u8] = b"<>;,\" \t\\=relnext";
const LINK_FRAGMENTS: &[&str] = &[
    "<https://api.bentley.com/export/connections?$skip=10>",
    "<http://127.0.0.1:5000/api/x>",
    "; rel=\"next\"",
    "; title=\"a, <b>\"",
    ", ",
    "https://API.bentley.com#f",
];

const QUERY: &[u8] = b"&=%+$24topskipimodelId0123456789abcdef";
const QUERY_FRAGMENTS: &[&str] = &[
    "imodelId=",
    "$top=",
    "%24top=",
    "$skip=",
    "&",
    "%2",
    "%ff",
    "%C3%A9",
];

const TOKEN: &[u8] = b"Bearer .-_ABCDEFabcdef0123456789=";
const TOKEN_FRAGMENTS: &[&str] = &[
    "Bearer ",
    "bearer ",
    "eyJhbGciOiJSUzI1NiJ9.",
    // {"sub":"a","exp":2000,"nbf":1000,"scope":"x y","client_id":"c"}
    "eyJzdWIiOiJhIiwiZXhwIjoyMDAwLCJuYmYiOjEwMDAsInNjb3BlIjoieCB5IiwiY2xpZW50X2lkIjoiYyJ9",
    // {"exp":1.5e30,"nbf":-3,"scope":["x"]}
    "eyJleHAiOjEuNWUzMCwibmJmIjotMywic2NvcGUiOlsieCJdfQ",
    ".c2ln",
];

const RETRY: &[u8] = b"0123456789 ,:-GMTSunNovMonJan";
const RETRY_FRAGMENTS: &[&str] = &[
    "Sun, 06 Nov 1994 08:49:37 GMT",
    "Fri, 31 Dec 9999 23:59:59 GMT",
    "Thursday, 01-Jan-26 00:00:01 GMT",
    "Thu Jan  1 00:00:02 2026",
    "18446744073709551616",
    " 7 ",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn rewrite_json(data in with_fragments(JSON_FRAGMENTS, JSON)) {
        checks::rewrite_json(&data);
    }

    #[test]
    fn rewrite_link_header(data in with_fragments(LINK_FRAGMENTS, LINK)) {
        checks::rewrite_link_header(&data);
    }

    #[test]
    fn page_query(data in with_fragments(QUERY_FRAGMENTS, QUERY)) {
        checks::page_query(&data);
    }

    #[test]
    fn token(data in with_fragments(TOKEN_FRAGMENTS, TOKEN)) {
        checks::token(&data);
    }

    #[test]
    fn retry_after(data in with_fragments(RETRY_FRAGMENTS, RETRY)) {
        checks::retry_after(&data);
    }
}

/// Found by the `rewrite_json` fuzz target: `_links` holds `self` twice, the first with an
/// upstream href. The rewrite changes the first; `serde_json` keeps only the last, so the two
/// documents read the same although the bytes differ.
#[test]
fn rewrite_json_with_a_duplicate_links_member() {
    checks::rewrite_json(
        br#"{"_links":{"self":{"href":"https://api.bentley.com/c1"},"self":[{"href":"http://127.0.0.1:5000/api:/runs/1"}]}}"#,
    );
}
