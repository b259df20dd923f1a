//! The guard, in the route phase: hygiene before anything else. Refuse what would make the
//! proxy an open proxy or whose meaning the upstream could read differently, and find the
//! path to route on under the public path prefix.

use http::uri::PathAndQuery;
use http::{Method, Version, request};

use super::head_scan::HeadScan;
use crate::error::ProxyError;

/// The longest request target (path and query) accepted; longer ones get 414. Real API
/// paths and queries are far shorter, and upstreams commonly refuse past 8 KiB anyway.
pub(crate) const MAX_URI_BYTES: usize = 8 * 1024;

/// The most request headers accepted; more get 431. The HTTP layer is set to parse up to
/// twice as many, so that the proxy answers in its own error shape.
pub(crate) const MAX_HEADER_COUNT: usize = 100;

/// The most bytes of request headers (names and values) accepted; more get 431.
pub(crate) const MAX_HEADER_BYTES: usize = 32 * 1024;

/// Never an open proxy. CONNECT, absolute-form targets on HTTP/1 (which name a host)
/// and targets that are not a path are refused before anything is forwarded.
pub(crate) fn guard(parts: &request::Parts, scan: &HeadScan) -> Result<(), ProxyError> {
    let target_length = parts
        .uri
        .path_and_query()
        .map_or(0, |target| target.as_str().len());
    if target_length > MAX_URI_BYTES {
        return Err(ProxyError::UriTooLong { max: MAX_URI_BYTES });
    }
    if parts.headers.len() > MAX_HEADER_COUNT || scan.bytes > MAX_HEADER_BYTES {
        return Err(ProxyError::HeadersTooLarge {
            max_count: MAX_HEADER_COUNT,
            max_bytes: MAX_HEADER_BYTES,
        });
    }
    if parts.method == Method::CONNECT {
        return Err(ProxyError::InvalidRequest(
            "CONNECT is not supported: this proxy only forwards to its configured upstream.",
        ));
    }
    let absolute = parts.uri.scheme().is_some() || parts.uri.authority().is_some();
    if absolute && parts.version < Version::HTTP_2 {
        return Err(ProxyError::InvalidRequest(
            "Absolute-form request targets are not accepted: this proxy only forwards to its configured upstream.",
        ));
    }
    if !parts.uri.path().starts_with('/') {
        return Err(ProxyError::InvalidRequest(
            "The request target must be a path.",
        ));
    }
    if parts
        .uri
        .path()
        .as_bytes()
        .split(|&b| b == b'/')
        .any(is_dot_segment)
    {
        return Err(ProxyError::InvalidRequest(
            "The request path must not contain '.' or '..' segments.",
        ));
    }
    // Which of several credentials counts would be the upstream's choice, not the proxy's:
    // one token could be keyed while another is verified.
    if scan.authorizations > 1 {
        return Err(ProxyError::InvalidRequest(
            "A request must carry at most one Authorization header.",
        ));
    }
    Ok(())
}

/// Refuses, before anything is sent upstream, a body whose `Content-Length` is over
/// `server.max_request_body` (a streamed body is cut when it passes the limit instead).
pub(crate) fn body_size(scan: &HeadScan, max: u64) -> Result<(), ProxyError> {
    match scan.content_length {
        Some(length) if length > max => Err(ProxyError::PayloadTooLarge { max }),
        _ => Ok(()),
    }
}

/// Whether a path segment is `.` or `..`, also percent-encoded: such a segment could climb out
/// of the upstream's base path.
fn is_dot_segment(segment: &[u8]) -> bool {
    let mut rest = segment;
    let mut dots = 0;
    while !rest.is_empty() && dots < 3 {
        rest = match rest {
            [b'.', tail @ ..] => tail,
            [b'%', b'2', b'e' | b'E', tail @ ..] => tail,
            _ => return false,
        };
        dots += 1;
    }
    rest.is_empty() && (dots == 1 || dots == 2)
}

/// The request's path and query with the public path prefix removed; requests outside the
/// prefix are routed as they are.
pub(crate) fn strip_prefix(
    prefix: &str,
    parts: &request::Parts,
) -> Result<PathAndQuery, ProxyError> {
    if prefix.is_empty()
        && let Some(path_and_query) = parts.uri.path_and_query()
    {
        return Ok(path_and_query.clone());
    }
    let path = parts.uri.path();
    let stripped = if prefix.is_empty() {
        path
    } else {
        match path.strip_prefix(prefix) {
            Some("") => "/",
            Some(rest) if rest.starts_with('/') => rest,
            _ => path,
        }
    };
    let joined = match parts.uri.query() {
        Some(query) => format!("{stripped}?{query}"),
        None => stripped.to_owned(),
    };
    PathAndQuery::try_from(joined)
        .map_err(|_| ProxyError::InvalidRequest("The request target is not valid."))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header;
    use http::{HeaderValue, Request};

    fn guarded(parts: &request::Parts) -> Result<(), ProxyError> {
        guard(parts, &HeadScan::of(&parts.headers))
    }

    fn parts(uri: &str, version: Version, method: Method) -> request::Parts {
        let (parts, ()) = Request::builder()
            .method(method)
            .uri(uri)
            .version(version)
            .body(())
            .unwrap()
            .into_parts();
        parts
    }

    #[test]
    fn guard_refuses_open_proxy_requests() {
        assert!(
            guarded(&parts(
                "http://evil.example/x",
                Version::HTTP_11,
                Method::GET
            ))
            .is_err()
        );
        assert!(
            guarded(&parts(
                "evil.example:443",
                Version::HTTP_11,
                Method::CONNECT
            ))
            .is_err()
        );
        assert!(guarded(&parts("*", Version::HTTP_11, Method::OPTIONS)).is_err());
        assert!(guarded(&parts("/export/connections", Version::HTTP_11, Method::GET)).is_ok());
        assert!(
            guarded(&parts("http://proxy.local/x", Version::HTTP_2, Method::GET)).is_ok(),
            "h2 always carries an authority; it is ignored, never routed on"
        );
    }

    #[test]
    fn dot_segments_are_seen_in_every_spelling() {
        for dots in [".", "..", "%2e", "%2E", "%2e%2E", ".%2e", "%2e."] {
            assert!(is_dot_segment(dots.as_bytes()), "{dots}");
        }
        for other in [
            "",
            "...",
            "%2e%2e%2e",
            "a",
            ".a",
            "%2",
            "%2f",
            "%2e%",
            "..%",
        ] {
            assert!(!is_dot_segment(other.as_bytes()), "{other}");
        }
    }

    #[test]
    fn guard_refuses_ambiguous_requests() {
        assert!(guarded(&parts("/a/../b", Version::HTTP_11, Method::GET)).is_err());
        assert!(guarded(&parts("/a/%2E%2e/b", Version::HTTP_11, Method::GET)).is_err());
        assert!(guarded(&parts("/a/./b", Version::HTTP_11, Method::GET)).is_err());
        assert!(guarded(&parts("/a/..b/c.d", Version::HTTP_11, Method::GET)).is_ok());
        let mut two = parts("/export/connections", Version::HTTP_11, Method::GET);
        two.headers
            .append(header::AUTHORIZATION, HeaderValue::from_static("Bearer a"));
        assert!(guarded(&two).is_ok());
        two.headers
            .append(header::AUTHORIZATION, HeaderValue::from_static("Bearer b"));
        assert!(guarded(&two).is_err());
    }

    #[test]
    fn declared_bodies_over_the_limit_are_refused() {
        let mut post = parts("/export/connections", Version::HTTP_11, Method::POST);
        assert!(
            body_size(&HeadScan::of(&post.headers), 10).is_ok(),
            "no body"
        );
        post.headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from_static("10"));
        assert!(body_size(&HeadScan::of(&post.headers), 10).is_ok());
        post.headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from_static("11"));
        let error = body_size(&HeadScan::of(&post.headers), 10).unwrap_err();
        assert_eq!(error.status(), http::StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(error.code(), "PayloadTooLarge");
    }

    #[test]
    fn too_many_or_too_large_headers_are_refused() {
        let mut many = parts("/x", Version::HTTP_11, Method::GET);
        for i in 0..=MAX_HEADER_COUNT {
            many.headers.append(
                http::HeaderName::from_bytes(format!("x-h{i}").as_bytes()).unwrap(),
                HeaderValue::from_static("1"),
            );
        }
        assert_eq!(guarded(&many).unwrap_err().code(), "HeadersTooLarge");
        let mut large = parts("/x", Version::HTTP_11, Method::GET);
        let value = "v".repeat(MAX_HEADER_BYTES);
        large
            .headers
            .insert("x-large", HeaderValue::from_str(&value).unwrap());
        let error = guarded(&large).unwrap_err();
        assert_eq!(
            error.status(),
            http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        );
    }

    #[test]
    fn overlong_targets_are_refused() {
        let long = format!("/export/connections?imodelId={}", "a".repeat(MAX_URI_BYTES));
        let error = guarded(&parts(&long, Version::HTTP_11, Method::GET)).unwrap_err();
        assert_eq!(error.status(), http::StatusCode::URI_TOO_LONG);
        assert_eq!(error.code(), "UriTooLong");
    }

    #[test]
    fn prefix_is_stripped_only_at_a_segment_boundary() {
        let strip = |uri: &str| {
            strip_prefix("/bentley", &parts(uri, Version::HTTP_11, Method::GET))
                .unwrap()
                .to_string()
        };
        assert_eq!(
            strip("/bentley/export/connections?a=1"),
            "/export/connections?a=1"
        );
        assert_eq!(strip("/bentley"), "/");
        assert_eq!(strip("/bentleyx/y"), "/bentleyx/y");
        assert_eq!(strip("/export/connections"), "/export/connections");
    }
}
