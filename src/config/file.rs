//! The config file's shape: every key as the user writes it (durations and URLs as strings),
//! and the `DEFAULT_*` value each key takes when absent (applied by `read`). Nothing here is
//! validated; see `validate` for that.

use serde::Serialize;

/// Default `server.listen`.
pub(crate) const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default `server.public_base_url`.
pub(crate) const DEFAULT_PUBLIC_BASE_URL: &str = "http://127.0.0.1:8080";
/// Default `server.admin_listen`.
pub(crate) const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9090";
/// Default `server.shutdown_grace`.
pub(crate) const DEFAULT_SHUTDOWN_GRACE: &str = "30s";
/// Default `server.max_request_body` (10 MiB).
pub(crate) const DEFAULT_MAX_REQUEST_BODY: u64 = 10 * 1024 * 1024;
/// Default `server.client_timeout`.
pub(crate) const DEFAULT_CLIENT_TIMEOUT: &str = "30s";
/// Default `upstream.base_url`.
pub(crate) const DEFAULT_UPSTREAM_BASE_URL: &str = "https://api.bentley.com";
/// Default `upstream.connect_timeout`.
pub(crate) const DEFAULT_CONNECT_TIMEOUT: &str = "5s";
/// Default `upstream.request_timeout`.
pub(crate) const DEFAULT_REQUEST_TIMEOUT: &str = "30s";
/// Default `upstream.max_rewrite_bytes` (16 MiB).
pub(crate) const DEFAULT_MAX_REWRITE_BYTES: u64 = 16 * 1024 * 1024;
/// Default `cache.ttl`.
pub(crate) const DEFAULT_CACHE_TTL: &str = "60s";
/// Default `cache.stale_if_error`.
pub(crate) const DEFAULT_STALE_IF_ERROR: &str = "5m";
/// Default `cache.stale_while_revalidate`.
pub(crate) const DEFAULT_STALE_WHILE_REVALIDATE: &str = "0s";
/// Default `cache.max_bytes` (256 MiB).
pub(crate) const DEFAULT_CACHE_MAX_BYTES: u64 = 256 * 1024 * 1024;
/// Default `rate_limit.requests_per_second`: stays under the Trial plan's 500 per minute.
pub(crate) const DEFAULT_REQUESTS_PER_SECOND: f64 = 8.0;
/// Default `rate_limit.burst`.
pub(crate) const DEFAULT_BURST: u32 = 10;
/// Default `rate_limit.requests_per_hour` (0: no hourly window).
pub(crate) const DEFAULT_REQUESTS_PER_HOUR: u32 = 0;
/// Default `rate_limit.max_wait`.
pub(crate) const DEFAULT_MAX_WAIT: &str = "2s";
/// Default `rate_limit.max_pause`.
pub(crate) const DEFAULT_MAX_PAUSE: &str = "60s";
/// Default `rate_limit.key`.
pub(crate) const DEFAULT_RATE_LIMIT_KEY: &str = "client_id";
/// Default `rate_limit.unverified_per_second`.
pub(crate) const DEFAULT_UNVERIFIED_PER_SECOND: f64 = 2.0;
/// Default `rate_limit.unverified_burst`.
pub(crate) const DEFAULT_UNVERIFIED_BURST: u32 = 10;
/// Default `auth.issuer`: Bentley's IMS, whose keys verify tokens locally.
pub(crate) const DEFAULT_ISSUER: &str = "https://ims.bentley.com";
/// Default `auth.accepted_scopes`.
pub(crate) const DEFAULT_ACCEPTED_SCOPES: [&str; 2] = ["itwin-platform", "export:read"];
/// Default `cluster.key_prefix`.
pub(crate) const DEFAULT_KEY_PREFIX: &str = "itwin-proxy";
/// Default `cluster.timeout`.
pub(crate) const DEFAULT_CLUSTER_TIMEOUT: &str = "100ms";
/// Default `cluster.replicas_hint`.
pub(crate) const DEFAULT_REPLICAS_HINT: u32 = 1;
/// Default `log.level`.
pub(crate) const DEFAULT_LOG_LEVEL: &str = "info";
/// Default `log.format`.
pub(crate) const DEFAULT_LOG_FORMAT: &str = "text";

/// The whole file, one field per `[section]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct FileConfig {
    pub(crate) server: ServerFile,
    pub(crate) upstream: UpstreamFile,
    pub(crate) cache: CacheFile,
    pub(crate) rate_limit: RateLimitFile,
    pub(crate) auth: AuthFile,
    pub(crate) cluster: ClusterFile,
    pub(crate) log: LogFile,
}

/// `[server]` as written; an empty `admin_token` means none.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct ServerFile {
    pub(crate) listen: String,
    pub(crate) public_base_url: String,
    pub(crate) admin_listen: String,
    pub(crate) shutdown_grace: String,
    pub(crate) admin_token: String,
    pub(crate) max_request_body: u64,
    pub(crate) client_timeout: String,
}

/// `[upstream]` as written; an empty `ca_file` means none.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct UpstreamFile {
    pub(crate) base_url: String,
    pub(crate) link_origins: Vec<String>,
    pub(crate) connect_timeout: String,
    pub(crate) request_timeout: String,
    pub(crate) ca_file: String,
    pub(crate) max_rewrite_bytes: u64,
}

/// `[cache]` as written.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct CacheFile {
    pub(crate) ttl: String,
    pub(crate) stale_if_error: String,
    pub(crate) stale_while_revalidate: String,
    pub(crate) max_bytes: u64,
}

/// `[rate_limit]` as written; `requests_per_hour = 0` means no hourly window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct RateLimitFile {
    pub(crate) requests_per_second: f64,
    pub(crate) burst: u32,
    pub(crate) requests_per_hour: u32,
    pub(crate) max_wait: String,
    pub(crate) max_pause: String,
    pub(crate) key: String,
    pub(crate) unverified_per_second: f64,
    pub(crate) unverified_burst: u32,
}

/// `[auth]` as written; empty strings mean unset.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct AuthFile {
    pub(crate) jwks_url: String,
    pub(crate) issuer: String,
    pub(crate) audience: String,
    pub(crate) accepted_scopes: Vec<String>,
    pub(crate) reject_unverified: bool,
}

/// `[cluster]` as written; an empty `redis_url` means this process alone.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct ClusterFile {
    pub(crate) redis_url: String,
    pub(crate) key_prefix: String,
    pub(crate) timeout: String,
    pub(crate) replicas_hint: u32,
    pub(crate) shared_cache: bool,
}

/// `[log]` as written.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct LogFile {
    pub(crate) level: String,
    pub(crate) format: String,
    pub(crate) access: bool,
}
