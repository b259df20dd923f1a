//! The errors the proxy answers itself, and the one place they become HTTP responses.
//!
//! Every error is classified by its source (the client, the upstream, the budget, the proxy
//! itself) and answered in the upstream's error shape, `{"error":{"code":..,"message":..}}`.
//! Details that would help an attacker or leak internals (socket errors, panics) go to the
//! log, never into the body.

use http::{HeaderValue, Response, StatusCode, header};

use crate::body::{self, ProxyBody};

/// Something the proxy answers itself instead of relaying an upstream answer.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum ProxyError {
    /// The cached route was called without `Authorization: Bearer <token>`.
    #[error("Header Authorization was not found in the request. Access denied.")]
    MissingAuthorization,
    /// The cached route was called with an Authorization header that is not
    /// `Bearer <token>`.
    #[error("Header Authorization does not carry a Bearer token. Access denied.")]
    NotBearer,
    /// The token failed local verification and `auth.reject_unverified` is on.
    #[error("The access token is not valid.")]
    InvalidToken,
    /// An admin request without `server.admin_token` (as Bearer or Basic password).
    #[error("The admin token is missing or wrong.")]
    AdminTokenRequired,
    /// The request is malformed or would make the proxy an open proxy.
    #[error("{0}")]
    InvalidRequest(&'static str),
    /// The request target is longer than the proxy accepts.
    #[error("The request URI is longer than {max} bytes.")]
    UriTooLong {
        /// The longest target accepted.
        max: usize,
    },
    /// The request body is larger than `server.max_request_body`.
    #[error("The request body is larger than {max} bytes.")]
    PayloadTooLarge {
        /// The largest body accepted.
        max: u64,
    },
    /// The client stalled for `server.client_timeout` in the middle of its request.
    #[error("The request was not received in time.")]
    RequestTimeout,
    /// The request's headers are more or larger than the proxy accepts.
    #[error(
        "The request headers are too large: at most {max_count} headers of {max_bytes} bytes in all."
    )]
    HeadersTooLarge {
        /// The most headers accepted.
        max_count: usize,
        /// The most header bytes accepted.
        max_bytes: usize,
    },
    /// The outbound budget has no permit within the allowed wait.
    #[error("The upstream budget is spent. Retry after {retry_after_secs} s.")]
    TooManyRequests {
        /// Whole seconds until a permit is due, at least 1.
        retry_after_secs: u64,
    },
    /// No connection to the upstream could be made (TCP or TLS): nothing was sent.
    #[error("upstream unreachable: {0}")]
    UpstreamUnreachable(String),
    /// The upstream could not be reached or broke off the exchange.
    #[error("The upstream service could not be reached: {0}.")]
    UpstreamUnavailable(String),
    /// The upstream did not answer within `upstream.request_timeout`.
    #[error("The upstream service did not answer in time.")]
    UpstreamTimeout,
    /// A fault of the proxy itself.
    #[error("The proxy failed to handle the request: {0}.")]
    Internal(String),
}

impl ProxyError {
    /// The HTTP status this error is answered with.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Self::MissingAuthorization
            | Self::NotBearer
            | Self::InvalidToken
            | Self::AdminTokenRequired => StatusCode::UNAUTHORIZED,
            Self::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            Self::UriTooLong { .. } => StatusCode::URI_TOO_LONG,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::HeadersTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::UpstreamUnreachable(_) | Self::UpstreamUnavailable(_) => StatusCode::BAD_GATEWAY,
            Self::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The machine-readable `error.code` of the body.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            Self::MissingAuthorization | Self::NotBearer => "HeaderNotFound",
            Self::InvalidToken => "InvalidToken",
            Self::AdminTokenRequired => "Unauthorized",
            Self::InvalidRequest(_) => "InvalidRequest",
            Self::UriTooLong { .. } => "UriTooLong",
            Self::PayloadTooLarge { .. } => "PayloadTooLarge",
            Self::RequestTimeout => "RequestTimeout",
            Self::HeadersTooLarge { .. } => "HeadersTooLarge",
            Self::TooManyRequests { .. } => "TooManyRequests",
            Self::UpstreamUnreachable(_) | Self::UpstreamUnavailable(_) => "UpstreamUnavailable",
            Self::UpstreamTimeout => "UpstreamTimeout",
            Self::Internal(_) => "InternalError",
        }
    }

    /// Whether the request may have reached the upstream before this error: not when the
    /// proxy refused it itself (any 4xx, 429 included: a body cut for its size or a stalled
    /// client never reaches the upstream whole) or no connection could be made.
    pub(crate) fn may_have_reached_upstream(&self) -> bool {
        !(self.status().is_client_error() || matches!(self, Self::UpstreamUnreachable(_)))
    }

    /// The human-readable `error.message`: the display text for client errors, a generic
    /// sentence where the display text carries internals.
    fn public_message(&self) -> String {
        match self {
            Self::UpstreamUnreachable(_) | Self::UpstreamUnavailable(_) => {
                "The upstream service could not be reached.".into()
            }
            Self::UpstreamTimeout => "The upstream service did not answer in time.".into(),
            Self::Internal(_) => "The proxy failed to handle the request.".into(),
            other => other.to_string(),
        }
    }

    /// The response for this error, in the upstream's error shape.
    pub(crate) fn to_response(&self) -> Response<ProxyBody> {
        let (head, json) = self.head_and_body();
        head.map(|()| body::full(json))
    }

    /// This error as a whole HTTP/1.1 response that ends its connection, for the one answer
    /// written straight to a socket because no request exists to answer through the service
    /// (a request head that did not arrive in time).
    pub(crate) fn to_http1_closing(&self) -> Vec<u8> {
        let (head, json) = self.head_and_body();
        let status = head.status();
        let mut bytes = Vec::with_capacity(256 + json.len());
        bytes.extend_from_slice(b"HTTP/1.1 ");
        bytes.extend_from_slice(status.as_str().as_bytes());
        bytes.push(b' ');
        bytes.extend_from_slice(status.canonical_reason().unwrap_or_default().as_bytes());
        bytes.extend_from_slice(b"\r\n");
        for (name, value) in head.headers() {
            bytes.extend_from_slice(name.as_str().as_bytes());
            bytes.extend_from_slice(b": ");
            bytes.extend_from_slice(value.as_bytes());
            bytes.extend_from_slice(b"\r\n");
        }
        bytes.extend_from_slice(format!("content-length: {}\r\n", json.len()).as_bytes());
        bytes.extend_from_slice(b"connection: close\r\n\r\n");
        bytes.extend_from_slice(json.as_bytes());
        bytes
    }

    /// The status and headers of this error's response, and its JSON body.
    fn head_and_body(&self) -> (Response<()>, String) {
        let json = serde_json::json!({
            "error": { "code": self.code(), "message": self.public_message() }
        });
        let mut response = Response::new(());
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Self::TooManyRequests { retry_after_secs } = self {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
        }
        if let Some(challenge) = self.bearer_challenge() {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        (response, json.to_string())
    }

    /// The RFC 6750 challenge of the proxy's own 401s on the API: none of the error
    /// attributes when no credentials came (as the RFC asks), else which problem it was.
    fn bearer_challenge(&self) -> Option<&'static str> {
        match self {
            Self::MissingAuthorization => Some("Bearer realm=\"itwin-proxy\""),
            Self::NotBearer => Some(
                "Bearer realm=\"itwin-proxy\", error=\"invalid_request\", \
                 error_description=\"The Authorization header is not a Bearer token\"",
            ),
            Self::InvalidToken => Some(
                "Bearer realm=\"itwin-proxy\", error=\"invalid_token\", \
                 error_description=\"The access token is not valid\"",
            ),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body_json(response: Response<ProxyBody>) -> serde_json::Value {
        let bytes = response
            .into_body()
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        serde_json::from_slice(&bytes).unwrap_or_default()
    }

    #[tokio::test]
    async fn errors_use_the_upstream_shape() {
        let response = ProxyError::MissingAuthorization.to_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            HeaderValue::from_static("application/json")
        );
        let json = body_json(response).await;
        assert_eq!(json["error"]["code"], "HeaderNotFound");
        assert_eq!(
            json["error"]["message"],
            "Header Authorization was not found in the request. Access denied."
        );
    }

    #[test]
    fn the_api_401s_say_which_problem_in_their_challenge() {
        let challenge = |error: ProxyError| {
            let response = error.to_response();
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
            response.headers()[header::WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .to_owned()
        };
        assert_eq!(
            challenge(ProxyError::MissingAuthorization),
            "Bearer realm=\"itwin-proxy\""
        );
        assert!(challenge(ProxyError::NotBearer).contains("error=\"invalid_request\""));
        assert!(challenge(ProxyError::InvalidToken).contains("error=\"invalid_token\""));
        assert!(
            !ProxyError::AdminTokenRequired
                .to_response()
                .headers()
                .contains_key(header::WWW_AUTHENTICATE),
            "the admin listener sets its own"
        );
    }

    #[tokio::test]
    async fn too_many_requests_carries_retry_after() {
        let response = ProxyError::TooManyRequests {
            retry_after_secs: 3,
        }
        .to_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "3");
    }

    #[test]
    fn refusals_and_failed_connects_never_reached_the_upstream() {
        for never in [
            ProxyError::TooManyRequests {
                retry_after_secs: 1,
            },
            ProxyError::PayloadTooLarge { max: 1 },
            ProxyError::RequestTimeout,
            ProxyError::InvalidRequest("x"),
            ProxyError::UpstreamUnreachable("connection refused".into()),
        ] {
            assert!(!never.may_have_reached_upstream(), "{never:?}");
        }
        for maybe in [
            ProxyError::UpstreamUnavailable("connection reset".into()),
            ProxyError::UpstreamTimeout,
            ProxyError::Internal("x".into()),
        ] {
            assert!(maybe.may_have_reached_upstream(), "{maybe:?}");
        }
        assert_eq!(
            ProxyError::UpstreamUnreachable("x".into()).code(),
            "UpstreamUnavailable"
        );
        assert_eq!(
            ProxyError::RequestTimeout.status(),
            StatusCode::REQUEST_TIMEOUT
        );
    }

    #[tokio::test]
    async fn every_message_is_one_capitalised_sentence() {
        let errors = [
            ProxyError::MissingAuthorization,
            ProxyError::InvalidToken,
            ProxyError::InvalidRequest("The request target is not valid."),
            ProxyError::UriTooLong { max: 8192 },
            ProxyError::TooManyRequests {
                retry_after_secs: 2,
            },
            ProxyError::UpstreamUnavailable("connection refused".into()),
            ProxyError::UpstreamTimeout,
            ProxyError::Internal("a stored page has no body".into()),
        ];
        for error in errors {
            for message in [error.to_string(), error.public_message()] {
                let first = message.chars().next().unwrap_or_default();
                assert!(first.is_uppercase(), "{message}");
                assert!(message.ends_with('.'), "{message}");
            }
        }
    }

    #[tokio::test]
    async fn internals_never_reach_the_body() {
        let response =
            ProxyError::UpstreamUnavailable("tcp connect error 10.0.0.7".into()).to_response();
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
        let json = body_json(response).await;
        assert_eq!(json["error"]["code"], "UpstreamUnavailable");
        assert!(!json.to_string().contains("10.0.0.7"));
    }

    #[tokio::test]
    async fn the_raw_http1_answer_is_the_response_with_a_close() {
        let error = ProxyError::RequestTimeout;
        let bytes = error.to_http1_closing();
        let text = String::from_utf8(bytes).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let mut lines = head.split("\r\n");
        assert_eq!(lines.next(), Some("HTTP/1.1 408 Request Timeout"));
        let headers: Vec<_> = lines.collect();
        assert!(
            headers.contains(&"content-type: application/json"),
            "{head}"
        );
        assert!(headers.contains(&"connection: close"), "{head}");
        let length = format!("content-length: {}", body.len());
        assert!(headers.contains(&length.as_str()), "{head}");
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json, body_json(error.to_response()).await);
        assert_eq!(json["error"]["code"], "RequestTimeout");
    }
}
