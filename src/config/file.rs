//! The config file's shape: every key as the user writes it (durations and URLs as strings,
//! integers as TOML's `i64`), each section's `Default` holding the documented defaults.
//! Nothing here is validated; see `validate` for that. The serialized defaults are also the
//! schema `read` checks the merged file and environment against: which keys exist, and the
//! TOML type each takes.

use serde::{Deserialize, Serialize};

/// The whole file, one field per `[section]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct ServerFile {
    pub(crate) listen: String,
    pub(crate) public_base_url: String,
    pub(crate) admin_listen: String,
    pub(crate) shutdown_grace: String,
    pub(crate) admin_token: String,
    pub(crate) max_request_body: i64,
    pub(crate) client_timeout: String,
}

impl Default for ServerFile {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            public_base_url: "http://127.0.0.1:8080".into(),
            admin_listen: "127.0.0.1:9090".into(),
            shutdown_grace: "30s".into(),
            admin_token: String::new(),
            max_request_body: 10 * 1024 * 1024,
            client_timeout: "30s".into(),
        }
    }
}

/// `[upstream]` as written; an empty `ca_file` means none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct UpstreamFile {
    pub(crate) base_url: String,
    pub(crate) link_origins: Vec<String>,
    pub(crate) connect_timeout: String,
    pub(crate) request_timeout: String,
    pub(crate) ca_file: String,
    pub(crate) max_rewrite_bytes: i64,
}

impl Default for UpstreamFile {
    fn default() -> Self {
        Self {
            base_url: "https://api.bentley.com".into(),
            link_origins: Vec::new(),
            connect_timeout: "5s".into(),
            request_timeout: "30s".into(),
            ca_file: String::new(),
            max_rewrite_bytes: 16 * 1024 * 1024,
        }
    }
}

/// `[cache]` as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct CacheFile {
    pub(crate) ttl: String,
    pub(crate) stale_if_error: String,
    pub(crate) stale_while_revalidate: String,
    pub(crate) max_bytes: i64,
}

impl Default for CacheFile {
    fn default() -> Self {
        Self {
            ttl: "60s".into(),
            stale_if_error: "5m".into(),
            stale_while_revalidate: "0s".into(),
            max_bytes: 256 * 1024 * 1024,
        }
    }
}

/// `[rate_limit]` as written; `requests_per_hour = 0` means no hourly window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct RateLimitFile {
    pub(crate) requests_per_second: f64,
    pub(crate) burst: i64,
    pub(crate) requests_per_hour: i64,
    pub(crate) max_wait: String,
    pub(crate) max_pause: String,
    pub(crate) key: String,
    pub(crate) unverified_per_second: f64,
    pub(crate) unverified_burst: i64,
}

impl Default for RateLimitFile {
    fn default() -> Self {
        Self {
            // Stays under the Trial plan's 500 per minute.
            requests_per_second: 8.0,
            burst: 10,
            requests_per_hour: 0,
            max_wait: "2s".into(),
            max_pause: "60s".into(),
            key: "client_id".into(),
            unverified_per_second: 2.0,
            unverified_burst: 10,
        }
    }
}

/// `[auth]` as written; empty strings mean unset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct AuthFile {
    pub(crate) jwks_url: String,
    pub(crate) issuer: String,
    pub(crate) audience: String,
    pub(crate) accepted_scopes: Vec<String>,
    pub(crate) reject_unverified: bool,
}

impl Default for AuthFile {
    fn default() -> Self {
        Self {
            jwks_url: String::new(),
            // Bentley's IMS, whose keys verify tokens locally.
            issuer: "https://ims.bentley.com".into(),
            audience: String::new(),
            accepted_scopes: vec!["itwin-platform".into(), "export:read".into()],
            reject_unverified: false,
        }
    }
}

/// `[cluster]` as written; an empty `redis_url` means this process alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct ClusterFile {
    pub(crate) redis_url: String,
    pub(crate) key_prefix: String,
    pub(crate) timeout: String,
    pub(crate) replicas_hint: i64,
    pub(crate) shared_cache: bool,
}

impl Default for ClusterFile {
    fn default() -> Self {
        Self {
            redis_url: String::new(),
            key_prefix: "itwin-proxy".into(),
            timeout: "100ms".into(),
            replicas_hint: 1,
            shared_cache: true,
        }
    }
}

/// `[log]` as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct LogFile {
    pub(crate) level: String,
    pub(crate) format: String,
    pub(crate) access: bool,
}

impl Default for LogFile {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: "text".into(),
            access: true,
        }
    }
}
