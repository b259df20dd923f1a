//! Reading each token once: a per-process table from a fast keyed hash of a token to what
//! was read from it, so that a token presented again costs one SipHash pass instead of an
//! HMAC and a claims parse.
//!
//! The table never holds a token in clear: an entry is found by 64 bits of a keyed 128-bit
//! SipHash-1-3 of the token and confirmed by a constant-time comparison of all 128 bits. The
//! SipHash key is secret (derived from the token key), so nobody can make a token collide
//! with another's entry. What an entry holds is a pure function of the token; it never goes
//! stale and needs no invalidation.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex, PoisonError};

use siphasher::sip128::{Hasher128, SipHasher13};
use subtle::ConstantTimeEq;

use super::hash::TokenHasher;
use super::token::Token;
use crate::ascii;

/// Independent parts of the table, so that concurrent requests seldom wait on one lock.
const SHARDS: usize = 16;

/// Tokens remembered per shard; a full shard is emptied and refilled as tokens come.
const PER_SHARD: usize = 4096;

/// Reads tokens, remembering what it read.
pub(crate) struct TokenReader {
    hasher: TokenHasher,
    shards: [Mutex<Shard>; SHARDS],
}

impl std::fmt::Debug for TokenReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenReader").finish_non_exhaustive()
    }
}

type Shard = HashMap<u64, Remembered, BuildHasherDefault<PreHashed>>;

/// A token already read.
#[derive(Debug)]
struct Remembered {
    /// The whole keyed hash, compared in constant time.
    check: [u64; 2],
    token: Arc<Token>,
}

impl TokenReader {
    /// A reader whose tokens are hashed by `hasher`.
    pub(crate) fn new(hasher: TokenHasher) -> Self {
        Self {
            hasher,
            shards: std::array::from_fn(|_| Mutex::default()),
        }
    }

    /// What the bearer token `raw` says (see [`Token::parse`]), `None` when it is no token (a
    /// byte that is not visible ASCII): read once, then remembered (and shared, so that
    /// reading it again costs one reference count). Only a token not read before is checked:
    /// one read before was checked then, and the same hash means the same bytes.
    pub(crate) fn read_bearer(&self, raw: impl AsRef<[u8]>) -> Option<Arc<Token>> {
        let raw = raw.as_ref();
        let key = self.hasher.table_key();
        let mut sip = SipHasher13::new_with_keys(key.0, key.1);
        sip.write(raw);
        let hash = sip.finish128();
        let (slot, check) = (hash.h1, [hash.h1, hash.h2]);
        let shard = &self.shards[(slot as usize) % SHARDS];
        {
            let shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(remembered) = shard.get(&slot)
                && bool::from(
                    remembered.check[0].ct_eq(&check[0]) & remembered.check[1].ct_eq(&check[1]),
                )
            {
                return Some(Arc::clone(&remembered.token));
            }
        }
        if !ascii::all_visible(raw) {
            return None;
        }
        let token = Arc::new(Token::parse(raw, &self.hasher));
        let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
        if shard.len() >= PER_SHARD {
            shard.clear();
        }
        shard.insert(
            slot,
            Remembered {
                check,
                token: Arc::clone(&token),
            },
        );
        Some(token)
    }
}

/// Hashes a `u64` that is already a keyed hash by taking it as it is.
#[derive(Default)]
struct PreHashed(u64);

impl Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Subject;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn jwt(sub: &str) -> String {
        let payload = URL_SAFE_NO_PAD.encode(format!(r#"{{"sub":"{sub}","exp":2000}}"#));
        format!("eyJhbGciOiJSUzI1NiJ9.{payload}.c2ln")
    }

    #[test]
    fn a_token_read_again_says_the_same() {
        let reader = TokenReader::new(TokenHasher::random().unwrap());
        let first = reader.read_bearer(jwt("alice")).unwrap();
        let again = reader.read_bearer(jwt("alice")).unwrap();
        assert_eq!(first.hash, again.hash);
        assert_eq!(again.subject, Subject::Claim("0:alice".into()));
        assert_eq!(again.expires_at, Some(2000));
        let other = reader.read_bearer(jwt("bob")).unwrap();
        assert_ne!(other.hash, first.hash);
        assert_eq!(other.subject, Subject::Claim("0:bob".into()));
    }

    #[test]
    fn a_remembered_token_is_the_parsed_one() {
        let hasher = TokenHasher::random().unwrap();
        let reader = TokenReader::new(hasher.clone());
        for raw in ["opaque", &jwt("carol")] {
            reader.read_bearer(raw).unwrap();
            let remembered = reader.read_bearer(raw).unwrap();
            let parsed = Token::parse(raw, &hasher);
            assert_eq!(remembered.hash, parsed.hash);
            assert_eq!(remembered.subject, parsed.subject);
        }
    }

    #[test]
    fn the_table_answers_only_for_the_whole_hash() {
        let reader = TokenReader::new(TokenHasher::random().unwrap());
        reader.read_bearer("opaque").unwrap();
        let marked = Subject::Claim("marked".into());
        let with_entry = |change: &dyn Fn(&mut Remembered)| {
            for shard in &reader.shards {
                shard.lock().unwrap().values_mut().for_each(change);
            }
        };
        with_entry(&|entry| Arc::make_mut(&mut entry.token).subject = marked.clone());
        assert_eq!(
            reader.read_bearer("opaque").unwrap().subject,
            marked,
            "served from the table"
        );
        with_entry(&|entry| entry.check[1] ^= 1 << 63);
        assert_ne!(
            reader.read_bearer("opaque").unwrap().subject,
            marked,
            "a partial match is read afresh"
        );
    }

    #[test]
    fn what_is_no_token_is_not_read() {
        let reader = TokenReader::new(TokenHasher::random().unwrap());
        for raw in ["two words", "tab\there", "caf\u{e9}", "nul\0"] {
            assert!(reader.read_bearer(raw).is_none(), "{raw:?}");
        }
        let held: usize = (reader.shards.iter())
            .map(|shard| shard.lock().unwrap().len())
            .sum();
        assert_eq!(held, 0, "nothing remembered");
    }

    #[test]
    fn a_full_shard_starts_over() {
        let reader = TokenReader::new(TokenHasher::random().unwrap());
        for n in 0..(SHARDS * PER_SHARD * 2) {
            reader.read_bearer(format!("token-{n}")).unwrap();
        }
        let held: usize = reader
            .shards
            .iter()
            .map(|shard| shard.lock().unwrap().len())
            .sum();
        assert!(held <= SHARDS * PER_SHARD, "{held}");
        assert_eq!(
            reader.read_bearer("token-1").unwrap().hash,
            Token::parse("token-1", &reader.hasher).hash
        );
    }
}
