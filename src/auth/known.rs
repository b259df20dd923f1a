//! Tokens the upstream has accepted: the proof that lets a token be served from the cache,
//! and the lesser one that lets it draw from its client app's budget.
//!
//! A token becomes known-valid when the upstream answers it with a 2xx on the cached route
//! (or its signature checks, see the authenticate phase), and trusted when the upstream
//! answers it with a 2xx on any route (or its signature checks); both last until its `exp`
//! (at most [`MAX_REMEMBER`] for a token without one), and end at once when the upstream
//! answers it 401 or 403. Only keyed hashes are held.

use std::time::{Duration, Instant};

use moka::Expiry;
use moka::future::Cache;

use super::hash::TokenHash;
use super::token::Token;

/// The longest a token is remembered, also for tokens without `exp`.
pub(crate) const MAX_REMEMBER: Duration = Duration::from_secs(3600);

/// How many tokens are remembered at most; the least recently used are forgotten first.
const MAX_TOKENS: u64 = 200_000;

/// Expires each remembered token after its own lifetime.
struct UntilExpiry;

impl Expiry<TokenHash, Duration> for UntilExpiry {
    fn expire_after_create(
        &self,
        _key: &TokenHash,
        lifetime: &Duration,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(*lifetime)
    }

    fn expire_after_update(
        &self,
        _key: &TokenHash,
        lifetime: &Duration,
        _updated_at: Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Some(*lifetime)
    }
}

/// The set of known-valid tokens, by keyed hash, and of tokens the upstream refused.
#[derive(Clone)]
pub(crate) struct KnownTokens {
    tokens: Cache<TokenHash, Duration>,
    /// Genuine, as far as budgets are concerned: accepted on any route, scopes aside.
    trusted: Cache<TokenHash, Duration>,
    /// Refused by the upstream (401/403) since it last accepted them: local verification
    /// must not make them known-valid again, or a token revoked upstream would keep its
    /// cached pages until `exp`.
    refused: Cache<TokenHash, Duration>,
}

impl std::fmt::Debug for KnownTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KnownTokens")
            .field("count", &self.tokens.entry_count())
            .finish()
    }
}

impl Default for KnownTokens {
    fn default() -> Self {
        let cache = || {
            Cache::builder()
                .max_capacity(MAX_TOKENS)
                .expire_after(UntilExpiry)
                .build()
        };
        Self {
            tokens: cache(),
            trusted: cache(),
            refused: cache(),
        }
    }
}

impl KnownTokens {
    /// Remembers that the upstream accepted `token`, until its `exp` (`now` in epoch
    /// seconds) or [`MAX_REMEMBER`], whichever comes first.
    pub(crate) async fn remember(&self, token: &Token, now: u64) {
        let Some(lifetime) = lifetime(token, now) else {
            return;
        };
        self.refused.invalidate(&token.hash).await;
        self.trusted.insert(token.hash, lifetime).await;
        self.tokens.insert(token.hash, lifetime).await;
    }

    /// Remembers that `token` is genuine (a 2xx on any route, or a good signature), until its
    /// `exp` or [`MAX_REMEMBER`]; its calls then draw from its client app's budget.
    pub(crate) async fn trust(&self, token: &Token, now: u64) {
        if let Some(lifetime) = lifetime(token, now) {
            self.trusted.insert(token.hash, lifetime).await;
        }
    }

    /// Whether `token` is trusted: remembered as genuine, and its own time window holds.
    pub(crate) async fn is_trusted(&self, token: &Token, now: u64) -> bool {
        token.is_current(now) && self.trusted.contains_key(&token.hash)
    }

    /// Forgets `token` and notes that the upstream refused it.
    pub(crate) async fn forget(&self, token: &Token, now: u64) {
        self.tokens.invalidate(&token.hash).await;
        self.trusted.invalidate(&token.hash).await;
        if let Some(lifetime) = lifetime(token, now) {
            self.refused.insert(token.hash, lifetime).await;
        }
    }

    /// Forgets the token with this keyed hash, as refused (another replica's upstream answer
    /// refused it; its own `exp` is not known here, so the refusal is kept [`MAX_REMEMBER`]).
    pub(crate) async fn forget_hash(&self, hash: &TokenHash) {
        self.tokens.invalidate(hash).await;
        self.trusted.invalidate(hash).await;
        self.refused.insert(*hash, MAX_REMEMBER).await;
    }

    /// Whether the upstream refused `token` since it last accepted it.
    pub(crate) async fn was_refused(&self, token: &Token) -> bool {
        self.refused.contains_key(&token.hash)
    }

    /// Forgets every token: the upstream or keys that proved them changed.
    pub(crate) fn forget_all(&self) {
        self.tokens.invalidate_all();
        self.trusted.invalidate_all();
        self.refused.invalidate_all();
    }

    /// Whether `token` is known-valid: remembered, and its own time window holds at `now`.
    pub(crate) async fn is_known(&self, token: &Token, now: u64) -> bool {
        token.is_current(now) && self.tokens.contains_key(&token.hash)
    }
}

/// How long a token may be remembered at `now`: until its `exp`, at most [`MAX_REMEMBER`];
/// `None` once it has expired.
pub(crate) fn lifetime(token: &Token, now: u64) -> Option<Duration> {
    match token.expires_at {
        Some(exp) if exp <= now => None,
        Some(exp) => Some(Duration::from_secs(exp - now).min(MAX_REMEMBER)),
        None => Some(MAX_REMEMBER),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::TokenHasher;

    #[tokio::test]
    async fn remembered_until_forgotten() {
        let hasher = TokenHasher::random().unwrap();
        let known = KnownTokens::default();
        let token = Token::parse("opaque", &hasher);
        assert!(!known.is_known(&token, 100).await);
        known.remember(&token, 100).await;
        assert!(known.is_known(&token, 100).await);
        assert!(known.is_trusted(&token, 100).await);
        known.forget(&token, 100).await;
        assert!(!known.is_known(&token, 100).await);
        assert!(!known.is_trusted(&token, 100).await);
        known.trust(&token, 100).await;
        assert!(known.is_trusted(&token, 100).await);
        assert!(
            !known.is_known(&token, 100).await,
            "trust alone opens no cache"
        );
        assert!(known.was_refused(&token).await);
        known.remember(&token, 100).await;
        assert!(
            !known.was_refused(&token).await,
            "a later acceptance clears the refusal"
        );
    }

    #[tokio::test]
    async fn expired_tokens_are_not_known() {
        let hasher = TokenHasher::random().unwrap();
        let known = KnownTokens::default();
        let mut token = Token::parse("opaque", &hasher);
        token.expires_at = Some(200);
        known.remember(&token, 100).await;
        assert!(known.is_known(&token, 199).await);
        assert!(!known.is_known(&token, 200).await);
        let mut stale = Token::parse("other", &hasher);
        stale.expires_at = Some(50);
        known.remember(&stale, 100).await;
        assert!(
            !known.is_known(&stale, 10).await,
            "never remembered past exp"
        );
    }
}
