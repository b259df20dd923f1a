//! Building answers: pretty JSON bodies, the platform's error shape, the 429 of a rate limit,
//! and the query-string reading every route shares.

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderName, RETRY_AFTER};
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;
use percent_encoding::percent_decode_str;
use serde::Serialize;

/// The body type of every answer.
pub(crate) type Body = Full<Bytes>;

/// Content type of successful JSON answers.
const JSON_UTF8: &str = "application/json; charset=utf-8";

/// Content type of JSON errors.
const JSON: &str = "application/json";

/// One entry of an error's `details`.
#[derive(Debug, Serialize)]
pub(crate) struct Detail {
    code: &'static str,
    message: &'static str,
    target: &'static str,
}

impl Detail {
    /// An `InvalidValue` detail about `target`.
    pub(crate) fn invalid(message: &'static str, target: &'static str) -> Self {
        Self {
            code: "InvalidValue",
            message,
            target,
        }
    }
}

/// `value`, noting an `InvalidValue` detail about `target` when it is `None`.
pub(crate) fn require<T>(
    details: &mut Vec<Detail>,
    value: Option<T>,
    message: &'static str,
    target: &'static str,
) -> Option<T> {
    if value.is_none() {
        details.push(Detail::invalid(message, target));
    }
    value
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorInfo<'a>,
}

#[derive(Serialize)]
struct ErrorInfo<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "<[Detail]>::is_empty")]
    details: &'a [Detail],
}

/// `value` as pretty JSON with `Content-Type: application/json; charset=utf-8`.
pub(crate) fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    with_body(status, JSON_UTF8, value)
}

/// The platform's error body `{"error":{"code","message"}}`.
pub(crate) fn error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    invalid(status, code, message, &[])
}

/// The platform's error body with `details`.
pub(crate) fn invalid(
    status: StatusCode,
    code: &str,
    message: &str,
    details: &[Detail],
) -> Response<Body> {
    let error = ErrorInfo {
        code,
        message,
        details,
    };
    with_body(status, JSON, &ErrorBody { error })
}

/// The 422 of a request whose values are not valid.
pub(crate) fn unprocessable(code: &str, details: &[Detail]) -> Response<Body> {
    let status = StatusCode::UNPROCESSABLE_ENTITY;
    invalid(status, code, "Cannot perform operation.", details)
}

/// 429 `TooManyRequests` with the platform's rate-limit headers.
pub(crate) fn too_many_requests(
    retry_after: Option<HeaderValue>,
    operation: &str,
    application: &str,
) -> Response<Body> {
    let message = "More requests were received than the subscription rate-limit allows.";
    let mut response = error(StatusCode::TOO_MANY_REQUESTS, "TooManyRequests", message);
    let headers = response.headers_mut();
    if let Some(retry_after) = retry_after {
        headers.insert(RETRY_AFTER, retry_after);
    }
    let limited = [
        ("itwinplatform-ratelimited-tier", "Trial"),
        ("itwinplatform-ratelimited-api", "export"),
        ("itwinplatform-ratelimited-operation", operation),
        ("itwinplatform-ratelimited-application", application),
    ];
    for (name, value) in limited {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
    response
}

/// An answer with no body.
pub(crate) fn empty(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(Body::default());
    *response.status_mut() = status;
    response
}

fn with_body<T: Serialize>(
    status: StatusCode,
    content_type: &'static str,
    value: &T,
) -> Response<Body> {
    let Ok(body) = serde_json::to_vec_pretty(value) else {
        return empty(StatusCode::INTERNAL_SERVER_ERROR);
    };
    let mut response = Response::new(Body::new(Bytes::from(body)));
    *response.status_mut() = status;
    let content_type = HeaderValue::from_static(content_type);
    response.headers_mut().insert(CONTENT_TYPE, content_type);
    response
}

/// Query parameters, names and values percent-decoded, in the order received.
#[derive(Debug, Default)]
pub(crate) struct Query(Vec<(String, String)>);

impl Query {
    /// Reads a raw query string (`None` when the URI has none).
    pub(crate) fn parse(raw: Option<&str>) -> Self {
        let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
        let pairs = raw
            .unwrap_or_default()
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                (decode(name), decode(value))
            })
            .collect();
        Self(pairs)
    }

    /// The first value of `name` (matched exactly).
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every pair, in order.
    pub(crate) fn pairs(&self) -> &[(String, String)] {
        &self.0
    }
}
