//! The request line: one `request completed` event per request, in the request's span, once
//! the response is complete, with the bytes its body carried.
//!
//! A body whose size is known when the head is ready (every answer held in memory, hits
//! included) is logged at once; a streamed body is counted as it goes and logged when it
//! ends or is dropped, so the line tells how much a client really got.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::time::Instant;

use crate::body::{BoxError, ProxyBody};

/// Logs the request line for a response with `body`, now or when it has been sent; returns
/// the body to send.
pub(crate) fn log_when_sent(span: tracing::Span, started: Instant, body: ProxyBody) -> ProxyBody {
    match body.size_hint().exact() {
        Some(bytes) => {
            completed(&span, started, bytes, true);
            body
        }
        None => Counted {
            inner: body,
            span,
            started,
            sent: 0,
            ended: false,
        }
        .boxed(),
    }
}

/// The request line.
fn completed(span: &tracing::Span, started: Instant, bytes: u64, complete: bool) {
    span.in_scope(|| {
        tracing::info!(
            duration_ms = started.elapsed().as_millis() as u64,
            bytes,
            complete,
            "request completed"
        );
    });
}

/// A streamed body that logs the request line when it ends or is dropped.
struct Counted {
    inner: ProxyBody,
    span: tracing::Span,
    started: Instant,
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
        completed(&self.span, self.started, self.sent, ended);
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

    #[tokio::test]
    async fn bodies_pass_through_whole() {
        let chunks = Chunks(VecDeque::from([Bytes::from("ab"), Bytes::from("cde")]));
        let body = log_when_sent(tracing::Span::none(), Instant::now(), chunks.boxed());
        assert_eq!(body.size_hint().exact(), None);
        assert_eq!(body.collect().await.unwrap().to_bytes(), "abcde");
        let full = log_when_sent(tracing::Span::none(), Instant::now(), body::full("xyz"));
        assert_eq!(full.size_hint().exact(), Some(3));
    }
}
