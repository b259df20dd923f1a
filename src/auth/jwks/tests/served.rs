//! The verifier against a hand-held key server: one fetch shared by concurrent callers, the
//! body cap, and EC keys.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::*;

/// A key server that holds every request until released, then answers `body`.
struct HeldKeyServer {
    url: String,
    accepted: Arc<AtomicU64>,
    first: Arc<tokio::sync::Notify>,
    release: watch::Sender<bool>,
}

impl HeldKeyServer {
    async fn start(body: Bytes) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/keys", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicU64::new(0));
        let first = Arc::new(tokio::sync::Notify::new());
        let (release, released) = watch::channel(false);
        let counter = Arc::clone(&accepted);
        let notify = Arc::clone(&first);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                notify.notify_one();
                let (body, mut released) = (body.clone(), released.clone());
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut chunk = [0; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let _ = released.wait_for(|go| *go).await;
                    let head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                         content-length: {}\r\nconnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = stream.write_all(head.as_bytes()).await;
                    let _ = stream.write_all(&body).await;
                });
            }
        });
        Self {
            url,
            accepted,
            first,
            release,
        }
    }
}

#[tokio::test]
async fn verifications_never_wait_for_a_held_fetch() {
    let sim = sim().await;
    let server = HeldKeyServer::start(get(&jwks_url(&sim)).await).await;
    let verifier = Arc::new(verifier_with(
        &settings(Some(&server.url), None, None),
        TIMING,
    ));
    let token = sim.rs256_token(&alice());
    verifier.prefetch();
    tokio::time::timeout(WAIT, server.first.notified())
        .await
        .unwrap();
    // The key server holds the fetch: every verification meanwhile answers at once.
    let mut verifications = JoinSet::new();
    for _ in 0..8 {
        let (verifier, token) = (Arc::clone(&verifier), token.clone());
        verifications.spawn(async move { verifier.verify(&token).await });
    }
    let verdicts = tokio::time::timeout(WAIT, verifications.join_all())
        .await
        .unwrap();
    assert!(
        verdicts
            .iter()
            .all(|v| matches!(v, Verdict::Unavailable(_))),
        "{verdicts:?}"
    );
    server.release.send_replace(true);
    settled(&verifier).await;
    assert_eq!(verify(&verifier, &token).await, Verdict::Valid);
    assert_eq!(
        server.accepted.load(Ordering::SeqCst),
        1,
        "one fetch, none per caller"
    );
}

#[tokio::test]
async fn an_oversized_key_set_is_not_read() {
    let sim = sim().await;
    let padding = " ".repeat(2 * 1024 * 1024);
    let body = format!("{{\"keys\": []{padding}}}");
    let server = HeldKeyServer::start(Bytes::from(body)).await;
    server.release.send_replace(true);
    let verifier = verifier_with(&settings(Some(&server.url), None, None), TIMING);
    let verifier = fetched(verifier).await;
    let verdict = verify(&verifier, &sim.rs256_token(&alice())).await;
    assert!(
        matches!(&verdict, Verdict::Unavailable(r) if r.contains("larger than")),
        "{verdict:?}"
    );
}

#[tokio::test]
async fn ec_keys_verify_es256_tokens_only() {
    let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let point = pair.public_key().as_ref();
    let (x, y) = point[1..].split_at(32);
    let jwks = json!({"keys": [{"kty": "EC", "kid": "ec-1", "crv": "P-256",
        "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y)}]});
    let server = HeldKeyServer::start(Bytes::from(jwks.to_string())).await;
    server.release.send_replace(true);
    let verifier = verifier_with(&settings(Some(&server.url), None, None), TIMING);
    let verifier = fetched(verifier).await;

    let pkcs8 = pair.to_pkcs8v1().unwrap();
    let key = EncodingKey::from_ec_der(pkcs8.as_ref());
    let claims = json!({"sub": "alice", "exp": jsonwebtoken::get_current_timestamp() + 600});
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("ec-1".to_owned());
    let token = jsonwebtoken::encode(&header, &claims, &key).unwrap();
    assert_eq!(verify(&verifier, &token).await, Verdict::Valid);
    let no_exp = jsonwebtoken::encode(&header, &json!({"sub": "alice"}), &key).unwrap();
    assert_invalid(&verify(&verifier, &no_exp).await, "no exp claim");
    let rsa_header = with_header(&token, json!({"alg": "RS256", "kid": "ec-1"}));
    assert_invalid(
        &verify(&verifier, &rsa_header).await,
        "does not fit its key",
    );
    assert_eq!(server.accepted.load(Ordering::SeqCst), 1);
}
