//! Serving one listener: the accept loop, HTTP/1.1 and h2c on every connection, and the
//! graceful end: stop accepting, let open connections finish within the grace period.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use super::inflight::{InFlight, Tracked};
use crate::body::ProxyBody;

/// Connections served at once by default; further clients wait in the listen backlog.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// Default time a client gets to send a request head: on HTTP/1 for every request, and for
/// the first request of any connection (so sockets that never send one are closed).
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Default time a connection may stay open with no request in flight and none started.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// Interval of h2 keep-alive pings, which also find dead h2 connections.
const H2_KEEP_ALIVE: Duration = Duration::from_secs(60);

/// Bounds on the connections of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once.
    pub max_connections: usize,
    /// Time allowed for a request head to arrive (see [`DEFAULT_HEADER_READ_TIMEOUT`]).
    pub header_read_timeout: Duration,
    /// Time a connection may sit with no request (see [`DEFAULT_IDLE_TIMEOUT`]); h2 clients
    /// answer keep-alive pings, so without it an idle h2 connection would hold its place
    /// forever.
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
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
/// connections still open after it are closed.
pub async fn serve<H, F>(
    listener: TcpListener,
    handler: H,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
    in_flight: InFlight,
    limits: Limits,
) -> Drained
where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<ProxyBody>> + Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(H2_KEEP_ALIVE);
    let connection_slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
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
            move |request| {
                let guards = (in_flight.enter(), on_connection.enter());
                let response = handler(request, peer);
                async move {
                    let response = response.await;
                    Ok::<_, Infallible>(response.map(|body| Tracked::new(body, guards)))
                }
            }
        });
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let watched = graceful.watch(connection);
        connections.spawn(async move {
            tokio::select! {
                ended = watched => {
                    if let Err(error) = ended {
                        tracing::debug!(error = %error, "connection ended with an error");
                    }
                }
                () = unused(&on_connection, limits) => {
                    tracing::debug!(%peer, "connection unused; closed");
                }
            }
            drop(slot);
        });
    }
    drop(listener);
    match tokio::time::timeout(grace, graceful.shutdown()).await {
        Ok(()) => Drained { cut: 0 },
        Err(_) => {
            let cut = in_flight.count();
            connections.shutdown().await;
            Drained { cut }
        }
    }
}

/// Resolves when a connection has gone unused: no request within the header-read timeout
/// of opening it, or, later, none in flight and none started for a whole idle timeout.
async fn unused(requests: &InFlight, limits: Limits) {
    tokio::time::sleep(limits.header_read_timeout).await;
    if requests.started() == 0 {
        return;
    }
    let mut seen = requests.started();
    loop {
        tokio::time::sleep(limits.idle_timeout).await;
        let started = requests.started();
        if requests.count() == 0 && started == seen {
            return;
        }
        seen = started;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn start(limits: Limits) -> (SocketAddr, watch::Sender<bool>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = watch::channel(false);
        let handler = |request: Request<Incoming>, _peer| async move {
            if request.uri().path() == "/slow" {
                tokio::time::sleep(Duration::from_millis(400)).await;
            }
            Response::new(crate::body::full("ok"))
        };
        tokio::spawn(serve(
            listener,
            handler,
            stopped,
            Duration::from_secs(1),
            InFlight::default(),
            limits,
        ));
        (addr, stop)
    }

    #[tokio::test]
    async fn silent_connections_are_closed() {
        let limits = Limits {
            header_read_timeout: Duration::from_millis(100),
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
    async fn idle_h2_connections_are_closed() {
        let limits = Limits {
            header_read_timeout: Duration::from_millis(100),
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
            header_read_timeout: Duration::from_millis(100),
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
