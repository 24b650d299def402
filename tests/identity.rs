//! Identity headers that cannot be spoofed, claims mapped to headers, role and claim rules,
//! and the signed identity assertion verified by the example backend.
#![allow(clippy::unwrap_used)]

mod support;

#[allow(dead_code)]
#[path = "../examples/assertion_backend.rs"]
mod assertion_backend;

use std::sync::Arc;

use http::Request;
use http_body_util::Full;
use serde_json::{json, Value};
use support::{send, start_gateway_in, upstream, Reply, TestGateway};

const SECRET: &str = "an-hmac-secret-of-at-least-32-bytes!";

fn token(claims: Value) -> String {
    let mut full = json!({"iss": "https://dev.test/", "aud": "api", "sub": "alice", "exp": authgate::auth::unix_now() + 600});
    for (name, value) in claims.as_object().unwrap() {
        full[name] = value.clone();
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &full,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn config(upstream_url: &str, extra: &str) -> String {
    format!(
        r#"[server]
http = "127.0.0.1:0"

[admin]
listen = "127.0.0.1:0"

[identity]
claims = {{ email = "X-User-Email", "org.name" = "X-Auth-Org", groups = "X-Auth-Groups", level = "X-Auth-Level" }}
{extra}

[[issuers]]
id = "dev"
issuer = "https://dev.test/"
audiences = ["api"]
secret = "{SECRET}"
roles_claim = "realm_access.roles"

[[routes]]
id = "public"
path = "/public"
upstream = "{upstream_url}"
public = true

[[routes]]
id = "protected"
path = "/protected"
upstream = "{upstream_url}"

[[routes]]
id = "admin"
path = "/admin"
upstream = "{upstream_url}"
roles = ["admin", "operator"]
claims = {{ tenant = "acme", "org.tier" = 2 }}
"#
    )
}

async fn gateway(upstream_url: &str, extra: &str) -> TestGateway {
    start_gateway_in(tempfile::tempdir().unwrap(), &config(upstream_url, extra)).await
}

fn spoofing_request(url: &str, token: Option<&str>) -> Request<Full<bytes::Bytes>> {
    let mut request = Request::get(url)
        .header("X-Auth-Subject", "admin")
        .header("x-auth-subject", "root")
        .header("X_Auth_Subject", "admin")
        .header("X-AUTH-METHOD", "api_key")
        .header("x_auth_scopes", "everything")
        .header("X-User-Email", "ceo@example.com")
        .header("x_user_email", "ceo@example.com")
        .header("X-Auth-Assertion", "forged")
        .header("Connection", "X-Auth-Subject, X-User-Email");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    request.body(Full::default()).unwrap()
}

#[tokio::test]
async fn no_spoofed_identity_header_reaches_the_upstream_on_any_route_or_protocol() {
    let up = upstream::start("up").await;
    let gateway = gateway(&up.url(), "").await;
    let token = token(json!({"email": "alice@example.com"}));
    for client in [support::http1_client(), support::http2_client()] {
        // Public route: every spoofed header is gone, none is set.
        let reply = send(&client, spoofing_request(&gateway.url("/public"), None)).await;
        assert_eq!(reply.status(), 200);
        let seen = &reply.json()["headers"];
        for name in [
            "x-auth-subject",
            "x_auth_subject",
            "x-auth-method",
            "x_auth_scopes",
            "x-user-email",
            "x_user_email",
            "x-auth-assertion",
        ] {
            assert!(
                seen.get(name).is_none(),
                "{name} reached a public route: {seen}"
            );
        }
        // Protected route: exactly the gateway's values, once each, despite `Connection`.
        let reply = send(
            &client,
            spoofing_request(&gateway.url("/protected"), Some(&token)),
        )
        .await;
        reply.assert_status(200);
        let seen = &reply.json()["headers"];
        assert_eq!(seen["x-auth-subject"], "alice", "{seen}");
        assert_eq!(seen["x-auth-method"], "jwt");
        assert_eq!(seen["x-user-email"], "alice@example.com");
        for name in [
            "x_auth_subject",
            "x_auth_scopes",
            "x_user_email",
            "x-auth-scopes",
            "x-auth-assertion",
        ] {
            assert!(
                seen.get(name).is_none(),
                "{name} reached a protected route: {seen}"
            );
        }
    }
}

#[tokio::test]
async fn claims_become_headers_and_unsafe_values_are_refused() {
    let up = upstream::start("up").await;
    let gateway = gateway(&up.url(), "").await;
    let client = support::http1_client();
    let call = |token: String| {
        let request = Request::get(gateway.url("/protected"))
            .header("authorization", format!("Bearer {token}"))
            .body(Full::default())
            .unwrap();
        let client = client.clone();
        async move { send(&client, request).await }
    };
    let reply = call(token(json!({
        "email": "josé@example.com",
        "org": {"name": "Acme Corp"},
        "groups": ["eng", "ops"],
        "level": 7,
    })))
    .await;
    assert_eq!(reply.status(), 200);
    let seen = &reply.json()["headers"];
    assert_eq!(
        seen["x-user-email"], "josé@example.com",
        "UTF-8 passes as its bytes"
    );
    assert_eq!(
        seen["x-auth-org"], "Acme Corp",
        "nested claims by dotted path"
    );
    assert_eq!(
        seen["x-auth-groups"], "eng ops",
        "arrays joined with spaces"
    );
    assert_eq!(seen["x-auth-level"], "7");

    for evil in [
        json!({"email": "a@example.com\r\nX-Auth-Subject: admin"}),
        json!({"org": {"name": "x\nInjected: 1"}}),
        json!({"groups": ["ok", "bad\u{0}"]}),
        json!({"sub": "alice\r\nX-Admin: true"}),
    ] {
        let reply: Reply = call(token(evil.clone())).await;
        assert_eq!(reply.status(), 401, "{evil}");
        assert_eq!(reply.json()["error"], "invalid_token");
    }
    assert_eq!(
        up.requests.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "refused requests never reach the upstream"
    );
}

#[tokio::test]
async fn roles_and_claims_rules_decide_with_403() {
    let up = upstream::start("up").await;
    let gateway = gateway(&up.url(), "").await;
    let client = support::http1_client();
    let status = |claims: Value| {
        let request = Request::get(gateway.url("/admin"))
            .header("authorization", format!("Bearer {}", token(claims)))
            .body(Full::default())
            .unwrap();
        let client = client.clone();
        async move { send(&client, request).await.status() }
    };
    let good = json!({"realm_access": {"roles": ["viewer", "operator"]}, "tenant": "acme", "org": {"tier": 2}});
    assert_eq!(status(good.clone()).await, 200);
    let mut no_role = good.clone();
    no_role["realm_access"]["roles"] = json!(["viewer"]);
    assert_eq!(status(no_role).await, 403);
    let mut other_tenant = good.clone();
    other_tenant["tenant"] = json!("globex");
    assert_eq!(status(other_tenant).await, 403);
    let mut wrong_type = good.clone();
    wrong_type["org"]["tier"] = json!("2");
    assert_eq!(
        status(wrong_type).await,
        403,
        "claims match exactly, type included"
    );
    let mut no_claim = good;
    no_claim.as_object_mut().unwrap().remove("tenant");
    assert_eq!(status(no_claim).await, 403);
}

#[tokio::test]
async fn the_example_backend_verifies_the_signed_assertion() {
    let key = support::idp::TestKey::generate("unused", jsonwebtoken::Algorithm::EdDSA);
    let dir = tempfile::tempdir().unwrap();
    support::write_file(dir.path(), "assertion.pem", &key.private_pem);

    // The backend starts first; the gateway's keys are fetched once both run.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend_url = format!("http://{}", listener.local_addr().unwrap());
    let extra = "[identity.assertion]\nprivate_key = \"assertion.pem\"\naudience = \"orders-backend\"\nttl = \"30s\"\n";
    let gateway = start_gateway_in(dir, &config(&backend_url, extra)).await;
    let jwks_url = format!("http://{}/.well-known/jwks.json", gateway.admin.unwrap());
    let jwks = support::get(&jwks_url).await.json();
    assert_eq!(jwks["keys"][0]["alg"], "EdDSA");
    assert!(
        jwks["keys"][0].get("d").is_none(),
        "only the public key is published"
    );
    let verifier = assertion_backend::Verifier::fetch(&jwks_url, "orders-backend", "authgate")
        .await
        .unwrap();
    tokio::spawn(assertion_backend::serve(listener, Arc::new(verifier)));

    // Through the gateway with a credential: the backend proves who the caller is.
    let request = Request::get(gateway.url("/protected/orders"))
        .header(
            "authorization",
            format!("Bearer {}", token(json!({"sub": "alice"}))),
        )
        .body(Full::default())
        .unwrap();
    let reply = send(&support::http1_client(), request).await;
    reply.assert_status(200);
    assert_eq!(reply.json()["verified_subject"], "alice");

    // Straight to the backend with forged headers: refused.
    let forged = Request::get(format!("{backend_url}/orders"))
        .header("x-auth-subject", "alice")
        .header(
            "x-auth-assertion",
            token(json!({"aud": "orders-backend", "iss": "authgate"})),
        )
        .body(Full::default())
        .unwrap();
    assert_eq!(send(&support::http1_client(), forged).await.status(), 401);
    // Through a public route there is no identity, so no assertion either.
    assert_eq!(support::get(&gateway.url("/public")).await.status(), 401);
}

#[tokio::test]
async fn credentials_reach_no_upstream_unless_a_route_forwards_them() {
    let up = upstream::start("up").await;
    let extra = r#"
[api_keys]
header = "X-API-Key"
[[api_keys.keys]]
id = "unused"
hash = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
subject = "nobody"

[[routes]]
id = "cookie-route"
path = "/cookie-route"
upstream = "builtin:echo"
cookie = "access_token"

[[routes]]
id = "passthrough"
path = "/passthrough"
upstream = "builtin:echo"
public = true
forward_credentials = true
"#;
    let gateway = gateway(&up.url(), extra).await;
    let request = |path: &str| {
        Request::get(gateway.url(path))
            .header("authorization", "Bearer some.client.token")
            .header("x-api-key", "agk_not-for-the-upstream")
            .header("cookie", "theme=dark; access_token=a.b.c")
            .body(Full::default())
            .unwrap()
    };
    // A public route: the upstream never sees the credentials, other cookies stay.
    let reply = send(&support::http1_client(), request("/public")).await;
    reply.assert_status(200);
    let seen = &reply.json()["headers"];
    assert!(seen.get("authorization").is_none(), "{seen}");
    assert!(seen.get("x-api-key").is_none(), "{seen}");
    assert_eq!(seen["cookie"], "theme=dark", "{seen}");
    // A public route that opts in passes them through untouched.
    let reply = send(&support::http1_client(), request("/passthrough")).await;
    reply.assert_status(200);
    let seen = &reply.json()["headers"];
    assert_eq!(seen["authorization"], "Bearer some.client.token");
    assert_eq!(seen["x-api-key"], "agk_not-for-the-upstream");
    assert_eq!(seen["cookie"], "theme=dark; access_token=a.b.c");
}
