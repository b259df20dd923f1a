//! The upstream simulator: an in-process emulator of the iTwin Export API.
//!
//! The proxy's tests start it on `127.0.0.1:0`; users run it offline through the
//! `itwin-proxy-sim` binary. This crate's root owns the public handle ([`Simulator`]) and its
//! configuration; the seeded data, tokens and signing keys, the issuer's endpoints, routes,
//! quota and test controls live in the modules. It is a crate of its own: it cannot use proxy
//! code, and the proxy takes it only as a dev-dependency, so the simulator stays an
//! independent witness.

mod aids;
mod auth;
mod control;
mod data;
mod issuer;
mod keys;
mod quota;
mod reply;
mod routes;
mod server;
#[cfg(test)]
mod tests;
mod views;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::net::TcpListener;

pub use auth::{Scopes, TokenSpec};
pub use control::{Failure, Hold, RecordedRequest};

/// The iModel seeded when no other is configured.
pub const DEMO_IMODEL_ID: &str = "5db42812-ebb8-4c58-98a4-2eaa99e0d8b6";

/// Connections seeded for [`DEMO_IMODEL_ID`] by default.
pub const DEMO_CONNECTION_COUNT: usize = 120;

/// How the simulator starts.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Origin written into absolute hrefs and `Location` headers, e.g.
    /// `https://api.bentley.com`; `None` uses the simulator's own `http://127.0.0.1:PORT`.
    pub link_origin: Option<String>,
    /// iModel ids with the number of connections seeded for each.
    pub imodels: Vec<(String, usize)>,
    /// Delay added before each answer.
    pub delay: Duration,
    /// The simulator's own rate limit, per token `client_id`.
    pub quota: Option<SimQuota>,
    /// HS256 key for its tokens; `None` draws a random one at each start.
    pub secret: Option<Vec<u8>>,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            link_origin: None,
            imodels: vec![(DEMO_IMODEL_ID.to_owned(), DEMO_CONNECTION_COUNT)],
            delay: Duration::ZERO,
            quota: None,
            secret: None,
        }
    }
}

/// A GCRA quota: a sustained rate and a burst, kept per token `client_id`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimQuota {
    /// Sustained calls per second (fractions allowed).
    pub requests_per_second: f64,
    /// Calls allowed at once before the rate applies.
    pub burst: u32,
}

/// The state every request handler shares.
struct Shared {
    origin: String,
    auth: auth::Auth,
    publication: issuer::Publication,
    store: Mutex<data::Store>,
    control: control::Control,
    quota: Option<quota::Limiter>,
}

/// A running simulator. Clones share it; it stops on [`Simulator::shutdown`] or once the last
/// clone is dropped.
#[derive(Clone)]
pub struct Simulator {
    shared: Arc<Shared>,
    server: Arc<server::Server>,
    addr: SocketAddr,
}

impl Simulator {
    /// Starts a simulator on `127.0.0.1` with a port the system picks.
    pub async fn start(config: SimConfig) -> std::io::Result<Simulator> {
        Self::bind(SocketAddr::from(([127, 0, 0, 1], 0)), config).await
    }

    /// Starts a simulator on `addr`.
    pub async fn bind(addr: SocketAddr, config: SimConfig) -> std::io::Result<Simulator> {
        let quota = config.quota.map(quota::Limiter::new).transpose()?;
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let base_url = format!("http://{addr}");
        let origin = match config.link_origin {
            Some(origin) => origin.trim_end_matches('/').to_owned(),
            None => base_url.clone(),
        };
        let shared = Arc::new(Shared {
            auth: auth::Auth::new(config.secret, base_url)?,
            publication: issuer::Publication::default(),
            store: Mutex::new(data::Store::seed(&config.imodels)),
            control: control::Control::new(config.delay),
            quota,
            origin,
        });
        let server = Arc::new(server::Server::spawn(listener, Arc::clone(&shared)));
        Ok(Simulator {
            shared,
            server,
            addr,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its own base URL, `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The origin it writes into hrefs and `Location` headers.
    pub fn link_origin(&self) -> String {
        self.shared.origin.clone()
    }

    /// A JWT (HS256, signed with its key) it accepts while the claims hold.
    pub fn token(&self, spec: &TokenSpec) -> String {
        self.shared.auth.sign(spec, false)
    }

    /// The same claims as [`Simulator::token`] signed with another key: it rejects it.
    pub fn forged_token(&self, spec: &TokenSpec) -> String {
        self.shared.auth.sign(spec, true)
    }

    /// A JWT with the claims of [`Simulator::token`], signed RS256 with its RSA key under the
    /// current `kid`; it accepts it until [`Simulator::rotate_key`]. Its `iss` is the issuer
    /// that `/.well-known/openid-configuration` names. (Empty should the system fail to make
    /// a key.)
    pub fn rs256_token(&self, spec: &TokenSpec) -> String {
        self.shared.auth.sign_rs256(spec, false)
    }

    /// The same as [`Simulator::rs256_token`] signed with another RSA key under the same
    /// `kid`: it rejects it, and so does any verifier of its key set.
    pub fn forged_rs256_token(&self, spec: &TokenSpec) -> String {
        self.shared.auth.sign_rs256(spec, true)
    }

    /// The `kid` of the RSA key RS256 tokens are signed with now (empty should the system
    /// fail to make a key).
    pub fn key_id(&self) -> String {
        let key = self.shared.auth.rsa_key();
        key.map(|key| key.kid.clone()).unwrap_or_default()
    }

    /// Replaces the RSA key with a new one under a new `kid`: the key set publishes only the
    /// new key and RS256 tokens signed before are refused. (Should the system fail to make
    /// a key, the current one stays, which [`Simulator::key_id`] shows.)
    pub fn rotate_key(&self) {
        self.shared.auth.rotate_rsa_key();
    }

    /// Requests received for `/.well-known/jwks.json` (these, like the discovery document,
    /// are not part of [`Simulator::request_count`]).
    pub fn jwks_requests(&self) -> u64 {
        self.shared.publication.jwks_requests()
    }

    /// While `down`, `/.well-known/jwks.json` answers 503 (the API keeps working).
    pub fn set_jwks_down(&self, down: bool) {
        self.shared.publication.set_down(down);
    }

    /// Makes a non-JWT token acceptable, acting as `sub` of the app `client_id`.
    pub fn register_opaque_token(&self, token: &str, sub: &str, client_id: &str) {
        self.shared.auth.register_opaque(token, sub, client_id);
    }

    /// Every request received so far.
    pub fn request_count(&self) -> u64 {
        self.shared.control.request_count()
    }

    /// Requests received with this method and path (the query is not part of the path).
    pub fn count(&self, method: &str, path: &str) -> u64 {
        self.shared.control.count(method, path)
    }

    /// The last 1,000 requests, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.control.requests()
    }

    /// 429s its own quota produced (not those asked for with [`Simulator::fail_next`]).
    pub fn quota_rejections(&self) -> u64 {
        self.shared.control.quota_rejections()
    }

    /// The next `n` requests, on any route, answer with `failure` (queued after earlier ones).
    pub fn fail_next(&self, n: u32, failure: Failure) {
        self.shared.control.fail_next(n, failure);
    }

    /// Sets the delay added before each answer.
    pub fn set_delay(&self, delay: Duration) {
        self.shared.control.set_delay(delay);
    }

    /// Parks every request arriving from now on (after it is counted and recorded) until the
    /// returned [`Hold`] is released or dropped.
    pub fn hold(&self) -> Hold {
        self.shared.control.hold()
    }

    /// Makes `sub` get 403 `InsufficientPermissions` on everything of `imodel_id`.
    pub fn deny(&self, sub: &str, imodel_id: &str) {
        self.shared.control.deny(sub, imodel_id);
    }

    /// Stops accepting, lets open requests finish for a short grace, then ends.
    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}

impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulator")
            .field("addr", &self.addr)
            .field("link_origin", &self.shared.origin)
            .finish_non_exhaustive()
    }
}

/// Locks a mutex, carrying on with the data if a panicking thread poisoned it.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
