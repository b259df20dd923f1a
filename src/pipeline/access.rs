//! The request line: one `request completed` line per request, once the response is
//! complete, with the bytes its body carried (written by `telemetry::access_line`).
//!
//! What the line says about the request is kept here, in the request's own context, rather
//! than recorded into its span: [`Arrived`] when it arrives, [`Answered`] once the response
//! head is ready. A body whose size is known then (every answer held in memory, hits
//! included) is logged at once; a streamed body is counted as it goes and logged when it
//! ends or is dropped, so the line tells how much a client really got.

use std::net::IpAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, Uri, header};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::time::Instant;

use super::RequestContext;
use crate::body::{BoxError, ProxyBody};
use crate::cache::CacheStatus;
use crate::telemetry::access_line::{self, RequestLine};

/// What the end of a request and its line both keep from its arrival (the phases consume
/// the request).
#[derive(Debug)]
pub(crate) struct Received {
    /// The request id it got (see `request_id`).
    pub(crate) request_id: HeaderValue,
    /// Its method.
    pub(crate) method: Method,
    /// Its target (the path is logged, never the query).
    pub(crate) uri: Uri,
    /// When it arrived.
    pub(crate) started: Instant,
}

/// What only the line says about a request from its arrival.
#[derive(Debug)]
pub(crate) struct Arrived {
    client: IpAddr,
    user_agent: Option<HeaderValue>,
    in_span: bool,
}

impl Arrived {
    /// The line's facts about `request` from `client`; `None` when no line is to be written
    /// (`log.access` off, or the log filter keeps info lines of the request line's target
    /// out).
    pub(crate) fn when_logged<B>(
        access: bool,
        request: &Request<B>,
        client: IpAddr,
    ) -> Option<Self> {
        if !access {
            return None;
        }
        let in_span = access_line::enabled()?;
        Some(Self {
            client,
            user_agent: request.headers().get(header::USER_AGENT).cloned(),
            in_span,
        })
    }

    /// Adds the request as `received`, what the phases learnt and the response status.
    pub(crate) fn answered(
        self,
        received: Received,
        ctx: &RequestContext,
        status: StatusCode,
    ) -> Answered {
        Answered {
            received,
            arrived: self,
            route: ctx.route,
            status,
            cache: ctx.cache.as_ref().map(CacheStatus::label),
            upstream_ms: ctx.upstream_latency.map(|l| l.as_millis() as u64),
        }
    }
}

/// Everything the line says but how the body went.
#[derive(Debug)]
pub(crate) struct Answered {
    received: Received,
    arrived: Arrived,
    route: &'static str,
    status: StatusCode,
    cache: Option<&'static str>,
    upstream_ms: Option<u64>,
}

impl Answered {
    /// Writes the request line: `bytes` of the body sent, all of it when `complete`.
    fn log(&self, bytes: u64, complete: bool) {
        let (received, arrived) = (&self.received, &self.arrived);
        access_line::write(&RequestLine {
            request_id: received.request_id.to_str().unwrap_or_default(),
            method: received.method.as_str(),
            path: received.uri.path(),
            client: arrived.client,
            user_agent: arrived
                .user_agent
                .as_ref()
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default(),
            route: self.route,
            status: self.status,
            cache: self.cache,
            upstream_ms: self.upstream_ms,
            in_span: arrived.in_span,
            duration_ms: received.started.elapsed().as_millis() as u64,
            bytes,
            complete,
        });
    }
}

/// Logs the request line for a response with `body`, now or when it has been sent; returns
/// the body to send.
pub(crate) fn log_when_sent(line: Answered, body: ProxyBody) -> ProxyBody {
    match body.size_hint().exact() {
        Some(bytes) => {
            line.log(bytes, true);
            body
        }
        None => Counted {
            inner: body,
            line,
            sent: 0,
            ended: false,
        }
        .boxed(),
    }
}

/// A streamed body that logs the request line when it ends or is dropped.
struct Counted {
    inner: ProxyBody,
    line: Answered,
    sent: u64,
    ended: bool,
}

impl Body for Counted {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.sent += data.len() as u64;
                }
            }
            Poll::Ready(None) => self.ended = true,
            Poll::Ready(Some(Err(_))) | Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        let ended = self.ended || self.inner.is_end_stream();
        self.line.log(self.sent, ended);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body;
    use std::collections::VecDeque;

    /// A body of unknown size, as a streamed upstream answer is.
    struct Chunks(VecDeque<Bytes>);

    impl Body for Chunks {
        type Data = Bytes;
        type Error = BoxError;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            Poll::Ready(self.0.pop_front().map(|chunk| Ok(Frame::data(chunk))))
        }
    }

    /// The facts of a request answered from the cache.
    fn answered() -> Answered {
        let received = Received {
            request_id: HeaderValue::from_static("id"),
            method: Method::GET,
            uri: Uri::from_static("/export/connections"),
            started: Instant::now(),
        };
        let arrived = Arrived {
            client: IpAddr::from([127, 0, 0, 1]),
            user_agent: None,
            in_span: false,
        };
        let ctx = RequestContext {
            cache: Some(CacheStatus::Hit { ttl_secs: 60 }),
            ..RequestContext::default()
        };
        arrived.answered(received, &ctx, StatusCode::OK)
    }

    #[tokio::test]
    async fn bodies_pass_through_whole() {
        let chunks = Chunks(VecDeque::from([Bytes::from("ab"), Bytes::from("cde")]));
        let body = log_when_sent(answered(), chunks.boxed());
        assert_eq!(body.size_hint().exact(), None);
        assert_eq!(body.collect().await.unwrap().to_bytes(), "abcde");
        let full = log_when_sent(answered(), body::full("xyz"));
        assert_eq!(full.size_hint().exact(), Some(3));
    }

    #[test]
    fn the_line_keeps_what_the_phases_learnt() {
        let line = answered();
        assert_eq!(
            (line.status, line.cache, line.upstream_ms),
            (StatusCode::OK, Some("hit"), None)
        );
    }

    #[test]
    fn nothing_is_kept_for_a_line_not_written() {
        let request = Request::get("/").body(()).unwrap();
        let client = IpAddr::from([127, 0, 0, 1]);
        // `log.access = false`; and with it on, no log set up (as in this test process).
        for access in [false, true] {
            let arrived = Arrived::when_logged(access, &request, client);
            assert!(arrived.is_none());
        }
    }
}
