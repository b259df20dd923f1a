//! The request headers a page served from memory depends on (`Cache-Control` and `Pragma`
//! for `no-cache`, `Accept` and `Prefer` for the key, `Accept-Encoding` for the variant),
//! found in one pass over the request's headers. Most requests send none or few of
//! them, and a lookup of a header that is absent costs a hash and a probe: here it costs no
//! lookup (only a comparison per header name in the one pass), and the ones present are read
//! as before.

use http::{HeaderMap, HeaderName, HeaderValue, header};

use super::encoding::accepts_gzip;
use super::key::joined;

/// `Prefer`, which `http` has no constant for.
pub(crate) const PREFER: HeaderName = HeaderName::from_static("prefer");

const CACHE_CONTROL: u8 = 1;
const PRAGMA: u8 = 1 << 1;
const ACCEPT: u8 = 1 << 2;
const PREFER_BIT: u8 = 1 << 3;
const ACCEPT_ENCODING: u8 = 1 << 4;

/// A page request's headers, with which of the ones the cache reads are present.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PageHeaders<'h> {
    headers: &'h HeaderMap,
    present: u8,
    /// The `Accept-Encoding` value when the request has exactly one (most clients send one,
    /// and this saves looking it up again on every hit).
    accept_encoding: Option<&'h HeaderValue>,
}

impl<'h> PageHeaders<'h> {
    /// One pass over `headers`.
    pub(crate) fn of(headers: &'h HeaderMap) -> Self {
        let mut present = 0;
        let mut accept_encoding = None;
        for (name, value) in headers {
            let bit = match name {
                name if name == header::CACHE_CONTROL => CACHE_CONTROL,
                name if name == header::PRAGMA => PRAGMA,
                name if name == header::ACCEPT => ACCEPT,
                name if name == PREFER => PREFER_BIT,
                name if name == header::ACCEPT_ENCODING => ACCEPT_ENCODING,
                _ => 0,
            };
            if bit == ACCEPT_ENCODING {
                // The first one kept; a second means the values must be read together.
                accept_encoding = (present & ACCEPT_ENCODING == 0).then_some(value);
            }
            present |= bit;
        }
        Self {
            headers,
            present,
            accept_encoding,
        }
    }

    fn has(&self, bits: u8) -> bool {
        self.present & bits != 0
    }

    /// Whether the client asked that no stored page be used (`Cache-Control: no-cache` or
    /// `Pragma: no-cache`).
    pub(crate) fn no_cache(&self) -> bool {
        if !self.has(CACHE_CONTROL | PRAGMA) {
            return false;
        }
        let has = |name: HeaderName| {
            self.headers
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .any(|directive| directive.trim().eq_ignore_ascii_case("no-cache"))
        };
        has(header::CACHE_CONTROL) || has(header::PRAGMA)
    }

    /// The `Accept` values as one (none when `Connection` names the header).
    pub(crate) fn accept(&self) -> Option<HeaderValue> {
        self.has(ACCEPT)
            .then(|| joined(self.headers, &header::ACCEPT))
            .flatten()
    }

    /// The `Prefer` values as one (none when `Connection` names the header).
    pub(crate) fn prefer(&self) -> Option<HeaderValue> {
        self.has(PREFER_BIT)
            .then(|| joined(self.headers, &PREFER))
            .flatten()
    }

    /// Whether the client accepts the gzip variant.
    pub(crate) fn accepts_gzip(&self) -> bool {
        match self.accept_encoding {
            Some(only) => accepts_gzip([only]),
            None => {
                self.has(ACCEPT_ENCODING)
                    && accepts_gzip(self.headers.get_all(header::ACCEPT_ENCODING))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        headers
    }

    #[test]
    fn no_cache_is_read_from_either_header() {
        assert!(!PageHeaders::of(&HeaderMap::new()).no_cache());
        let control = headers(&[("cache-control", "max-age=0, No-Cache")]);
        assert!(PageHeaders::of(&control).no_cache());
        let pragma = headers(&[("pragma", "no-cache")]);
        assert!(PageHeaders::of(&pragma).no_cache());
        let other = headers(&[("cache-control", "max-age=0"), ("pragma", "x")]);
        assert!(!PageHeaders::of(&other).no_cache());
    }

    #[test]
    fn present_headers_are_read_whole() {
        let asked = headers(&[
            ("accept", "application/json"),
            ("accept", "text/plain"),
            ("prefer", "return=representation"),
            ("accept-encoding", "br, gzip"),
        ]);
        let page = PageHeaders::of(&asked);
        assert_eq!(page.accept().unwrap(), "application/json, text/plain");
        assert_eq!(page.prefer().unwrap(), "return=representation");
        assert!(page.accepts_gzip());
        let empty = HeaderMap::new();
        let none = PageHeaders::of(&empty);
        assert_eq!((none.accept(), none.prefer()), (None, None));
        assert!(!none.accepts_gzip());
    }

    const NAMES: [&str; 7] = [
        "cache-control",
        "pragma",
        "accept",
        "prefer",
        "accept-encoding",
        "connection",
        "x-other",
    ];
    const VALUES: [&str; 6] = ["no-cache", "gzip", "prefer", "a, b", "*;q=0", "accept"];

    proptest! {
        /// The pass only skips lookups that would find nothing: every answer is what reading
        /// the headers directly gives.
        #[test]
        fn answers_as_direct_lookups_do(
            pairs in proptest::collection::vec((0..NAMES.len(), 0..VALUES.len()), 0..8)
        ) {
            let pairs: Vec<_> = pairs.iter().map(|&(n, v)| (NAMES[n], VALUES[v])).collect();
            let map = headers(&pairs);
            let page = PageHeaders::of(&map);
            let direct_no_cache = ["cache-control", "pragma"].iter().any(|name| {
                map.get_all(*name).iter().any(|v| {
                    v.to_str().unwrap().split(',').any(|d| d.trim().eq_ignore_ascii_case("no-cache"))
                })
            });
            prop_assert_eq!(page.no_cache(), direct_no_cache);
            prop_assert_eq!(page.accept(), joined(&map, &header::ACCEPT));
            prop_assert_eq!(page.prefer(), joined(&map, &PREFER));
            let direct_gzip = accepts_gzip(map.get_all(header::ACCEPT_ENCODING));
            prop_assert_eq!(page.accepts_gzip(), direct_gzip);
        }
    }
}
