//! JWT verification at the edge against a real JWKS server: the happy path and identity
//! headers, every algorithm, scopes and issuers per route, key rotation through the unknown-`kid`
//! refetch, the IdP being down, OIDC discovery, and `authgate token`.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use http::Request;
use http_body_util::Full;
use jsonwebtoken::Algorithm;
use serde_json::json;
use support::idp::{claims, Idp, TestKey};
use support::{send, start_gateway, Reply, TestGateway};

/// A gateway with one route per case, all to builtin:echo, and the issuer `idp` at `jwks`.
fn config(issuer_block: &str) -> String {
    format!(
        r#"[server]
http = "127.0.0.1:0"

[admin]
listen = "127.0.0.1:0"

{issuer_block}

[[routes]]
id = "any"
path = "/any"
upstream = "builtin:echo"

[[routes]]
id = "write"
path = "/write"
upstream = "builtin:echo"
scopes = ["orders:read", "orders:write"]

[[routes]]
id = "other-issuer-only"
path = "/other"
upstream = "builtin:echo"
issuers = ["other"]

[[routes]]
id = "cookie"
path = "/cookie"
upstream = "builtin:echo"
cookie = "access_token"

[[routes]]
id = "public"
path = "/public"
upstream = "builtin:echo"
public = true
"#
    )
}

fn jwks_issuer(idp: &Idp, extra: &str) -> String {
    format!(
        "[[issuers]]\nid = \"idp\"\nissuer = \"{}\"\naudiences = [\"api\"]\njwks_url = \"{}\"\n{extra}\n\n[[issuers]]\nid = \"other\"\nissuer = \"https://other.test/\"\naudiences = [\"api\"]\nsecret = \"{}\"\n",
        idp.url(),
        idp.jwks_url(),
        "s".repeat(32)
    )
}

fn discovery_issuer(idp: &Idp) -> String {
    let static_other = jwks_issuer(idp, "");
    let other = &static_other[static_other.rfind("[[issuers]]").unwrap()..];
    format!("[[issuers]]\nid = \"idp\"\nissuer = \"{}\"\naudiences = [\"api\"]\ndiscovery = true\n\n{other}", idp.url())
}

async fn call(gateway: &TestGateway, path: &str, token: Option<&str>) -> Reply {
    let mut request = Request::get(gateway.url(path));
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    send(
        &support::http1_client(),
        request.body(Full::default()).unwrap(),
    )
    .await
}

async fn ready_gateway(idp: &Idp, extra: &str) -> TestGateway {
    let gateway = start_gateway(&config(&jwks_issuer(idp, extra))).await;
    idp.wait_for_fetches(1).await;
    wait_ready(&gateway).await;
    gateway
}

async fn wait_ready(gateway: &TestGateway) {
    let url = format!("http://{}/readyz", gateway.admin.unwrap());
    for _ in 0..500 {
        if support::get(&url).await.status() == 200 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("not ready within 5 s");
}

#[tokio::test]
async fn a_valid_token_passes_with_identity_headers_and_without_the_credential() {
    let key = TestKey::generate("k1", Algorithm::RS256);
    let idp = Idp::start(vec![key.jwk.clone()]).await;
    let gateway = ready_gateway(&idp, "").await;
    let token = key.sign(&claims(&idp.url(), "alice"));
    let request = Request::get(gateway.url("/any/orders"))
        .header("authorization", format!("Bearer {token}"))
        .header("x-auth-subject", "mallory")
        .header("connection", "x-auth-subject")
        .body(Full::default())
        .unwrap();
    let reply = send(&support::http1_client(), request).await;
    reply.assert_status(200);
    let seen = &reply.json()["headers"];
    assert_eq!(seen["x-auth-subject"], "alice");
    assert_eq!(seen["x-auth-method"], "jwt");
    assert_eq!(seen["x-auth-issuer"], idp.url());
    assert_eq!(seen["x-auth-scopes"], "orders:read");
    assert!(
        seen.get("authorization").is_none(),
        "the token is not forwarded: {seen}"
    );
    // The same token again (now from the cache) gives the same answer.
    let again = call(&gateway, "/any", Some(&token)).await;
    assert_eq!(again.json()["headers"]["x-auth-subject"], "alice");
}

#[tokio::test]
async fn every_supported_algorithm_verifies() {
    let keys: Vec<TestKey> = [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
    ]
    .into_iter()
    .enumerate()
    .map(|(i, alg)| TestKey::generate(&format!("k{i}"), alg))
    .collect();
    let idp = Idp::start(keys.iter().map(|k| k.jwk.clone()).collect()).await;
    let gateway = ready_gateway(&idp, "").await;
    for key in &keys {
        let reply = call(
            &gateway,
            "/any",
            Some(&key.sign(&claims(&idp.url(), "alice"))),
        )
        .await;
        assert_eq!(
            reply.status(),
            200,
            "{:?}: {}",
            key.alg,
            String::from_utf8_lossy(&reply.body)
        );
    }
    // HMAC through the `other` issuer's secret.
    let secret = jsonwebtoken::EncodingKey::from_secret("s".repeat(32).as_bytes());
    let mut hs_claims = claims("https://other.test/", "bob");
    hs_claims["aud"] = json!("api");
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(Algorithm::HS256),
        &hs_claims,
        &secret,
    )
    .unwrap();
    assert_eq!(call(&gateway, "/any", Some(&token)).await.status(), 200);
}

#[tokio::test]
async fn refusals_have_the_contract_status_and_challenge() {
    let key = TestKey::generate("k1", Algorithm::ES256);
    let idp = Idp::start(vec![key.jwk.clone()]).await;
    let gateway = ready_gateway(&idp, "").await;

    let none = call(&gateway, "/any", None).await;
    assert_eq!(none.status(), 401);
    assert_eq!(
        none.header("www-authenticate"),
        Some("Bearer realm=\"authgate\""),
        "no error without a credential"
    );
    assert_eq!(none.json()["error"], "unauthorized");
    assert_eq!(
        none.json()["request_id"],
        none.header("x-request-id").unwrap()
    );

    let mut expired = claims(&idp.url(), "alice");
    expired["exp"] = json!(authgate::auth::unix_now() - 3600);
    let reply = call(&gateway, "/any", Some(&key.sign(&expired))).await;
    assert_eq!(reply.status(), 401);
    let challenge = reply.header("www-authenticate").unwrap();
    assert!(
        challenge.starts_with(
            "Bearer realm=\"authgate\", error=\"invalid_token\", error_description=\""
        ),
        "{challenge}"
    );
    assert!(challenge.contains("expired"), "{challenge}");
    assert_eq!(reply.json()["error"], "invalid_token");

    let token = key.sign(&claims(&idp.url(), "alice"));
    let reply = call(&gateway, "/write", Some(&token)).await;
    assert_eq!(reply.status(), 403);
    let challenge = reply.header("www-authenticate").unwrap();
    assert!(
        challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );
    assert!(
        challenge.contains("scope=\"orders:read orders:write\""),
        "{challenge}"
    );
    let mut writer = claims(&idp.url(), "alice");
    writer["scp"] = json!(["orders:write"]);
    assert_eq!(
        call(&gateway, "/write", Some(&key.sign(&writer)))
            .await
            .status(),
        200
    );

    let reply = call(&gateway, "/other", Some(&token)).await;
    assert_eq!(
        reply.status(),
        401,
        "a token from an issuer the route does not accept"
    );

    let request = Request::get(gateway.url("/any"))
        .header("authorization", format!("Bearer {token}"))
        .header("authorization", format!("Bearer {token}"))
        .body(Full::default())
        .unwrap();
    let reply = send(&support::http1_client(), request).await;
    assert_eq!(reply.status(), 401);
    assert!(reply
        .header("www-authenticate")
        .unwrap()
        .contains("invalid_request"));

    // Public routes need nothing, and still strip identity headers.
    let reply = call(&gateway, "/public", None).await;
    assert_eq!(reply.status(), 200);
}

#[tokio::test]
async fn a_route_may_take_the_token_from_a_cookie_but_never_from_two_places() {
    let key = TestKey::generate("k1", Algorithm::EdDSA);
    let idp = Idp::start(vec![key.jwk.clone()]).await;
    let gateway = ready_gateway(&idp, "").await;
    let token = key.sign(&claims(&idp.url(), "carol"));
    let client = support::http1_client();
    let request = Request::get(gateway.url("/cookie"))
        .header("cookie", format!("theme=dark; access_token={token}"))
        .body(Full::default())
        .unwrap();
    let reply = send(&client, request).await;
    assert_eq!(reply.status(), 200);
    assert_eq!(reply.json()["headers"]["x-auth-subject"], "carol");
    assert_eq!(
        reply.json()["headers"]["cookie"],
        "theme=dark",
        "the token cookie is not forwarded"
    );
    let both = Request::get(gateway.url("/cookie"))
        .header("cookie", format!("access_token={token}"))
        .header("authorization", format!("Bearer {token}"))
        .body(Full::default())
        .unwrap();
    assert_eq!(send(&client, both).await.status(), 401);
    // Routes without `cookie` never read it.
    let request = Request::get(gateway.url("/any"))
        .header("cookie", format!("access_token={token}"))
        .body(Full::default())
        .unwrap();
    assert_eq!(send(&client, request).await.status(), 401);
}

#[tokio::test]
async fn a_rotated_in_key_works_after_one_refetch_and_a_removed_key_stops_working() {
    let old = TestKey::generate("old", Algorithm::RS256);
    let new = TestKey::generate("new", Algorithm::RS256);
    let idp = Idp::start(vec![old.jwk.clone()]).await;
    let gateway = ready_gateway(&idp, "refresh = \"1s\"\nrefetch_cooldown = \"200ms\"").await;
    let old_token = old.sign(&claims(&idp.url(), "alice"));
    assert_eq!(call(&gateway, "/any", Some(&old_token)).await.status(), 200);

    // The IdP publishes the new key; a token signed with it triggers one refetch and passes.
    idp.set_keys(vec![old.jwk.clone(), new.jwk.clone()]);
    tokio::time::sleep(Duration::from_millis(250)).await;
    let before = idp.fetches();
    let new_token = new.sign(&claims(&idp.url(), "alice"));
    let reply = call(&gateway, "/any", Some(&new_token)).await;
    reply.assert_status(200);
    assert!(
        idp.fetches() <= before + 1,
        "one refetch for the unknown kid"
    );

    // The old key is withdrawn: after the next refresh, its token (even cached) is refused.
    idp.set_keys(vec![new.jwk.clone()]);
    let refreshed = idp.fetches() + 1;
    idp.wait_for_fetches(refreshed).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let reply = call(&gateway, "/any", Some(&old_token)).await;
    reply.assert_status(401);
    assert_eq!(call(&gateway, "/any", Some(&new_token)).await.status(), 200);
}

#[tokio::test]
async fn a_thousand_unknown_kids_cause_at_most_one_fetch_per_cooldown() {
    let key = TestKey::generate("k1", Algorithm::ES256);
    let idp = Idp::start(vec![key.jwk.clone()]).await;
    let gateway = ready_gateway(&idp, "refetch_cooldown = \"10s\"").await;
    let before = idp.fetches();
    let client = support::http1_client();
    let mut requests = Vec::new();
    for i in 0..1000 {
        let header = json!({"alg": "ES256", "kid": format!("random-{i}")});
        let token = key.sign_with_header(&header, &claims(&idp.url(), "alice"));
        let request = Request::get(gateway.url("/any"))
            .header("authorization", format!("Bearer {token}"))
            .body(Full::default())
            .unwrap();
        let client = client.clone();
        requests.push(tokio::spawn(async move {
            send(&client, request).await.status()
        }));
    }
    for request in requests {
        assert_eq!(request.await.unwrap(), 401);
    }
    assert!(
        idp.fetches() <= before + 1,
        "{} fetches for 1000 unknown kids",
        idp.fetches() - before
    );
}

#[tokio::test]
async fn keys_never_obtained_give_503_and_readyz_waits_for_them() {
    let key = TestKey::generate("k1", Algorithm::RS256);
    let idp = Idp::start(vec![key.jwk.clone()]).await;
    idp.set_up(false);
    let gateway = start_gateway(&config(&jwks_issuer(&idp, "refresh = \"1s\""))).await;
    let token = key.sign(&claims(&idp.url(), "alice"));
    let reply = call(&gateway, "/any", Some(&token)).await;
    assert_eq!(
        reply.status(),
        503,
        "the gateway's own trouble is never a 401"
    );
    assert_eq!(reply.json()["error"], "temporarily_unavailable");
    assert!(reply.json()["error_description"]
        .as_str()
        .unwrap()
        .contains("keys"));
    // /readyz says what it waits for, and why the last fetch failed.
    let mut waiting = String::new();
    for _ in 0..50 {
        let readyz = support::get(&format!("http://{}/readyz", gateway.admin.unwrap())).await;
        assert_eq!(readyz.status(), 503);
        waiting = readyz.json()["waiting_for"][0]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if waiting.contains("last fetch") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(waiting.starts_with("keys of issuer `idp`"), "{waiting}");
    assert!(waiting.contains("last fetch"), "{waiting}");

    // The IdP comes back: the retry loop fetches the keys and the gateway becomes ready.
    idp.set_up(true);
    wait_ready(&gateway).await;
    assert_eq!(call(&gateway, "/any", Some(&token)).await.status(), 200);
}

#[tokio::test]
async fn an_idp_outage_keeps_the_last_good_keys_serving() {
    let key = TestKey::generate("k1", Algorithm::PS256);
    let idp = Idp::start(vec![key.jwk.clone()]).await;
    let gateway = ready_gateway(&idp, "refresh = \"1s\"\nrefetch_cooldown = \"100ms\"").await;
    idp.set_up(false);
    let failed_refresh = idp.fetches();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let _ = failed_refresh;
    for i in 0..5 {
        let token = key.sign(&claims(&idp.url(), &format!("user{i}")));
        assert_eq!(call(&gateway, "/any", Some(&token)).await.status(), 200);
    }
    assert_eq!(
        support::get(&format!("http://{}/readyz", gateway.admin.unwrap()))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn oidc_discovery_finds_the_keys_and_refuses_a_document_for_another_issuer() {
    let key = TestKey::generate("k1", Algorithm::ES384);
    let idp = Idp::start(vec![key.jwk.clone()]).await;
    let block = discovery_issuer(&idp);
    let gateway = start_gateway(&config(&block)).await;
    idp.wait_for_fetches(1).await;
    wait_ready(&gateway).await;
    assert_eq!(
        call(
            &gateway,
            "/any",
            Some(&key.sign(&claims(&idp.url(), "dave")))
        )
        .await
        .status(),
        200
    );

    let impostor = Idp::start(vec![key.jwk.clone()]).await;
    impostor.claim_issuer("https://someone-else.test/");
    let block = discovery_issuer(&impostor);
    let gateway = start_gateway(&config(&block)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        impostor
            .discovery_fetches
            .load(std::sync::atomic::Ordering::SeqCst)
            >= 1
    );
    assert_eq!(
        impostor.fetches(),
        0,
        "the keys of a mismatched discovery document are not fetched"
    );
    let reply = call(
        &gateway,
        "/any",
        Some(&key.sign(&claims(&impostor.url(), "dave"))),
    )
    .await;
    assert_eq!(reply.status(), 503);
    // /readyz says which issuer the document named and which was expected.
    let readyz = support::get(&format!("http://{}/readyz", gateway.admin.unwrap())).await;
    let waiting = readyz.json()["waiting_for"][0]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        waiting.contains("names issuer \"https://someone-else.test/\"")
            && waiting.contains(&format!("not the configured \"{}\"", impostor.url())),
        "{waiting}"
    );
}

#[tokio::test]
async fn a_reload_keeps_the_fetched_keys() {
    let key = TestKey::generate("k1", Algorithm::RS256);
    let idp = Idp::start(vec![key.jwk.clone()]).await;
    let gateway = ready_gateway(&idp, "").await;
    let token = key.sign(&claims(&idp.url(), "alice"));
    idp.set_up(false);
    // Same issuers, other routes: the key set carries over, no refetch needed.
    let text = config(&jwks_issuer(&idp, "")).replace("path = \"/any\"", "path = \"/renamed\"");
    let path = gateway.dir.path().join("gateway.toml");
    std::fs::write(&path, text).unwrap();
    let reloaded = authgate::config::Config::load(&path).unwrap();
    gateway.gateway.as_ref().unwrap().reload(reloaded).unwrap();
    assert_eq!(call(&gateway, "/renamed", Some(&token)).await.status(), 200);
}

#[test]
fn authgate_token_mints_tokens_the_gateway_accepts() {
    for alg in [Algorithm::ES256, Algorithm::EdDSA, Algorithm::RS256] {
        mint_and_verify(alg);
    }
}

fn mint_and_verify(alg: Algorithm) {
    let key = TestKey::generate("dev-1", alg);
    let dir = tempfile::tempdir().unwrap();
    support::write_file(dir.path(), "dev.pem", &key.private_pem);
    let config = "[server]\nhttp = \"127.0.0.1:0\"\n\n[[issuers]]\nid = \"dev\"\nissuer = \"https://dev.test/\"\naudiences = [\"api\"]\nprivate_key = \"dev.pem\"\nkey_id = \"dev-1\"\n\n[[routes]]\nid = \"r\"\nupstream = \"builtin:echo\"\n";
    support::write_file(dir.path(), "gateway.toml", config);
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_authgate"))
        .current_dir(dir.path())
        .args([
            "token",
            "--issuer",
            "dev",
            "--sub",
            "erin",
            "--scope",
            "a b",
            "--ttl",
            "5m",
            "--claim",
            "email=erin@example.com",
            "--claim",
            "level=3",
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let token = String::from_utf8(output.stdout).unwrap().trim().to_string();

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let gateway = support::start_gateway_in(dir, config).await;
        let reply = call(&gateway, "/x", Some(&token)).await;
        reply.assert_status(200);
        assert_eq!(reply.json()["headers"]["x-auth-subject"], "erin");
        assert_eq!(reply.json()["headers"]["x-auth-scopes"], "a b");
    });
    let parts: Vec<&str> = token.split('.').collect();
    let payload: serde_json::Value =
        serde_json::from_slice(&support::idp::b64_decode(parts[1])).unwrap();
    assert_eq!(payload["email"], "erin@example.com");
    assert_eq!(payload["level"], 3);
    assert_eq!(
        payload["exp"].as_i64().unwrap() - payload["iat"].as_i64().unwrap(),
        300
    );
}
