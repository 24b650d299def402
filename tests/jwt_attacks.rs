//! Known attacks on JWT verifiers, each against a real gateway whose issuer publishes an RSA and
//! an EC key through a real JWKS server. Every one must be a 401 (or 431 for a giant header),
//! answered promptly, and never reach the upstream.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::Request;
use http_body_util::Full;
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};
use support::idp::{b64, claims, Idp, TestKey};
use support::{send, start_gateway, TestGateway};

struct Setup {
    rsa: TestKey,
    ec: TestKey,
    idp: Idp,
    gateway: TestGateway,
}

async fn setup() -> Setup {
    let rsa = TestKey::generate("rsa-1", Algorithm::RS256);
    let ec = TestKey::generate("ec-1", Algorithm::ES256);
    let idp = Idp::start(vec![rsa.jwk.clone(), ec.jwk.clone()]).await;
    let config = format!(
        "[server]\nhttp = \"127.0.0.1:0\"\n\n[[issuers]]\nid = \"idp\"\nissuer = \"{}\"\naudiences = [\"api\"]\njwks_url = \"{}\"\nrefetch_cooldown = \"1m\"\n\n[[routes]]\nid = \"r\"\nupstream = \"builtin:echo\"\n",
        idp.url(),
        idp.jwks_url()
    );
    let gateway = start_gateway(&config).await;
    idp.wait_for_fetches(1).await;
    let setup = Setup {
        rsa,
        ec,
        idp,
        gateway,
    };
    // Wait until the keys are in: a genuine token passes.
    for _ in 0..500 {
        if status(&setup, &setup.rsa.sign(&setup.claims())).await == 200 {
            return setup;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the gateway never accepted a genuine token");
}

impl Setup {
    fn claims(&self) -> Value {
        claims(&self.idp.url(), "alice")
    }
}

async fn status(setup: &Setup, token: &str) -> u16 {
    let request = Request::get(setup.gateway.url("/resource"))
        .header("authorization", format!("Bearer {token}"))
        .body(Full::default())
        .unwrap();
    send(&support::http1_client(), request).await.status()
}

/// Asserts `token` is refused with 401, within a second.
async fn refused(setup: &Setup, token: &str) {
    let started = Instant::now();
    assert_eq!(status(setup, token).await, 401, "accepted: {token}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "slow refusal: {:?}",
        started.elapsed()
    );
}

/// A token with this header and claims and a signature of `signature` bytes.
fn forged(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes()),
        b64(signature)
    )
}

#[tokio::test]
async fn alg_none_in_any_casing() {
    let s = setup().await;
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = json!({"alg": alg, "kid": "rsa-1"});
        refused(&s, &forged(&header, &s.claims(), b"")).await;
        refused(
            &s,
            &format!(
                "{}.",
                forged(&header, &s.claims(), b"").trim_end_matches('.')
            ),
        )
        .await;
        refused(&s, &forged(&header, &s.claims(), b"sig")).await;
    }
}

#[tokio::test]
async fn hs256_signed_with_the_rsa_public_key() {
    let s = setup().await;
    let header = json!({"alg": "HS256", "kid": "rsa-1", "typ": "JWT"});
    let signing_input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(s.claims().to_string().as_bytes())
    );
    for secret in [
        s.rsa.public_pem.as_bytes().to_vec(),
        serde_json::to_vec(&s.rsa.jwk).unwrap(),
    ] {
        let key = jsonwebtoken::EncodingKey::from_secret(&secret);
        let signature =
            jsonwebtoken::crypto::sign(signing_input.as_bytes(), &key, Algorithm::HS256).unwrap();
        refused(&s, &format!("{signing_input}.{signature}")).await;
    }
}

#[tokio::test]
async fn ecdsa_with_r_and_s_zero() {
    let s = setup().await;
    let header = json!({"alg": "ES256", "kid": "ec-1"});
    refused(&s, &forged(&header, &s.claims(), &[0u8; 64])).await;
    let header = json!({"alg": "ES256"});
    refused(&s, &forged(&header, &s.claims(), &[0u8; 64])).await;
}

#[tokio::test]
async fn an_embedded_jwk_is_never_used() {
    let s = setup().await;
    let attacker = TestKey::generate("rsa-1", Algorithm::RS256);
    let header = json!({"alg": "RS256", "kid": "rsa-1", "jwk": attacker.jwk});
    refused(&s, &attacker.sign_with_header(&header, &s.claims())).await;
    let header = json!({"alg": "RS256", "jwk": attacker.jwk});
    refused(&s, &attacker.sign_with_header(&header, &s.claims())).await;
}

#[tokio::test]
async fn jku_and_x5u_are_never_followed() {
    let s = setup().await;
    let attacker = TestKey::generate("evil", Algorithm::RS256);
    // A listener that counts every connection made to it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    tokio::spawn(async move {
        while listener.accept().await.is_ok() {
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });
    let url = format!("http://{address}/jwks.json");
    for header in [
        json!({"alg": "RS256", "kid": "evil", "jku": url}),
        json!({"alg": "RS256", "kid": "evil", "x5u": url}),
        json!({"alg": "RS256", "jku": url}),
    ] {
        refused(&s, &attacker.sign_with_header(&header, &s.claims())).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        connections.load(Ordering::SeqCst),
        0,
        "the gateway connected to a URL from a token"
    );
}

#[tokio::test]
async fn path_like_and_huge_kids_are_only_lookup_keys() {
    let s = setup().await;
    for kid in [
        "../../dev/null".to_string(),
        "/etc/passwd".to_string(),
        "x".repeat(10 * 1024),
    ] {
        let header = json!({"alg": "RS256", "kid": kid});
        refused(&s, &s.rsa.sign_with_header(&header, &s.claims())).await;
    }
}

#[tokio::test]
async fn time_claims_are_enforced() {
    let s = setup().await;
    let now = authgate::auth::unix_now();
    let with = |key: &str, value: Value| {
        let mut c = s.claims();
        c[key] = value;
        c
    };
    refused(&s, &s.rsa.sign(&with("exp", json!(now - 120)))).await;
    refused(&s, &s.rsa.sign(&with("nbf", json!(now + 600)))).await;
    refused(&s, &s.rsa.sign(&with("iat", json!(now + 600)))).await;
    refused(
        &s,
        &s.rsa.sign(&with("exp", json!((now + 3600).to_string()))),
    )
    .await;
    let mut no_exp = s.claims();
    no_exp.as_object_mut().unwrap().remove("exp");
    refused(&s, &s.rsa.sign(&no_exp)).await;
}

#[tokio::test]
async fn issuer_and_audience_are_enforced() {
    let s = setup().await;
    let with = |key: &str, value: Value| {
        let mut c = s.claims();
        c[key] = value;
        c
    };
    let without = |key: &str| {
        let mut c = s.claims();
        c.as_object_mut().unwrap().remove(key);
        c
    };
    refused(&s, &s.rsa.sign(&with("iss", json!("https://evil.test/")))).await;
    refused(
        &s,
        &s.rsa.sign(&with("iss", json!(format!("{}/", s.idp.url())))),
    )
    .await;
    refused(&s, &s.rsa.sign(&without("iss"))).await;
    refused(&s, &s.rsa.sign(&with("aud", json!("other-api")))).await;
    refused(&s, &s.rsa.sign(&with("aud", json!([])))).await;
    refused(&s, &s.rsa.sign(&without("aud"))).await;
}

#[tokio::test]
async fn unknown_critical_headers_fail() {
    let s = setup().await;
    let header = json!({"alg": "RS256", "kid": "rsa-1", "crit": ["exp"], "exp": 1});
    refused(&s, &s.rsa.sign_with_header(&header, &s.claims())).await;
}

#[tokio::test]
async fn structural_forgeries_fail() {
    let s = setup().await;
    let genuine = s.rsa.sign(&s.claims());
    let (signing_input, _) = genuine.rsplit_once('.').unwrap();
    refused(&s, &format!("{genuine}.extra")).await;
    refused(&s, &format!("{signing_input}.")).await;
    refused(&s, signing_input).await;
    // A signature that is valid for other claims.
    let other = s.rsa.sign(&claims(&s.idp.url(), "mallory"));
    let (_, other_signature) = other.rsplit_once('.').unwrap();
    refused(&s, &format!("{signing_input}.{other_signature}")).await;
    // Duplicate claims: one parser's `alice` is another's `admin`.
    let header = b64(json!({"alg": "ES256", "kid": "ec-1"})
        .to_string()
        .as_bytes());
    let body = format!(
        r#"{{"iss":"{}","aud":"api","sub":"alice","sub":"admin","exp":{}}}"#,
        s.idp.url(),
        authgate::auth::unix_now() + 600
    );
    let input = format!("{header}.{}", b64(body.as_bytes()));
    let signature =
        jsonwebtoken::crypto::sign(input.as_bytes(), &s.ec.encoding, Algorithm::ES256).unwrap();
    refused(&s, &format!("{input}.{signature}")).await;
}

#[tokio::test]
async fn a_one_megabyte_token_is_refused_fast() {
    let s = setup().await;
    let huge = format!(
        "{}.{}.{}",
        "a".repeat(400_000),
        "b".repeat(400_000),
        "c".repeat(248_576)
    );
    let started = Instant::now();
    let mut stream = tokio::net::TcpStream::connect(s.gateway.http.unwrap())
        .await
        .unwrap();
    let request =
        format!("GET /resource HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {huge}\r\n\r\n");
    // The gateway may stop reading once the head is over its limit; the write may then fail.
    let _ = tokio::io::AsyncWriteExt::write_all(&mut stream, request.as_bytes()).await;
    let mut response = Vec::new();
    let _ = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut response),
    )
    .await;
    let text = String::from_utf8_lossy(&response);
    assert!(
        text.starts_with("HTTP/1.1 431") || text.starts_with("HTTP/1.1 401"),
        "{text}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}
