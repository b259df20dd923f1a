//! Validated settings: the shape the rest of the proxy reads.
//!
//! Produced only by [`crate::config::load`] (or built directly in tests), so every value here
//! has already been checked: URLs parse, durations are positive where they must be, budgets
//! are at least one request.
//!
//! Each field serializes as its key is written in the file (the `serialize_with` helpers of
//! `render`), which gives `--check-config` its output and a reload the values it compares
//! against [`NEEDS_RESTART`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::{Serialize, Serializer};
use url::Url;

use super::render::{duration, optional, optional_path, optional_url, url, urls, zero_if_none};

/// `FromStr` and `Serialize` for an enum a key names by text, through the enum's `ALL` (every
/// value) and `as_str` (its name in the file): the one place its names are written.
macro_rules! named_in_the_file {
    ($name:ident) => {
        impl FromStr for $name {
            type Err = String;

            fn from_str(text: &str) -> Result<Self, String> {
                from_name(text, Self::ALL, Self::as_str)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }
    };
}

/// Keys, or whole sections, whose changes a reload cannot apply: the listeners, the cache,
/// logging and the cluster are built once, at start.
pub const NEEDS_RESTART: [&str; 11] = [
    "server.listen",
    "server.admin_listen",
    "server.shutdown_grace",
    "server.client_timeout",
    "cache.ttl",
    "cache.stale_if_error",
    "cache.stale_while_revalidate",
    "cache.max_bytes",
    "log.level",
    "log.format",
    "cluster",
];

/// Every setting of one proxy instance, validated.
#[derive(Debug, Clone, PartialEq, Serialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerSettings {
    /// Address of the proxy listener.
    pub listen: SocketAddr,
    /// The URL clients use to reach the proxy; rewritten links point here. It may carry a
    /// path prefix (`http://gw/bentley`), which incoming requests have stripped.
    #[serde(serialize_with = "url")]
    pub public_base_url: Url,
    /// Address of the admin listener (`/healthz`, `/readyz`, `/metrics`, `/purge`).
    pub admin_listen: SocketAddr,
    /// How long in-flight requests may run after a shutdown signal.
    #[serde(serialize_with = "duration")]
    pub shutdown_grace: Duration,
    /// When set, `/`, `/metrics` and `POST /purge` on the admin listener need it (Bearer, or
    /// the password of HTTP Basic). Never printed.
    #[serde(serialize_with = "optional")]
    pub admin_token: Option<String>,
    /// Request bodies larger than this get 413 PayloadTooLarge.
    pub max_request_body: u64,
    /// How long a client may stall while sending a request head or body (then 408
    /// RequestTimeout where it can still be answered), or while reading a response body
    /// (then its connection is closed).
    #[serde(serialize_with = "duration")]
    pub client_timeout: Duration,
}

/// `[upstream]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UpstreamSettings {
    /// The only upstream: scheme `http` or `https`, a host, optional port and path prefix;
    /// no query or fragment. Credentials in it are redacted whenever it is printed.
    #[serde(serialize_with = "url")]
    pub base_url: Url,
    /// Further origins whose links are rewritten to the proxy.
    #[serde(serialize_with = "urls")]
    pub link_origins: Vec<Url>,
    /// Time allowed to open a connection (TCP and TLS).
    #[serde(serialize_with = "duration")]
    pub connect_timeout: Duration,
    /// Time allowed from sending a request until its response headers arrive.
    #[serde(serialize_with = "duration")]
    pub request_timeout: Duration,
    /// Extra trusted root CA (PEM), beside the web roots.
    #[serde(serialize_with = "optional_path")]
    pub ca_file: Option<PathBuf>,
    /// JSON bodies larger than this are passed on unrewritten.
    pub max_rewrite_bytes: u64,
}

/// `[cache]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CacheSettings {
    /// How long a stored page is fresh.
    #[serde(serialize_with = "duration")]
    pub ttl: Duration,
    /// How long past freshness a page may be served when the upstream fails.
    #[serde(serialize_with = "duration")]
    pub stale_if_error: Duration,
    /// How long past freshness a page may be served while it is refreshed in the background.
    #[serde(serialize_with = "duration")]
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

impl RateLimitKey {
    /// Every value, in the order messages list them.
    const ALL: [Self; 2] = [Self::ClientId, Self::Global];

    /// The value as the config file writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientId => "client_id",
            Self::Global => "global",
        }
    }
}

named_in_the_file!(RateLimitKey);

/// `[rate_limit]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RateLimitSettings {
    /// Sustained rate, may be fractional; > 0.
    pub requests_per_second: f64,
    /// Calls that may go at once after a quiet period; >= 1.
    pub burst: u32,
    /// Optional second window; `None` when 0 (off).
    #[serde(serialize_with = "zero_if_none")]
    pub requests_per_hour: Option<u32>,
    /// How long a request may wait for a permit before it is answered 429.
    #[serde(serialize_with = "duration")]
    pub max_wait: Duration,
    /// Cap on any pause asked for by an upstream Retry-After.
    #[serde(serialize_with = "duration")]
    pub max_pause: Duration,
    /// How budgets are keyed.
    pub key: RateLimitKey,
    /// Sustained rate of the budget shared by calls whose token is not trusted; > 0.
    pub unverified_per_second: f64,
    /// Burst of that budget; >= 1.
    pub unverified_burst: u32,
}

/// `[auth]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuthSettings {
    /// JWKS endpoint for local verification, when set.
    #[serde(serialize_with = "optional_url")]
    pub jwks_url: Option<Url>,
    /// Expected `iss`, when set.
    #[serde(serialize_with = "optional")]
    pub issuer: Option<String>,
    /// Expected `aud`, when set.
    #[serde(serialize_with = "optional")]
    pub audience: Option<String>,
    /// A token must hold one of these scopes to be served from the cache.
    pub accepted_scopes: Vec<String>,
    /// With a JWKS: answer 401 locally to tokens that fail verification.
    pub reject_unverified: bool,
}

/// `[cluster]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterSettings {
    /// The Redis every replica shares (`redis://` or `rediss://`); `None`: this process alone.
    /// Credentials in it are redacted whenever it is printed.
    #[serde(serialize_with = "optional_url")]
    pub redis_url: Option<Url>,
    /// Every Redis key the proxy writes starts with it; replicas sharing a prefix share state.
    pub key_prefix: String,
    /// A Redis call slower than this counts as failed.
    #[serde(serialize_with = "duration")]
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

impl LogFormat {
    /// Every value, in the order messages list them.
    const ALL: [Self; 2] = [Self::Text, Self::Json];

    /// The value as the config file writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Json => "json",
        }
    }
}

named_in_the_file!(LogFormat);

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogSettings {
    /// A tracing filter directive such as `info` or `itwin_proxy=debug`.
    pub level: String,
    /// Output format.
    pub format: LogFormat,
    /// Whether each request gets its request line (`log.access`).
    pub access: bool,
}

/// The one of `values` named `text`, or a message listing the names.
fn from_name<T: Copy, const N: usize>(
    text: &str,
    values: [T; N],
    name: fn(T) -> &'static str,
) -> Result<T, String> {
    if let Some(value) = values.into_iter().find(|value| name(*value) == text) {
        return Ok(value);
    }
    let names: Vec<String> = values
        .into_iter()
        .map(|value| format!("{:?}", name(value)))
        .collect();
    Err(format!("must be {}, found {text:?}", names.join(" or ")))
}

impl Settings {
    /// The entries of [`NEEDS_RESTART`] whose values differ between `running` (the settings
    /// the process started with) and these: changes a reload to these would not apply.
    pub fn needs_restart(&self, running: &Settings) -> Vec<&'static str> {
        let (before, after) = (super::render::table(running), super::render::table(self));
        NEEDS_RESTART
            .into_iter()
            .filter(|path| lookup(&before, path) != lookup(&after, path))
            .collect()
    }
}

/// The value at `section` or `section.key` of a rendered table.
fn lookup<'t>(table: &'t toml::Table, path: &str) -> Option<&'t toml::Value> {
    let (section, key) = match path.split_once('.') {
        Some((section, key)) => (section, Some(key)),
        None => (path, None),
    };
    let section = table.get(section)?;
    match key {
        Some(key) => section.get(key),
        None => Some(section),
    }
}
