//! Request heads that do not arrive in time: an HTTP/1 client that has begun a request head
//! and not finished it within `server.client_timeout` of its first byte gets a 408
//! `RequestTimeout` written straight to its socket, and its connection ends.
//!
//! hyper's own `header_read_timeout` would close such a connection without a word, and it
//! runs from the start of every wait for a head, so it would also close idle keep-alive
//! connections at the client timeout rather than the idle timeout. This timer runs from the
//! first byte of a head instead, and leaves idle connections to the listener.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::inflight::InFlight;
use super::slow_reader::Blocked;
use crate::error::ProxyError;

/// The first bytes of every h2 connection; hyper-util's auto builder serves h2 when a
/// connection opens with them, HTTP/1 otherwise.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// In [`Reading`], that no head is being read.
const NO_HEAD: u64 = u64::MAX;

/// A client socket that times the request heads read from it.
///
/// A head is timed from the first byte read while no request of the connection is in flight
/// until the request it begins is handed to the service. Bytes read while a request is in
/// flight (its body, or the head of a pipelined request) start no timer, so a pipelined head
/// may go untimed here; the listener's idle timeout still ends such a connection.
#[derive(Debug)]
pub(crate) struct HeadTimer<T> {
    /// The client socket.
    inner: T,
    /// What the first bytes told.
    protocol: Protocol,
    /// The time a head may take from its first byte (`server.client_timeout`).
    timeout: Duration,
    /// Whether a head is being read, as the listener sees it.
    reading: Reading,
    /// When the head being read must be complete, if one is (and [`Reading::head`] agrees).
    deadline: Option<Instant>,
    /// The sleep polled for `deadline`, kept to be reset for the next head.
    sleep: Option<Pin<Box<Sleep>>>,
    /// Whether the socket refused the last write (as the [`WriteWatch`] below notes it):
    /// hyper then holds bytes not yet written, and an answer of our own would cut into them.
    ///
    /// [`WriteWatch`]: super::slow_reader::WriteWatch
    writes: Blocked,
}

/// The protocol of a connection, as far as its first bytes tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    /// This many bytes, all of them a prefix of the h2 preface, have been read.
    Undecided(usize),
    /// Not h2: the connection is HTTP/1, where a late head is answered with a 408.
    Http1,
    /// h2, which has no request heads of this kind: the timer is off for good.
    Http2,
}

/// Whether a connection is in the middle of a request head, shared between its
/// [`HeadTimer`] and the listener.
#[derive(Debug, Clone)]
pub(crate) struct Reading {
    /// The connection's requests.
    requests: InFlight,
    /// How many requests had started when the head being read began, or [`NO_HEAD`]; the
    /// head is done once one more has started.
    started_before: Arc<AtomicU64>,
}

impl<T> HeadTimer<T> {
    /// Times the request heads read from `inner`, a connection whose requests are counted
    /// in `requests` and whose refused writes `writes` tells: a head must be complete within
    /// `timeout` of its first byte.
    pub(crate) fn new(
        inner: T,
        requests: InFlight,
        writes: Blocked,
        timeout: Duration,
    ) -> (Self, Reading) {
        let reading = Reading {
            requests,
            started_before: Arc::new(AtomicU64::new(NO_HEAD)),
        };
        let timer = Self {
            inner,
            protocol: Protocol::Undecided(0),
            timeout,
            reading: reading.clone(),
            deadline: None,
            sleep: None,
            writes,
        };
        (timer, reading)
    }

    /// Notes `bytes` just read: the protocol they tell, and the start of a head.
    fn on_read(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if let Protocol::Undecided(matched) = self.protocol {
            // As the auto builder decides: h2 exactly when the first bytes are the preface.
            let rest = &H2_PREFACE[matched..];
            let compared = rest.len().min(bytes.len());
            self.protocol = match bytes[..compared] == rest[..compared] {
                false => Protocol::Http1,
                true if compared == rest.len() => Protocol::Http2,
                true => Protocol::Undecided(matched + compared),
            };
        }
        if self.protocol == Protocol::Http2 {
            self.disarm();
        } else if self.current_deadline().is_none() && self.reading.requests.count() == 0 {
            self.deadline = Some(Instant::now() + self.timeout);
            self.reading
                .started_before
                .store(self.reading.requests.started(), Ordering::SeqCst);
        }
    }

    /// The deadline of the head being read, if one is: none once its request has started.
    fn current_deadline(&self) -> Option<Instant> {
        self.deadline.filter(|_| self.reading.head())
    }

    /// Stops timing: the head is done with, or the connection is h2.
    fn disarm(&mut self) {
        self.deadline = None;
        self.reading.started_before.store(NO_HEAD, Ordering::SeqCst);
    }
}

impl<T: AsyncWrite + Unpin> HeadTimer<T> {
    /// Called when a read finds nothing new: fails it once the head being read is late, after
    /// answering the client if it can be; otherwise wakes the task at the deadline.
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(deadline) = self.current_deadline() else {
            return Poll::Pending;
        };
        let sleep = match &mut self.sleep {
            Some(sleep) => {
                if sleep.deadline() != deadline {
                    sleep.as_mut().reset(deadline);
                }
                sleep
            }
            None => self
                .sleep
                .insert(Box::pin(tokio::time::sleep_until(deadline))),
        };
        ready!(sleep.as_mut().poll(cx));
        self.disarm();
        self.answer(cx);
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the request head did not arrive in time",
        )))
    }

    /// Writes a 408 that closes the connection, if this is HTTP/1 and nothing else is
    /// waiting to be written; best effort: one write of the whole answer, or nothing.
    fn answer(&mut self, cx: &mut Context<'_>) {
        if self.protocol != Protocol::Http1 || self.writes.now() {
            tracing::debug!("request head not received in time; closed without an answer");
            return;
        }
        let answer = ProxyError::RequestTimeout.to_http1_closing();
        match Pin::new(&mut self.inner).poll_write(cx, &answer) {
            Poll::Ready(Ok(written)) if written == answer.len() => {
                tracing::debug!("request head not received in time; answered 408");
                if let Poll::Ready(Err(error)) = Pin::new(&mut self.inner).poll_flush(cx) {
                    tracing::debug!(%error, "flushing the 408 failed");
                }
            }
            _ => tracing::debug!("request head not received in time; the 408 did not fit"),
        }
    }
}

impl Reading {
    /// Whether a request head has begun and its request not yet started.
    pub(crate) fn head(&self) -> bool {
        self.started_before.load(Ordering::SeqCst) == self.requests.started()
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for HeadTimer<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.protocol == Protocol::Http2 {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                this.on_read(&buf.filled()[before..]);
                Poll::Ready(Ok(()))
            }
            Poll::Pending => this.poll_deadline(cx),
            failed => failed,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for HeadTimer<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    const TIMEOUT: Duration = Duration::from_millis(300);

    /// A timed server end and the client end of one connection.
    fn connection(requests: &InFlight) -> (HeadTimer<DuplexStream>, Reading, DuplexStream) {
        let (server, client) = tokio::io::duplex(64 * 1024);
        let (timer, reading) =
            HeadTimer::new(server, requests.clone(), Blocked::default(), TIMEOUT);
        (timer, reading, client)
    }

    /// Reads once from `timer`, `None` if nothing comes within far more than the timeout.
    async fn read(timer: &mut HeadTimer<DuplexStream>) -> Option<io::Result<Vec<u8>>> {
        let mut buffer = [0u8; 1024];
        let read = tokio::time::timeout(20 * TIMEOUT, timer.read(&mut buffer)).await;
        read.ok().map(|read| read.map(|n| buffer[..n].to_vec()))
    }

    /// What the client has been sent, without waiting for more.
    async fn sent(client: &mut DuplexStream) -> Vec<u8> {
        let mut buffer = vec![0u8; 4096];
        match tokio::time::timeout(TIMEOUT, client.read(&mut buffer)).await {
            Ok(Ok(n)) => buffer[..n].to_vec(),
            _ => Vec::new(),
        }
    }

    fn timed_out(read: Option<io::Result<Vec<u8>>>) -> bool {
        matches!(read, Some(Err(error)) if error.kind() == io::ErrorKind::TimedOut)
    }

    #[tokio::test(start_paused = true)]
    async fn a_late_http1_head_is_answered_408_and_the_read_fails() {
        let requests = InFlight::default();
        let (mut timer, reading, mut client) = connection(&requests);
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n")
            .await
            .unwrap();
        assert!(matches!(read(&mut timer).await, Some(Ok(bytes)) if !bytes.is_empty()));
        assert!(reading.head());
        assert!(timed_out(read(&mut timer).await));
        assert!(!reading.head());
        let answer = String::from_utf8(sent(&mut client).await).unwrap();
        assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
        assert!(answer.contains("\r\nconnection: close\r\n"), "{answer}");
        assert!(answer.ends_with("}"), "{answer}");
    }

    #[tokio::test(start_paused = true)]
    async fn an_h2_connection_is_never_timed() {
        let requests = InFlight::default();
        let (mut timer, reading, mut client) = connection(&requests);
        client.write_all(H2_PREFACE).await.unwrap();
        client.write_all(b"\0\0").await.unwrap();
        assert!(matches!(read(&mut timer).await, Some(Ok(_))));
        assert!(!reading.head());
        assert!(
            read(&mut timer).await.is_none(),
            "still waiting for the frame"
        );
        assert!(sent(&mut client).await.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn an_unfinished_h2_preface_is_ended_without_an_answer() {
        let requests = InFlight::default();
        let (mut timer, _reading, mut client) = connection(&requests);
        client.write_all(&H2_PREFACE[..16]).await.unwrap();
        assert!(matches!(read(&mut timer).await, Some(Ok(_))));
        assert!(timed_out(read(&mut timer).await));
        assert!(sent(&mut client).await.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn body_bytes_and_idle_waits_start_no_timer() {
        let requests = InFlight::default();
        let (mut timer, reading, mut client) = connection(&requests);
        client
            .write_all(b"POST / HTTP/1.1\r\nContent-Length: 9\r\n\r\n")
            .await
            .unwrap();
        assert!(matches!(read(&mut timer).await, Some(Ok(_))));
        // The head is whole: hyper hands its request to the service.
        let in_flight = requests.enter();
        assert!(!reading.head());
        client.write_all(b"{\"a\":").await.unwrap();
        assert!(matches!(read(&mut timer).await, Some(Ok(_))));
        assert!(!reading.head(), "body bytes are no head");
        assert!(
            read(&mut timer).await.is_none(),
            "a stalled body is not cut here"
        );
        client.write_all(b"1}").await.unwrap();
        assert!(matches!(read(&mut timer).await, Some(Ok(_))));
        drop(in_flight);
        assert!(
            read(&mut timer).await.is_none(),
            "an idle connection is not cut here"
        );
        assert!(sent(&mut client).await.is_empty());
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        assert!(matches!(read(&mut timer).await, Some(Ok(_))));
        assert!(reading.head(), "the next head is timed");
        assert!(timed_out(read(&mut timer).await));
    }
}
