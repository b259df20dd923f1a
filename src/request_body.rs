//! The client's request body as the proxy reads it: bounded by `server.max_request_body`,
//! cut when the client stalls for `server.client_timeout`, and, when the answer goes out, what
//! is left of it, so that the connection can be kept (a small rest read and discarded) or
//! closed with notice (`Connection: close`) rather than silently.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, Version, header};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::time::Sleep;

/// The most of an unread body read and discarded to keep a connection open.
pub(crate) const MAX_DRAIN_BYTES: u64 = 64 * 1024;

/// How a request body failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RequestBodyError {
    /// The body passed `server.max_request_body`.
    #[error("the request body is larger than {max} bytes")]
    TooLarge {
        /// The limit.
        max: u64,
    },
    /// The client sent nothing for `server.client_timeout` in the middle of the body.
    #[error("the client stalled in the middle of the request body")]
    Stalled,
    /// The client's connection failed.
    #[error("reading the request body failed: {0}")]
    Read(#[from] hyper::Error),
}

/// What became of a request body, as far as the connection is concerned.
#[derive(Debug)]
enum Tail {
    /// Still being read (or held unread) by the proxy.
    Reading,
    /// Read to its end: the connection can take the next request.
    Done,
    /// Cut (too large, stalled, failed): the rest is unknown.
    Broken,
    /// Dropped before its end: what is left of it.
    Unread(Incoming),
}

/// The handle the connection keeps on a request's body; none for a request without one
/// (most requests: nothing is shared or locked for them).
#[derive(Debug, Clone)]
pub(crate) struct BodyTail(Option<Arc<Mutex<Tail>>>);

impl BodyTail {
    fn set(&self, tail: Tail) {
        if let Some(shared) = &self.0 {
            *shared.lock().unwrap_or_else(PoisonError::into_inner) = tail;
        }
    }

    fn take(&self) -> Tail {
        match &self.0 {
            Some(shared) => std::mem::replace(
                &mut *shared.lock().unwrap_or_else(PoisonError::into_inner),
                Tail::Done,
            ),
            None => Tail::Done,
        }
    }

    /// Before an HTTP/1 answer goes out: what is left of the request body is read and
    /// discarded if it ends within [`MAX_DRAIN_BYTES`] and `timeout`; otherwise (or while the
    /// body is still being sent upstream) the answer carries `Connection: close`, and the
    /// connection ends after it. An h2 stream needs neither.
    pub(crate) async fn settle<B>(
        self,
        version: Version,
        response: &mut Response<B>,
        timeout: Duration,
    ) {
        if version >= Version::HTTP_2 {
            return;
        }
        let keep = match self.take() {
            Tail::Done => true,
            Tail::Reading | Tail::Broken => false,
            Tail::Unread(rest) => drain(rest, timeout).await,
        };
        if !keep {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
    }
}

/// Reads and discards `rest` if it ends within [`MAX_DRAIN_BYTES`] and `timeout`.
async fn drain(mut rest: Incoming, timeout: Duration) -> bool {
    if rest.size_hint().lower() > MAX_DRAIN_BYTES {
        return false;
    }
    let read = async {
        let mut read = 0u64;
        while let Some(frame) = rest.frame().await {
            let Ok(frame) = frame else { return false };
            if let Some(data) = frame.data_ref() {
                read += data.len() as u64;
                if read > MAX_DRAIN_BYTES {
                    return false;
                }
            }
        }
        true
    };
    tokio::time::timeout(timeout, read).await.unwrap_or(false)
}

/// A request body with a size bound and a stall timeout.
#[derive(Debug)]
pub(crate) struct RequestBody {
    inner: Option<Incoming>,
    limit: u64,
    read: u64,
    stall: Duration,
    deadline: Option<Pin<Box<Sleep>>>,
    tail: BodyTail,
}

impl RequestBody {
    /// Wraps the body of `request`; a client that sends nothing for `stall` in the middle of
    /// it gets [`RequestBodyError::Stalled`]. No size bound until [`Self::limit`].
    pub(crate) fn wrap(request: Request<Incoming>, stall: Duration) -> (Request<Self>, BodyTail) {
        let (parts, incoming) = request.into_parts();
        let tail =
            BodyTail((!incoming.is_end_stream()).then(|| Arc::new(Mutex::new(Tail::Reading))));
        let body = Self {
            inner: Some(incoming),
            limit: u64::MAX,
            read: 0,
            stall,
            deadline: None,
            tail: tail.clone(),
        };
        (Request::from_parts(parts, body), tail)
    }

    /// No body at all, for requests made in tests.
    #[cfg(test)]
    pub(crate) fn empty() -> Self {
        Self {
            inner: None,
            limit: u64::MAX,
            read: 0,
            stall: Duration::MAX,
            deadline: None,
            tail: BodyTail(None),
        }
    }

    /// Bounds the body to `max` bytes: past it, reading fails with
    /// [`RequestBodyError::TooLarge`].
    pub(crate) fn limit(&mut self, max: u64) {
        self.limit = max;
    }

    fn fail(
        &mut self,
        error: RequestBodyError,
    ) -> Poll<Option<Result<Frame<Bytes>, RequestBodyError>>> {
        self.inner = None;
        self.tail.set(Tail::Broken);
        Poll::Ready(Some(Err(error)))
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = RequestBodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, RequestBodyError>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(&mut *inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.deadline = None;
                this.read += frame.data_ref().map_or(0, |d| d.len() as u64);
                if this.read > this.limit {
                    let max = this.limit;
                    return this.fail(RequestBodyError::TooLarge { max });
                }
                if inner.is_end_stream() {
                    this.tail.set(Tail::Done);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) => {
                this.tail.set(Tail::Done);
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(error))) => this.fail(RequestBodyError::Read(error)),
            Poll::Pending => {
                let stall = this.stall;
                let deadline = this
                    .deadline
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(stall)));
                match deadline.as_mut().poll(cx) {
                    Poll::Ready(()) => this.fail(RequestBodyError::Stalled),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Incoming::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Incoming::size_hint)
    }
}

impl Drop for RequestBody {
    fn drop(&mut self) {
        let (Some(inner), Some(tail)) = (self.inner.take(), &self.tail.0) else {
            return;
        };
        let mut tail = tail.lock().unwrap_or_else(PoisonError::into_inner);
        if matches!(*tail, Tail::Reading) {
            *tail = match inner.is_end_stream() {
                true => Tail::Done,
                false => Tail::Unread(inner),
            };
        }
    }
}
