//! The authenticate phase: on the cached route, is this token known-valid and is it trusted;
//! on pass-through routes, is it trusted.

use super::{Proxy, SettingsState};
use crate::auth::{Token, Verdict, epoch_now};
use crate::error::ProxyError;

/// What the proxy knows of a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Identity {
    /// Known-valid: it may be served from the cache (scopes and time window aside).
    pub(crate) known: bool,
    /// Genuine: its calls draw from its client app's budget.
    pub(crate) trusted: bool,
}

impl Identity {
    const KNOWN: Self = Self {
        known: true,
        trusted: true,
    };
    const UNKNOWN: Self = Self {
        known: false,
        trusted: false,
    };
}

/// Whether a pass-through token is trusted: the upstream accepted it before, or its signature
/// checks against the keys at hand (never waiting for them) and the upstream has not refused
/// it since.
pub(crate) async fn trusted(
    proxy: &Proxy,
    live: &SettingsState,
    raw_token: &str,
    token: &Token,
) -> bool {
    let now = epoch_now();
    if proxy.known.is_trusted(token, now) {
        return true;
    }
    let Some(verifier) = &live.verifier else {
        return false;
    };
    if proxy.known.was_refused(token)
        || Box::pin(verifier.verify(raw_token)).await != Verdict::Valid
    {
        return false;
    }
    proxy.known.trust(token, now, live.proofs).await;
    true
}

/// The authenticate phase: whether a token is known-valid (the upstream accepted it on this
/// route before, or its signature and claims check against the issuer's keys, it carries a
/// scope claim, and the upstream has not refused it since it last accepted it) and whether it
/// is trusted (the upstream accepted it on any route, or its signature checks). A token that
/// fails local verification is answered 401 when `auth.reject_unverified` is on; otherwise,
/// and while the keys cannot be had, the upstream's answer decides.
pub(crate) async fn authenticate(
    proxy: &Proxy,
    live: &SettingsState,
    raw_token: &str,
    token: &Token,
    now: u64,
) -> Result<Identity, ProxyError> {
    if let Some(identity) = known_here(proxy, token, now) {
        return Ok(identity);
    }
    judge(proxy, live, raw_token, token, now).await
}

/// The authenticate phase's answer without waiting, for a token known-valid here; `None`
/// when the token must be judged (see [`authenticate`]).
pub(crate) fn known_here(proxy: &Proxy, token: &Token, now: u64) -> Option<Identity> {
    proxy.known.is_known(token, now).then_some(Identity::KNOWN)
}

/// The authenticate phase for a token not known-valid here.
async fn judge(
    proxy: &Proxy,
    live: &SettingsState,
    raw_token: &str,
    token: &Token,
    now: u64,
) -> Result<Identity, ProxyError> {
    if proxy.proven_elsewhere(token, now, live.proofs).await {
        return Ok(Identity::KNOWN);
    }
    let trusted = proxy.known.is_trusted(token, now);
    let Some(verifier) = &live.verifier else {
        return Ok(Identity {
            known: false,
            trusted,
        });
    };
    if proxy.known.was_refused(token) {
        // The upstream refused this token since it last accepted it (revoked, say): a good
        // signature does not outweigh that; the upstream judges it again.
        return Ok(Identity::UNKNOWN);
    }
    match Box::pin(verifier.verify(raw_token)).await {
        Verdict::Valid if token.scopes.is_some() => {
            proxy.known.remember(token, now, live.proofs).await;
            Ok(Identity::KNOWN)
        }
        Verdict::Valid => {
            proxy.known.trust(token, now, live.proofs).await;
            Ok(Identity {
                known: false,
                trusted: true,
            })
        }
        Verdict::Invalid(reason) => {
            tracing::debug!(%reason, "token failed local verification");
            match live.settings.auth.reject_unverified {
                true => Err(ProxyError::InvalidToken),
                false => Ok(Identity {
                    known: false,
                    trusted,
                }),
            }
        }
        Verdict::Unavailable(reason) => {
            tracing::debug!(%reason, "signing keys unavailable; the upstream judges the token");
            Ok(Identity {
                known: false,
                trusted,
            })
        }
    }
}
