//! Serving one listener: the accept loop, HTTP/1.1 and h2c on every connection, and the
//! graceful end: stop accepting, let open connections finish within the grace period.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::inflight::{InFlight, Tracked};
use crate::body::ProxyBody;

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
    let builder = auto::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            stopped = async { stop.wait_for(|stop| *stop).await.is_ok() } => {
                if !stopped {
                    tracing::debug!("shutdown handle dropped; stopping");
                }
                break;
            }
            accepted = listener.accept() => {
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
                });
            }
        }
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
