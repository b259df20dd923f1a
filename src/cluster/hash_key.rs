//! The cluster's token-hash key: drawn once by whichever replica comes first, kept in Redis,
//! and adopted by every replica, so that a token hashes alike everywhere (shared proofs, and
//! pages of opaque tokens, are found by that hash). No secret needs configuring.

use super::error::ClusterError;
use super::keys::Keys;
use super::link::Link;

/// Length of the key in bytes.
pub(crate) const HASH_KEY_LEN: usize = 32;

/// The cluster's key: the one in Redis, or else `offered` (the key this replica already
/// uses) or a fresh random one, stored there (`SET NX`, so concurrent replicas agree on the
/// first).
pub(crate) async fn adopt_hash_key(
    link: &Link,
    keys: &Keys,
    offered: Option<[u8; HASH_KEY_LEN]>,
) -> Result<[u8; HASH_KEY_LEN], ClusterError> {
    let fresh = match offered {
        Some(key) => key,
        None => {
            let mut fresh = [0u8; HASH_KEY_LEN];
            getrandom::fill(&mut fresh).map_err(|_| ClusterError::Malformed("no random key"))?;
            fresh
        }
    };
    let name = keys.hash_key();
    let stored: Vec<u8> = link
        .call(|mut conn| async move {
            redis::pipe()
                .cmd("SET")
                .arg(&name)
                .arg(&fresh[..])
                .arg("NX")
                .ignore()
                .cmd("GET")
                .arg(&name)
                .query_async::<(Vec<u8>,)>(&mut conn)
                .await
                .map(|(stored,)| stored)
        })
        .await?;
    stored
        .try_into()
        .map_err(|_| ClusterError::Malformed("the stored hash key has the wrong length"))
}
