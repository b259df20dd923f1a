//! Upstream origins and the public prefix that replaces them: how an href is recognised as
//! pointing at the upstream, and what it is rewritten to.

use url::{Position, Url};

use crate::ascii::strip_prefix_ignore_case;

/// One upstream origin (`scheme://host[:port]` plus an optional path prefix) to recognise at
/// the start of an href.
#[derive(Clone, Debug)]
pub(super) struct UpstreamOrigin {
    /// Lowercase scheme, as `url` serialises it.
    scheme: String,
    /// Host as `url` serialises it (IPv6 in brackets); compared case-insensitively.
    host: String,
    /// `":5000"` when the origin names a non-default port, else empty.
    required_port: String,
    /// `":443"` (the scheme's default port) when the origin uses it, else empty: an href may
    /// spell the default port out or leave it implicit.
    optional_port: String,
    /// Path prefix without a trailing slash (`""` or `"/api"`), compared exactly.
    path: String,
}

impl UpstreamOrigin {
    /// The origin of `url`, or `None` for a URL without a host (such as `mailto:`), which no
    /// href can be recognised against.
    pub(super) fn new(url: &Url) -> Option<Self> {
        let host = url.host_str()?.to_owned();
        let (required_port, optional_port) = match (url.port(), url.port_or_known_default()) {
            (Some(port), _) => (format!(":{port}"), String::new()),
            (None, Some(default)) => (String::new(), format!(":{default}")),
            (None, None) => (String::new(), String::new()),
        };
        Some(Self {
            scheme: url.scheme().to_owned(),
            host,
            required_port,
            optional_port,
            path: url.path().trim_end_matches('/').to_owned(),
        })
    }

    /// How many leading bytes of `href` this origin covers, when `href` starts with it and
    /// the origin ends there (the next byte is `/`, `?`, `#` or the end of `href`).
    pub(super) fn match_len(&self, href: &[u8]) -> Option<usize> {
        let rest = strip_prefix_ignore_case(href, self.scheme.as_bytes())?;
        let rest = rest.strip_prefix(b"://")?;
        let rest = strip_prefix_ignore_case(rest, self.host.as_bytes())?;
        let rest = rest.strip_prefix(self.required_port.as_bytes())?;
        let rest = if self.optional_port.is_empty() {
            rest
        } else {
            rest.strip_prefix(self.optional_port.as_bytes())
                .unwrap_or(rest)
        };
        let rest = rest.strip_prefix(self.path.as_bytes())?;
        match rest.first() {
            None | Some(b'/' | b'?' | b'#') => Some(href.len() - rest.len()),
            Some(_) => None,
        }
    }
}

/// The text that replaces a recognised upstream origin: the public URL's scheme, host, port
/// and path prefix, without user info or a trailing slash (`http://gw/bentley/` gives
/// `http://gw/bentley`).
pub(super) fn public_prefix(url: &Url) -> String {
    format!(
        "{}://{}{}",
        url.scheme(),
        &url[Position::BeforeHost..Position::AfterPort],
        url.path().trim_end_matches('/')
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(url: &str) -> UpstreamOrigin {
        UpstreamOrigin::new(&Url::parse(url).unwrap()).unwrap()
    }

    fn matched<'a>(origin_url: &str, href: &'a str) -> Option<&'a str> {
        let n = origin(origin_url).match_len(href.as_bytes())?;
        Some(&href[n..])
    }

    #[test]
    fn origin_ends_at_a_boundary() {
        let o = "https://api.bentley.com";
        assert_eq!(matched(o, "https://api.bentley.com"), Some(""));
        assert_eq!(matched(o, "https://api.bentley.com/x"), Some("/x"));
        assert_eq!(matched(o, "https://api.bentley.com?a=1"), Some("?a=1"));
        assert_eq!(matched(o, "https://api.bentley.com#f"), Some("#f"));
        assert_eq!(matched(o, "https://api.bentley.com.evil.example/x"), None);
        assert_eq!(matched(o, "https://api.bentley.comx"), None);
        assert_eq!(matched(o, "https://api.bentley.co"), None);
        assert_eq!(matched(o, "https://api.bentley.com:8443/x"), None);
        assert_eq!(matched(o, "https://user@api.bentley.com/x"), None);
        assert_eq!(matched(o, "http://api.bentley.com/x"), None);
        assert_eq!(matched(o, "https:/api.bentley.com/x"), None);
        assert_eq!(matched(o, "/export/connections"), None);
        assert_eq!(matched(o, ""), None);
    }

    #[test]
    fn scheme_and_host_ignore_case() {
        let o = "https://api.bentley.com";
        assert_eq!(
            matched(o, "HTTPS://API.Bentley.COM/Export"),
            Some("/Export")
        );
        assert_eq!(
            matched("HTTPS://API.BENTLEY.COM", "https://api.bentley.com/x"),
            Some("/x")
        );
    }

    #[test]
    fn default_port_may_be_spelled_out() {
        let o = "https://api.bentley.com";
        assert_eq!(matched(o, "https://api.bentley.com:443/x"), Some("/x"));
        assert_eq!(matched(o, "https://api.bentley.com:443"), Some(""));
        assert_eq!(matched(o, "https://api.bentley.com:4430/x"), None);
        assert_eq!(matched(o, "https://api.bentley.com:80/x"), None);
        assert_eq!(
            matched("https://api.bentley.com:443/", "https://api.bentley.com/x"),
            Some("/x")
        );
    }

    #[test]
    fn explicit_port_must_be_present() {
        let o = "http://127.0.0.1:5000/";
        assert_eq!(matched(o, "http://127.0.0.1:5000/x"), Some("/x"));
        assert_eq!(matched(o, "http://127.0.0.1:5000"), Some(""));
        assert_eq!(matched(o, "http://127.0.0.1/x"), None);
        assert_eq!(matched(o, "http://127.0.0.1:50000/x"), None);
        assert_eq!(matched(o, "http://127.0.0.1:80/x"), None);
    }

    #[test]
    fn path_prefix_is_part_of_the_origin() {
        let o = "https://h/api/";
        assert_eq!(matched(o, "https://h/api"), Some(""));
        assert_eq!(matched(o, "https://h/api/x"), Some("/x"));
        assert_eq!(matched(o, "https://h/api?q"), Some("?q"));
        assert_eq!(matched(o, "https://h/apix"), None);
        assert_eq!(matched(o, "https://h/API/x"), None);
        assert_eq!(matched(o, "https://h/x"), None);
        assert_eq!(matched(o, "https://h:443/api/x"), Some("/x"));
    }

    #[test]
    fn ipv6_hosts() {
        assert_eq!(
            matched("http://[::1]:8080", "http://[::1]:8080/x"),
            Some("/x")
        );
        assert_eq!(matched("http://[::1]:8080", "http://[::1]/x"), None);
    }

    #[test]
    fn urls_without_a_host_are_no_origin() {
        assert!(UpstreamOrigin::new(&Url::parse("mailto:a@b.example").unwrap()).is_none());
    }

    #[test]
    fn public_prefix_drops_trailing_slash_and_user_info() {
        let p = |s: &str| public_prefix(&Url::parse(s).unwrap());
        assert_eq!(p("http://127.0.0.1:8080/"), "http://127.0.0.1:8080");
        assert_eq!(p("http://127.0.0.1:8080"), "http://127.0.0.1:8080");
        assert_eq!(p("http://gw/bentley/"), "http://gw/bentley");
        assert_eq!(p("http://gw/bentley"), "http://gw/bentley");
        assert_eq!(p("https://user:pw@gw:8443/a/b/"), "https://gw:8443/a/b");
        assert_eq!(p("https://gw:443/"), "https://gw");
        assert_eq!(p("http://[::1]:8080/"), "http://[::1]:8080");
    }
}
