//! Keyed hashes of bearer tokens: the only form in which the proxy holds a token.
//!
//! The key is random per process, so a hash seen in memory or a log cannot be checked
//! against a guessed token elsewhere. It is drawn from the operating system's random source.

use std::fmt;

use aws_lc_rs::hmac;

/// HMAC-SHA-256 of a token under the process key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash([u8; 32]);

impl fmt::Debug for TokenHash {
    /// Shows a short prefix only: enough to correlate log lines, useless to an attacker.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenHash(")?;
        for byte in &self.0[..4] {
            write!(f, "{byte:02x}")?;
        }
        write!(f, "..)")
    }
}

impl TokenHash {
    /// The hash with these bytes (as another replica announced it).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The hash's bytes (for keyed names that must agree across replicas).
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// Hashes tokens under a key drawn at start-up, or the cluster's shared key.
#[derive(Clone)]
pub struct TokenHasher {
    key: hmac::Key,
    /// The key of the fast hash that finds a token already read (see `super::TokenReader`),
    /// derived from `key`.
    table_key: TableKey,
}

/// A SipHash key: secret as the token key it is derived from.
#[derive(Clone, Copy)]
pub(crate) struct TableKey(pub(crate) u64, pub(crate) u64);

/// What the table key is derived from, under the token key.
const TABLE_KEY_LABEL: &[u8] = b"itwin-proxy token table key";

impl fmt::Debug for TokenHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenHasher")
    }
}

/// The system random source failed; the proxy cannot hash tokens safely.
#[derive(Debug, thiserror::Error)]
#[error("the system random source failed")]
pub struct RandomUnavailable;

impl TokenHasher {
    /// A hasher with a fresh random key from the operating system's random source.
    pub fn random() -> Result<Self, RandomUnavailable> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|_| RandomUnavailable)?;
        Ok(Self::with_key(&key))
    }

    /// A hasher with the given key (the cluster's, shared by every replica).
    pub fn with_key(key: &[u8]) -> Self {
        let key = hmac::Key::new(hmac::HMAC_SHA256, key);
        let derived = hmac::sign(&key, TABLE_KEY_LABEL);
        let mut halves = [0u8; 16];
        halves.copy_from_slice(&derived.as_ref()[..16]);
        let [k0, k1] = [&halves[..8], &halves[8..]].map(|half| {
            let mut word = [0u8; 8];
            word.copy_from_slice(half);
            u64::from_le_bytes(word)
        });
        Self {
            key,
            table_key: TableKey(k0, k1),
        }
    }

    /// The key of the fast hash that finds tokens already read.
    pub(crate) fn table_key(&self) -> TableKey {
        self.table_key
    }

    /// The keyed hash of `token`.
    pub fn hash(&self, token: impl AsRef<[u8]>) -> TokenHash {
        let tag = hmac::sign(&self.key, token.as_ref());
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        TokenHash(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_token_same_hash_other_key_other_hash() {
        let a = TokenHasher::random().unwrap();
        let b = TokenHasher::random().unwrap();
        assert_eq!(a.hash("token"), a.hash("token"));
        assert_ne!(a.hash("token"), a.hash("token2"));
        assert_ne!(a.hash("token"), b.hash("token"));
        let shared = TokenHasher::with_key(b"cluster key");
        let again = TokenHasher::with_key(b"cluster key");
        assert_eq!(shared.hash("token"), again.hash("token"));
    }

    #[test]
    fn debug_shows_a_prefix_only() {
        let hasher = TokenHasher::random().unwrap();
        let shown = format!("{:?}", hasher.hash("secret-token"));
        assert!(shown.len() < 24, "{shown}");
        assert!(!shown.contains("secret"));
    }
}
