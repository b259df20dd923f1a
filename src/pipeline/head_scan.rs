//! One pass over a request's headers as it arrives, for what the first phases ask of them:
//! their size and how many `Authorization` headers there are (the guard), the
//! declared `Content-Length` (the body limit), and the client's request id or trace context
//! (`request_id`). Each header is visited once; a lookup would cost a hash and a probe per
//! name, most of them for headers the request does not have.

use http::{HeaderMap, HeaderValue, header};

use super::request_id::{REQUEST_ID, TRACEPARENT};

/// What one pass over a request's headers found.
#[derive(Debug, Clone, Default)]
pub(crate) struct HeadScan {
    /// Bytes of header names and values.
    pub(crate) bytes: usize,
    /// `Authorization` headers.
    pub(crate) authorizations: usize,
    /// The first `Content-Length`, when it is a number.
    pub(crate) content_length: Option<u64>,
    /// The first `x-request-id`.
    pub(crate) request_id: Option<HeaderValue>,
    /// The first `traceparent`.
    pub(crate) traceparent: Option<HeaderValue>,
}

impl HeadScan {
    /// Scans `headers`.
    pub(crate) fn of(headers: &HeaderMap) -> Self {
        let mut scan = Self::default();
        let mut content_length = None;
        for (name, value) in headers {
            scan.bytes += name.as_str().len() + value.len();
            if name == header::AUTHORIZATION {
                scan.authorizations += 1;
            } else if name == header::CONTENT_LENGTH {
                content_length.get_or_insert(value);
            } else if name == REQUEST_ID {
                scan.request_id.get_or_insert_with(|| value.clone());
            } else if name == TRACEPARENT {
                scan.traceparent.get_or_insert_with(|| value.clone());
            }
        }
        scan.content_length = content_length
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        scan
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_pass_finds_what_lookups_find() {
        let mut headers = HeaderMap::new();
        headers.append(header::AUTHORIZATION, HeaderValue::from_static("Bearer a"));
        headers.append(header::AUTHORIZATION, HeaderValue::from_static("Bearer b"));
        headers.append(header::CONTENT_LENGTH, HeaderValue::from_static(" 12 "));
        headers.append(header::CONTENT_LENGTH, HeaderValue::from_static("99"));
        headers.append(REQUEST_ID, HeaderValue::from_static("first"));
        headers.append(REQUEST_ID, HeaderValue::from_static("second"));
        headers.append(header::ACCEPT, HeaderValue::from_static("*/*"));
        let scan = HeadScan::of(&headers);
        let bytes: usize = (headers.iter())
            .map(|(name, value)| name.as_str().len() + value.len())
            .sum();
        assert_eq!(scan.bytes, bytes);
        assert_eq!(scan.authorizations, 2);
        assert_eq!(scan.content_length, Some(12));
        assert_eq!(scan.request_id.unwrap(), "first");
        assert_eq!(scan.traceparent, None);
    }

    #[test]
    fn a_length_that_is_not_a_number_is_none() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("ten"));
        assert_eq!(HeadScan::of(&headers).content_length, None);
        assert_eq!(HeadScan::of(&HeaderMap::new()).bytes, 0);
    }
}
