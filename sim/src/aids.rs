//! Test aids under `/sim/`, answered without a token: `/sim/headers` answers the headers its
//! query names, `/sim/large` a JSON document of a given size, `/sim/echo` the request itself.

use std::borrow::Cow;
use std::collections::BTreeMap;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderName};
use http::request::Parts;
use http::{HeaderValue, Method, Response, StatusCode};
use serde::Serialize;
use serde_json::json;

use super::control::path_and_query;
use super::reply::{self, Body, Query};

/// Size of `/sim/large` when `bytes` is not given.
const DEFAULT_LARGE: usize = 1_024;

/// The largest document `/sim/large` makes.
const LARGEST: usize = 64 * 1024 * 1024;

/// Which aid a `/sim/` path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Aid {
    Headers,
    Large,
    Echo,
    NotFound,
}

impl Aid {
    /// Reads the aid from the method and the path after `/sim/`.
    pub(crate) fn parse(method: &Method, rest: &str) -> Self {
        let read = matches!(*method, Method::GET | Method::HEAD);
        match rest {
            "headers" if read => Aid::Headers,
            "large" if read => Aid::Large,
            "echo" => Aid::Echo,
            _ => Aid::NotFound,
        }
    }
}

/// Answers an aid.
pub(crate) fn answer(aid: Aid, origin: &str, parts: &Parts, body: &Bytes) -> Response<Body> {
    let query = Query::parse(parts.uri.query());
    match aid {
        Aid::Headers => headers(&query),
        Aid::Large => large(origin, &query),
        Aid::Echo => echo(parts, body),
        Aid::NotFound => {
            let message = "The requested resource was not found.";
            reply::error(StatusCode::NOT_FOUND, "NotFound", message)
        }
    }
}

/// `{}` with each query pair as a response header.
fn headers(query: &Query) -> Response<Body> {
    let mut response = Response::new(Body::new(Bytes::from_static(b"{}")));
    for (name, value) in query.pairs() {
        let name = HeaderName::from_bytes(name.as_bytes());
        let value = HeaderValue::from_str(value);
        let (Ok(name), Ok(value)) = (name, value) else {
            let message = "A header name or value in the query is not valid.";
            return reply::error(StatusCode::BAD_REQUEST, "InvalidRequest", message);
        };
        response.headers_mut().append(name, value);
    }
    if !response.headers().contains_key(CONTENT_TYPE) {
        let json = HeaderValue::from_static("application/json");
        response.headers_mut().insert(CONTENT_TYPE, json);
    }
    response
}

/// A JSON document of about `bytes` bytes whose `_links.self.href` is at the origin.
fn large(origin: &str, query: &Query) -> Response<Body> {
    let Some(size) = query
        .get("bytes")
        .map_or(Some(DEFAULT_LARGE), |b| b.parse().ok())
    else {
        let message = "bytes must be a whole number.";
        return reply::error(StatusCode::BAD_REQUEST, "InvalidRequest", message);
    };
    let size = size.min(LARGEST);
    let href = format!("{origin}/sim/large?bytes={size}");
    let document =
        |padding: String| json!({ "_links": { "self": { "href": href } }, "padding": padding });
    let frame = serde_json::to_vec_pretty(&document(String::new())).map_or(0, |f| f.len());
    let padding = "x".repeat(size.saturating_sub(frame));
    reply::json(StatusCode::OK, &document(padding))
}

#[derive(Serialize)]
struct Echo<'a> {
    method: &'a str,
    uri: &'a str,
    headers: BTreeMap<&'a str, Vec<Cow<'a, str>>>,
    body: Cow<'a, str>,
}

/// The request as received.
fn echo<'a>(parts: &'a Parts, body: &'a Bytes) -> Response<Body> {
    let mut headers: BTreeMap<&str, Vec<Cow<'_, str>>> = BTreeMap::new();
    for (name, value) in &parts.headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        headers.entry(name.as_str()).or_default().push(value);
    }
    let echo = Echo {
        method: parts.method.as_str(),
        uri: path_and_query(&parts.uri),
        headers,
        body: String::from_utf8_lossy(body),
    };
    reply::json(StatusCode::OK, &echo)
}
