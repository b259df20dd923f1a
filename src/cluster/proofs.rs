//! Shared proofs: a token proven known-valid on one replica is known-valid on all, until its
//! `exp`. Only the token's keyed hash reaches Redis (the cluster's hash key makes it the same
//! on every replica). Forgetting one (an upstream 401/403) deletes the proof and is announced
//! on the events channel, so every replica forgets its own copy too.

use std::time::Duration;

use super::error::ClusterError;
use super::keys::{Keys, hex};
use super::link::Link;
use super::sync::Event;

/// The shared proofs of one cluster.
#[derive(Debug, Clone)]
pub struct SharedProofs {
    link: Link,
    keys: Keys,
}

impl SharedProofs {
    /// Proofs kept through `link` under `keys`.
    pub fn new(link: Link, keys: Keys) -> Self {
        Self { link, keys }
    }

    /// Records that the token with this keyed hash is known-valid for `lifetime` (until its
    /// `exp`, at most an hour).
    pub async fn remember(
        &self,
        token_hash: &[u8],
        lifetime: Duration,
    ) -> Result<(), ClusterError> {
        let key = self.keys.proof(&hex(token_hash));
        let millis = u64::try_from(lifetime.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        self.link
            .call(|mut conn| async move {
                redis::cmd("SET")
                    .arg(key)
                    .arg(1)
                    .arg("PX")
                    .arg(millis)
                    .query_async::<()>(&mut conn)
                    .await
            })
            .await
    }

    /// Whether some replica proved the token with this keyed hash.
    pub async fn is_known(&self, token_hash: &[u8]) -> Result<bool, ClusterError> {
        let key = self.keys.proof(&hex(token_hash));
        self.link
            .call(|mut conn| async move {
                redis::cmd("EXISTS")
                    .arg(key)
                    .query_async::<bool>(&mut conn)
                    .await
            })
            .await
    }

    /// Forgets the proof on every replica: deletes it and announces it.
    pub async fn forget(&self, token_hash: &[u8]) -> Result<(), ClusterError> {
        let hex_hash = hex(token_hash);
        let key = self.keys.proof(&hex_hash);
        let channel = self.keys.channel();
        let message = Event::Forget(hex_hash).encode();
        self.link
            .call(|mut conn| async move {
                redis::pipe()
                    .atomic()
                    .cmd("DEL")
                    .arg(key)
                    .ignore()
                    .cmd("PUBLISH")
                    .arg(channel)
                    .arg(message)
                    .ignore()
                    .query_async::<()>(&mut conn)
                    .await
            })
            .await
    }
}
