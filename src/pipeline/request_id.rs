//! The request id every response carries in `x-request-id`, sent upstream and logged on the
//! request's line: the client's own when usable, else one made from its W3C `traceparent`,
//! else a new one. It never enters a cache key, a flight key or a stored page.

use std::sync::atomic::{AtomicU64, Ordering};

use http::{HeaderName, HeaderValue};

use super::head_scan::HeadScan;

/// The header that carries the id, both ways.
pub(crate) const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The W3C trace context header.
pub(crate) const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// The longest client id taken as is.
const MAX_LEN: usize = 128;

/// Makes new ids: a random prefix per process, then a counter, so ids are unique without
/// asking for randomness on every request.
#[derive(Debug)]
pub(crate) struct RequestIds {
    prefix: u64,
    next: AtomicU64,
}

impl Default for RequestIds {
    fn default() -> Self {
        let mut bytes = [0u8; 8];
        let prefix = match getrandom::fill(&mut bytes) {
            Ok(()) => u64::from_le_bytes(bytes),
            // Uniqueness within the process holds anyway; the clock keeps restarts apart.
            Err(_) => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64),
        };
        Self {
            prefix,
            next: AtomicU64::new(0),
        }
    }
}

impl RequestIds {
    /// The id of a request whose headers were `scan`ned.
    pub(crate) fn for_request(&self, scan: &HeadScan) -> HeaderValue {
        if let Some(own) = scan.request_id.as_ref().filter(|v| usable(v.as_bytes())) {
            return own.clone();
        }
        (scan.traceparent.as_ref())
            .and_then(|v| from_traceparent(v.as_bytes()))
            .unwrap_or_else(|| self.generate())
    }

    fn generate(&self) -> HeaderValue {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let mut hex = [0u8; 32];
        hex[..16].copy_from_slice(&lower_hex(self.prefix));
        hex[16..].copy_from_slice(&lower_hex(n));
        HeaderValue::from_bytes(&hex).unwrap_or(HeaderValue::from_static("-"))
    }
}

/// Whether a client's id is taken as is: 1 to 128 visible ASCII characters.
fn usable(id: &[u8]) -> bool {
    (1..=MAX_LEN).contains(&id.len()) && id.iter().all(|b| b.is_ascii_graphic())
}

/// `trace-id-parent-id` of a valid `traceparent` (version, 32 and 16 lowercase hex digits
/// not all zero, flags).
fn from_traceparent(value: &[u8]) -> Option<HeaderValue> {
    let text = std::str::from_utf8(value).ok()?.trim();
    let mut fields = text.split('-');
    let (version, trace, parent, flags) = (
        fields.next()?,
        fields.next()?,
        fields.next()?,
        fields.next()?,
    );
    let hex = |s: &str, len: usize| {
        s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    let nonzero = |s: &str| s.bytes().any(|b| b != b'0');
    let valid = hex(version, 2)
        && version != "ff"
        && (version != "00" || fields.next().is_none())
        && hex(trace, 32)
        && nonzero(trace)
        && hex(parent, 16)
        && nonzero(parent)
        && hex(flags, 2);
    if !valid {
        return None;
    }
    HeaderValue::from_str(&format!("{trace}-{parent}")).ok()
}

/// `value` as 16 lowercase hex digits, most significant first: every nibble spread into a
/// byte of its own and made a digit eight at a time (this runs on every request).
fn lower_hex(value: u64) -> [u8; 16] {
    fn digits(half: u32) -> [u8; 8] {
        let mut x = u64::from(half);
        x = (x | (x << 16)) & 0x0000_ffff_0000_ffff;
        x = (x | (x << 8)) & 0x00ff_00ff_00ff_00ff;
        x = (x | (x << 4)) & 0x0f0f_0f0f_0f0f_0f0f;
        // Nibble k is byte k now; 10 to 15 go past '9' by the distance to 'a'.
        let letters = ((x + 0x0606_0606_0606_0606) >> 4) & 0x0101_0101_0101_0101;
        (x + 0x3030_3030_3030_3030 + letters * (b'a' - b'0' - 10) as u64).to_be_bytes()
    }
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&digits((value >> 32) as u32));
    out[8..].copy_from_slice(&digits(value as u32));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;

    fn id(pairs: &[(&'static str, &'static str)]) -> String {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_static(value));
        }
        let ids = RequestIds::default();
        ids.for_request(&HeadScan::of(&headers))
            .to_str()
            .unwrap()
            .to_owned()
    }

    #[test]
    fn a_usable_client_id_is_kept() {
        assert_eq!(id(&[("x-request-id", "abc-123")]), "abc-123");
        let longest = "a".repeat(128);
        let mut headers = HeaderMap::new();
        headers.insert(REQUEST_ID, HeaderValue::from_str(&longest).unwrap());
        assert_eq!(
            RequestIds::default().for_request(&HeadScan::of(&headers)),
            longest.as_str()
        );
    }

    #[test]
    fn unusable_client_ids_are_replaced() {
        let too_long = "a".repeat(129);
        let mut headers = HeaderMap::new();
        headers.insert(REQUEST_ID, HeaderValue::from_str(&too_long).unwrap());
        let ids = RequestIds::default();
        assert_ne!(ids.for_request(&HeadScan::of(&headers)), too_long.as_str());
        for bad in ["", "has space", "tab\tin"] {
            let generated = id(&[("x-request-id", bad)]);
            assert_eq!(generated.len(), 32, "{bad:?} -> {generated}");
        }
    }

    #[test]
    fn a_traceparent_gives_trace_and_parent_ids() {
        let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(
            id(&[("traceparent", traceparent)]),
            "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7"
        );
        assert_eq!(
            id(&[("traceparent", traceparent), ("x-request-id", "mine")]),
            "mine"
        );
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "garbage",
        ] {
            assert_eq!(id(&[("traceparent", bad)]).len(), 32, "{bad}");
        }
    }

    #[test]
    fn hex_is_written_as_format_writes_it() {
        for value in [
            0,
            9,
            10,
            15,
            0xabcdef,
            0x0123_4567_89ab_cdef,
            u64::MAX,
            1 << 63,
        ] {
            assert_eq!(
                lower_hex(value),
                format!("{value:016x}").as_bytes(),
                "{value}"
            );
        }
    }

    #[test]
    fn generated_ids_differ() {
        let ids = RequestIds::default();
        let headers = HeaderMap::new();
        let first = ids.for_request(&HeadScan::of(&headers));
        let second = ids.for_request(&HeadScan::of(&headers));
        assert_ne!(first, second);
        assert!(
            first
                .to_str()
                .unwrap()
                .bytes()
                .all(|b| b.is_ascii_hexdigit())
        );
    }
}
