//! The verifier against the simulator's issuer endpoints; `served` adds a hand-held key
//! server for what the simulator cannot do (a held or oversized key set, EC keys).

mod served;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::Request;
use http_body_util::BodyExt;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};

use super::*;
use itwin_proxy_sim::{SimConfig, Simulator, TokenSpec};

/// The bound on every wait in these tests.
const WAIT: Duration = Duration::from_secs(20);

fn settings(jwks_url: Option<&str>, issuer: Option<&str>, audience: Option<&str>) -> AuthSettings {
    AuthSettings {
        jwks_url: jwks_url.map(|url| url.parse().unwrap()),
        issuer: issuer.map(str::to_owned),
        audience: audience.map(str::to_owned),
        accepted_scopes: vec!["itwin-platform".to_owned()],
        reject_unverified: false,
    }
}

fn verifier_with(settings: &AuthSettings, timing: Timing) -> Verifier {
    let verifier = Verifier::with_timing(
        settings,
        Duration::from_secs(2),
        None,
        KeyFetches::default(),
        timing,
    );
    verifier.unwrap().unwrap()
}

/// A verifier of the simulator's key set, checking its issuer and audience.
fn verifier_of(sim: &Simulator) -> Verifier {
    let jwks = jwks_url(sim);
    let base = sim.base_url();
    verifier_with(
        &settings(Some(&jwks), Some(&base), Some("itwin-platform")),
        TIMING,
    )
}

fn jwks_url(sim: &Simulator) -> String {
    format!("{}/.well-known/jwks.json", sim.base_url())
}

async fn sim() -> Simulator {
    Simulator::start(SimConfig::default()).await.unwrap()
}

async fn verify(verifier: &Verifier, token: &str) -> Verdict {
    tokio::time::timeout(WAIT, verifier.verify(token))
        .await
        .unwrap()
}

/// Waits until no fetch is running (a background fetch holds the lock from its start).
async fn settled(verifier: &Verifier) {
    let fetches = tokio::time::timeout(WAIT, verifier.inner.fetches.lock());
    drop(fetches.await.unwrap());
}

/// Fetches the keys as at start-up and waits for the fetch to end.
async fn fetched(verifier: Verifier) -> Verifier {
    verifier.prefetch();
    settled(&verifier).await;
    verifier
}

fn alice() -> TokenSpec {
    TokenSpec::new("alice")
}

/// `token` with its header replaced (the signature no longer matches, which is beside the
/// point for header checks).
fn with_header(token: &str, header: Value) -> String {
    let (_, rest) = token.split_once('.').unwrap();
    format!("{}.{rest}", URL_SAFE_NO_PAD.encode(header.to_string()))
}

fn assert_invalid(verdict: &Verdict, because: &str) {
    match verdict {
        Verdict::Invalid(reason) => assert!(reason.contains(because), "{reason}"),
        other => panic!("expected Invalid({because}), got {other:?}"),
    }
}

fn assert_unavailable(verdict: &Verdict) {
    assert!(matches!(verdict, Verdict::Unavailable(_)), "{verdict:?}");
}

/// The body of a plain GET.
async fn get(url: &str) -> Bytes {
    let client = pooled_client(Duration::from_secs(2), None).unwrap();
    let request = Request::get(url).body(crate::body::empty()).unwrap();
    let response = tokio::time::timeout(WAIT, client.request(request));
    let body = response.await.unwrap().unwrap().into_body().collect();
    tokio::time::timeout(WAIT, body)
        .await
        .unwrap()
        .unwrap()
        .to_bytes()
}

#[tokio::test]
async fn issuer_tokens_verify_and_broken_ones_do_not() {
    let sim = sim().await;
    let verifier = fetched(verifier_of(&sim)).await;
    assert_eq!(
        verify(&verifier, &sim.rs256_token(&alice())).await,
        Verdict::Valid
    );
    let within_leeway = sim.rs256_token(&alice().expires_in(-20));
    assert_eq!(verify(&verifier, &within_leeway).await, Verdict::Valid);
    let forged = sim.forged_rs256_token(&alice());
    assert_invalid(&verify(&verifier, &forged).await, "bad signature");
    let expired = sim.rs256_token(&alice().expires_in(-120));
    assert_invalid(&verify(&verifier, &expired).await, "expired");
    assert_invalid(&verify(&verifier, "opaque-token").await, "not a JWT");
    // The simulator's HS256 tokens are valid to it, not to a key set.
    assert_invalid(&verify(&verifier, &sim.token(&alice())).await, "HS256");
    assert_eq!(sim.jwks_requests(), 1, "the key set is cached");
    assert!(!format!("{verifier:?}").contains(&sim.rs256_token(&alice())));
}

#[tokio::test]
async fn issuer_and_audience_are_checked_when_configured() {
    let sim = sim().await;
    let token = sim.rs256_token(&alice());
    let jwks = jwks_url(&sim);
    let other_issuer = settings(Some(&jwks), Some("https://ims.bentley.com"), None);
    let verdict = verify(&fetched(verifier_with(&other_issuer, TIMING)).await, &token).await;
    assert_invalid(&verdict, "wrong iss");
    let other_audience = settings(Some(&jwks), None, Some("another-api"));
    let verdict = verify(
        &fetched(verifier_with(&other_audience, TIMING)).await,
        &token,
    )
    .await;
    assert_invalid(&verdict, "wrong aud");
    let unchecked = settings(Some(&jwks), None, None);
    let verdict = verify(&fetched(verifier_with(&unchecked, TIMING)).await, &token).await;
    assert_eq!(verdict, Verdict::Valid);
}

#[tokio::test]
async fn hmac_and_unsigned_tokens_are_refused_even_with_the_public_key_as_secret() {
    let sim = sim().await;
    let verifier = verifier_of(&sim);
    let jwks = get(&jwks_url(&sim)).await;
    let published: Value = serde_json::from_slice(&jwks).unwrap();
    let modulus = URL_SAFE_NO_PAD
        .decode(published["keys"][0]["n"].as_str().unwrap())
        .unwrap();
    let claims = jsonwebtoken::dangerous::insecure_decode::<Value>(sim.rs256_token(&alice()))
        .unwrap()
        .claims;
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(sim.key_id());
    for secret in [&jwks[..], &modulus[..]] {
        let token = jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(secret));
        assert_invalid(&verify(&verifier, &token.unwrap()).await, "HS256");
    }
    let unsigned = with_header(&sim.rs256_token(&alice()), json!({"alg": "none"}));
    let unsigned = format!("{}.", unsigned.rsplit_once('.').unwrap().0);
    assert_invalid(&verify(&verifier, &unsigned).await, "not a JWT");
    assert_eq!(sim.jwks_requests(), 1, "refused before any key is fetched");
}

#[tokio::test]
async fn an_unknown_kid_refetches_once_and_finds_the_rotated_key() {
    let sim = sim().await;
    let verifier = fetched(verifier_of(&sim)).await;
    let before = sim.rs256_token(&alice());
    assert_eq!(verify(&verifier, &before).await, Verdict::Valid);
    sim.rotate_key();
    let after = sim.rs256_token(&alice());
    // Not waited for: the upstream judges this one while the keys refetch.
    assert_unavailable(&verify(&verifier, &after).await);
    settled(&verifier).await;
    assert_eq!(verify(&verifier, &after).await, Verdict::Valid);
    assert_eq!(sim.jwks_requests(), 2);
    // The old key left the set; within the gap its kid is not fetched for again, and the
    // token is left for the upstream to judge (it could be a key rotated in a moment ago).
    assert_unavailable(&verify(&verifier, &before).await);
    assert_eq!(sim.jwks_requests(), 2);
}

#[tokio::test]
async fn invented_kids_refetch_at_most_once_per_gap() {
    let sim = sim().await;
    let verifier = fetched(verifier_of(&sim)).await;
    let token = sim.rs256_token(&alice());
    assert_eq!(verify(&verifier, &token).await, Verdict::Valid);
    let first = with_header(&token, json!({"alg": "RS256", "kid": "invented-1"}));
    assert_unavailable(&verify(&verifier, &first).await);
    settled(&verifier).await;
    for kid in ["invented-1", "invented-2", "invented-3"] {
        let invented = with_header(&token, json!({"alg": "RS256", "kid": kid}));
        assert_unavailable(&verify(&verifier, &invented).await);
    }
    assert_eq!(sim.jwks_requests(), 2);
    let no_kid = with_header(&token, json!({"alg": "RS256"}));
    assert_eq!(
        verify(&verifier, &no_kid).await,
        Verdict::Invalid("bad signature".into())
    );
}

#[tokio::test]
async fn no_keys_at_start_is_unavailable_and_retried_after_a_pause() {
    let sim = sim().await;
    sim.set_jwks_down(true);
    let token = sim.rs256_token(&alice());
    let verifier = verifier_of(&sim);
    assert_unavailable(&verify(&verifier, &token).await);
    settled(&verifier).await;
    assert_unavailable(&verify(&verifier, &token).await);
    assert_eq!(sim.jwks_requests(), 1, "no retry within the failure gap");

    let eager = Timing {
        failure_retry_gap: Duration::ZERO,
        ..TIMING
    };
    let jwks = jwks_url(&sim);
    let verifier = fetched(verifier_with(&settings(Some(&jwks), None, None), eager)).await;
    assert_unavailable(&verify(&verifier, &token).await);
    settled(&verifier).await;
    sim.set_jwks_down(false);
    assert_unavailable(&verify(&verifier, &token).await);
    settled(&verifier).await;
    assert_eq!(verify(&verifier, &token).await, Verdict::Valid);

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_url = format!("http://{}/keys", closed.local_addr().unwrap());
    drop(closed);
    let verifier = fetched(verifier_with(
        &settings(Some(&closed_url), None, None),
        TIMING,
    ))
    .await;
    assert_unavailable(&verify(&verifier, &token).await);
    let not_a_key_set = format!("{}/sim/large", sim.base_url());
    let verifier = verifier_with(&settings(Some(&not_a_key_set), None, None), TIMING);
    let verifier = fetched(verifier).await;
    let verdict = verify(&verifier, &token).await;
    assert!(matches!(&verdict, Verdict::Unavailable(r) if r.contains("not a JSON Web Key Set")));
}

#[tokio::test]
async fn a_failing_refetch_keeps_the_previous_keys() {
    let sim = sim().await;
    let verifier = fetched(verifier_of(&sim)).await;
    let before = sim.rs256_token(&alice());
    assert_eq!(verify(&verifier, &before).await, Verdict::Valid);
    sim.set_jwks_down(true);
    sim.rotate_key();
    let after = sim.rs256_token(&alice());
    assert_unavailable(&verify(&verifier, &after).await);
    settled(&verifier).await;
    assert_unavailable(&verify(&verifier, &after).await);
    assert_eq!(verify(&verifier, &before).await, Verdict::Valid);
    assert_eq!(sim.jwks_requests(), 2);
}

#[tokio::test]
async fn old_keys_refresh_in_the_background_and_survive_a_failed_refresh() {
    let sim = sim().await;
    let always_stale = Timing {
        refresh_every: Duration::ZERO,
        ..TIMING
    };
    let jwks = jwks_url(&sim);
    let verifier = verifier_with(&settings(Some(&jwks), None, None), always_stale);
    let verifier = fetched(verifier).await;
    let token = sim.rs256_token(&alice());
    assert_eq!(verify(&verifier, &token).await, Verdict::Valid);
    settled(&verifier).await;
    assert_eq!(sim.jwks_requests(), 2, "a stale set is refetched");

    sim.set_jwks_down(true);
    assert_eq!(verify(&verifier, &token).await, Verdict::Valid);
    settled(&verifier).await;
    assert_eq!(sim.jwks_requests(), 3);
    assert_eq!(verify(&verifier, &token).await, Verdict::Valid);
    settled(&verifier).await;
    assert_eq!(sim.jwks_requests(), 3, "no refresh within the failure gap");
}

#[tokio::test]
async fn keys_are_discovered_from_the_issuer() {
    let sim = sim().await;
    let base = sim.base_url();
    let verifier = verifier_with(&settings(None, Some(&base), Some("itwin-platform")), TIMING);
    let verifier = fetched(verifier).await;
    assert_eq!(
        verify(&verifier, &sim.rs256_token(&alice())).await,
        Verdict::Valid
    );
    assert_eq!(sim.jwks_requests(), 1);
    assert!(format!("{verifier:?}").contains("openid-configuration"));
}

#[tokio::test]
async fn a_discovery_document_for_another_issuer_is_refused() {
    let sim = sim().await;
    // The simulator names itself by IP; the same server reached as localhost is, to OpenID
    // Connect Discovery, another issuer.
    let elsewhere = sim.base_url().replace("127.0.0.1", "localhost");
    let verifier = fetched(verifier_with(
        &settings(None, Some(&elsewhere), None),
        TIMING,
    ))
    .await;
    assert_unavailable(&verify(&verifier, &sim.rs256_token(&alice())).await);
    let same = format!("{}/", sim.base_url());
    let verifier = fetched(verifier_with(&settings(None, Some(&same), None), TIMING)).await;
    assert_eq!(
        verify(&verifier, &sim.rs256_token(&alice())).await,
        Verdict::Invalid("wrong iss".into()),
        "a trailing slash still finds the keys; the token's iss is then compared exactly"
    );
}

#[test]
fn settings_decide_whether_and_where_to_verify() {
    let none = Verifier::new(
        &settings(None, None, None),
        Duration::from_secs(1),
        None,
        KeyFetches::default(),
    );
    assert!(none.unwrap().is_none());
    let not_a_url = Verifier::new(
        &settings(None, Some("ims"), None),
        Duration::from_secs(1),
        None,
        KeyFetches::default(),
    );
    assert!(matches!(not_a_url, Err(VerifierSetupError::Issuer(_))));
    let secret = settings(
        Some("https://user:hunter2@ims.example/keys"),
        Some("ims"),
        None,
    );
    let verifier =
        Verifier::new(&secret, Duration::from_secs(1), None, KeyFetches::default()).unwrap();
    let shown = format!("{:?}", verifier.unwrap());
    assert!(
        shown.contains("https://ims.example/keys") && !shown.contains("hunter2"),
        "{shown}"
    );
}

#[test]
fn verifier_and_verification_are_send() {
    fn send_sync<T: Send + Sync>(_: &T) {}
    fn send<T: Send>(_: T) {}
    let jwks = settings(Some("https://ims.example/keys"), None, None);
    let verifier = verifier_with(&jwks, TIMING);
    send_sync(&verifier);
    send(verifier.verify("token"));
}
