//! The response phase: an upstream answer made fit for the client. Hop-by-hop headers go,
//! links in headers and JSON bodies are rewritten to lead back through the proxy, and bodies
//! too large (or not JSON) stream through untouched.

use std::collections::VecDeque;
use std::io::Read;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Response, header, response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::SettingsState;
use crate::body::{self, BoxError, ProxyBody};
use crate::error::ProxyError;
use crate::headers::remove_hop_by_hop;
use crate::rewrite::LinkRewriter;

/// Response headers whose value is a URI that may point at the upstream.
const URI_HEADERS: [HeaderName; 2] = [header::LOCATION, header::CONTENT_LOCATION];

/// Cleans the headers of an upstream answer: hop-by-hop headers removed, links rewritten.
fn clean_headers(rewriter: &LinkRewriter, headers: &mut HeaderMap) {
    remove_hop_by_hop(headers);
    for name in &URI_HEADERS {
        let rewritten = headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| rewriter.rewrite_href(v))
            .and_then(|v| HeaderValue::from_str(&v).ok());
        if let Some(value) = rewritten {
            headers.insert(name.clone(), value);
        }
    }
    if headers.contains_key(header::LINK) {
        let links: Vec<HeaderValue> = headers
            .get_all(header::LINK)
            .iter()
            .map(|value| {
                value
                    .to_str()
                    .ok()
                    .and_then(|v| rewriter.rewrite_link_header(v))
                    .and_then(|v| HeaderValue::from_str(&v).ok())
                    .unwrap_or_else(|| value.clone())
            })
            .collect();
        headers.remove(header::LINK);
        for link in links {
            headers.append(header::LINK, link);
        }
    }
}

/// Whether a body with these headers is JSON the proxy can read: a JSON media type
/// (`application/json`, `application/*+json`) in no content coding, or in gzip, which it
/// decompresses (see [`identity_body`]).
fn is_rewritable_json(headers: &HeaderMap) -> bool {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            let media = v
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase();
            media == "application/json"
                || (media.starts_with("application/") && media.ends_with("+json"))
        })
        .unwrap_or(false);
    let readable = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| {
            let coding = v.trim();
            coding.eq_ignore_ascii_case("identity") || is_gzip(coding)
        });
    json && readable
}

/// Whether a `Content-Encoding` value is gzip.
fn is_gzip(coding: &str) -> bool {
    coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip")
}

/// The body in no content coding: as it is, or decompressed from gzip (then its
/// `Content-Encoding` and `Content-Length` are removed). `Err` gives back the body unchanged
/// when it cannot be read: another coding, corrupt gzip, or more than `limit` bytes
/// decompressed.
fn identity_body(headers: &mut HeaderMap, body: Bytes, limit: u64) -> Result<Bytes, Bytes> {
    let coding = headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().map(str::trim));
    match coding {
        None => Ok(body),
        Some(Ok(coding)) if coding.eq_ignore_ascii_case("identity") => Ok(body),
        Some(Ok(coding)) if is_gzip(coding) => match gunzip(&body, limit) {
            Some(plain) => {
                headers.remove(header::CONTENT_ENCODING);
                headers.remove(header::CONTENT_LENGTH);
                Ok(plain)
            }
            None => Err(body),
        },
        Some(_) => Err(body),
    }
}

/// `compressed` decompressed, unless it is not gzip or holds more than `limit` bytes.
fn gunzip(compressed: &[u8], limit: u64) -> Option<Bytes> {
    let mut plain = Vec::new();
    flate2::read::MultiGzDecoder::new(compressed)
        .take(limit.saturating_add(1))
        .read_to_end(&mut plain)
        .ok()?;
    (plain.len() as u64 <= limit).then(|| Bytes::from(plain))
}

/// How much of an upstream answer the response phase reads into memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Buffering {
    /// Nothing: the body streams through (the answer to a HEAD).
    Never,
    /// A JSON body that declares no more than `upstream.max_rewrite_bytes`, to rewrite it.
    Json,
    /// Any body up to `upstream.max_rewrite_bytes` (a page to store and share).
    Always,
}

impl Buffering {
    /// Whether a body with these headers is read, up to `limit` bytes.
    fn reads(self, headers: &HeaderMap, limit: u64) -> bool {
        match self {
            Self::Never => false,
            Self::Json => {
                let declared = headers
                    .get(header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok());
                is_rewritable_json(headers) && declared.is_none_or(|length| length <= limit)
            }
            Self::Always => true,
        }
    }
}

/// An upstream answer made fit for the client.
#[derive(Debug)]
pub(crate) struct Relayed {
    /// Status and cleaned headers.
    pub(crate) head: response::Parts,
    /// The body, read whole or streaming.
    pub(crate) body: RelayedBody,
}

/// The body of a relayed answer.
#[derive(Debug)]
pub(crate) enum RelayedBody {
    /// Read whole, and rewritten if it is JSON.
    Whole(Bytes),
    /// Not read (or larger than `upstream.max_rewrite_bytes`): it streams through as it came.
    Streaming(ProxyBody),
}

impl Relayed {
    /// The body, when it was read whole.
    pub(crate) fn whole(&self) -> Option<&Bytes> {
        match &self.body {
            RelayedBody::Whole(bytes) => Some(bytes),
            RelayedBody::Streaming(_) => None,
        }
    }

    /// The client's response.
    pub(crate) fn into_response(self) -> Response<ProxyBody> {
        let body = match self.body {
            RelayedBody::Whole(bytes) => body::full(bytes),
            RelayedBody::Streaming(body) => body,
        };
        Response::from_parts(self.head, body)
    }
}

/// The response phase, for every answer the upstream gives: headers cleaned, the body read
/// as `buffering` says (within `upstream.request_timeout`), and a JSON body read whole
/// rewritten; anything else streams through.
pub(crate) async fn relay(
    live: &SettingsState,
    response: Response<Incoming>,
    buffering: Buffering,
) -> Result<Relayed, ProxyError> {
    let (mut head, incoming) = response.into_parts();
    clean_headers(&live.rewriter, &mut head.headers);
    let limit = live.settings.upstream.max_rewrite_bytes;
    if !buffering.reads(&head.headers, limit) {
        return Ok(Relayed {
            head,
            body: RelayedBody::Streaming(stream(incoming)),
        });
    }
    let body = match buffer(incoming, limit, live.upstream.request_timeout()).await? {
        Buffered::Complete(bytes) => RelayedBody::Whole(rewrite_body(
            &live.rewriter,
            &mut head.headers,
            bytes,
            limit,
        )),
        Buffered::Partial(prefixed) => RelayedBody::Streaming(prefixed.boxed()),
    };
    Ok(Relayed { head, body })
}

/// A body read whole, for the client: JSON in no content coding (decompressed from gzip)
/// with its links rewritten, its `Content-Length` dropped if that changed it; anything else
/// (JSON in a coding that cannot be read included) as it came.
fn rewrite_body(
    rewriter: &LinkRewriter,
    headers: &mut HeaderMap,
    body: Bytes,
    limit: u64,
) -> Bytes {
    if !is_rewritable_json(headers) {
        return body;
    }
    let plain = match identity_body(headers, body, limit) {
        Ok(plain) => plain,
        Err(coded) => return coded,
    };
    match rewriter.rewrite_json(&plain) {
        Some(rewritten) => {
            headers.remove(header::CONTENT_LENGTH);
            Bytes::from(rewritten)
        }
        None => plain,
    }
}

fn stream(incoming: Incoming) -> ProxyBody {
    incoming.map_err(BoxError::from).boxed()
}

/// A body read into memory, or, when it turned out too large, what was read so far in front
/// of the rest.
enum Buffered {
    Complete(Bytes),
    Partial(Prefixed),
}

/// Reads `incoming` until it ends or passes `limit` bytes, within `timeout`.
async fn buffer(
    mut incoming: Incoming,
    limit: u64,
    timeout: std::time::Duration,
) -> Result<Buffered, ProxyError> {
    let read = async {
        let mut data = BytesMut::new();
        let mut frames = VecDeque::new();
        while let Some(frame) = incoming.frame().await {
            let frame = frame.map_err(|e| ProxyError::UpstreamUnavailable(e.to_string()))?;
            match frame.into_data() {
                Ok(chunk) => {
                    data.extend_from_slice(&chunk);
                    if data.len() as u64 > limit {
                        frames.push_back(Frame::data(data.freeze()));
                        return Ok(Buffered::Partial(Prefixed::new(frames, incoming)));
                    }
                }
                Err(trailers) => {
                    frames.push_back(Frame::data(data.freeze()));
                    frames.push_back(trailers);
                    return Ok(Buffered::Partial(Prefixed::new(frames, incoming)));
                }
            }
        }
        Ok(Buffered::Complete(data.freeze()))
    };
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| ProxyError::UpstreamTimeout)?
}

/// Frames already read, followed by the rest of the upstream body.
struct Prefixed {
    frames: VecDeque<Frame<Bytes>>,
    rest: Incoming,
}

impl Prefixed {
    fn new(frames: VecDeque<Frame<Bytes>>, rest: Incoming) -> Self {
        Self { frames, rest }
    }
}

impl Body for Prefixed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(frame) = self.frames.pop_front() {
            return Poll::Ready(Some(Ok(frame)));
        }
        Pin::new(&mut self.rest)
            .poll_frame(cx)
            .map_err(BoxError::from)
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let buffered: u64 = self
            .frames
            .iter()
            .filter_map(|f| f.data_ref().map(|d| d.len() as u64))
            .sum();
        let rest = self.rest.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower() + buffered);
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper + buffered);
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn json_media_types_without_coding_are_rewritable() {
        assert!(is_rewritable_json(&headers(&[(
            "content-type",
            "application/json; charset=utf-8"
        )])));
        assert!(is_rewritable_json(&headers(&[(
            "content-type",
            "application/vnd.bentley.itwin-platform.v1+json"
        )])));
        assert!(!is_rewritable_json(&headers(&[(
            "content-type",
            "text/html"
        )])));
        assert!(!is_rewritable_json(&headers(&[])));
        assert!(is_rewritable_json(&headers(&[
            ("content-type", "application/json"),
            ("content-encoding", "gzip")
        ])));
        assert!(!is_rewritable_json(&headers(&[
            ("content-type", "application/json"),
            ("content-encoding", "br")
        ])));
    }

    #[test]
    fn gzip_bodies_are_decompressed_within_the_limit() {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(br#"{"a":1}"#).unwrap();
        let compressed = Bytes::from(encoder.finish().unwrap());
        let mut gzip = headers(&[("content-encoding", "gzip"), ("content-length", "27")]);
        assert_eq!(
            identity_body(&mut gzip, compressed.clone(), 1024).unwrap(),
            Bytes::from_static(br#"{"a":1}"#)
        );
        assert!(gzip.is_empty(), "{gzip:?}");
        let mut small = headers(&[("content-encoding", "gzip")]);
        assert_eq!(
            identity_body(&mut small, compressed.clone(), 3),
            Err(compressed)
        );
        assert!(small.contains_key("content-encoding"));
        let mut corrupt = headers(&[("content-encoding", "gzip")]);
        assert!(identity_body(&mut corrupt, Bytes::from_static(b"nope"), 1024).is_err());
        let mut plain = HeaderMap::new();
        assert!(identity_body(&mut plain, Bytes::from_static(b"x"), 1024).is_ok());
    }

    #[test]
    fn uri_headers_are_rewritten() {
        let rewriter = LinkRewriter::new(
            &["https://api.bentley.com".parse().unwrap()],
            &"http://127.0.0.1:8080/gw".parse().unwrap(),
        );
        let mut map = headers(&[
            (
                "location",
                "https://api.bentley.com/export/connections/1/runs/2",
            ),
            ("content-location", "https://elsewhere.example/x"),
            ("link", "<https://api.bentley.com/a?$skip=2>; rel=\"next\""),
            ("connection", "close"),
        ]);
        clean_headers(&rewriter, &mut map);
        assert_eq!(
            map["location"],
            "http://127.0.0.1:8080/gw/export/connections/1/runs/2"
        );
        assert_eq!(map["content-location"], "https://elsewhere.example/x");
        assert_eq!(
            map["link"],
            "<http://127.0.0.1:8080/gw/a?$skip=2>; rel=\"next\""
        );
        assert!(!map.contains_key("connection"));
    }
}
