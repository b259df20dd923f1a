//! The bytes of a page in Redis: its kept headers and its body, nothing else (no token, no
//! subject). Layout: header count (u32), then per header its name (u16 length + bytes) and
//! value (u32 length + bytes), then the body. Big-endian lengths.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue};

/// Encodes a page.
pub(super) fn encode(headers: &HeaderMap, body: &[u8]) -> Vec<u8> {
    let size: usize = headers
        .iter()
        .map(|(name, value)| 6 + name.as_str().len() + value.len())
        .sum();
    let mut out = BytesMut::with_capacity(4 + size + body.len());
    out.put_u32(u32::try_from(headers.len()).unwrap_or(u32::MAX));
    for (name, value) in headers {
        out.put_u16(u16::try_from(name.as_str().len()).unwrap_or(u16::MAX));
        out.put_slice(name.as_str().as_bytes());
        out.put_u32(u32::try_from(value.len()).unwrap_or(u32::MAX));
        out.put_slice(value.as_bytes());
    }
    out.put_slice(body);
    out.to_vec()
}

/// Decodes a page; `None` for bytes that are not one.
pub(super) fn decode(bytes: Bytes) -> Option<(HeaderMap, Bytes)> {
    let mut buf = bytes;
    if buf.remaining() < 4 {
        return None;
    }
    let count = buf.get_u32();
    let mut headers = HeaderMap::new();
    for _ in 0..count {
        if buf.remaining() < 2 {
            return None;
        }
        let len = usize::from(buf.get_u16());
        if buf.remaining() < len + 4 {
            return None;
        }
        let name = HeaderName::from_bytes(&buf.split_to(len)).ok()?;
        let len = usize::try_from(buf.get_u32()).ok()?;
        if buf.remaining() < len {
            return None;
        }
        let value = HeaderValue::from_maybe_shared(buf.split_to(len)).ok()?;
        headers.append(name, value);
    }
    Some((headers, buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_round_trip_and_garbage_is_refused() {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        headers.append("link", HeaderValue::from_static("<a>; rel=next"));
        headers.append("link", HeaderValue::from_static("<b>; rel=prev"));
        let encoded = encode(&headers, b"{\"connections\":[]}");
        let (back, body) = decode(Bytes::from(encoded.clone())).unwrap();
        assert_eq!(back, headers);
        assert_eq!(&body[..], b"{\"connections\":[]}");
        assert!(decode(Bytes::from_static(b"\0\0")).is_none());
        assert!(decode(Bytes::from(encoded[..9].to_vec())).is_none());
        assert!(decode(Bytes::from_static(b"\0\0\0\x01\0\x01\n\0\0\0\0")).is_none());
    }
}
