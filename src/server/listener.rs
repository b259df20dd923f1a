//! Serving one listener: the accept loop, HTTP/1.1 and h2c on every connection, and the
//! graceful end: stop accepting, let open connections finish within the grace period.
//!
//! A connection is never closed under a client without notice: an HTTP/1 answer given before
//! its request body was read either follows a small rest read and discarded, or carries
//! `Connection: close` (see [`BodyTail::settle`]).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use super::head_timer::{HeadTimer, Reading};
use super::inflight::{InFlight, Tracked};
use super::slow_reader::WriteWatch;
use crate::body::ProxyBody;
use crate::request_body::{BodyTail, RequestBody};

/// Connections served at once by default; further clients wait in the listen backlog.
pub(crate) const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// Default time a client may stall (`server.client_timeout`): before it starts its first
/// request (a socket that sends nothing, or no whole h2 preface, is closed), while sending an
/// HTTP/1 request head (counted from its first byte; answered 408 by [`HeadTimer`]) or body,
/// or while not taking a response.
pub(crate) const DEFAULT_CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

/// Default time a connection may stay open with no request in flight and none started.
pub(crate) const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// Interval of h2 keep-alive pings, which also find dead h2 connections.
const H2_KEEP_ALIVE: Duration = Duration::from_secs(60);

/// Bounds on the connections of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Connections served at once.
    pub max_connections: usize,
    /// Time a client may stall (see [`DEFAULT_CLIENT_TIMEOUT`]).
    pub client_timeout: Duration,
    /// Time a connection may sit with no request (see [`DEFAULT_IDLE_TIMEOUT`]); h2 clients
    /// answer keep-alive pings, so without it an idle h2 connection would hold its place
    /// forever.
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            client_timeout: DEFAULT_CLIENT_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }
}

/// How a listener's graceful end went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    /// Requests still running when the grace period ran out, and cut.
    pub cut: usize,
}

/// Serves `listener` with `handler` until `stop` turns true, then drains for at most `grace`;
/// connections still open after it are closed. A connection whose client has not taken any
/// of a response for `client_timeout` is closed too.
pub(crate) async fn serve<H, F>(
    listener: TcpListener,
    handler: H,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
    in_flight: InFlight,
    limits: Limits,
) -> Drained
where
    H: Fn(Request<RequestBody>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<ProxyBody>> + Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        // The proxy times request heads itself (see `HeadTimer`); hyper's timer would close
        // a late head without an answer, and idle keep-alive connections too early.
        .header_read_timeout(None)
        // Above the proxy's own limits, which it answers in its error shape.
        .max_headers(2 * crate::pipeline::MAX_HEADER_COUNT);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(H2_KEEP_ALIVE)
        .max_header_list_size(4 * crate::pipeline::MAX_HEADER_BYTES as u32);
    let connection_slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    // Turns true when the listener stops: every connection then ends once its requests have
    // been answered.
    let (draining, drain) = watch::channel(false);
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let next = async {
            let slot = Arc::clone(&connection_slots).acquire_owned().await;
            (slot, listener.accept().await)
        };
        let (slot, accepted) = tokio::select! {
            stopped = async { stop.wait_for(|stop| *stop).await.is_ok() } => {
                if !stopped {
                    tracing::debug!("shutdown handle dropped; stopping");
                }
                break;
            }
            next = next => next,
        };
        let Ok(slot) = slot else { break };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: back off rather than spin.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY");
        }
        let handler = handler.clone();
        let in_flight = in_flight.clone();
        let on_connection = InFlight::default();
        let service = service_fn({
            let on_connection = on_connection.clone();
            move |request: Request<Incoming>| {
                let guards = (in_flight.enter(), on_connection.enter());
                let version = request.version();
                let (request, tail): (_, BodyTail) =
                    RequestBody::wrap(request, limits.client_timeout);
                let response = handler(request, peer);
                async move {
                    let mut response = response.await;
                    tail.settle(version, &mut response, limits.client_timeout)
                        .await;
                    Ok::<_, Infallible>(response.map(|body| Tracked::new(body, guards)))
                }
            }
        });
        let (stream, blocked) = WriteWatch::new(stream);
        let (stream, reading) = HeadTimer::new(
            stream,
            on_connection.clone(),
            blocked.clone(),
            limits.client_timeout,
        );
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let mut drain = drain.clone();
        connections.spawn(async move {
            // The watchers are polled only when their own timer or signal wakes them: a
            // `select!` over them would poll each on every wake of the connection, several
            // times a request.
            let mut watchers =
                FuturesUnordered::<Pin<Box<dyn Future<Output = Closed> + Send>>>::new();
            watchers.push(Box::pin(async move {
                // A dropped sender means the listener is gone: drain as well.
                let _ = drain.wait_for(|draining| *draining).await;
                Closed::Draining
            }));
            watchers.push(Box::pin(async {
                unused(&on_connection, &reading, limits).await;
                Closed::Unused
            }));
            watchers.push(Box::pin(async {
                blocked.for_longer_than(limits.client_timeout).await;
                Closed::Blocked
            }));
            let mut connection = std::pin::pin!(connection);
            loop {
                tokio::select! {
                    biased;
                    ended = connection.as_mut() => {
                        if let Err(error) = ended {
                            tracing::debug!(error = %error, "connection ended with an error");
                        }
                        break;
                    }
                    Some(closed) = watchers.next() => match closed {
                        // Answers what is in flight, then ends (HTTP/1: no keep-alive; h2:
                        // GOAWAY).
                        Closed::Draining => connection.as_mut().graceful_shutdown(),
                        Closed::Unused => {
                            tracing::debug!(%peer, "connection unused; closed");
                            break;
                        }
                        Closed::Blocked => {
                            tracing::debug!(%peer, "client stopped reading its response; closed");
                            break;
                        }
                    },
                }
            }
            drop(slot);
        });
    }
    drop(listener);
    let _ = draining.send(true);
    let drained = async { while connections.join_next().await.is_some() {} };
    match tokio::time::timeout(grace, drained).await {
        Ok(()) => Drained { cut: 0 },
        Err(_) => {
            let cut = in_flight.count();
            connections.shutdown().await;
            Drained { cut }
        }
    }
}

/// Why a watcher woke a connection's task.
enum Closed {
    /// The listener stopped: the connection is to end once its requests are answered.
    Draining,
    /// No request for the idle timeout (see [`unused`]).
    Unused,
    /// The client took none of a response for the client timeout.
    Blocked,
}

/// Resolves when a connection has gone unused: no request within the client timeout
/// of opening it, or, later, none in flight and none started for a whole idle timeout. A
/// connection in the middle of a request head is left to its [`HeadTimer`], which answers
/// it or ends it within the client timeout.
async fn unused(requests: &InFlight, reading: &Reading, limits: Limits) {
    tokio::time::sleep(limits.client_timeout).await;
    if requests.started() == 0 && !reading.head() {
        return;
    }
    let mut seen = requests.started();
    loop {
        tokio::time::sleep(limits.idle_timeout).await;
        let started = requests.started();
        if requests.count() == 0 && started == seen && !reading.head() {
            return;
        }
        seen = started;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use http_body::{Body, Frame};

    /// An endless body in 64 KiB frames, produced only as fast as it is taken.
    struct Endless;

    impl Body for Endless {
        type Data = bytes::Bytes;
        type Error = crate::body::BoxError;

        fn poll_frame(
            self: std::pin::Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<Frame<bytes::Bytes>, Self::Error>>> {
            let chunk = bytes::Bytes::from(vec![b'x'; 64 * 1024]);
            std::task::Poll::Ready(Some(Ok(Frame::data(chunk))))
        }
    }

    async fn start_counted(
        limits: Limits,
        in_flight: InFlight,
    ) -> (SocketAddr, watch::Sender<bool>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = watch::channel(false);
        let handler = |request: Request<RequestBody>, _peer| async move {
            match request.uri().path() {
                "/slow" => tokio::time::sleep(Duration::from_millis(400)).await,
                "/endless" => {
                    use http_body_util::BodyExt;
                    return Response::new(Endless.boxed());
                }
                _ => {}
            }
            Response::new(crate::body::full("ok"))
        };
        tokio::spawn(serve(
            listener,
            handler,
            stopped,
            Duration::from_secs(1),
            in_flight,
            limits,
        ));
        (addr, stop)
    }

    async fn start(limits: Limits) -> (SocketAddr, watch::Sender<bool>) {
        start_counted(limits, InFlight::default()).await
    }

    #[tokio::test]
    async fn a_client_that_stops_reading_is_closed() {
        let limits = Limits {
            client_timeout: Duration::from_millis(200),
            ..Limits::default()
        };
        let in_flight = InFlight::default();
        let (addr, _stop) = start_counted(limits, in_flight.clone()).await;
        let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
        socket
            .write_all(b"GET /endless HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        // The client never reads: once the socket buffers fill, the response is stuck.
        let released = async {
            while in_flight.started() == 0 || in_flight.count() > 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(20), released)
            .await
            .expect("the stuck response was dropped with its connection");
        drop(socket);
    }

    #[tokio::test]
    async fn silent_connections_are_closed() {
        let limits = Limits {
            client_timeout: Duration::from_millis(100),
            ..Limits::default()
        };
        let (addr, _stop) = start(limits).await;
        for opening in [&b""[..], b"PRI * HTTP/2.0\r\n"] {
            let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
            socket.write_all(opening).await.unwrap();
            let mut buffer = [0u8; 64];
            let read = tokio::time::timeout(Duration::from_secs(10), socket.read(&mut buffer))
                .await
                .expect("closed by the proxy, not by the test's bound");
            assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        }
    }

    #[tokio::test]
    async fn idle_http1_connections_are_closed_silently() {
        let limits = Limits {
            client_timeout: Duration::from_millis(100),
            idle_timeout: Duration::from_millis(300),
            ..Limits::default()
        };
        let (addr, _stop) = start(limits).await;
        let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
        socket
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let closed = async {
            read_until(&mut socket, &mut Vec::new(), b"\r\n\r\nok").await;
            socket.read(&mut [0u8; 16]).await
        };
        let read = tokio::time::timeout(Duration::from_secs(10), closed)
            .await
            .expect("closed by the proxy, not by the test's bound");
        assert!(matches!(read, Ok(0) | Err(_)), "nothing sent: {read:?}");
    }

    /// Reads from `socket` until `answer` ends with `end`.
    async fn read_until(socket: &mut tokio::net::TcpStream, answer: &mut Vec<u8>, end: &[u8]) {
        let mut buffer = [0u8; 256];
        while !answer.ends_with(end) {
            let read = socket.read(&mut buffer).await.unwrap();
            assert!(read > 0, "closed before the answer: {answer:?}");
            answer.extend_from_slice(&buffer[..read]);
        }
    }

    #[tokio::test]
    async fn a_drain_ends_idle_connections_at_once_and_answers_requests_in_flight() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = watch::channel(false);
        let in_flight = InFlight::default();
        let slow_started = Arc::new(tokio::sync::Notify::new());
        let handler = {
            let slow_started = Arc::clone(&slow_started);
            move |request: Request<RequestBody>, _peer| {
                let slow_started = Arc::clone(&slow_started);
                async move {
                    if request.uri().path() == "/slow" {
                        slow_started.notify_one();
                        tokio::time::sleep(Duration::from_millis(300)).await;
                    }
                    Response::new(crate::body::full("ok"))
                }
            }
        };
        // A grace period far past the test's bound: only connections that end on their own
        // let the drain finish in time.
        let grace = Duration::from_secs(60);
        let limits = Limits::default();
        let serving = tokio::spawn(serve(
            listener,
            handler,
            stopped,
            grace,
            in_flight.clone(),
            limits,
        ));
        let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
        idle.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        read_until(&mut idle, &mut Vec::new(), b"\r\n\r\nok").await;
        let mut busy = tokio::net::TcpStream::connect(addr).await.unwrap();
        busy.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(10), slow_started.notified())
            .await
            .unwrap();
        stop.send(true).unwrap();
        let drained = tokio::time::timeout(Duration::from_secs(10), serving)
            .await
            .expect("drained well before the grace period")
            .unwrap();
        assert_eq!(drained, Drained { cut: 0 });
        let mut answer = Vec::new();
        read_until(&mut busy, &mut answer, b"\r\n\r\nok").await;
        assert!(answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");
        let mut rest = [0u8; 16];
        assert!(
            matches!(idle.read(&mut rest).await, Ok(0) | Err(_)),
            "the idle connection ended"
        );
    }

    #[tokio::test]
    async fn idle_h2_connections_are_closed() {
        let limits = Limits {
            client_timeout: Duration::from_millis(100),
            idle_timeout: Duration::from_millis(200),
            ..Limits::default()
        };
        let (addr, _stop) = start(limits).await;
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .unwrap();
        let connection = tokio::spawn(connection);
        let request = Request::get("http://x/")
            .body(crate::body::empty())
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), http::StatusCode::OK);
        drop(response);
        tokio::time::timeout(Duration::from_secs(10), connection)
            .await
            .expect("the proxy closed the idle connection")
            .unwrap()
            .ok();
    }

    #[tokio::test]
    async fn a_request_slower_than_the_deadline_is_not_cut() {
        let limits = Limits {
            client_timeout: Duration::from_millis(100),
            ..Limits::default()
        };
        let (addr, _stop) = start(limits).await;
        let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
        socket
            .write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buffer = [0u8; 256];
        let read = tokio::time::timeout(Duration::from_secs(10), socket.read(&mut buffer))
            .await
            .unwrap()
            .unwrap();
        assert!(
            buffer[..read].starts_with(b"HTTP/1.1 200"),
            "answered after the deadline"
        );
    }
}
