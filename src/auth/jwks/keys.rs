//! A JWKS document read into verification keys: which entries are usable signing keys, and
//! which asymmetric algorithms each one allows.
//!
//! Symmetric (`oct`) entries, encryption keys and unknown key types are skipped, so no key
//! from the set can ever check an HMAC signature.

use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

/// The algorithms a token may be signed with: asymmetric ones only, never HS* or `none`.
pub(crate) const ACCEPTED_ALGORITHMS: [Algorithm; 8] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
];

/// What an RSA key allows when its JWK names no `alg`.
const RSA_ALGORITHMS: [Algorithm; 6] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

/// Why a document is not a usable key set.
#[derive(Debug, thiserror::Error)]
pub(crate) enum KeySetError {
    #[error("not a JSON Web Key Set")]
    NotAKeySet,
    #[error("no usable signing key among {0} keys")]
    NoUsableKey(usize),
}

#[derive(Deserialize)]
struct Document {
    keys: Vec<serde_json::Value>,
}

/// The members of a JWK that matter here.
#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    kid: Option<String>,
    #[serde(rename = "use")]
    usage: Option<String>,
    alg: Option<String>,
    n: Option<String>,
    e: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

/// One verification key.
pub(crate) struct Key {
    kid: Option<String>,
    decoding: DecodingKey,
    algorithms: Vec<Algorithm>,
}

impl Key {
    /// Whether a token signed with `algorithm` may be checked with this key.
    pub(crate) fn allows(&self, algorithm: Algorithm) -> bool {
        self.algorithms.contains(&algorithm)
    }

    /// The key to check signatures with.
    pub(crate) fn decoding(&self) -> &DecodingKey {
        &self.decoding
    }

    /// A usable signing key from a JWK, or `None`.
    fn of(jwk: RawJwk) -> Option<Self> {
        if jwk.usage.as_deref().is_some_and(|usage| usage != "sig") {
            return None;
        }
        let (decoding, allowed) = match jwk.kty.as_str() {
            "RSA" => {
                let n = decode(jwk.n.as_deref()?)?;
                let e = decode(jwk.e.as_deref()?)?;
                let key = DecodingKey::from_rsa_raw_components(&n, &e);
                (key, RSA_ALGORITHMS.to_vec())
            }
            "EC" => {
                let (algorithm, size) = match jwk.crv.as_deref()? {
                    "P-256" => (Algorithm::ES256, 32),
                    "P-384" => (Algorithm::ES384, 48),
                    _ => return None,
                };
                let (x, y) = (jwk.x.as_deref()?, jwk.y.as_deref()?);
                if decode(x)?.len() != size || decode(y)?.len() != size {
                    return None;
                }
                let key = DecodingKey::from_ec_components(x, y).ok()?;
                (key, vec![algorithm])
            }
            _ => return None,
        };
        let algorithms = match jwk.alg.as_deref() {
            None => allowed,
            Some(alg) => {
                let alg = Algorithm::from_str(alg).ok()?;
                allowed.contains(&alg).then(|| vec![alg])?
            }
        };
        Some(Self {
            kid: jwk.kid,
            decoding,
            algorithms,
        })
    }
}

/// Base64url without padding, as JWKs write numbers; `None` when malformed or empty.
fn decode(value: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD
        .decode(value)
        .ok()
        .filter(|bytes| !bytes.is_empty())
}

/// The usable keys of one JWKS document.
pub(crate) struct KeySet {
    keys: Vec<Key>,
}

impl KeySet {
    /// Reads a JWKS document, skipping entries that are not usable signing keys.
    pub(crate) fn parse(body: &[u8]) -> Result<Self, KeySetError> {
        let document: Document =
            serde_json::from_slice(body).map_err(|_| KeySetError::NotAKeySet)?;
        let listed = document.keys.len();
        let keys: Vec<Key> = document
            .keys
            .into_iter()
            .filter_map(|jwk| serde_json::from_value(jwk).ok())
            .filter_map(Key::of)
            .collect();
        if keys.is_empty() {
            return Err(KeySetError::NoUsableKey(listed));
        }
        Ok(Self { keys })
    }

    /// How many usable keys it holds.
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    /// The key a token names by `kid`; a token without one may only use a set of one key.
    pub(crate) fn find(&self, kid: Option<&str>) -> Option<&Key> {
        match kid {
            Some(kid) => self.keys.iter().find(|key| key.kid.as_deref() == Some(kid)),
            None => match self.keys.as_slice() {
                [only] => Some(only),
                _ => None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn b64(len: usize) -> String {
        URL_SAFE_NO_PAD.encode(vec![7u8; len])
    }

    fn parse(keys: serde_json::Value) -> Result<KeySet, KeySetError> {
        KeySet::parse(json!({ "keys": keys }).to_string().as_bytes())
    }

    #[test]
    fn only_asymmetric_signing_keys_are_kept() {
        let set = parse(json!([
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": b64(256), "e": "AQAB"},
            {"kty": "RSA", "kid": "rsa", "use": "sig", "n": b64(256), "e": "AQAB"},
            {"kty": "RSA", "kid": "pinned", "alg": "PS384", "n": b64(256), "e": "AQAB"},
            {"kty": "RSA", "kid": "hs-named", "alg": "HS256", "n": b64(256), "e": "AQAB"},
            {"kty": "EC", "kid": "p256", "crv": "P-256", "x": b64(32), "y": b64(32)},
            {"kty": "EC", "kid": "short", "crv": "P-256", "x": b64(31), "y": b64(32)},
            {"kty": "EC", "kid": "p521", "crv": "P-521", "x": b64(66), "y": b64(66)},
            {"kty": "OKP", "kid": "ed", "crv": "Ed25519", "x": b64(32)},
            {"kty": "RSA", "kid": "no-modulus", "e": "AQAB"},
            "not an object"
        ]))
        .unwrap();
        assert_eq!(set.len(), 3);
        for kid in [
            "hmac",
            "enc",
            "hs-named",
            "short",
            "p521",
            "ed",
            "no-modulus",
        ] {
            assert!(set.find(Some(kid)).is_none(), "{kid}");
        }
        let rsa = set.find(Some("rsa")).unwrap();
        assert!(rsa.allows(Algorithm::RS256) && rsa.allows(Algorithm::PS512));
        assert!(!rsa.allows(Algorithm::HS256) && !rsa.allows(Algorithm::ES256));
        let pinned = set.find(Some("pinned")).unwrap();
        assert!(pinned.allows(Algorithm::PS384) && !pinned.allows(Algorithm::RS256));
        let ec = set.find(Some("p256")).unwrap();
        assert!(ec.allows(Algorithm::ES256) && !ec.allows(Algorithm::ES384));
        // Without a kid, a token only fits a set of exactly one key.
        assert!(set.find(None).is_none());
    }

    #[test]
    fn a_single_key_serves_tokens_without_kid() {
        let set = parse(json!([{"kty": "RSA", "n": b64(256), "e": "AQAB"}])).unwrap();
        assert!(set.find(None).is_some());
        assert!(set.find(Some("other")).is_none());
    }

    #[test]
    fn documents_without_usable_keys_are_refused() {
        assert!(matches!(
            KeySet::parse(b"<html>"),
            Err(KeySetError::NotAKeySet)
        ));
        assert!(matches!(
            KeySet::parse(b"{\"issuer\": \"x\"}"),
            Err(KeySetError::NotAKeySet)
        ));
        assert!(matches!(
            parse(json!([{"kty": "oct", "k": "c2VjcmV0"}])),
            Err(KeySetError::NoUsableKey(1))
        ));
    }
}
