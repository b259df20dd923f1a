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

/// Connections served at once; further clients wait in the listen backlog.
const MAX_CONNECTIONS: usize = 10_000;

/// Time a client gets to send a request head on HTTP/1 (a guard against slowloris).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Interval of h2 keep-alive pings, which also find dead h2 connections.
const H2_KEEP_ALIVE: Duration = Duration::from_secs(60);

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
) -> Drained
where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<ProxyBody>> + Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(H2_KEEP_ALIVE);
    let connection_slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
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
        let service = service_fn(move |request| {
            let guard = in_flight.enter();
            let response = handler(request, peer);
            async move {
                let response = response.await;
                Ok::<_, Infallible>(response.map(|body| Tracked::new(body, guard)))
            }
        });
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let watched = graceful.watch(connection);
        connections.spawn(async move {
            if let Err(error) = watched.await {
                tracing::debug!(error = %error, "connection ended with an error");
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
