//! The connection to the cluster's Redis: one multiplexed, self-reconnecting connection,
//! `cluster.timeout` on every call, and whether Redis is up.
//!
//! While Redis is down, calls fail at once ([`ClusterError::Down`]) instead of each waiting
//! out the timeout; a background probe pings it every [`PROBE_INTERVAL`] and brings the link
//! back up. Each change of state is logged once and shown in `itwin_proxy_cluster_up`;
//! every call is timed into `itwin_proxy_cluster_call_duration_seconds`, and failures count in
//! `itwin_proxy_cluster_errors_total`.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, TlsCertificates};
use tokio::sync::watch;
use tokio::time::Instant;

use super::error::{ClusterError, ClusterSetupError};
use crate::config::ClusterSettings;
use crate::metrics::Metrics;

/// How often a down link probes Redis.
pub(crate) const PROBE_INTERVAL: Duration = Duration::from_millis(250);

/// The least time allowed to open a connection (TCP, TLS, handshake), however short
/// `cluster.timeout` is.
const MIN_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The shared connection; cheap to clone.
#[derive(Clone)]
pub struct Link {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    manager: ConnectionManager,
    timeout: Duration,
    connect_timeout: Duration,
    up: AtomicBool,
    state: watch::Sender<bool>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("up", &self.is_up())
            .field("timeout", &self.inner.timeout)
            .finish()
    }
}

impl Link {
    /// A link to `settings.redis_url` (which must be set), trusting `ca_file` (PEM) for
    /// `rediss://` when given, else the web roots. Starts down; a background probe connects.
    /// Must run inside a tokio runtime.
    pub fn new(
        settings: &ClusterSettings,
        redis_url: &url::Url,
        ca_file: Option<&std::path::Path>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, ClusterSetupError> {
        let client = match ca_file {
            Some(path) if redis_url.scheme() == "rediss" => Client::build_with_tls(
                redis_url.as_str(),
                TlsCertificates {
                    client_tls: None,
                    root_cert: Some(std::fs::read(path)?),
                },
            )?,
            _ => Client::open(redis_url.as_str())?,
        };
        let connect_timeout = settings.timeout.max(MIN_CONNECT_TIMEOUT);
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(settings.timeout))
            .set_connection_timeout(Some(connect_timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(PROBE_INTERVAL);
        let manager = ConnectionManager::new_lazy_with_config(client.clone(), config)?;
        metrics.set_cluster_up(false);
        let inner = Arc::new(Inner {
            client,
            manager,
            timeout: settings.timeout,
            connect_timeout,
            up: AtomicBool::new(false),
            state: watch::Sender::new(false),
            metrics,
        });
        tokio::spawn(probe(Arc::downgrade(&inner)));
        Ok(Self { inner })
    }

    /// Whether Redis answered the last call.
    pub fn is_up(&self) -> bool {
        self.inner.up.load(Ordering::SeqCst)
    }

    /// Follows the link's state: `true` while up.
    pub fn watch(&self) -> watch::Receiver<bool> {
        self.inner.state.subscribe()
    }

    /// Waits until the link is up, at most `wait`; returns whether it is.
    pub async fn wait_up(&self, wait: Duration) -> bool {
        let mut state = self.watch();
        tokio::time::timeout(wait, state.wait_for(|up| *up))
            .await
            .is_ok_and(|seen| seen.is_ok())
    }

    /// The client, for connections of their own (pub/sub).
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// Time allowed to open a connection of its own.
    pub fn connect_timeout(&self) -> Duration {
        self.inner.connect_timeout
    }

    /// Runs one call on the shared connection, within `cluster.timeout`. Fails at once while
    /// Redis is down; a failure marks it down.
    pub async fn call<T, F, Fut>(&self, call: F) -> Result<T, ClusterError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        if !self.is_up() {
            return Err(ClusterError::Down);
        }
        let result = self.timed(call).await;
        if let Err(error) = &result {
            self.inner.mark(false, Some(error));
        }
        result
    }

    async fn timed<T, F, Fut>(&self, call: F) -> Result<T, ClusterError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let started = Instant::now();
        let result = match tokio::time::timeout(
            self.inner.timeout,
            call(self.inner.manager.clone()),
        )
        .await
        {
            Err(_) => Err(ClusterError::Timeout),
            Ok(result) => result.map_err(ClusterError::from),
        };
        self.inner
            .metrics
            .record_cluster_call(started.elapsed().as_secs_f64(), result.is_err());
        result
    }
}

/// Whether the error is Redis's own answer to a command (the connection is fine).
fn is_server_reply(error: &redis::RedisError) -> bool {
    !(error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_unrecoverable_error())
}

impl Inner {
    /// Records a change of state: one log line and the gauge per transition.
    fn mark(&self, up: bool, error: Option<&ClusterError>) {
        if let Some(ClusterError::Redis(error)) = error
            && is_server_reply(error)
        {
            return;
        }
        if self.up.swap(up, Ordering::SeqCst) == up {
            return;
        }
        self.metrics.set_cluster_up(up);
        self.state.send_replace(up);
        match error {
            None => tracing::info!("cluster Redis reachable: budgets, proofs and pages shared"),
            Some(error) => tracing::warn!(
                %error,
                "cluster Redis unreachable: going on alone (local budgets at 1/replicas_hint) \
                 and reconnecting"
            ),
        }
    }
}

/// Pings Redis every [`PROBE_INTERVAL`] while the link is down; ends with the link.
async fn probe(inner: Weak<Inner>) {
    // The first probe's failure is logged here; later ones follow a logged transition.
    let mut first = true;
    loop {
        let (mut state, manager, timeout) = {
            let Some(inner) = inner.upgrade() else { return };
            if inner.up.load(Ordering::SeqCst) {
                (inner.state.subscribe(), None, inner.connect_timeout)
            } else {
                (
                    inner.state.subscribe(),
                    Some(inner.manager.clone()),
                    inner.connect_timeout,
                )
            }
        };
        let Some(mut manager) = manager else {
            // Up: sleep until a call marks it down (or the link goes away).
            if state.wait_for(|up| !*up).await.is_err() {
                return;
            }
            continue;
        };
        let pinged = tokio::time::timeout(timeout, async {
            redis::cmd("PING").query_async::<String>(&mut manager).await
        })
        .await;
        let Some(inner) = inner.upgrade() else { return };
        match pinged {
            Ok(Ok(_)) => inner.mark(true, None),
            Ok(Err(error)) if first => {
                tracing::warn!(%error, "cluster Redis unreachable at start: going on alone");
            }
            Err(_) if first => {
                tracing::warn!("cluster Redis did not answer at start: going on alone");
            }
            Ok(Err(_)) | Err(_) => {}
        }
        first = false;
        drop(inner);
        tokio::time::sleep(PROBE_INTERVAL).await;
    }
}
