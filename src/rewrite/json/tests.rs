//! Examples of the JSON rewriter: the reference page, origin boundaries, escapes, odd `_links`
//! values, byte fidelity, and the documents it must refuse.

use url::Url;

use crate::rewrite::LinkRewriter;

/// The 200 example of `GET /export/connections` as the API reference documents it.
const REFERENCE_PAGE: &str = r#"{
    "connections": [{
        "id": "fc226d0d-1647-48d7-8c11-f1f74f2d9808",
        "iModelId": "7dbd531d-6967-47b2-8945-a722a437ad7a",
        "iTwinId": "7dbd531d-6967-47b2-8945-a722a437ad7a",
        "displayName": "30",
        "authenticationType": "User",
        "_links": {
            "iModel": {
                "href": "https://api.bentley.com/imodels/5db42812-ebb8-4c58-98a4-2eaa99e0d8b6"
            },
            "iTwin": {
                "href": "https://api.bentley.com/itwins/4tb42812-ebb8-4c58-98a4-2eaa99e0d8b6"
            },
            "lastRun": {
                "href": "https://api.bentley.com/export/connections/fc226d0d-1647-48d7-8c11-f1f74f2d9808/runs/de626d0d-1647-48d7-8c11-f1f74f2d4523"
            }
        }
    }],
    "_links": {
        "self": {
            "href": "https://api.bentley.com/export/connections?$skip=50&$top=50"
        },
        "prev": {
            "href": "https://api.bentley.com/export/connections?$skip=0&$top=50"
        },
        "next": {
            "href": "https://api.bentley.com/export/connections?$skip=200&$top=50"
        }
    }
}"#;

fn rewriter(origins: &[&str], public: &str) -> LinkRewriter {
    let origins: Vec<Url> = origins.iter().map(|o| Url::parse(o).unwrap()).collect();
    LinkRewriter::new(&origins, &Url::parse(public).unwrap())
}

fn local() -> LinkRewriter {
    rewriter(&["https://api.bentley.com"], "http://127.0.0.1:8080/")
}

fn rewrite(rw: &LinkRewriter, body: &str) -> Option<String> {
    rw.rewrite_json(body.as_bytes())
        .map(|out| String::from_utf8(out).unwrap())
}

#[test]
fn reference_page_gets_every_link_rewritten_and_nothing_else() {
    let expected = REFERENCE_PAGE.replace("https://api.bentley.com/", "http://127.0.0.1:8080/");
    assert_eq!(rewrite(&local(), REFERENCE_PAGE), Some(expected));
}

#[test]
fn public_path_prefix() {
    let rw = rewriter(&["https://api.bentley.com/"], "http://gw/bentley/");
    let expected = REFERENCE_PAGE.replace("https://api.bentley.com/", "http://gw/bentley/");
    assert_eq!(rewrite(&rw, REFERENCE_PAGE), Some(expected));
}

#[test]
fn scheme_and_host_ignore_case() {
    assert_eq!(
        rewrite(
            &local(),
            r#"{"_links":{"self":{"href":"HTTPS://Api.Bentley.COM/Export?A=1"}}}"#
        )
        .as_deref(),
        Some(r#"{"_links":{"self":{"href":"http://127.0.0.1:8080/Export?A=1"}}}"#)
    );
}

#[test]
fn origin_must_end_at_a_boundary() {
    for href in [
        "https://api.bentley.com.evil.example/x",
        "https://api.bentley.comx",
        "https://api.bentley.com:8443/x",
        "http://api.bentley.com/x",
        "/export/connections",
        "",
    ] {
        let body = format!(r#"{{"_links":{{"self":{{"href":"{href}"}}}}}}"#);
        assert_eq!(rewrite(&local(), &body), None, "{href}");
    }
    for (href, expected) in [
        ("https://api.bentley.com", "http://127.0.0.1:8080"),
        ("https://api.bentley.com?q", "http://127.0.0.1:8080?q"),
        ("https://api.bentley.com#f", "http://127.0.0.1:8080#f"),
        ("https://api.bentley.com:443/x", "http://127.0.0.1:8080/x"),
    ] {
        let body = format!(r#"{{"_links":{{"self":{{"href":"{href}"}}}}}}"#);
        let want = format!(r#"{{"_links":{{"self":{{"href":"{expected}"}}}}}}"#);
        assert_eq!(rewrite(&local(), &body), Some(want), "{href}");
    }
}

#[test]
fn link_origins_are_rewritten() {
    let rw = rewriter(
        &["https://api.bentley.com", "http://127.0.0.1:5000/"],
        "http://gw",
    );
    assert_eq!(
        rewrite(
            &rw,
            r#"{"_links":{"a":{"href":"http://127.0.0.1:5000/r"},"b":{"href":"https://api.bentley.com/s"},"c":{"href":"http://127.0.0.1:5001/t"}}}"#
        )
        .as_deref(),
        Some(
            r#"{"_links":{"a":{"href":"http://gw/r"},"b":{"href":"http://gw/s"},"c":{"href":"http://127.0.0.1:5001/t"}}}"#
        )
    );
}

#[test]
fn escaped_origin_is_decoded_and_re_encoded() {
    assert_eq!(
        rewrite(
            &local(),
            r#"{"_links":{"self":{"href":"https:\/\/api.bentley.com\/x"}}}"#
        )
        .as_deref(),
        Some(r#"{"_links":{"self":{"href":"http://127.0.0.1:8080/x"}}}"#)
    );
    assert_eq!(
        rewrite(
            &local(),
            r#"{"_links":{"self":{"href":"\u0068ttps://api.bentley.com/\"q\""}}}"#
        )
        .as_deref(),
        Some(r#"{"_links":{"self":{"href":"http://127.0.0.1:8080/\"q\""}}}"#)
    );
    assert_eq!(
        rewrite(
            &local(),
            r#"{"_links":{"self":{"href":"https:\/\/api.bentley.com.evil\/x"}}}"#
        ),
        None
    );
}

#[test]
fn escapes_after_a_plain_origin_are_kept() {
    assert_eq!(
        rewrite(
            &local(),
            r#"{"_links":{"self":{"href":"https://api.bentley.com/x\u0026y=\"\u00e9\/\""}}}"#
        )
        .as_deref(),
        Some(r#"{"_links":{"self":{"href":"http://127.0.0.1:8080/x\u0026y=\"\u00e9\/\""}}}"#)
    );
    // The boundary after the origin is escaped here, so the literal is decoded and re-encoded.
    assert_eq!(
        rewrite(
            &local(),
            r#"{"_links":{"self":{"href":"https://api.bentley.com\/x\u0026"}}}"#
        )
        .as_deref(),
        Some(r#"{"_links":{"self":{"href":"http://127.0.0.1:8080/x&"}}}"#)
    );
}

#[test]
fn escaped_member_names_are_recognised() {
    assert_eq!(
        rewrite(
            &local(),
            r#"{"\u005flinks":{"self":{"hr\u0065f":"https://api.bentley.com/x"}}}"#
        )
        .as_deref(),
        Some(r#"{"\u005flinks":{"self":{"hr\u0065f":"http://127.0.0.1:8080/x"}}}"#)
    );
    assert_eq!(
        rewrite(
            &local(),
            r#"{"\u005flinks2":{"self":{"href":"https://api.bentley.com/x"}}}"#
        ),
        None
    );
}

#[test]
fn href_outside_links_is_untouched() {
    let body = r#"{"href":"https://api.bentley.com/a","links":{"href":"https://api.bentley.com/b"},"x":{"_link":{"href":"https://api.bentley.com/c"}},"s":"https://api.bentley.com/d"}"#;
    assert_eq!(rewrite(&local(), body), None);
    assert_eq!(rewrite(&local(), r#""https://api.bentley.com/x""#), None);
    let mixed = r#"{"href":"https://api.bentley.com/a","_links":{"self":{"href":"https://api.bentley.com/b","title":"https://api.bentley.com/t"}}}"#;
    assert_eq!(
        rewrite(&local(), mixed).as_deref(),
        Some(
            r#"{"href":"https://api.bentley.com/a","_links":{"self":{"href":"http://127.0.0.1:8080/b","title":"https://api.bentley.com/t"}}}"#
        )
    );
}

#[test]
fn odd_links_values_do_not_break_it() {
    let body = r#"{"_links":null,"a":{"_links":"https://api.bentley.com/x"},"b":{"_links":7},"c":{"_links":{"self":{"href":null},"n":{"href":5},"t":{"href":true},"e":{}}},"d":{"_links":[]},"e":{"_links":{"self":{"href":"https://api.bentley.com/y"}}}}"#;
    assert_eq!(
        rewrite(&local(), body),
        Some(body.replace("https://api.bentley.com/y", "http://127.0.0.1:8080/y"))
    );
}

#[test]
fn nested_and_array_links() {
    let body = r#"{"items":[{"_links":{"self":[{"href":"https://api.bentley.com/1"},{"href":"https://api.bentley.com/2"}],"deep":{"x":{"y":[[{"href":"https://api.bentley.com/3"}]]}},"href":"https://api.bentley.com/4","obj":{"href":{"href":"https://api.bentley.com/5"}}}}],"_links":[{"href":"https://api.bentley.com/6"}]}"#;
    assert_eq!(
        rewrite(&local(), body),
        Some(body.replace("https://api.bentley.com/", "http://127.0.0.1:8080/"))
    );
}

#[test]
fn malformed_hrefs_keep_their_tail() {
    let body = r#"{"_links":{"next":{"href":"https://api.bentley.com/export/connections/c1/runs&$skip=50&$top=50"},"p":{"href":"https://api.bentley.com?$skip=0&$top=50"},"q":{"href":"https://api.bentley.com/a%2Fb%zz?%E2%82%AC#frag"},"u":{"href":"https://api.bentley.com/ünï cödé 😀"}}}"#;
    assert_eq!(
        rewrite(&local(), body),
        Some(body.replace("https://api.bentley.com", "http://127.0.0.1:8080"))
    );
}

#[test]
fn whitespace_numbers_and_key_order_are_kept() {
    let body = "\r\n\t {\"z\" :  1.0e+3 ,\"a\":-0,\"n\":[ 1 , 2.50 ,-1E-7,0.0 ] ,\n  \"_links\" : {\t\"self\" :{ \"href\"  :   \"https://api.bentley.com/x\" } } , \"s\":\"\\u00e9\\n\\/\",\"b\" : true ,\"c\":false,\"d\":null }\n\n";
    assert_eq!(
        rewrite(&local(), body),
        Some(body.replace("https://api.bentley.com/x", "http://127.0.0.1:8080/x"))
    );
}

#[test]
fn nothing_to_rewrite_is_none() {
    assert_eq!(
        rewrite(
            &local(),
            r#"{"error":{"code":"HeaderNotFound","message":"no"}}"#
        ),
        None
    );
    assert_eq!(
        rewrite(
            &local(),
            &REFERENCE_PAGE.replace("api.bentley.com", "example.com")
        ),
        None
    );
    assert_eq!(rewrite(&local(), "[]"), None);
    assert_eq!(rewrite(&local(), "0"), None);
}

#[test]
fn invalid_json_is_none() {
    let valid = r#"{"_links":{"self":{"href":"https://api.bentley.com/x"}}}"#;
    assert!(rewrite(&local(), valid).is_some());
    let cases: Vec<Vec<u8>> = [
        format!("{valid} x"),
        format!("{valid}{valid}"),
        valid[..valid.len() - 1].to_owned(),
        valid.replace("/x", "/\\x"),
        valid.replace("/x", "/\\u12"),
        valid.replace("/x", "/\\ud800"),
        valid.replace("/x", "/\\udc00"),
        valid.replace("/x", "/\\ud800\\u0041"),
        valid.replace("/x", "/\n"),
        valid.replace("/x", "/\u{7}"),
        valid.replace("/x", "/x\t0123456789abcdef"),
        valid.replace("/x", "/x\u{1f}0123456789abcdef"),
        valid.replace("}}}", "},}}"),
        valid.replace("{\"_links\":", "{\"_links\" "),
        valid.replace("{\"_links\":", "{'_links':"),
        valid.replace("{\"_links\":", "{\"a\":01,\"_links\":"),
        valid.replace("{\"_links\":", "{\"a\":1.,\"_links\":"),
        valid.replace("{\"_links\":", "{\"a\":.5,\"_links\":"),
        valid.replace("{\"_links\":", "{\"a\":1e,\"_links\":"),
        valid.replace("{\"_links\":", "{\"a\":+1,\"_links\":"),
        valid.replace("{\"_links\":", "{\"a\":NaN,\"_links\":"),
        valid.replace("{\"_links\":", "{\"a\":tru,\"_links\":"),
        valid.replace("{\"_links\":", "{a:1,\"_links\":"),
        valid.replace("{\"_links\":", "[\"_links\":"),
        format!("\u{feff}{valid}"),
        format!("[{valid},]"),
        format!("[{valid}"),
        String::new(),
        " \n ".to_owned(),
    ]
    .into_iter()
    .map(String::into_bytes)
    .chain([
        valid
            .replace("/x", "/\u{e9}")
            .into_bytes()
            .into_iter()
            .filter(|&b| b != 0xA9)
            .collect(),
        [valid.as_bytes(), b"\xff"].concat(),
        valid
            .replace("/x", "/\u{1F600}")
            .into_bytes()
            .into_iter()
            .filter(|&b| b != 0x80)
            .collect(),
    ])
    .collect();
    for case in cases {
        assert!(serde_json::from_slice::<serde_json::Value>(&case).is_err());
        assert_eq!(
            local().rewrite_json(&case),
            None,
            "{}",
            String::from_utf8_lossy(&case)
        );
    }
}

#[test]
fn valid_unicode_is_accepted() {
    let body = r#"{"é😀":"\ud83d\ude00 \u00E9 ü ∑ 😀","_links":{"self":{"href":"https://api.bentley.com/€"}}}"#;
    assert_eq!(
        rewrite(&local(), body),
        Some(body.replace("https://api.bentley.com", "http://127.0.0.1:8080"))
    );
}

#[test]
fn nesting_depth_matches_serde_json() {
    let links = r#"{"_links":{"href":"https://api.bentley.com/x"}}"#;
    let nested = |depth: usize| format!("{}{links}{}", "[".repeat(depth), "]".repeat(depth));
    let deepest = nested(125);
    assert!(serde_json::from_str::<serde_json::Value>(&deepest).is_ok());
    assert!(rewrite(&local(), &deepest).is_some());
    let too_deep = nested(126);
    assert!(serde_json::from_str::<serde_json::Value>(&too_deep).is_err());
    assert_eq!(rewrite(&local(), &too_deep), None);
}

#[test]
fn hostile_nesting_is_refused_without_overflowing_the_stack() {
    assert_eq!(rewrite(&local(), &"[".repeat(1_000_000)), None);
    assert_eq!(rewrite(&local(), &r#"{"_links":"#.repeat(1_000_000)), None);
}
