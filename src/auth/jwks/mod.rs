//! Local token verification: a bearer token's signature and claims checked against the
//! signing keys of the configured issuer.
//!
//! The key set is fetched in the background from `auth.jwks_url`, or from the `jwks_uri` of
//! the issuer's discovery document, starting when the verifier is set up and retried with
//! back-off until it succeeds, then cached. A verification never waits for a fetch: without
//! the keys it needs, its verdict is [`Verdict::Unavailable`] and the upstream judges the
//! token, so a key server that is down or never answers delays no request. The keys are
//! refreshed in the background once ten minutes old; a token naming an unknown `kid` (a key
//! rotation) makes them refetch, at most once per 30 s so that invented kids cannot make the
//! proxy hammer the issuer. One fetch runs at a time; after a failed fetch the previous keys
//! stay in use and no fetch is tried for 5 s. Scopes are not checked here.

mod discovery;
mod keys;
#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde::de::IgnoredAny;
use tokio::sync::Mutex;
use tokio::time::Instant;

use self::discovery::{Endpoint, Fetcher, Location};
use self::keys::{ACCEPTED_ALGORITHMS, Key, KeySet};
use crate::config::AuthSettings;
use crate::metrics::KeyFetches;
use crate::upstream::{UpstreamSetupError, pooled_client};

/// Age after which the key set is refreshed.
const REFRESH_EVERY: Duration = Duration::from_secs(10 * 60);

/// The shortest time between two refetches caused by tokens with unknown `kid`s.
const KID_REFETCH_GAP: Duration = Duration::from_secs(30);

/// How long no fetch is tried after one failed.
const FAILURE_RETRY_GAP: Duration = Duration::from_secs(5);

/// The longest pause between two attempts of the fetch retried from start-up.
const MAX_RETRY_GAP: Duration = Duration::from_secs(5 * 60);

/// Clock skew allowed on `exp` and `nbf`, in seconds.
const LEEWAY_SECS: u64 = 60;

/// The verifier could not be built from the settings.
#[derive(Debug, thiserror::Error)]
pub enum VerifierSetupError {
    /// `auth.jwks_url` is not a usable http(s) URL.
    #[error("auth.jwks_url: {0}")]
    JwksUrl(String),
    /// `auth.issuer` cannot be the base of a discovery URL.
    #[error("auth.issuer: cannot discover its keys: {0}")]
    Issuer(String),
    /// The HTTP client for fetching keys could not be built.
    #[error("key fetching: {0}")]
    Client(#[from] UpstreamSetupError),
}

/// The verdict on one token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Signature, `iss` (when configured), `aud` (when configured), `exp` and `nbf` all check.
    Valid,
    /// The token is not a JWT, its signature or a claim fails, its algorithm is not an
    /// asymmetric one its key allows, or its `kid` is unknown even after a refetch. The
    /// reason is for the log; it never contains the token.
    Invalid(String),
    /// The keys needed to judge could not be obtained (network, bad key set): the caller
    /// should let the upstream judge the token.
    Unavailable(String),
}

/// Verifies tokens locally against the signing keys of the configured issuer. Cheap to
/// share behind an `Arc`; its `Debug` shows where the keys come from, never a token.
pub(crate) struct Verifier {
    inner: Arc<Inner>,
}

/// When keys are refetched; the constants above except in tests.
#[derive(Debug, Clone, Copy)]
struct Timing {
    refresh_every: Duration,
    kid_refetch_gap: Duration,
    failure_retry_gap: Duration,
}

const TIMING: Timing = Timing {
    refresh_every: REFRESH_EVERY,
    kid_refetch_gap: KID_REFETCH_GAP,
    failure_retry_gap: FAILURE_RETRY_GAP,
};

struct Inner {
    fetcher: Fetcher,
    /// The claim checks shared by every token; the algorithm is set per token.
    validation: Validation,
    timing: Timing,
    /// Where fetch results are counted.
    fetch_results: KeyFetches,
    keys: ArcSwapOption<Cached>,
    /// Held while a fetch runs, so there is only ever one.
    fetches: Arc<Mutex<FetchLog>>,
}

/// A key set and when it was obtained.
struct Cached {
    set: KeySet,
    fetched_at: Instant,
    /// Counts successful fetches, so a waiting caller sees that another one fetched.
    generation: u64,
}

/// Why a fetch is wanted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    /// No keys were ever obtained.
    First,
    /// The keys are older than the refresh interval.
    Refresh,
    /// A token names a `kid` the keys do not have.
    UnknownKid,
}

impl Need {
    /// How the reason reads in a log line.
    fn as_str(self) -> &'static str {
        match self {
            Self::First => "first",
            Self::Refresh => "refresh",
            Self::UnknownKid => "unknown kid",
        }
    }
}

/// Why no fresh keys are to be had now.
enum Refusal {
    /// The last fetch failed, for this reason.
    Failed(String),
    /// An unknown kid refetched too recently.
    TooSoon,
    /// A fetch is running (maybe started just now); its keys serve later tokens.
    Fetching,
}

impl Refusal {
    /// The verdict on a token whose keys are not to be had.
    fn verdict(self) -> Verdict {
        match self {
            Self::Failed(reason) => Verdict::Unavailable(reason),
            // The kid may be a key rotated in a moment ago: let the upstream judge rather than
            // refuse a genuine token.
            Self::TooSoon => {
                Verdict::Unavailable("unknown kid; keys were refetched moments ago".into())
            }
            Self::Fetching => Verdict::Unavailable("the signing keys are being fetched".into()),
        }
    }
}

#[derive(Default)]
struct FetchLog {
    generation: u64,
    /// When the last fetch failed and why; cleared by a success.
    failure: Option<(Instant, String)>,
    /// When an unknown `kid` last caused a fetch.
    kid_refetch_at: Option<Instant>,
}

impl FetchLog {
    /// Why a fetch for `need` may not start at `now`.
    fn refusal(&self, need: Need, now: Instant, timing: Timing) -> Option<Refusal> {
        let failed = self.failure.as_ref().map(|(at, reason)| (*at, reason));
        if let Some((at, reason)) = failed
            && now.duration_since(at) < timing.failure_retry_gap
        {
            return Some(Refusal::Failed(reason.clone()));
        }
        let recent_kid_refetch = self
            .kid_refetch_at
            .is_some_and(|at| now.duration_since(at) < timing.kid_refetch_gap);
        (need == Need::UnknownKid && recent_kid_refetch).then(|| match failed {
            Some((_, reason)) => Refusal::Failed(reason.clone()),
            None => Refusal::TooSoon,
        })
    }
}

impl Verifier {
    /// A verifier for `settings`, fetching keys with the proxy's client settings; `None`
    /// when neither `auth.jwks_url` nor `auth.issuer` is set. No key is fetched until
    /// [`prefetch`](Self::prefetch) or the first token.
    pub(crate) fn new(
        settings: &AuthSettings,
        connect_timeout: Duration,
        ca_file: Option<&Path>,
        fetches: KeyFetches,
    ) -> Result<Option<Self>, VerifierSetupError> {
        Self::with_timing(settings, connect_timeout, ca_file, fetches, TIMING)
    }

    fn with_timing(
        settings: &AuthSettings,
        connect_timeout: Duration,
        ca_file: Option<&Path>,
        fetches: KeyFetches,
        timing: Timing,
    ) -> Result<Option<Self>, VerifierSetupError> {
        let issuer = settings.issuer.as_deref().filter(|i| !i.is_empty());
        let audience = settings.audience.as_deref().filter(|a| !a.is_empty());
        let location = match (&settings.jwks_url, issuer) {
            (Some(url), _) => {
                Location::Jwks(Endpoint::of(url).map_err(VerifierSetupError::JwksUrl)?)
            }
            (None, Some(issuer)) => {
                Location::discovery(issuer).map_err(VerifierSetupError::Issuer)?
            }
            (None, None) => return Ok(None),
        };
        let client = pooled_client(connect_timeout, ca_file)?;
        Ok(Some(Self {
            inner: Arc::new(Inner {
                fetcher: Fetcher::new(client, location),
                validation: validation(issuer, audience),
                timing,
                fetch_results: fetches,
                keys: ArcSwapOption::empty(),
                fetches: Arc::new(Mutex::new(FetchLog::default())),
            }),
        }))
    }

    /// The verdict on a raw bearer token.
    pub(crate) async fn verify(&self, token: &str) -> Verdict {
        let Ok(header) = jsonwebtoken::decode_header(token) else {
            return invalid("not a JWT with a readable header and a known algorithm");
        };
        let algorithm = header.alg;
        if !ACCEPTED_ALGORITHMS.contains(&algorithm) {
            return Verdict::Invalid(format!("algorithm {algorithm:?} is not accepted"));
        }
        let inner = &self.inner;
        let Some(cached) = inner.keys.load_full() else {
            return self.fetch_in_background(Need::First, 0).verdict();
        };
        if cached.fetched_at.elapsed() >= inner.timing.refresh_every {
            self.fetch_in_background(Need::Refresh, cached.generation);
        }
        let kid = header.kid.as_deref();
        if let Some(key) = cached.set.find(kid) {
            return inner.check(token, algorithm, key);
        }
        if kid.is_none() {
            return invalid("no kid, and the key set has several keys");
        }
        // Perhaps a key rotated in: the upstream judges this token while the keys refetch.
        self.fetch_in_background(Need::UnknownKid, cached.generation)
            .verdict()
    }

    /// Starts fetching the keys in the background and retries, with back-off, until a fetch
    /// succeeds (or the verifier is dropped). For start-up and new settings: nothing waits
    /// for it.
    pub(crate) fn prefetch(&self) {
        let Ok(first) = Arc::clone(&self.inner.fetches).try_lock_owned() else {
            return;
        };
        let inner = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut log = first;
            let mut gap = FAILURE_RETRY_GAP;
            loop {
                let fetched = match inner.upgrade() {
                    Some(inner) => inner.fetch_locked(&mut log, Need::First, 0).await.is_ok(),
                    None => return,
                };
                drop(log);
                if fetched {
                    return;
                }
                tokio::time::sleep(gap).await;
                gap = (gap * 2).min(MAX_RETRY_GAP);
                let Some(inner) = inner.upgrade() else {
                    return;
                };
                log = Arc::clone(&inner.fetches).lock_owned().await;
            }
        });
    }

    /// Starts a fetch for `need` unless one is running or refused; says why no fresh keys
    /// are at hand now.
    fn fetch_in_background(&self, need: Need, seen: u64) -> Refusal {
        let Ok(mut log) = Arc::clone(&self.inner.fetches).try_lock_owned() else {
            return Refusal::Fetching;
        };
        if let Some(refusal) = log.refusal(need, Instant::now(), self.inner.timing) {
            return refusal;
        }
        let inner = Arc::clone(&self.inner);
        tokio::spawn(async move {
            // A failure is logged and keeps the current keys.
            let _ = inner.fetch_locked(&mut log, need, seen).await;
        });
        Refusal::Fetching
    }
}

impl Inner {
    /// Fetches the keys for `need` (with the fetch lock held), or takes those of a fetch
    /// that ended since the caller looked (`seen` is the generation it saw).
    async fn fetch_locked(
        &self,
        log: &mut FetchLog,
        need: Need,
        seen: u64,
    ) -> Result<Arc<Cached>, Refusal> {
        if log.generation != seen
            && let Some(cached) = self.keys.load_full()
        {
            return Ok(cached);
        }
        let now = Instant::now();
        if let Some(refusal) = log.refusal(need, now, self.timing) {
            return Err(refusal);
        }
        if need == Need::UnknownKid {
            log.kid_refetch_at = Some(now);
        }
        let source = self.fetcher.location().describe();
        let fetched = self.fetcher.fetch().await;
        match fetched {
            Ok(set) => {
                log.generation += 1;
                log.failure = None;
                tracing::info!(%source, keys = set.len(), need = need.as_str(), "signing keys fetched");
                // Counted after the line is written: a scraper that sees the count finds the line.
                self.fetch_results.record(true);
                let cached = Arc::new(Cached {
                    set,
                    fetched_at: Instant::now(),
                    generation: log.generation,
                });
                self.keys.store(Some(Arc::clone(&cached)));
                Ok(cached)
            }
            Err(error) => {
                let reason = error.to_string();
                // Logged once per change of state: an outage is not repeated on every retry.
                if log.failure.is_none() {
                    tracing::warn!(%source, error = %reason, need = need.as_str(), "signing keys not fetched");
                } else {
                    tracing::debug!(%source, error = %reason, need = need.as_str(), "signing keys not fetched");
                }
                log.failure = Some((Instant::now(), reason.clone()));
                self.fetch_results.record(false);
                Err(Refusal::Failed(reason))
            }
        }
    }

    /// Checks the signature and claims of `token` with `key`.
    fn check(&self, token: &str, algorithm: Algorithm, key: &Key) -> Verdict {
        if !key.allows(algorithm) {
            return Verdict::Invalid(format!("algorithm {algorithm:?} does not fit its key"));
        }
        let mut validation = self.validation.clone();
        validation.algorithms = vec![algorithm];
        match jsonwebtoken::decode::<IgnoredAny>(token, key.decoding(), &validation) {
            Ok(_) => Verdict::Valid,
            Err(error) => Verdict::Invalid(reason(error.kind())),
        }
    }
}

/// The claim checks: `exp` required, `nbf` checked, `iss` and `aud` required and checked
/// when configured (`aud` ignored otherwise).
fn validation(issuer: Option<&str>, audience: Option<&str>) -> Validation {
    let mut validation = Validation::new(Algorithm::RS256);
    validation.leeway = LEEWAY_SECS;
    validation.validate_exp = true;
    validation.validate_nbf = true;
    let mut required = vec!["exp"];
    if let Some(issuer) = issuer {
        validation.set_issuer(&[issuer]);
        required.push("iss");
    }
    match audience {
        Some(audience) => {
            validation.set_audience(&[audience]);
            required.push("aud");
        }
        None => validation.validate_aud = false,
    }
    validation.set_required_spec_claims(&required);
    validation
}

fn invalid(reason: &str) -> Verdict {
    Verdict::Invalid(reason.to_owned())
}

/// Why a token failed, in words that quote nothing from it.
fn reason(kind: &ErrorKind) -> String {
    match kind {
        ErrorKind::InvalidSignature => "bad signature".to_owned(),
        ErrorKind::ExpiredSignature => "expired".to_owned(),
        ErrorKind::ImmatureSignature => "not valid yet (nbf)".to_owned(),
        ErrorKind::InvalidIssuer => "wrong iss".to_owned(),
        ErrorKind::InvalidAudience => "wrong aud".to_owned(),
        ErrorKind::MissingRequiredClaim(claim) => format!("no {claim} claim"),
        ErrorKind::InvalidClaimFormat(claim) => format!("malformed {claim} claim"),
        ErrorKind::InvalidAlgorithm => "algorithm mismatch".to_owned(),
        ErrorKind::Base64(_) | ErrorKind::Json(_) | ErrorKind::Utf8(_) => {
            "malformed token".to_owned()
        }
        _ => "key or signature not usable".to_owned(),
    }
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys = self.inner.keys.load();
        f.debug_struct("Verifier")
            .field("keys_from", &self.inner.fetcher.location().describe())
            .field("issuer", &self.inner.validation.iss)
            .field("audience", &self.inner.validation.aud)
            .field("keys", &keys.as_ref().map_or(0, |cached| cached.set.len()))
            .finish()
    }
}
