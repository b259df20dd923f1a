//! Tokens the upstream has accepted: the proof that lets a token be served from the cache,
//! and the lesser one that lets it draw from its client app's budget.
//!
//! A token becomes known-valid when the upstream answers it with a 2xx on the cached route
//! (or its signature checks, see the authenticate phase), and trusted when the upstream
//! answers it with a 2xx on any route (or its signature checks); both last until its `exp`
//! (at most [`MAX_REMEMBER`] for a token without one), and end at once when the upstream
//! answers it 401 or 403. Only keyed hashes are held.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use foldhash::quality::RandomState;
use moka::Expiry;
use moka::future::Cache;
use moka::policy::EvictionPolicy;

use super::hash::TokenHash;
use super::token::Token;

/// The longest a token is remembered, also for tokens without `exp`.
pub(crate) const MAX_REMEMBER: Duration = Duration::from_secs(3600);

/// How many tokens are remembered at most; the least recently used are forgotten first.
const MAX_TOKENS: u64 = 200_000;

/// How many refusals of tokens never proven here are kept; the oldest are forgotten first,
/// so that a flood of forged tokens only ever displaces other never-proven ones.
const MAX_UNPROVEN_REFUSALS: u64 = 50_000;

/// Which judges proved a token: raised each time the upstream or the keys that prove tokens
/// change, so that a proof from a call sent before the change never counts after it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Generation(u64);

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
    tokens: Cache<TokenHash, Duration, RandomState>,
    /// Genuine, as far as budgets are concerned: accepted on any route, scopes aside.
    trusted: Cache<TokenHash, Duration, RandomState>,
    /// Proven here once, then refused by the upstream (401/403), revoked say: local
    /// verification must not make them known-valid again, or a token revoked upstream would
    /// keep its cached pages until `exp`. Only tokens proven genuine enter it, so forged ones
    /// cannot crowd it.
    revoked: Cache<TokenHash, Duration, RandomState>,
    /// Refused by the upstream without being proven here first (forged tokens among them):
    /// kept apart from `revoked`, bounded, oldest forgotten first.
    refused: Cache<TokenHash, Duration, RandomState>,
    /// The current [`Generation`]: proofs made under an earlier one are not kept.
    generation: Arc<AtomicU64>,
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
        Self::with_capacities(MAX_TOKENS, MAX_UNPROVEN_REFUSALS)
    }
}

impl KnownTokens {
    /// Remembers at most `tokens` tokens per set, and `unproven_refusals` refusals of tokens
    /// never proven.
    fn with_capacities(tokens: u64, unproven_refusals: u64) -> Self {
        let cache = || {
            Cache::builder()
                .max_capacity(tokens)
                .expire_after(UntilExpiry)
                .build_with_hasher(RandomState::default())
        };
        Self {
            tokens: cache(),
            trusted: cache(),
            revoked: cache(),
            refused: Cache::builder()
                .max_capacity(unproven_refusals)
                .eviction_policy(EvictionPolicy::lru())
                .expire_after(UntilExpiry)
                .build_with_hasher(RandomState::default()),
            generation: Arc::default(),
        }
    }

    /// The current generation: a call sent now proves tokens under it.
    pub(crate) fn generation(&self) -> Generation {
        Generation(self.generation.load(Ordering::Acquire))
    }

    /// Remembers that the upstream accepted `token` (a call sent under `generation`), until
    /// its `exp` (`now` in epoch seconds) or [`MAX_REMEMBER`], whichever comes first. Returns
    /// whether it was remembered: not when it has expired or the judges changed since.
    pub(crate) async fn remember(&self, token: &Token, now: u64, generation: Generation) -> bool {
        let Some(lifetime) = lifetime(token, now).filter(|_| generation == self.generation())
        else {
            return false;
        };
        self.revoked.invalidate(&token.hash).await;
        self.refused.invalidate(&token.hash).await;
        self.trusted.insert(token.hash, lifetime).await;
        self.tokens.insert(token.hash, lifetime).await;
        self.undo_if_outdated(&token.hash, generation).await
    }

    /// Remembers that `token` is genuine (a 2xx on any route, or a good signature, under
    /// `generation`), until its `exp` or [`MAX_REMEMBER`]; its calls then draw from its
    /// client app's budget.
    pub(crate) async fn trust(&self, token: &Token, now: u64, generation: Generation) {
        if let Some(lifetime) = lifetime(token, now).filter(|_| generation == self.generation()) {
            self.trusted.insert(token.hash, lifetime).await;
            self.undo_if_outdated(&token.hash, generation).await;
        }
    }

    /// Forgets what was just remembered of `hash` if a new generation began meanwhile (its
    /// [`KnownTokens::forget_all`] may have run before the insert landed). Returns whether
    /// the proof stands. Raising the generation comes before forgetting all, so an insert
    /// either precedes the forgetting or sees the new generation here.
    async fn undo_if_outdated(&self, hash: &TokenHash, generation: Generation) -> bool {
        if generation == self.generation() {
            return true;
        }
        self.tokens.invalidate(hash).await;
        self.trusted.invalidate(hash).await;
        false
    }

    /// Whether `token` is trusted: remembered as genuine, and its own time window holds.
    pub(crate) fn is_trusted(&self, token: &Token, now: u64) -> bool {
        token.is_current(now) && self.trusted.contains_key(&token.hash)
    }

    /// Forgets `token` and notes that the upstream refused it.
    pub(crate) async fn forget(&self, token: &Token, now: u64) {
        let lifetime = lifetime(token, now).unwrap_or(Duration::ZERO);
        self.refuse(&token.hash, lifetime).await;
    }

    /// Forgets the token with this keyed hash, as refused (another replica's upstream answer
    /// refused it; its own `exp` is not known here, so the refusal is kept [`MAX_REMEMBER`]).
    pub(crate) async fn forget_hash(&self, hash: &TokenHash) {
        self.refuse(hash, MAX_REMEMBER).await;
    }

    /// Forgets the token with this keyed hash and keeps its refusal for `lifetime`: with the
    /// revocations if it was proven here, else with the other refusals.
    async fn refuse(&self, hash: &TokenHash, lifetime: Duration) {
        let known = self.tokens.remove(hash).await.is_some();
        let trusted = self.trusted.remove(hash).await.is_some();
        if lifetime.is_zero() {
            return;
        }
        let refusals = match known || trusted {
            true => &self.revoked,
            false => &self.refused,
        };
        refusals.insert(*hash, lifetime).await;
    }

    /// Whether the upstream refused `token` since it last accepted it.
    pub(crate) fn was_refused(&self, token: &Token) -> bool {
        self.revoked.contains_key(&token.hash) || self.refused.contains_key(&token.hash)
    }

    /// Forgets every token (the upstream or keys that proved them changed) and starts a new
    /// generation, returned: proofs from calls sent before it never count.
    pub(crate) fn forget_all(&self) -> Generation {
        let next = Generation(self.generation.fetch_add(1, Ordering::AcqRel) + 1);
        self.tokens.invalidate_all();
        self.trusted.invalidate_all();
        self.revoked.invalidate_all();
        self.refused.invalidate_all();
        next
    }

    /// Whether `token` is known-valid: remembered, and its own time window holds at `now`.
    pub(crate) fn is_known(&self, token: &Token, now: u64) -> bool {
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

    const NOW: Generation = Generation(0);

    #[tokio::test]
    async fn remembered_until_forgotten() {
        let hasher = TokenHasher::random().unwrap();
        let known = KnownTokens::default();
        let token = Token::parse("opaque", &hasher);
        assert!(!known.is_known(&token, 100));
        assert!(known.remember(&token, 100, NOW).await);
        assert!(known.is_known(&token, 100));
        assert!(known.is_trusted(&token, 100));
        known.forget(&token, 100).await;
        assert!(!known.is_known(&token, 100));
        assert!(!known.is_trusted(&token, 100));
        known.trust(&token, 100, NOW).await;
        assert!(known.is_trusted(&token, 100));
        assert!(!known.is_known(&token, 100), "trust alone opens no cache");
        assert!(known.was_refused(&token));
        known.remember(&token, 100, NOW).await;
        assert!(
            !known.was_refused(&token),
            "a later acceptance clears the refusal"
        );
    }

    #[tokio::test]
    async fn expired_tokens_are_not_known() {
        let hasher = TokenHasher::random().unwrap();
        let known = KnownTokens::default();
        let mut token = Token::parse("opaque", &hasher);
        token.expires_at = Some(200);
        known.remember(&token, 100, NOW).await;
        assert!(known.is_known(&token, 199));
        assert!(!known.is_known(&token, 200));
        let mut stale = Token::parse("other", &hasher);
        stale.expires_at = Some(50);
        assert!(!known.remember(&stale, 100, NOW).await);
        assert!(!known.is_known(&stale, 10), "never remembered past exp");
    }

    #[tokio::test]
    async fn proofs_of_an_earlier_generation_never_count() {
        let hasher = TokenHasher::random().unwrap();
        let known = KnownTokens::default();
        let (token, other) = (
            Token::parse("proven", &hasher),
            Token::parse("late", &hasher),
        );
        let before = known.generation();
        assert!(known.remember(&token, 100, before).await);
        let after = known.forget_all();
        assert_ne!(before, after);
        assert_eq!(known.generation(), after);
        assert!(!known.is_known(&token, 100));

        // A call sent before the change answers after it.
        assert!(!known.remember(&other, 100, before).await);
        known.trust(&other, 100, before).await;
        assert!(!known.is_known(&other, 100));
        assert!(!known.is_trusted(&other, 100));

        assert!(known.remember(&other, 100, after).await);
        assert!(known.is_known(&other, 100));
    }

    #[tokio::test]
    async fn refusals_of_forged_tokens_never_crowd_out_revocations() {
        let hasher = TokenHasher::random().unwrap();
        let known = KnownTokens::with_capacities(100, 10);
        let (first, second) = (
            Token::parse("genuine", &hasher),
            Token::parse("also genuine", &hasher),
        );
        known.remember(&first, 100, NOW).await;
        known.remember(&second, 100, NOW).await;
        known.forget(&first, 100).await;
        for n in 0..500 {
            known
                .forget(&Token::parse(format!("forged-{n}"), &hasher), 100)
                .await;
        }
        known.forget(&second, 100).await;
        known.revoked.run_pending_tasks().await;
        known.refused.run_pending_tasks().await;
        for revoked in [&first, &second] {
            assert!(
                known.was_refused(revoked),
                "a revocation is kept whatever the forged tokens did, before or after it"
            );
        }
        assert!(known.refused.entry_count() <= 10, "refusals stay bounded");
        assert!(
            known.was_refused(&Token::parse("forged-499", &hasher)),
            "the latest refusals are kept"
        );
    }
}
