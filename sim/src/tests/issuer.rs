//! The issuer side: discovery, the key set, RS256 tokens, key rotation and a failing key set.

use http::{Method, StatusCode};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use super::super::TokenSpec;
use super::{Harness, demo_list};

/// Verifies `token` with the first key of a published key set, as a relying party would.
fn verify_with(
    jwks: &Value,
    issuer: &str,
    token: &str,
) -> Result<Value, jsonwebtoken::errors::Error> {
    let key = &jwks["keys"][0];
    let key =
        DecodingKey::from_rsa_components(key["n"].as_str().unwrap(), key["e"].as_str().unwrap())?;
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&["itwin-platform"]);
    jsonwebtoken::decode::<Value>(token, &key, &validation).map(|data| data.claims)
}

#[tokio::test]
async fn discovery_and_key_set_are_served_without_a_token() {
    let h = Harness::default().await;
    let discovery = h.get_with("/.well-known/openid-configuration", None).await;
    assert_eq!(discovery.status, StatusCode::OK);
    let discovery = discovery.json();
    let base = h.sim.base_url();
    assert_eq!(discovery["issuer"], base.as_str());
    let jwks_uri = discovery["jwks_uri"].as_str().unwrap();
    assert_eq!(jwks_uri, format!("{base}/.well-known/jwks.json"));

    let jwks = h.get_with(jwks_uri, None).await;
    assert_eq!(jwks.status, StatusCode::OK);
    let jwks = jwks.json();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    let key = &keys[0];
    assert_eq!(
        (&key["kty"], &key["use"], &key["alg"], &key["e"]),
        (
            &Value::from("RSA"),
            &Value::from("sig"),
            &Value::from("RS256"),
            &Value::from("AQAB")
        )
    );
    assert_eq!(key["kid"], h.sim.key_id().as_str());
    assert_eq!(h.sim.jwks_requests(), 1);
    // The issuer's endpoints are not Export API traffic.
    assert_eq!(h.sim.request_count(), 0);

    let token = h.sim.rs256_token(&TokenSpec::new("alice"));
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(
        (header.alg, header.kid),
        (Algorithm::RS256, Some(h.sim.key_id()))
    );
    let claims = verify_with(&jwks, &base, &token).unwrap();
    assert_eq!(
        (&claims["sub"], &claims["iss"]),
        (&Value::from("alice"), &Value::from(base.as_str()))
    );
    let forged = h.sim.forged_rs256_token(&TokenSpec::new("alice"));
    assert_eq!(
        jsonwebtoken::decode_header(&forged).unwrap().kid,
        Some(h.sim.key_id())
    );
    assert!(verify_with(&jwks, &base, &forged).is_err());
}

#[tokio::test]
async fn rs256_tokens_are_accepted_until_the_key_rotates() {
    let h = Harness::default().await;
    let token = h.sim.rs256_token(&TokenSpec::new("alice"));
    let accepted = h.get_with(&demo_list("&$top=1"), Some(&token)).await;
    assert_eq!(accepted.status, StatusCode::OK);
    let forged = h.sim.forged_rs256_token(&TokenSpec::new("alice"));
    let refused = h.get_with(&demo_list("&$top=1"), Some(&forged)).await;
    assert_eq!(
        (refused.status, refused.error_code()),
        (StatusCode::UNAUTHORIZED, "InvalidToken".to_owned())
    );
    let expired = h.sim.rs256_token(&TokenSpec::new("alice").expires_in(-5));
    let refused = h.get_with(&demo_list("&$top=1"), Some(&expired)).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);

    let old_kid = h.sim.key_id();
    h.sim.rotate_key();
    let new_kid = h.sim.key_id();
    assert_ne!(old_kid, new_kid);
    let stale = h.get_with(&demo_list("&$top=1"), Some(&token)).await;
    assert_eq!(stale.status, StatusCode::UNAUTHORIZED);
    let fresh = h.sim.rs256_token(&TokenSpec::new("alice"));
    assert_eq!(
        h.get_with(&demo_list("&$top=1"), Some(&fresh)).await.status,
        StatusCode::OK
    );
    let jwks = h.get_with("/.well-known/jwks.json", None).await.json();
    assert_eq!(jwks["keys"][0]["kid"], new_kid.as_str());
    assert!(verify_with(&jwks, &h.sim.base_url(), &token).is_err());
    // HS256 tokens keep working beside RS256 ones.
    assert_eq!(h.get(&demo_list("&$top=1")).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_failing_key_set_leaves_the_api_up() {
    let h = Harness::default().await;
    h.sim.set_jwks_down(true);
    let down = h.get_with("/.well-known/jwks.json", None).await;
    assert_eq!(down.status, StatusCode::SERVICE_UNAVAILABLE);
    let token = h.sim.rs256_token(&TokenSpec::new("alice"));
    assert_eq!(
        h.get_with(&demo_list("&$top=1"), Some(&token)).await.status,
        StatusCode::OK
    );
    h.sim.set_jwks_down(false);
    let up = h
        .send(Method::HEAD, "/.well-known/jwks.json", None, "")
        .await;
    assert_eq!(up.status, StatusCode::OK);
    assert_eq!(h.sim.jwks_requests(), 2);
    let posted = h
        .send(Method::POST, "/.well-known/jwks.json", None, "")
        .await;
    assert_eq!(posted.status, StatusCode::UNAUTHORIZED);
}
