//! What identity providers and JOSE libraries actually send: PEM keys (which carry no kid)
//! verifying tokens that name one, tokens in an algorithm the issuer leaves out, and RFC 9864's
//! fully-specified `Ed25519` algorithm name, in tokens and in published keys.
#![allow(clippy::unwrap_used)]

mod support;

use http::Request;
use http_body_util::Full;
use jsonwebtoken::Algorithm;
use serde_json::json;
use support::idp::{claims, Idp, TestKey};
use support::{send, start_gateway, start_gateway_in, Reply, TestGateway};

fn route() -> &'static str {
    "[[routes]]\nid = \"any\"\npath = \"/any\"\nupstream = \"builtin:echo\"\n"
}

async fn call(gateway: &TestGateway, token: &str) -> Reply {
    let request = Request::get(gateway.url("/any"))
        .header("authorization", format!("Bearer {token}"))
        .body(Full::default())
        .unwrap();
    send(&support::http1_client(), request).await
}

fn description(reply: &Reply) -> String {
    reply.json()["error_description"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn a_pem_key_verifies_tokens_that_name_a_kid_and_the_signature_still_decides() {
    let key = TestKey::generate("idp-key-2026", Algorithm::RS256);
    let stranger = TestKey::generate("idp-key-2026", Algorithm::RS256);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("idp.pub.pem"), &key.public_pem).unwrap();
    let issuer = "https://pem.idp.test/";
    let config = format!(
        "[server]\nhttp = \"127.0.0.1:0\"\n\n[[issuers]]\nid = \"pem\"\nissuer = \"{issuer}\"\naudiences = [\"api\"]\nalgorithms = [\"RS256\"]\nkeys = [\"idp.pub.pem\"]\n\n{}",
        route()
    );
    let gateway = start_gateway_in(dir, &config).await;
    // The IdP's token names its kid; the PEM key has none, and is a candidate all the same.
    let reply = call(&gateway, &key.sign(&claims(issuer, "alice"))).await;
    reply.assert_status(200);
    assert_eq!(reply.json()["headers"]["x-auth-subject"], "alice");
    // Another key under the same kid: the signature decides.
    let forged = call(&gateway, &stranger.sign(&claims(issuer, "mallory"))).await;
    forged.assert_status(401);
    assert_eq!(description(&forged), "the token's signature is invalid");
}

#[tokio::test]
async fn a_token_in_an_algorithm_the_issuer_leaves_out_is_not_accepted_and_fetches_nothing() {
    let key = TestKey::generate("ec-1", Algorithm::ES256);
    let idp = Idp::start(vec![key.jwk.clone()]).await;
    let config = format!(
        "[server]\nhttp = \"127.0.0.1:0\"\n\n[[issuers]]\nid = \"idp\"\nissuer = \"{}\"\naudiences = [\"api\"]\nalgorithms = [\"ES256\"]\njwks_url = \"{}\"\nrefetch_cooldown = \"1ms\"\n\n{}",
        idp.url(),
        idp.jwks_url(),
        route()
    );
    let gateway = start_gateway(&config).await;
    idp.wait_for_fetches(1).await;
    let good = call(&gateway, &key.sign(&claims(&idp.url(), "alice"))).await;
    good.assert_status(200);
    let fetches = idp.fetches();
    // An RS256 token with a kid the set lacks: not an unknown key, and no refetch for it.
    let rsa = TestKey::generate("rsa-new", Algorithm::RS256);
    for _ in 0..3 {
        let refused = call(&gateway, &rsa.sign(&claims(&idp.url(), "alice"))).await;
        refused.assert_status(401);
        assert_eq!(
            description(&refused),
            "the token's algorithm is not accepted"
        );
    }
    assert_eq!(
        idp.fetches(),
        fetches,
        "a token in a refused algorithm caused a key fetch"
    );
}

#[tokio::test]
async fn the_fully_specified_ed25519_name_is_accepted_in_tokens_and_published_keys() {
    let key = TestKey::generate("ed-1", Algorithm::EdDSA);
    let mut jwk = key.jwk.clone();
    jwk["alg"] = json!("Ed25519");
    let idp = Idp::start(vec![jwk]).await;
    let config = format!(
        "[server]\nhttp = \"127.0.0.1:0\"\n\n[[issuers]]\nid = \"idp\"\nissuer = \"{}\"\naudiences = [\"api\"]\nalgorithms = [\"Ed25519\"]\njwks_url = \"{}\"\n\n{}",
        idp.url(),
        idp.jwks_url(),
        route()
    );
    let gateway = start_gateway(&config).await;
    idp.wait_for_fetches(1).await;
    for alg in ["Ed25519", "EdDSA"] {
        let token = key.sign_with_header(
            &json!({"alg": alg, "kid": "ed-1", "typ": "JWT"}),
            &claims(&idp.url(), "alice"),
        );
        let mut reply = call(&gateway, &token).await;
        for _ in 0..50 {
            if reply.status() != 503 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            reply = call(&gateway, &token).await;
        }
        reply.assert_status(200);
    }
}

fn hmac_config(extra: &str) -> String {
    format!(
        "[server]\nhttp = \"127.0.0.1:0\"\n\n[[issuers]]\nid = \"hs\"\nissuer = \"https://hs.test/\"\naudiences = [\"api\"]\nsecret = \"{}\"\n{extra}\n\n{}",
        "k".repeat(32),
        route()
    )
}

fn hmac_token(header: serde_json::Value, claims: serde_json::Value) -> String {
    let key = jsonwebtoken::EncodingKey::from_secret("k".repeat(32).as_bytes());
    let signing_input = format!(
        "{}.{}",
        support::idp::b64(header.to_string().as_bytes()),
        support::idp::b64(claims.to_string().as_bytes())
    );
    let signature =
        jsonwebtoken::crypto::sign(signing_input.as_bytes(), &key, Algorithm::HS256).unwrap();
    format!("{signing_input}.{signature}")
}

fn base_claims() -> serde_json::Value {
    json!({"iss": "https://hs.test/", "aud": "api", "exp": authgate::auth::unix_now() + 600})
}

#[tokio::test]
async fn subject_claim_names_the_caller_of_tokens_without_sub() {
    let gateway = start_gateway(&hmac_config("subject_claim = \"client_id\"")).await;
    let mut claims = base_claims();
    claims["client_id"] = json!("billing-job");
    let header = json!({"alg": "HS256", "typ": "JWT"});
    let reply = call(&gateway, &hmac_token(header.clone(), claims)).await;
    reply.assert_status(200);
    assert_eq!(reply.json()["headers"]["x-auth-subject"], "billing-job");
    let mut without = base_claims();
    without["sub"] = json!("alice");
    let refused = call(&gateway, &hmac_token(header, without)).await;
    refused.assert_status(401);
    assert!(
        description(&refused).contains("subject_claim"),
        "{}",
        description(&refused)
    );
}

#[tokio::test]
async fn an_issuer_may_require_a_typ_and_media_types_compare_as_rfc_7515_says() {
    let gateway = start_gateway(&hmac_config("typ = \"at+jwt\"")).await;
    let mut claims = base_claims();
    claims["sub"] = json!("alice");
    for (typ, status) in [
        (Some("at+jwt"), 200),
        (Some("application/AT+JWT"), 200),
        (Some("JWT"), 401),
        (None, 401),
    ] {
        let mut header = json!({"alg": "HS256"});
        if let Some(typ) = typ {
            header["typ"] = json!(typ);
        }
        let reply = call(&gateway, &hmac_token(header, claims.clone())).await;
        assert_eq!(reply.status(), status, "typ {typ:?}: {}", reply.text());
    }
}

/// An IdP slower than the 2 s a request waits (but within the fetch's own 5 s): the request
/// gives up, the refetch does not, and the rotated key arrives without waiting for the next
/// periodic refresh. With discovery, the refetch is one fetch (the JWKS), not two in a row.
#[tokio::test]
async fn a_refetch_outlives_the_wait_of_the_request_that_started_it() {
    let old = TestKey::generate("old", Algorithm::ES256);
    let idp = Idp::start(vec![old.jwk.clone()]).await;
    let config = format!(
        "[server]\nhttp = \"127.0.0.1:0\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n[[issuers]]\nid = \"idp\"\nissuer = \"{}\"\naudiences = [\"api\"]\nalgorithms = [\"ES256\"]\ndiscovery = true\nrefresh = \"1h\"\nrefetch_cooldown = \"1h\"\n\n{}",
        idp.url(),
        route()
    );
    let gateway = start_gateway(&config).await;
    idp.wait_for_fetches(1).await;
    call(&gateway, &old.sign(&claims(&idp.url(), "alice")))
        .await
        .assert_status(200);
    let discoveries = idp
        .discovery_fetches
        .load(std::sync::atomic::Ordering::SeqCst);

    // The IdP rotates in a new key and becomes slow.
    let new = TestKey::generate("new", Algorithm::ES256);
    idp.set_keys(vec![old.jwk.clone(), new.jwk.clone()]);
    idp.set_delay(std::time::Duration::from_millis(2600));
    let token = new.sign(&claims(&idp.url(), "bob"));
    let started = std::time::Instant::now();
    let first = call(&gateway, &token).await;
    first.assert_status(401);
    assert!(
        started.elapsed() < std::time::Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );
    // The fetch goes on and lands; with a 1 h cooldown and refresh, nothing else could bring
    // the key in.
    let mut status = 0;
    for _ in 0..60 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        status = call(&gateway, &token).await.status();
        if status == 200 {
            break;
        }
    }
    assert_eq!(status, 200, "the rotated key never arrived");
    assert_eq!(
        idp.discovery_fetches
            .load(std::sync::atomic::Ordering::SeqCst),
        discoveries,
        "the refetch fetched the discovery document again"
    );
    let metrics = support::get(&format!("http://{}/metrics", gateway.admin.unwrap())).await;
    assert!(
        metrics
            .text()
            .contains("authgate_jwks_refetch_wait_abandoned_total{issuer=\"idp\"} 1"),
        "{}",
        metrics.text()
    );
}
