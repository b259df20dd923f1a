//! Link rewriting: the pure functions that make links in upstream responses lead back
//! through the proxy. An href, `Location`/`Content-Location` value or `Link` target that
//! starts with an upstream origin gets the public base URL's origin and path prefix instead;
//! everything after the origin, and everything else in the response, is kept byte for byte.

mod json;
mod link_header;
mod origin;

use origin::UpstreamOrigin;
use url::Url;

/// Rewrites links that point at the upstream so they point at the proxy. Built once per
/// settings and shared by every request.
#[derive(Clone, Debug)]
pub struct LinkRewriter {
    /// Origins tried in order; the first that matches wins.
    origins: Vec<UpstreamOrigin>,
    /// The replacement text (`http://gw/bentley`).
    public: String,
    /// `public` escaped for use inside a JSON string literal.
    public_json: String,
}

impl LinkRewriter {
    /// `upstream_origins`: upstream.base_url first, then link_origins. `public_base_url`: the
    /// proxy's public URL (may carry a path prefix).
    ///
    /// An origin is the URL's scheme, host, port and path without a trailing slash; its query
    /// and fragment are ignored, and a URL without a host is skipped. When two origins match
    /// one href the first listed wins, so `base_url` takes precedence over `link_origins`.
    pub fn new(upstream_origins: &[Url], public_base_url: &Url) -> Self {
        let public = origin::public_prefix(public_base_url);
        let quoted = serde_json::Value::String(public.clone()).to_string();
        let public_json = quoted
            .strip_prefix('"')
            .and_then(|s| s.strip_suffix('"'))
            .unwrap_or_default()
            .to_owned();
        Self {
            origins: upstream_origins
                .iter()
                .filter_map(UpstreamOrigin::new)
                .collect(),
            public,
            public_json,
        }
    }

    /// The rewritten href when it starts with an upstream origin, else None.
    ///
    /// For Location / Content-Location header values (same rule as hrefs).
    pub fn rewrite_href(&self, href: &str) -> Option<String> {
        let rest = href.get(self.match_len(href.as_bytes())?..)?;
        let mut rewritten = String::with_capacity(self.public.len() + rest.len());
        rewritten.push_str(&self.public);
        rewritten.push_str(rest);
        Some(rewritten)
    }

    /// For `Link` header values: every `<URI>` target rewritten; None when nothing changed.
    ///
    /// The value is read as comma-separated `<uri>; params` entries; quoted parameter values
    /// may hold commas and angle brackets. Everything but the rewritten origins is kept byte
    /// for byte, including entries that do not parse.
    pub fn rewrite_link_header(&self, value: &str) -> Option<String> {
        link_header::rewrite(self, value)
    }

    /// Rewrites every string value of an `href` member anywhere inside the value of any
    /// `_links` member (at any depth, including inside arrays under _links) of a JSON
    /// document. Returns None when nothing changed OR the input is not valid JSON (callers
    /// then pass the original bytes on). The output is byte-identical to the input outside
    /// the rewritten string literals: key order, whitespace, number text, escapes elsewhere
    /// all kept.
    ///
    /// Valid JSON is RFC 8259 text as `serde_json` reads it (UTF-8, surrogate escapes paired,
    /// at most 127 nested arrays and objects), except that numbers too large for an `f64` are
    /// accepted and kept. Within an href only the origin is replaced, so escapes after it stay
    /// as they were; an href whose origin, or the character right after it, is escaped
    /// (`https:\/\/api.bentley.com\/x`) is decoded, rewritten and re-encoded whole.
    pub fn rewrite_json(&self, body: &[u8]) -> Option<Vec<u8>> {
        if self.origins.is_empty() {
            return None;
        }
        json::rewrite(self, body).ok().flatten()
    }

    /// How many leading bytes of `href` the first matching upstream origin covers.
    fn match_len(&self, href: &[u8]) -> Option<usize> {
        self.origins.iter().find_map(|o| o.match_len(href))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    fn rewriter(origins: &[&str], public: &str) -> LinkRewriter {
        let origins: Vec<Url> = origins.iter().map(|o| url(o)).collect();
        LinkRewriter::new(&origins, &url(public))
    }

    #[test]
    fn href_gets_the_public_origin_and_keeps_the_rest() {
        let rw = rewriter(&["https://api.bentley.com"], "http://127.0.0.1:8080/");
        assert_eq!(
            rw.rewrite_href("https://api.bentley.com/export/connections?$skip=0&$top=50")
                .as_deref(),
            Some("http://127.0.0.1:8080/export/connections?$skip=0&$top=50")
        );
        assert_eq!(
            rw.rewrite_href("https://api.bentley.com").as_deref(),
            Some("http://127.0.0.1:8080")
        );
        assert_eq!(rw.rewrite_href("https://example.com/x"), None);
        assert_eq!(rw.rewrite_href("/relative"), None);
    }

    #[test]
    fn malformed_hrefs_keep_their_tail_byte_for_byte() {
        let rw = rewriter(&["https://api.bentley.com"], "http://127.0.0.1:8080");
        for tail in [
            "/export/connections/c1/runs&$skip=50&$top=50",
            "?$skip=0&$top=50",
            "/a%2Fb%zz?x=%E2%82%AC#frag",
            "#frag",
            "/ünïcödé path with spaces/\\",
            "//double",
        ] {
            assert_eq!(
                rw.rewrite_href(&format!("https://api.bentley.com{tail}")),
                Some(format!("http://127.0.0.1:8080{tail}"))
            );
        }
    }

    #[test]
    fn public_path_prefix_replaces_the_origin() {
        let rw = rewriter(&["https://api.bentley.com/"], "http://gw/bentley/");
        assert_eq!(
            rw.rewrite_href("https://api.bentley.com/export/connections/1")
                .as_deref(),
            Some("http://gw/bentley/export/connections/1")
        );
        assert_eq!(
            rw.rewrite_href("https://api.bentley.com?a").as_deref(),
            Some("http://gw/bentley?a")
        );
    }

    #[test]
    fn link_origins_are_rewritten_too_and_base_url_wins() {
        let rw = rewriter(
            &["https://h/api", "https://h", "http://127.0.0.1:5000/"],
            "http://gw/p",
        );
        assert_eq!(
            rw.rewrite_href("https://h/api/x").as_deref(),
            Some("http://gw/p/x")
        );
        assert_eq!(
            rw.rewrite_href("https://h/other").as_deref(),
            Some("http://gw/p/other")
        );
        assert_eq!(
            rw.rewrite_href("http://127.0.0.1:5000/runs/1").as_deref(),
            Some("http://gw/p/runs/1")
        );
        assert_eq!(rw.rewrite_href("http://127.0.0.1:5001/runs/1"), None);
    }

    #[test]
    fn no_origins_rewrite_nothing() {
        let rw = rewriter(&[], "http://gw");
        assert_eq!(rw.rewrite_href("https://api.bentley.com/x"), None);
        assert_eq!(
            rw.rewrite_json(br#"{"_links":{"href":"https://api.bentley.com"}}"#),
            None
        );
    }

    #[test]
    fn public_prefix_needing_json_escapes_stays_valid_json() {
        let rw = rewriter(&["https://api.bentley.com"], "x-gw://h/a\\b");
        let out = rw
            .rewrite_json(br#"{"_links":{"self":{"href":"https://api.bentley.com/c"}}}"#)
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["_links"]["self"]["href"], "x-gw://h/a\\b/c");
    }
}
