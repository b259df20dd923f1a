//! Compressed hits: a stored page is also kept gzip-compressed (once, when it is stored, at
//! zlib's fastest level), and a request that accepts gzip gets that variant. The identity
//! bytes stay as they are, so an identity hit never inflates anything.

use std::io::Write;

use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;
use http::{HeaderMap, HeaderValue, header};

/// Bodies smaller than this are not worth compressing (gzip's own framing is 18 bytes).
const MIN_COMPRESSIBLE: usize = 256;

/// The gzip variant of a stored page: its body and the headers that describe it.
#[derive(Debug, Clone)]
pub struct Gzipped {
    /// `Content-Encoding: gzip` added, a strong ETag made distinct.
    pub headers: HeaderMap,
    /// The compressed body.
    pub body: Bytes,
}

impl Gzipped {
    /// The gzip variant of a page with these `headers` and `body`; `None` when compression
    /// would not make it smaller.
    pub fn of(headers: &HeaderMap, body: &[u8]) -> Option<Self> {
        if body.len() < MIN_COMPRESSIBLE {
            return None;
        }
        let mut encoder = GzEncoder::new(Vec::with_capacity(body.len() / 4), Compression::fast());
        encoder.write_all(body).ok()?;
        let compressed = encoder.finish().ok()?;
        if compressed.len() >= body.len() {
            return None;
        }
        let mut headers = headers.clone();
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        if let Some(etag) = headers.get(header::ETAG).and_then(gzip_etag) {
            headers.insert(header::ETAG, etag);
        }
        Some(Self {
            headers,
            body: Bytes::from(compressed),
        })
    }
}

/// A strong ETag made distinct for the gzip variant (`"abc"` becomes `"abc-gzip"`): the two
/// variants are different bytes. Weak ETags stay as they are, since the variants are
/// semantically the same.
fn gzip_etag(etag: &HeaderValue) -> Option<HeaderValue> {
    let text = etag.to_str().ok()?;
    let opaque = text.strip_prefix('"')?.strip_suffix('"')?;
    HeaderValue::from_str(&format!("\"{opaque}-gzip\"")).ok()
}

/// Whether a request's `Accept-Encoding` values accept gzip (`gzip`, `x-gzip` or `*`, with a
/// quality above zero).
pub(super) fn accepts_gzip<'v>(values: impl IntoIterator<Item = &'v HeaderValue>) -> bool {
    // Over bytes, split at bytes: this runs on every hit of a request that names encodings.
    values
        .into_iter()
        .flat_map(|value| value.as_bytes().split(|&b| b == b','))
        .any(|coding| {
            let mut parts = coding.split(|&b| b == b';');
            let name = parts.next().unwrap_or_default().trim_ascii();
            let named = [&b"gzip"[..], b"x-gzip", b"*"]
                .iter()
                .any(|accepted| name.eq_ignore_ascii_case(accepted));
            named && parts.all(|param| !is_zero_quality(param))
        })
}

/// Whether a parameter is `q=0` (in any spelling of zero).
fn is_zero_quality(param: &[u8]) -> bool {
    let Some(at) = param.iter().position(|&b| b == b'=') else {
        return false;
    };
    let (name, value) = (param[..at].trim_ascii(), param[at + 1..].trim_ascii());
    name.eq_ignore_ascii_case(b"q")
        && std::str::from_utf8(value)
            .ok()
            .and_then(|value| value.parse::<f32>().ok())
            .is_some_and(|q| q <= 0.0)
}

/// Adds the headers every answer of the cached route carries: `Cache-Control: private` (a
/// page is one user's data, for no shared cache to keep) and `Accept-Encoding` in `Vary`.
pub(crate) fn private_and_varying(headers: &mut HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private"));
    vary_on_encoding(headers);
}

/// Adds `Accept-Encoding` to a response's `Vary`, unless it is there already.
fn vary_on_encoding(headers: &mut HeaderMap) {
    let present = headers
        .get_all(header::VARY)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|name| name.trim().eq_ignore_ascii_case("accept-encoding"));
    if !present {
        headers.append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn accept(value: &'static str) -> [HeaderValue; 1] {
        [HeaderValue::from_static(value)]
    }

    #[test]
    fn gzip_is_accepted_unless_refused() {
        assert!(accepts_gzip(&accept("gzip")));
        assert!(accepts_gzip(&accept("br, GZIP;q=0.5")));
        assert!(accepts_gzip(&accept("*")));
        assert!(accepts_gzip(&accept("deflate, x-gzip")));
        assert!(!accepts_gzip(&accept("gzip;q=0")));
        assert!(!accepts_gzip(&accept("gzip; q=0.000, identity")));
        assert!(!accepts_gzip(&accept("identity, br")));
        assert!(!accepts_gzip(&[]));
    }

    #[test]
    fn the_variant_decompresses_to_the_page() {
        let page = "{\"id\":\"5db42812-ebb8-4c58-98a4-2eaa99e0d8b6\"},".repeat(100);
        let mut headers = HeaderMap::new();
        headers.insert(header::ETAG, HeaderValue::from_static("\"v1\""));
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let gzipped = Gzipped::of(&headers, page.as_bytes()).unwrap();
        assert!(
            gzipped.body.len() * 5 < page.len(),
            "{}",
            gzipped.body.len()
        );
        let mut plain = String::new();
        flate2::read::GzDecoder::new(&gzipped.body[..])
            .read_to_string(&mut plain)
            .unwrap();
        assert_eq!(plain, page);
        assert_eq!(gzipped.headers[header::CONTENT_ENCODING], "gzip");
        assert_eq!(gzipped.headers[header::ETAG], "\"v1-gzip\"");
        assert_eq!(gzipped.headers[header::CONTENT_TYPE], "application/json");
    }

    #[test]
    fn weak_etags_stay_and_tiny_pages_are_not_compressed() {
        let mut headers = HeaderMap::new();
        headers.insert(header::ETAG, HeaderValue::from_static("W/\"v1\""));
        let page = "x".repeat(1000);
        let gzipped = Gzipped::of(&headers, page.as_bytes()).unwrap();
        assert_eq!(gzipped.headers[header::ETAG], "W/\"v1\"");
        assert!(Gzipped::of(&headers, b"{}").is_none());
    }

    #[test]
    fn vary_names_accept_encoding_once() {
        let mut headers = HeaderMap::new();
        vary_on_encoding(&mut headers);
        vary_on_encoding(&mut headers);
        assert_eq!(headers.get_all(header::VARY).iter().count(), 1);
        let mut other = HeaderMap::new();
        other.insert(header::VARY, HeaderValue::from_static("Accept"));
        vary_on_encoding(&mut other);
        let values: Vec<_> = other.get_all(header::VARY).iter().collect();
        assert_eq!(values, ["Accept", "Accept-Encoding"]);
    }
}
