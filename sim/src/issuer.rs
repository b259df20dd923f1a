//! The token issuer's public endpoints, answered without a token and apart from the Export
//! API (not counted, recorded, delayed, held or failed by the test controls):
//! `GET /.well-known/openid-configuration` and `GET /.well-known/jwks.json`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use http::request::Parts;
use http::{Method, Response, StatusCode};
use serde_json::json;

use super::Shared;
use super::reply::{self, Body};

/// Path of the OpenID discovery document.
const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";

/// Path of the key set.
const JWKS_PATH: &str = "/.well-known/jwks.json";

/// Requests for the key set, and whether it is made to fail.
#[derive(Debug, Default)]
pub(crate) struct Publication {
    jwks_requests: AtomicU64,
    down: AtomicBool,
}

impl Publication {
    /// Requests received for the key set, failed ones included.
    pub(crate) fn jwks_requests(&self) -> u64 {
        self.jwks_requests.load(Ordering::Relaxed)
    }

    /// While `down`, the key set answers 503.
    pub(crate) fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::Relaxed);
    }
}

/// The answer of an issuer endpoint, or `None` when the request is for another route.
pub(crate) fn answer(shared: &Shared, parts: &Parts) -> Option<Response<Body>> {
    if !matches!(parts.method, Method::GET | Method::HEAD) {
        return None;
    }
    match parts.uri.path() {
        DISCOVERY_PATH => {
            let issuer = shared.auth.issuer();
            let document = json!({
                "issuer": issuer,
                "jwks_uri": format!("{issuer}{JWKS_PATH}"),
                "id_token_signing_alg_values_supported": ["RS256"],
            });
            Some(reply::json(StatusCode::OK, &document))
        }
        JWKS_PATH => {
            let publication = &shared.publication;
            publication.jwks_requests.fetch_add(1, Ordering::Relaxed);
            if publication.down.load(Ordering::Relaxed) {
                let status = StatusCode::SERVICE_UNAVAILABLE;
                let message = "The key set is temporarily unavailable.";
                return Some(reply::error(status, "ServiceUnavailable", message));
            }
            Some(match shared.auth.rsa_key() {
                Ok(key) => reply::json(StatusCode::OK, &json!({ "keys": [key.jwk()] })),
                Err(error) => {
                    let status = StatusCode::INTERNAL_SERVER_ERROR;
                    reply::error(status, "InternalServerError", &error.to_string())
                }
            })
        }
        _ => None,
    }
}
