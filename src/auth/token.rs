//! What the proxy reads from a bearer token without trusting it: the claims that decide whose
//! page a request may see, and when the token stops counting.
//!
//! Nothing here verifies a signature. A token's claims are only acted on once the token is
//! known-valid (see [`super::KnownTokens`]); until then they merely choose the cache key that
//! a verified answer would be stored under.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, header};
use serde::Deserialize;

use super::hash::{TokenHash, TokenHasher};
use crate::ascii;

/// Seconds since the epoch, the unit of `exp` and `nbf`.
pub(crate) fn epoch_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The token of an `Authorization: Bearer <token>` header, if the request has one.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    bearer_unchecked(headers)
        .filter(|token| ascii::all_visible(token))
        .and_then(|token| std::str::from_utf8(token).ok())
}

/// The token of an `Authorization: Bearer <token>` header, if the request has one, its bytes
/// not yet checked: [`TokenReader::read_bearer`] checks them only for a token it has not read
/// before.
///
/// [`TokenReader::read_bearer`]: super::TokenReader::read_bearer
pub(crate) fn bearer_unchecked(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let space = value.iter().position(|&b| b == b' ')?;
    let (scheme, token) = (&value[..space], value[space + 1..].trim_ascii());
    (scheme.eq_ignore_ascii_case(b"bearer") && !token.is_empty()).then_some(token)
}

/// Whose data a token unlocks: its `iss` and `sub` claims together (a `sub` is only unique
/// within its issuer), or for a token that is not a JWT (or has no `sub`), the keyed hash of
/// the token itself. The two never collide.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subject {
    /// The JWT `iss` and `sub` claims, as `{len(iss)}:{iss}{sub}` (no `iss`: an empty one),
    /// so that no two pairs give the same text.
    Claim(Arc<str>),
    /// The keyed hash of an opaque token.
    Opaque(TokenHash),
}

/// The facts about one presented token that the proxy uses; cheap to clone.
#[derive(Debug, Clone)]
pub struct Token {
    /// Keyed hash of the whole token: the identity of this exact token.
    pub hash: TokenHash,
    /// Whose pages it may see once known-valid.
    pub subject: Subject,
    /// `exp`, seconds since the epoch.
    pub expires_at: Option<u64>,
    /// `nbf`, seconds since the epoch.
    pub not_before: Option<u64>,
    /// `client_id`: the OAuth client app whose quota the call uses.
    pub client_id: Option<Arc<str>>,
    /// `scope`, when the token has the claim.
    pub scopes: Option<Arc<[String]>>,
}

/// A `scope` claim: a JSON array or a space-separated string.
#[derive(Deserialize)]
#[serde(untagged)]
enum ScopeClaim {
    List(Vec<String>),
    Text(String),
}

/// A NumericDate; some issuers write fractions.
#[derive(Deserialize)]
#[serde(untagged)]
enum NumericDate {
    Whole(u64),
    Fraction(f64),
}

impl NumericDate {
    fn seconds(self) -> u64 {
        match self {
            Self::Whole(s) => s,
            // Saturating float-to-int conversion: negative and NaN become 0.
            Self::Fraction(f) => f as u64,
        }
    }
}

#[derive(Deserialize)]
struct Claims {
    iss: Option<String>,
    sub: Option<String>,
    exp: Option<NumericDate>,
    nbf: Option<NumericDate>,
    client_id: Option<String>,
    scope: Option<ScopeClaim>,
}

impl Token {
    /// Reads a token: its claims when it is a JWT whose payload is a JSON object, otherwise
    /// only its hash.
    pub fn parse(token: impl AsRef<[u8]>, hasher: &TokenHasher) -> Self {
        let token = token.as_ref();
        let hash = hasher.hash(token);
        let Some(claims) = jwt_claims(token) else {
            return Self {
                hash,
                subject: Subject::Opaque(hash),
                expires_at: None,
                not_before: None,
                client_id: None,
                scopes: None,
            };
        };
        let subject = match claims.sub {
            Some(sub) if !sub.is_empty() => {
                let iss = claims.iss.unwrap_or_default();
                Subject::Claim(format!("{}:{iss}{sub}", iss.len()).into())
            }
            _ => Subject::Opaque(hash),
        };
        Self {
            hash,
            subject,
            expires_at: claims.exp.map(NumericDate::seconds),
            not_before: claims.nbf.map(NumericDate::seconds),
            client_id: claims.client_id.map(Arc::from),
            scopes: claims.scope.map(|scope| match scope {
                ScopeClaim::List(list) => list.into(),
                ScopeClaim::Text(text) => text.split_whitespace().map(str::to_owned).collect(),
            }),
        }
    }

    /// Whether the token's own time window (`nbf`..`exp`) holds at `now` (epoch seconds).
    pub fn is_current(&self, now: u64) -> bool {
        self.expires_at.is_none_or(|exp| now < exp) && self.not_before.is_none_or(|nbf| nbf <= now)
    }

    /// Whether the scope claim, where present, holds one of `accepted`.
    pub fn has_accepted_scope(&self, accepted: &[String]) -> bool {
        self.scopes
            .as_ref()
            .is_none_or(|scopes| scopes.iter().any(|s| accepted.contains(s)))
    }
}

fn jwt_claims(token: &[u8]) -> Option<Claims> {
    let mut parts = token.split(|&b| b == b'.');
    let (_header, payload, _signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let padding = payload.iter().rev().take_while(|&&b| b == b'=').count();
    let json = URL_SAFE_NO_PAD
        .decode(&payload[..payload.len() - padding])
        .ok()?;
    serde_json::from_slice(&json).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn jwt(claims: serde_json::Value) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
        format!("{header}.{payload}.c2lnbmF0dXJl")
    }

    fn headers(value: &'static str) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert(header::AUTHORIZATION, HeaderValue::from_static(value));
        map
    }

    #[test]
    fn bearer_is_required_and_case_insensitive() {
        assert_eq!(bearer_token(&headers("Bearer abc")), Some("abc"));
        assert_eq!(bearer_token(&headers("bearer abc")), Some("abc"));
        assert_eq!(bearer_token(&headers("Basic abc")), None);
        assert_eq!(bearer_token(&headers("Bearer ")), None);
        assert_eq!(bearer_token(&headers("Bearer a b")), None);
        assert_eq!(bearer_token(&headers("Bearer  abc ")), Some("abc"));
        assert_eq!(bearer_token(&headers("Bearer a\tb")), None);
        assert_eq!(bearer_token(&headers("Bearerabc")), None);
        assert_eq!(bearer_token(&HeaderMap::new()), None);
    }

    #[test]
    fn jwt_claims_are_read() {
        let hasher = TokenHasher::random().unwrap();
        let token = jwt(serde_json::json!({
            "sub": "alice", "exp": 2000, "nbf": 1000, "client_id": "app",
            "scope": ["itwin-platform", "email"]
        }));
        let parsed = Token::parse(&token, &hasher);
        assert_eq!(parsed.subject, Subject::Claim("0:alice".into()));
        assert_eq!(parsed.client_id.as_deref(), Some("app"));
        assert!(parsed.is_current(1500));
        assert!(!parsed.is_current(2000));
        assert!(!parsed.is_current(999));
        assert!(parsed.has_accepted_scope(&["itwin-platform".into()]));
        assert!(!parsed.has_accepted_scope(&["export:read".into()]));
    }

    #[test]
    fn space_separated_scopes_and_fractional_dates() {
        let hasher = TokenHasher::random().unwrap();
        let token =
            jwt(serde_json::json!({"sub": "bob", "exp": 2000.5, "scope": "openid export:read"}));
        let parsed = Token::parse(&token, &hasher);
        assert_eq!(parsed.expires_at, Some(2000));
        assert!(parsed.has_accepted_scope(&["export:read".into()]));
    }

    #[test]
    fn the_subject_is_issuer_and_sub_together() {
        let hasher = TokenHasher::random().unwrap();
        let subject = |iss: &str, sub: &str| {
            let token = jwt(serde_json::json!({"iss": iss, "sub": sub}));
            Token::parse(&token, &hasher).subject
        };
        assert_eq!(subject("https://a", "alice"), subject("https://a", "alice"));
        assert_ne!(subject("https://a", "alice"), subject("https://b", "alice"));
        assert_ne!(subject("ab", "c"), subject("a", "bc"));
        let no_iss = Token::parse(jwt(serde_json::json!({"sub": "alice"})), &hasher).subject;
        assert_ne!(no_iss, subject("https://a", "alice"));
    }

    #[test]
    fn opaque_tokens_are_their_own_subject() {
        let hasher = TokenHasher::random().unwrap();
        let parsed = Token::parse("not-a-jwt", &hasher);
        assert_eq!(parsed.subject, Subject::Opaque(hasher.hash("not-a-jwt")));
        assert!(parsed.has_accepted_scope(&["itwin-platform".into()]));
        assert!(parsed.is_current(u64::MAX));
        let no_sub = Token::parse(jwt(serde_json::json!({"exp": 5})), &hasher);
        assert!(matches!(no_sub.subject, Subject::Opaque(_)));
    }
}
