//! RSA signing keys: the current key and its `kid` (RS256 tokens are signed with it and the
//! JWKS publishes it), rotation, and a stand-in key for forged tokens.

use std::sync::{Arc, Mutex, OnceLock};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::KeyPair as _;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{DecodingKey, EncodingKey};
use serde::Serialize;

use super::lock;

/// DER tag of a SEQUENCE.
const SEQUENCE: u8 = 0x30;
/// DER tag of an INTEGER.
const INTEGER: u8 = 0x02;
/// DER tag of an OCTET STRING.
const OCTET_STRING: u8 = 0x04;

/// One RSA-2048 key with its `kid`.
pub(crate) struct RsaKey {
    pub(crate) kid: String,
    pub(crate) encoding: EncodingKey,
    pub(crate) decoding: DecodingKey,
    /// The public modulus, base64url without padding, as a JWK writes it.
    n: String,
    /// The public exponent, base64url without padding.
    e: String,
}

impl std::fmt::Debug for RsaKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RsaKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// One entry of the published key set.
#[derive(Debug, Serialize)]
pub(crate) struct Jwk<'a> {
    kty: &'static str,
    kid: &'a str,
    #[serde(rename = "use")]
    usage: &'static str,
    alg: &'static str,
    n: &'a str,
    e: &'a str,
}

impl RsaKey {
    /// A fresh key under a random `kid`.
    fn generate() -> std::io::Result<Self> {
        let refused = |what: &str| std::io::Error::other(format!("RSA signing key: {what}"));
        let pair = KeyPair::generate(KeySize::Rsa2048).map_err(|_| refused("generation"))?;
        let pkcs8 = pair.as_der().map_err(|_| refused("encoding"))?;
        // jsonwebtoken signs RSA with a PKCS#1 `RSAPrivateKey`, which PKCS#8 wraps.
        let pkcs1 = pkcs1_of_pkcs8(pkcs8.as_ref()).ok_or_else(|| refused("PKCS#8 layout"))?;
        let public = pair.public_key();
        let n = public.modulus().big_endian_without_leading_zero().to_vec();
        let e = public.exponent().big_endian_without_leading_zero().to_vec();
        let mut id = [0; 8];
        aws_lc_rs::rand::fill(&mut id).map_err(|_| refused("no randomness for the kid"))?;
        let kid: String = id.iter().map(|b| format!("{b:02x}")).collect();
        Ok(Self {
            kid: format!("sim-{kid}"),
            encoding: EncodingKey::from_rsa_der(pkcs1),
            decoding: DecodingKey::from_rsa_raw_components(&n, &e),
            n: URL_SAFE_NO_PAD.encode(&n),
            e: URL_SAFE_NO_PAD.encode(&e),
        })
    }

    /// The key as a JWK for RS256 signatures.
    pub(crate) fn jwk(&self) -> Jwk<'_> {
        Jwk {
            kty: "RSA",
            kid: &self.kid,
            usage: "sig",
            alg: "RS256",
            n: &self.n,
            e: &self.e,
        }
    }
}

/// The current key and the key forged tokens are signed with, each made on first use (an
/// RSA key takes a noticeable fraction of a second, which most runs never need).
#[derive(Debug, Default)]
pub(crate) struct Keys {
    current: Mutex<Option<Arc<RsaKey>>>,
    forger: OnceLock<RsaKey>,
}

impl Keys {
    /// The key tokens are signed with now.
    pub(crate) fn current(&self) -> std::io::Result<Arc<RsaKey>> {
        let mut current = lock(&self.current);
        if let Some(key) = current.as_ref() {
            return Ok(Arc::clone(key));
        }
        let key = Arc::new(RsaKey::generate()?);
        *current = Some(Arc::clone(&key));
        Ok(key)
    }

    /// Replaces the current key with a new one under a new `kid` (keeps it if none can be
    /// made).
    pub(crate) fn rotate(&self) {
        if let Ok(key) = RsaKey::generate() {
            *lock(&self.current) = Some(Arc::new(key));
        }
    }

    /// A key that is not published, for forged tokens.
    pub(crate) fn forger(&self) -> std::io::Result<&EncodingKey> {
        if let Some(key) = self.forger.get() {
            return Ok(&key.encoding);
        }
        let key = RsaKey::generate()?;
        Ok(&self.forger.get_or_init(|| key).encoding)
    }
}

/// The `RSAPrivateKey` inside a PKCS#8 `PrivateKeyInfo`
/// (`SEQUENCE { INTEGER version, SEQUENCE algorithm, OCTET STRING privateKey, .. }`).
fn pkcs1_of_pkcs8(der: &[u8]) -> Option<&[u8]> {
    let (info, _) = element(der, SEQUENCE)?;
    let (_version, rest) = element(info, INTEGER)?;
    let (_algorithm, rest) = element(rest, SEQUENCE)?;
    let (private_key, _) = element(rest, OCTET_STRING)?;
    Some(private_key)
}

/// Splits one DER element with tag `tag` off the front of `der`: its contents and the rest.
fn element(der: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&found, rest) = der.split_first()?;
    let (&first, rest) = rest.split_first()?;
    if found != tag {
        return None;
    }
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let octets = usize::from(first & 0x7f);
        if octets == 0 || octets > size_of::<usize>() || rest.len() < octets {
            return None;
        }
        let (len, rest) = rest.split_at(octets);
        let len = len.iter().fold(0, |len, &b| (len << 8) | usize::from(b));
        (len, rest)
    };
    (rest.len() >= len).then(|| rest.split_at(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_elements_with_long_lengths_are_split() {
        let mut der = vec![OCTET_STRING, 0x81, 0x80];
        der.extend(std::iter::repeat_n(7, 0x80));
        der.push(0xff);
        let (contents, rest) = element(&der, OCTET_STRING).unwrap();
        assert_eq!((contents.len(), rest), (0x80, &[0xff][..]));
        assert!(element(&der, SEQUENCE).is_none());
        assert!(element(&[OCTET_STRING, 0x05, 1], OCTET_STRING).is_none());
    }

    #[test]
    fn a_generated_key_signs_what_its_jwk_verifies() {
        let key = RsaKey::generate().unwrap();
        let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        let claims = serde_json::json!({ "sub": "a", "exp": u64::MAX / 2 });
        let token = jsonwebtoken::encode(&header, &claims, &key.encoding).unwrap();
        let jwk = key.jwk();
        let published = DecodingKey::from_rsa_components(jwk.n, jwk.e).unwrap();
        let validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        let decoded = jsonwebtoken::decode::<serde_json::Value>(&token, &published, &validation);
        assert_eq!(decoded.unwrap().claims["sub"], "a");
        assert_eq!((jwk.e, jwk.n.len()), ("AQAB", 342));
    }
}
