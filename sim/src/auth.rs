//! Tokens: minting HS256 and RS256 JWTs shaped like Bentley IMS ones, registering opaque
//! tokens, and checking the bearer token of a request (signature, exp/nbf, scope).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use http::HeaderMap;
use http::header::AUTHORIZATION;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::keys::{Keys, RsaKey};
use super::lock;

/// The audience of every token it mints and accepts.
const AUDIENCE: &str = "itwin-platform";

/// Scopes any one of which grants access to the Export API.
const ACCEPTED_SCOPES: [&str; 2] = ["itwin-platform", "export:read"];

/// The claims of a token to mint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSpec {
    /// The subject (user or service identity).
    pub sub: String,
    /// The OAuth client app; the quota is kept per client.
    pub client_id: String,
    /// The scope claim.
    pub scopes: Scopes,
    /// Seconds from now until it expires; negative means already expired.
    pub expires_in: i64,
}

impl TokenSpec {
    /// A token for `sub` of client `sim-client`, scope `["itwin-platform"]`, valid for an hour.
    pub fn new(sub: &str) -> Self {
        Self {
            sub: sub.to_owned(),
            client_id: "sim-client".to_owned(),
            scopes: Scopes::Array(vec![AUDIENCE.to_owned()]),
            expires_in: 3600,
        }
    }

    /// Sets the client id.
    pub fn client_id(mut self, client_id: &str) -> Self {
        self.client_id = client_id.to_owned();
        self
    }

    /// Sets the scope claim.
    pub fn scopes(mut self, scopes: Scopes) -> Self {
        self.scopes = scopes;
        self
    }

    /// Sets the lifetime in seconds from now (negative: already expired).
    pub fn expires_in(mut self, secs: i64) -> Self {
        self.expires_in = secs;
        self
    }
}

/// How the `scope` claim is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scopes {
    /// A JSON array of strings, as Bentley IMS writes it.
    Array(Vec<String>),
    /// One space-separated string, as some OAuth servers write it.
    SpaceSeparated(String),
    /// No scope claim at all.
    Absent,
}

/// Who a request acts as.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub(crate) sub: String,
    pub(crate) client_id: String,
}

/// Why a bearer token was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AuthError {
    #[error("Header Authorization was not found in the request. Access denied.")]
    Missing,
    #[error("The access token is invalid: {0}.")]
    Invalid(String),
    #[error("The access token does not have a scope required by this API.")]
    InsufficientScope,
}

#[derive(Serialize)]
struct MintedClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    client_id: &'a str,
    aud: [&'a str; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<serde_json::Value>,
    iat: i64,
    nbf: i64,
    exp: i64,
}

#[derive(Deserialize)]
struct CheckedClaims {
    sub: String,
    client_id: Option<String>,
    scope: Option<serde_json::Value>,
}

/// The signing keys and the opaque tokens it accepts.
#[derive(Debug)]
pub(crate) struct Auth {
    key: Vec<u8>,
    rsa: Keys,
    issuer: String,
    opaque: Mutex<HashMap<String, Caller>>,
}

impl Auth {
    /// Uses `secret` for HS256, or a random key when there is none; the RSA key is made on
    /// first use.
    pub(crate) fn new(secret: Option<Vec<u8>>, issuer: String) -> std::io::Result<Self> {
        let key = match secret {
            Some(secret) => secret,
            None => {
                let mut key = vec![0; 32];
                aws_lc_rs::rand::fill(&mut key)
                    .map_err(|_| std::io::Error::other("no randomness for the signing key"))?;
                key
            }
        };
        Ok(Self {
            key,
            rsa: Keys::default(),
            issuer,
            opaque: Mutex::new(HashMap::new()),
        })
    }

    /// Mints an HS256 token; `forged` signs it with a key it does not accept.
    pub(crate) fn sign(&self, spec: &TokenSpec, forged: bool) -> String {
        let mut key = self.key.clone();
        if forged {
            key.extend_from_slice(b"-forged");
        }
        // HS256 over claims made only of strings and numbers cannot fail to encode.
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &self.claims(spec),
            &EncodingKey::from_secret(&key),
        )
        .unwrap_or_default()
    }

    /// Mints an RS256 token under the current `kid`; `forged` signs it with an unpublished
    /// key. Empty if no key could be made.
    pub(crate) fn sign_rs256(&self, spec: &TokenSpec, forged: bool) -> String {
        let Ok(current) = self.rsa.current() else {
            return String::new();
        };
        let key = if forged {
            self.rsa.forger()
        } else {
            Ok(&current.encoding)
        };
        let Ok(key) = key else {
            return String::new();
        };
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(current.kid.clone());
        jsonwebtoken::encode(&header, &self.claims(spec), key).unwrap_or_default()
    }

    /// The `iss` of its tokens: the simulator's base URL.
    pub(crate) fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The key RS256 tokens are signed with now.
    pub(crate) fn rsa_key(&self) -> std::io::Result<Arc<RsaKey>> {
        self.rsa.current()
    }

    /// Replaces the RSA key and its `kid`; tokens signed with the old one are refused.
    pub(crate) fn rotate_rsa_key(&self) {
        self.rsa.rotate();
    }

    /// The claims of a token minted now.
    fn claims<'a>(&'a self, spec: &'a TokenSpec) -> MintedClaims<'a> {
        let now = i64::try_from(jsonwebtoken::get_current_timestamp()).unwrap_or(i64::MAX);
        let exp = now.saturating_add(spec.expires_in);
        let iat = now.min(exp.saturating_sub(60));
        MintedClaims {
            iss: &self.issuer,
            sub: &spec.sub,
            client_id: &spec.client_id,
            aud: [AUDIENCE],
            scope: match &spec.scopes {
                Scopes::Array(scopes) => Some(serde_json::Value::from(scopes.clone())),
                Scopes::SpaceSeparated(scopes) => Some(serde_json::Value::from(scopes.as_str())),
                Scopes::Absent => None,
            },
            iat,
            nbf: iat,
            exp,
        }
    }

    pub(crate) fn register_opaque(&self, token: &str, sub: &str, client_id: &str) {
        let caller = Caller {
            sub: sub.to_owned(),
            client_id: client_id.to_owned(),
        };
        lock(&self.opaque).insert(token.to_owned(), caller);
    }

    /// Checks the request's bearer token.
    pub(crate) fn authenticate(&self, headers: &HeaderMap) -> Result<Caller, AuthError> {
        let token = bearer(headers).ok_or(AuthError::Missing)?;
        if let Some(caller) = lock(&self.opaque).get(token) {
            return Ok(caller.clone());
        }
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| AuthError::Invalid(e.to_string()))?;
        // Only the algorithm of each key is accepted: RS256 under the current kid, else HS256.
        let (algorithm, key) = if header.alg == Algorithm::RS256 {
            let rsa = self
                .rsa
                .current()
                .map_err(|e| AuthError::Invalid(e.to_string()))?;
            if header.kid.as_deref() != Some(rsa.kid.as_str()) {
                return Err(AuthError::Invalid("unknown kid".to_owned()));
            }
            (Algorithm::RS256, rsa.decoding.clone())
        } else {
            (Algorithm::HS256, DecodingKey::from_secret(&self.key))
        };
        let mut validation = Validation::new(algorithm);
        validation.leeway = 0;
        validation.validate_nbf = true;
        validation.set_audience(&[AUDIENCE]);
        let claims = jsonwebtoken::decode::<CheckedClaims>(token, &key, &validation)
            .map_err(|e| AuthError::Invalid(e.to_string()))?
            .claims;
        if !claims.scope.as_ref().is_some_and(grants_access) {
            return Err(AuthError::InsufficientScope);
        }
        Ok(Caller {
            sub: claims.sub,
            client_id: claims.client_id.unwrap_or_else(|| "anonymous".to_owned()),
        })
    }
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Whether a scope claim (array or space-separated string) holds an accepted scope.
fn grants_access(scope: &serde_json::Value) -> bool {
    match scope {
        serde_json::Value::Array(scopes) => scopes
            .iter()
            .any(|s| s.as_str().is_some_and(|s| ACCEPTED_SCOPES.contains(&s))),
        serde_json::Value::String(scopes) => scopes
            .split_whitespace()
            .any(|s| ACCEPTED_SCOPES.contains(&s)),
        _ => false,
    }
}
