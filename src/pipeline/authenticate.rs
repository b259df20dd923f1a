//! The authenticate phase of the cached route: is this token known-valid?

use super::{Live, Proxy};
use crate::auth::{Token, Verdict};
use crate::error::ProxyError;

/// The authenticate phase: whether a token that may otherwise use the cache (current, with an
/// accepted scope) is known-valid: the upstream accepted it before, or its signature and
/// claims check against the issuer's keys (and it carries a scope claim, and the upstream has
/// not refused it since it last accepted it). A token that fails
/// local verification is answered 401 when `auth.reject_unverified` is on; otherwise, and
/// while the keys cannot be had, the upstream's answer decides.
pub(crate) async fn authenticate(
    proxy: &Proxy,
    live: &Live,
    raw_token: &str,
    token: &Token,
    now: u64,
) -> Result<bool, ProxyError> {
    if proxy.known.is_known(token, now).await {
        return Ok(true);
    }
    let Some(verifier) = &live.verifier else {
        return Ok(false);
    };
    if proxy.known.was_refused(token).await {
        // The upstream refused this token since it last accepted it (revoked, say): a good
        // signature does not outweigh that; the upstream judges it again.
        return Ok(false);
    }
    match verifier.verify(raw_token).await {
        Verdict::Valid if token.scopes.is_some() => {
            proxy.known.remember(token, now).await;
            Ok(true)
        }
        Verdict::Valid => Ok(false),
        Verdict::Invalid(reason) => {
            tracing::debug!(%reason, "token failed local verification");
            match live.settings.auth.reject_unverified {
                true => Err(ProxyError::InvalidToken),
                false => Ok(false),
            }
        }
        Verdict::Unavailable(reason) => {
            tracing::debug!(%reason, "signing keys unavailable; the upstream judges the token");
            Ok(false)
        }
    }
}
