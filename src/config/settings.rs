//! Validated settings: the shape the rest of the proxy reads.
//!
//! Produced only by [`crate::config::load`] (or built directly in tests), so every value here
//! has already been checked: URLs parse, durations are positive where they must be, budgets
//! are at least one request.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use url::Url;

/// Every setting of one proxy instance, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Listeners and shutdown.
    pub server: ServerSettings,
    /// Where requests go and how.
    pub upstream: UpstreamSettings,
    /// The page cache.
    pub cache: CacheSettings,
    /// Outbound budgets.
    pub rate_limit: RateLimitSettings,
    /// Token verification.
    pub auth: AuthSettings,
    /// Sharing budgets, proofs and pages with other replicas through Redis.
    pub cluster: ClusterSettings,
    /// Logging.
    pub log: LogSettings,
}

/// `[server]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerSettings {
    /// Address of the proxy listener.
    pub listen: SocketAddr,
    /// The URL clients use to reach the proxy; rewritten links point here. It may carry a
    /// path prefix (`http://gw/bentley`), which incoming requests have stripped.
    pub public_base_url: Url,
    /// Address of the admin listener (`/healthz`, `/readyz`, `/metrics`, `/purge`).
    pub admin_listen: SocketAddr,
    /// How long in-flight requests may run after a shutdown signal.
    pub shutdown_grace: Duration,
    /// When set, `/`, `/metrics` and `POST /purge` on the admin listener need it (Bearer, or
    /// the password of HTTP Basic). Never printed.
    pub admin_token: Option<String>,
    /// Request bodies larger than this get 413 PayloadTooLarge.
    pub max_request_body: u64,
    /// How long a client may stall while sending a request head or body (then 408
    /// RequestTimeout where it can still be answered), or while reading a response body
    /// (then its connection is closed).
    pub client_timeout: Duration,
}

/// `[upstream]`.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamSettings {
    /// The only upstream: scheme `http` or `https`, a host, optional port and path prefix;
    /// no query or fragment. Credentials in it are redacted whenever it is printed.
    pub base_url: Url,
    /// Further origins whose links are rewritten to the proxy.
    pub link_origins: Vec<Url>,
    /// Time allowed to open a connection (TCP and TLS).
    pub connect_timeout: Duration,
    /// Time allowed from sending a request until its response headers arrive.
    pub request_timeout: Duration,
    /// Extra trusted root CA (PEM), beside the web roots.
    pub ca_file: Option<PathBuf>,
    /// JSON bodies larger than this are passed on unrewritten.
    pub max_rewrite_bytes: u64,
}

/// `[cache]`.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheSettings {
    /// How long a stored page is fresh.
    pub ttl: Duration,
    /// How long past freshness a page may be served when the upstream fails.
    pub stale_if_error: Duration,
    /// How long past freshness a page may be served while it is refreshed in the background.
    pub stale_while_revalidate: Duration,
    /// Upper bound of the stored bytes (bodies and headers).
    pub max_bytes: u64,
}

/// Which budget an upstream call draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimitKey {
    /// One budget per OAuth client app (the token's `client_id` claim).
    ClientId,
    /// One budget for every call.
    Global,
}

/// `[rate_limit]`.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimitSettings {
    /// Sustained rate, may be fractional; > 0.
    pub requests_per_second: f64,
    /// Calls that may go at once after a quiet period; >= 1.
    pub burst: u32,
    /// Optional second window; `None` when 0 (off).
    pub requests_per_hour: Option<u32>,
    /// How long a request may wait for a permit before it is answered 429.
    pub max_wait: Duration,
    /// Cap on any pause asked for by an upstream Retry-After.
    pub max_pause: Duration,
    /// How budgets are keyed.
    pub key: RateLimitKey,
    /// Sustained rate of the budget shared by calls whose token is not trusted; > 0.
    pub unverified_per_second: f64,
    /// Burst of that budget; >= 1.
    pub unverified_burst: u32,
}

/// `[auth]`.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthSettings {
    /// JWKS endpoint for local verification, when set.
    pub jwks_url: Option<Url>,
    /// Expected `iss`, when set.
    pub issuer: Option<String>,
    /// Expected `aud`, when set.
    pub audience: Option<String>,
    /// A token must hold one of these scopes to be served from the cache.
    pub accepted_scopes: Vec<String>,
    /// With a JWKS: answer 401 locally to tokens that fail verification.
    pub reject_unverified: bool,
}

/// `[cluster]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterSettings {
    /// The Redis every replica shares (`redis://` or `rediss://`); `None`: this process alone.
    /// Credentials in it are redacted whenever it is printed.
    pub redis_url: Option<Url>,
    /// Every Redis key the proxy writes starts with it; replicas sharing a prefix share state.
    pub key_prefix: String,
    /// A Redis call slower than this counts as failed.
    pub timeout: Duration,
    /// How many replicas share the budgets: while Redis is unreachable, each spends
    /// 1/`replicas_hint` of every rate.
    pub replicas_hint: u32,
    /// Whether pages are kept in Redis too, so one replica's fill serves all.
    pub shared_cache: bool,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq)]
pub struct LogSettings {
    /// A tracing filter directive such as `info` or `itwin_proxy=debug`.
    pub level: String,
    /// Output format.
    pub format: LogFormat,
    /// Whether each request gets its request line (`log.access`).
    pub access: bool,
}
