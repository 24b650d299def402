//! The per-request cost of JWT verification: each algorithm with the cache off (parse, key
//! selection, signature, claims), and a verified-token cache hit.
//!
//! ```sh
//! cargo bench --bench jwt
//! ```
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;

use authgate::auth::keys::{self, KeySet, Origin};
use authgate::auth::{jwt, unix_now, Authenticator};
use authgate::config::{AuthRequirement, IssuerSettings, KeySource};
use criterion::{criterion_group, criterion_main, Criterion};
use http::HeaderMap;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

const ISSUER: &str = "https://idp.example.com/";

/// A key pair for `alg`: the signing key and the public JWK.
fn key_pair(alg: Algorithm) -> (EncodingKey, serde_json::Value) {
    if alg == Algorithm::HS256 {
        let secret = [7u8; 32];
        let jwk = json!({"kty": "oct", "k": base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, secret), "kid": "k"});
        return (EncodingKey::from_secret(&secret), jwk);
    }
    let rcgen_alg = match alg {
        Algorithm::RS256 | Algorithm::PS256 => &rcgen::PKCS_RSA_SHA256,
        Algorithm::ES256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        _ => &rcgen::PKCS_ED25519,
    };
    let pair = rcgen::KeyPair::generate_for(rcgen_alg).unwrap();
    let pem = pair.serialize_pem();
    let encoding = match alg {
        Algorithm::RS256 | Algorithm::PS256 => EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
        Algorithm::ES256 => EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
        _ => EncodingKey::from_ed_pem(pem.as_bytes()).unwrap(),
    };
    let mut jwk = if alg == Algorithm::EdDSA {
        json!({"kty": "OKP", "crv": "Ed25519", "x": base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, pair.public_key_raw())})
    } else {
        serde_json::to_value(jsonwebtoken::jwk::Jwk::from_encoding_key(&encoding, alg).unwrap())
            .unwrap()
    };
    jwk["kid"] = json!("k");
    (encoding, jwk)
}

fn token(encoding: &EncodingKey, alg: Algorithm) -> String {
    let mut header = Header::new(alg);
    header.kid = Some("k".into());
    let claims = json!({"iss": ISSUER, "sub": "alice", "aud": "api", "exp": unix_now() + 3600, "iat": unix_now(), "scope": "orders:read"});
    jsonwebtoken::encode(&header, &claims, encoding).unwrap()
}

fn benches(c: &mut Criterion) {
    let audiences = vec!["api".to_string()];
    for alg in [
        Algorithm::HS256,
        Algorithm::RS256,
        Algorithm::PS256,
        Algorithm::ES256,
        Algorithm::EdDSA,
    ] {
        let (encoding, jwk) = key_pair(alg);
        let (set, _) =
            KeySet::from_jwks(&json!({"keys": [jwk]}), Origin::Local, &keys::SUPPORTED).unwrap();
        let token = token(&encoding, alg);
        c.bench_function(
            &format!("verify {}, cache off", keys::algorithm_name(alg)),
            |b| {
                b.iter(|| {
                    let parsed = jwt::parse(black_box(&token)).unwrap();
                    jwt::verify_signature(&parsed, &set).unwrap();
                    let rules = jwt::ClaimRules {
                        issuer: ISSUER,
                        audiences: &audiences,
                        subject_claim: "sub",
                        leeway: 30,
                        now: unix_now(),
                    };
                    jwt::validate_claims(jwt::parse_claims(&parsed.payload).unwrap(), &rules)
                        .unwrap()
                })
            },
        );
    }

    // The whole authenticate step (header extraction included) on a cache hit.
    let (encoding, jwk) = key_pair(Algorithm::RS256);
    let (set, _) =
        KeySet::from_jwks(&json!({"keys": [jwk]}), Origin::Local, &keys::SUPPORTED).unwrap();
    let settings = IssuerSettings {
        id: "idp".into(),
        issuer: ISSUER.into(),
        audiences: audiences.clone(),
        algorithms: keys::SUPPORTED.to_vec(),
        keys: KeySource::Static(set),
        signing: None,
        leeway: std::time::Duration::from_secs(30),
        required_for_ready: true,
        roles_claim: "roles".into(),
        subject_claim: "sub".into(),
        typ: None,
    };
    let requirement = AuthRequirement {
        jwt: true,
        scopes: vec!["orders:read".into()],
        ..Default::default()
    };
    let mut headers = HeaderMap::new();
    headers.insert(
        "authorization",
        format!("Bearer {}", token(&encoding, Algorithm::RS256))
            .parse()
            .unwrap(),
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    for (name, cache_size) in [
        ("authenticate RS256, cache hit", 100_000),
        ("authenticate RS256, cache off", 0),
    ] {
        let authenticator = Authenticator::new(
            std::slice::from_ref(&settings),
            None,
            cache_size,
            None,
            None,
        );
        c.bench_function(name, |b| {
            b.iter(|| {
                runtime
                    .block_on(authenticator.authenticate(&requirement, black_box(&headers)))
                    .unwrap()
            })
        });
    }
}

criterion_group!(jwt_benches, benches);
criterion_main!(jwt_benches);
