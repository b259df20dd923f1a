//! What can go wrong between the proxy and the cluster's Redis. Every one of these is
//! survivable: the caller goes on as if alone.

/// A Redis call that gave no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// Redis is known to be unreachable; the call was not tried (a background probe
    /// reconnects).
    #[error("the cluster's Redis is unreachable")]
    Down,
    /// No answer within `cluster.timeout`.
    #[error("the cluster's Redis did not answer in time")]
    Timeout,
    /// Redis answered with an error, or the connection failed.
    #[error("cluster Redis call failed: {0}")]
    Redis(#[from] redis::RedisError),
    /// Redis answered something this proxy does not understand (e.g. a key written by
    /// another program under the same prefix).
    #[error("unexpected answer from the cluster's Redis: {0}")]
    Malformed(&'static str),
}

/// The Redis client could not be built from `cluster.redis_url` and `upstream.ca_file`.
#[derive(Debug, thiserror::Error)]
pub enum ClusterSetupError {
    /// The URL or TLS settings were refused by the client.
    #[error("cluster.redis_url: {0}")]
    Client(#[from] redis::RedisError),
    /// `upstream.ca_file` could not be read for `rediss://`.
    #[error("upstream.ca_file (for cluster.redis_url): {0}")]
    CaFile(#[from] std::io::Error),
}
