//! The app factory: a whole proxy built from settings and started, in-process. `main` runs it
//! until a signal; tests start it on 127.0.0.1:0 and drive it over real sockets.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::auth::{RandomUnavailable, TokenHasher};
use crate::cluster::{Cluster, ClusterSetupError};
use crate::config::{self, ConfigErrors, Settings};
use crate::metrics::Metrics;
use crate::pipeline::{Proxy, Reloaded, SettingsState, SettingsStateError};
use crate::ratelimit::Budgets;
use crate::server::{self, Drained, InFlight, Limits};

/// How long start-up waits for the cluster's Redis to hand out its hash key.
const HASH_KEY_WAIT: Duration = Duration::from_secs(2);

/// How long the admin listener gets to finish after the proxy listener has drained.
const ADMIN_GRACE: Duration = Duration::from_secs(1);

/// The proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener could not bind its address.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The upstream client or the token verifier could not be built.
    #[error(transparent)]
    Setup(#[from] SettingsStateError),
    /// No random key for token hashing.
    #[error(transparent)]
    Random(#[from] RandomUnavailable),
    /// The Redis client of `cluster.redis_url` could not be built.
    #[error(transparent)]
    Cluster(#[from] ClusterSetupError),
}

/// A reload of the config file that was refused: the running config stays.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file, with the environment, is not a valid config.
    #[error("invalid configuration:\n{0}")]
    Invalid(#[from] ConfigErrors),
    /// Its upstream client or token verifier could not be built.
    #[error(transparent)]
    Setup(#[from] SettingsStateError),
}

/// A started proxy: its addresses, its state, and the handle that stops it.
#[derive(Debug)]
pub struct RunningProxy {
    addr: SocketAddr,
    admin_addr: SocketAddr,
    proxy: Arc<Proxy>,
    metrics: Arc<Metrics>,
    in_flight: InFlight,
    stop: watch::Sender<bool>,
    stop_admin: watch::Sender<bool>,
    served: JoinHandle<Drained>,
    admin: JoinHandle<Drained>,
}

/// Binds both listeners and starts serving.
pub async fn start(settings: Settings) -> Result<RunningProxy, StartError> {
    let listener = bind(settings.server.listen).await?;
    let admin_listener = bind(settings.server.admin_listen).await?;
    let addr = local_addr(&listener, settings.server.listen)?;
    let admin_addr = local_addr(&admin_listener, settings.server.admin_listen)?;
    let grace = settings.server.shutdown_grace;
    let limits = Limits {
        client_timeout: settings.server.client_timeout,
        ..Limits::default()
    };

    let metrics = Arc::new(Metrics::default());
    metrics.record_config_loaded(unix_now(), 0);
    let cluster = Cluster::join(
        &settings.cluster,
        &settings.cache,
        settings.upstream.ca_file.as_deref(),
        Arc::clone(&metrics),
    )?;
    let mut live = SettingsState::new(settings, &metrics)?;
    if let Some(verifier) = &live.verifier {
        // In the background: the proxy serves at once, judging tokens by the upstream's
        // answers until the keys are in.
        verifier.prefetch();
    }
    let running_metrics = Arc::clone(&metrics);
    let proxy = match cluster {
        None => Arc::new(Proxy::new(live, TokenHasher::random()?, metrics)),
        Some(cluster) => {
            live.budgets = Arc::new(Budgets::clustered(&live.settings.rate_limit, &cluster));
            let hasher = match cluster.wait_hash_key(HASH_KEY_WAIT).await {
                Some(key) => (TokenHasher::with_key(&key), true),
                None => {
                    tracing::warn!(
                        "the cluster's Redis did not answer at start: this replica hashes \
                         tokens with a key of its own until restarted (its token proofs are \
                         not shared)"
                    );
                    (TokenHasher::random()?, false)
                }
            };
            Proxy::new(live, hasher.0, metrics).with_cluster(Arc::new(cluster), hasher.1)
        }
    };
    let in_flight = InFlight::default();
    let (stop, stopped) = watch::channel(false);
    let (stop_admin, admin_stopped) = watch::channel(false);

    let handler = {
        let proxy = Arc::clone(&proxy);
        move |request, client| Arc::clone(&proxy).handle(request, client)
    };
    let served = tokio::spawn(server::serve(
        listener,
        handler,
        stopped.clone(),
        grace,
        in_flight.clone(),
        limits,
    ));
    let admin_handler = {
        let proxy = Arc::clone(&proxy);
        let in_flight = in_flight.clone();
        move |request, _client| {
            server::handle_admin(
                request,
                Arc::clone(&proxy),
                stopped.clone(),
                in_flight.clone(),
            )
        }
    };
    let admin = tokio::spawn(server::serve(
        admin_listener,
        admin_handler,
        admin_stopped,
        ADMIN_GRACE,
        InFlight::default(),
        limits,
    ));
    tracing::info!(%addr, %admin_addr, "itwin-proxy listening");
    Ok(RunningProxy {
        addr,
        admin_addr,
        proxy,
        metrics: running_metrics,
        in_flight,
        stop,
        stop_admin,
        served,
        admin,
    })
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })
}

fn local_addr(listener: &TcpListener, addr: SocketAddr) -> Result<SocketAddr, StartError> {
    listener
        .local_addr()
        .map_err(|source| StartError::Bind { addr, source })
}

impl RunningProxy {
    /// Where the proxy listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where the admin endpoints listen.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// The proxy's state.
    pub fn proxy(&self) -> &Arc<Proxy> {
        &self.proxy
    }

    /// Reads the config again, from `path` (None: the defaults) and `env`, and applies it to
    /// every request that starts from now on (see [`Proxy::reload`]); a refused config
    /// leaves the running one. Counted in `itwin_proxy_config_reload_total{result}`.
    pub fn reload_config(
        &self,
        path: Option<&Path>,
        env: &HashMap<String, String>,
    ) -> Result<Reloaded, ReloadError> {
        let applied = match config::load(path, env) {
            Ok(settings) => self.proxy.reload(settings).map_err(ReloadError::from),
            Err(problems) => Err(ReloadError::from(problems)),
        };
        self.metrics.record_config_reload(applied.is_ok());
        if let Ok(reloaded) = &applied {
            (self.metrics).record_config_loaded(unix_now(), reloaded.needs_restart.len());
        }
        applied
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.count()
    }

    /// Starts the graceful end: `/readyz` turns 503 and the proxy listener stops accepting.
    pub fn begin_shutdown(&self) {
        self.stop.send_replace(true);
    }

    /// Shuts down gracefully: stops accepting, lets in-flight requests finish within
    /// `server.shutdown_grace`, then stops the admin listener. Returns how many requests
    /// were cut at the deadline.
    pub async fn shutdown(self) -> Drained {
        self.begin_shutdown();
        let drained = self.served.await.unwrap_or(Drained { cut: 0 });
        self.stop_admin.send_replace(true);
        if self.admin.await.is_err() {
            tracing::debug!("admin listener task ended abnormally");
        }
        drained
    }
}

/// Seconds since the Unix epoch.
fn unix_now() -> i64 {
    let since_epoch = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH);
    since_epoch.map_or(0, |elapsed| {
        i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
    })
}
