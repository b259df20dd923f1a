//! The learn phase: what an upstream answer teaches the proxy, for every route in this one
//! place: whether the token that asked is good, and which iModel each connection it shows
//! belongs to (so that a write evicts only that iModel's pages).

use http::{Method, StatusCode};

use super::Proxy;
use super::context::CONNECTION_ROUTE;
use crate::auth::{Generation, Token, epoch_now};

/// Which call an answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Asked {
    /// A fill of the cached route: a 2xx proves its token known-valid, and a 200 is a page of
    /// connections.
    Fill,
    /// Any other call (the cached route's bypass and writes included): a 2xx makes its token
    /// trusted, and a 200 to a GET of one connection tells that connection's iModel.
    PassThrough {
        /// The route template of the request.
        route: &'static str,
        /// Whether the request was a GET.
        get: bool,
        /// Whether its token was trusted already.
        trusted: bool,
    },
}

impl Asked {
    /// A pass-through call of `method` on `route`, its token `trusted` or not.
    pub(crate) fn pass_through(route: &'static str, method: &Method, trusted: bool) -> Self {
        Self::PassThrough {
            route,
            get: method == Method::GET,
            trusted,
        }
    }
}

/// An upstream answer, as far as the learn phase reads it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Answer<'a> {
    /// The call it answers.
    pub(crate) asked: Asked,
    /// The generation of known tokens the call was sent under.
    pub(crate) proofs: Generation,
    /// The token the call carried.
    pub(crate) token: Option<&'a Token>,
    /// The upstream's status.
    pub(crate) status: StatusCode,
    /// The (rewritten) body, when it was read whole.
    pub(crate) body: Option<&'a [u8]>,
}

impl Proxy {
    /// Learns from `answer`: a 401 or 403 refuses its token (here and on every replica); a 2xx
    /// proves it (see [`Asked`]); a 200 body read whole teaches connections' iModels.
    pub(crate) async fn learn(&self, answer: Answer<'_>) {
        if let Some(token) = answer.token {
            let now = epoch_now();
            match (answer.status.as_u16(), answer.asked) {
                (401 | 403, _) => self.forget_token(token, now).await,
                (200..=299, Asked::Fill) => self.remember_token(token, now, answer.proofs).await,
                (200..=299, Asked::PassThrough { trusted: false, .. }) => {
                    self.known.trust(token, now, answer.proofs).await;
                }
                _ => {}
            }
        }
        let Some(body) = answer.body.filter(|_| answer.status == StatusCode::OK) else {
            return;
        };
        match answer.asked {
            Asked::Fill => self.invalidator.learn_from_page(body).await,
            Asked::PassThrough {
                route: CONNECTION_ROUTE,
                get: true,
                ..
            } => {
                self.invalidator.learn_from_connection(body).await;
            }
            Asked::PassThrough { .. } => {}
        }
    }
}
