//! The listener and the path of one request: the issuer's endpoints are answered at once;
//! other requests are recorded, take a queued failure, wait out a hold and the delay, then
//! are answered (test aids directly; API routes after the token and the quota are checked).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use super::auth::AuthError;
use super::control::Failure;
use super::reply::{self, Body};
use super::routes::{self, Route};
use super::{Shared, aids, issuer, lock};

/// How long open requests get to finish once shutdown begins.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Why a connection was dropped instead of answered.
#[derive(Debug, thiserror::Error)]
enum Dropped {
    #[error("connection closed as a queued failure asked")]
    Instructed,
    #[error("reading the request body: {0}")]
    Body(#[from] hyper::Error),
}

/// The accept loop running in its own task.
#[derive(Debug)]
pub(crate) struct Server {
    stop: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Server {
    /// Serves `listener` until [`Server::shutdown`] or until the server is dropped.
    pub(crate) fn spawn(listener: TcpListener, shared: Arc<Shared>) -> Self {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(serve(listener, shared, stopped));
        Self {
            stop,
            task: Mutex::new(Some(task)),
        }
    }

    /// Stops accepting and waits, up to a grace period, for open requests to finish.
    pub(crate) async fn shutdown(&self) {
        self.stop.send_replace(true);
        let task = lock(&self.task).take();
        if let Some(task) = task {
            // The task only ends by itself; a join error would mean it panicked.
            let _ = task.await;
        }
    }
}

async fn serve(listener: TcpListener, shared: Arc<Shared>, mut stopped: watch::Receiver<bool>) {
    let builder = auto::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = stopped.wait_for(|stop| *stop) => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let shared = Arc::clone(&shared);
                let service = service_fn(move |request| handle(Arc::clone(&shared), request));
                let connection = builder
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .into_owned();
                connections.spawn(graceful.watch(connection));
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    // Connections still open after the grace are aborted when the set drops.
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await;
}

/// The whole path of one request.
async fn handle(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Result<Response<Body>, Dropped> {
    let (parts, body) = request.into_parts();
    let body = body.collect().await?.to_bytes();
    if let Some(answer) = issuer::answer(&shared, &parts) {
        return Ok(answer);
    }
    let failure = shared.control.record(&parts, &body);
    shared.control.park().await;
    let delay = shared.control.delay();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let route = Route::parse(&parts.method, parts.uri.path());
    if let Some(failure) = failure {
        let application = shared
            .auth
            .authenticate(&parts.headers)
            .map_or_else(|_| "anonymous".to_owned(), |caller| caller.client_id);
        return failed(&failure, route.operation(), &application);
    }
    if let Route::Aid(aid) = route {
        return Ok(aids::answer(aid, &shared.origin, &parts, &body));
    }
    let caller = match shared.auth.authenticate(&parts.headers) {
        Ok(caller) => caller,
        Err(refused) => return Ok(unauthorized(&refused)),
    };
    if let Some(quota) = &shared.quota
        && let Err(wait) = quota.check(&caller.client_id)
    {
        shared.control.count_quota_rejection();
        let retry_after = HeaderValue::from(wait);
        let operation = route.operation();
        return Ok(reply::too_many_requests(
            Some(retry_after),
            operation,
            &caller.client_id,
        ));
    }
    Ok(routes::answer(&shared, route, &caller, &parts, &body))
}

/// The answer a queued failure asks for.
fn failed(
    failure: &Failure,
    operation: &str,
    application: &str,
) -> Result<Response<Body>, Dropped> {
    let header =
        |value: &Option<String>| value.as_deref().and_then(|v| HeaderValue::from_str(v).ok());
    match failure {
        Failure::Close => Err(Dropped::Instructed),
        Failure::TooManyRequests { retry_after } => Ok(reply::too_many_requests(
            header(retry_after),
            operation,
            application,
        )),
        Failure::ServiceUnavailable { retry_after } => {
            let message = "The service is temporarily unavailable.";
            let status = StatusCode::SERVICE_UNAVAILABLE;
            let mut response = reply::error(status, "ServiceUnavailable", message);
            if let Some(value) = header(retry_after) {
                response
                    .headers_mut()
                    .insert(http::header::RETRY_AFTER, value);
            }
            Ok(response)
        }
        Failure::Status(code) => {
            let status = StatusCode::from_u16(*code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let code = status_code_name(status);
            let message = format!("Simulated failure ({status}).");
            Ok(reply::error(status, code, &message))
        }
    }
}

/// The 401 for a refused token.
fn unauthorized(refused: &AuthError) -> Response<Body> {
    let code = match refused {
        AuthError::Missing => "HeaderNotFound",
        AuthError::Invalid(_) => "InvalidToken",
        AuthError::InsufficientScope => "InsufficientScope",
    };
    reply::error(StatusCode::UNAUTHORIZED, code, &refused.to_string())
}

/// The error code a simulated failure of `status` carries.
fn status_code_name(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "InvalidRequest",
        401 => "InvalidToken",
        403 => "InsufficientPermissions",
        404 => "NotFound",
        409 => "ConnectionAlreadyInUse",
        429 => "TooManyRequests",
        503 => "ServiceUnavailable",
        504 => "GatewayTimeout",
        500..=599 => "InternalServerError",
        _ => "Error",
    }
}
