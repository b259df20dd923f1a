//! Clients that stop reading: a connection whose socket has refused to take more of a
//! response for `server.client_timeout` is closed, so that a slow or stuck reader does not
//! hold a connection slot, and through its response body an upstream connection, forever.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// A client socket that notes since when its writes are blocked.
#[derive(Debug)]
pub(crate) struct WriteWatch<T> {
    inner: T,
    blocked: Blocked,
    /// Whether the last write was refused: the shared [`Blocked`] is only touched when this
    /// changes, not on every write.
    refusing: bool,
}

/// Since when the socket of a [`WriteWatch`] has been refusing writes, if it is.
#[derive(Debug, Clone, Default)]
pub(crate) struct Blocked(Arc<Mutex<Option<Instant>>>);

impl<T> WriteWatch<T> {
    /// Watches the writes to `inner`.
    pub(crate) fn new(inner: T) -> (Self, Blocked) {
        let blocked = Blocked::default();
        let watch = Self {
            inner,
            blocked: blocked.clone(),
            refusing: false,
        };
        (watch, blocked)
    }

    fn note<R>(&mut self, result: Poll<R>) -> Poll<R> {
        let refusing = result.is_pending();
        if refusing != self.refusing {
            self.refusing = refusing;
            let mut since = self
                .blocked
                .0
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            *since = refusing.then(Instant::now);
        }
        result
    }
}

impl Blocked {
    /// Whether the socket refused the last write: bytes are waiting to be written.
    pub(crate) fn now(&self) -> bool {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    /// Resolves once writes have been refused for `timeout` without a break (noticed within
    /// another `timeout`).
    pub(crate) async fn for_longer_than(&self, timeout: Duration) {
        loop {
            let since = *self.0.lock().unwrap_or_else(PoisonError::into_inner);
            match since {
                Some(since) if since.elapsed() >= timeout => return,
                Some(since) => tokio::time::sleep_until(since + timeout).await,
                None => tokio::time::sleep(timeout).await,
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WriteWatch<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WriteWatch<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.note(result)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.note(result)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_flush(cx);
        self.note(result)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
