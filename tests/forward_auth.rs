//! Forward-auth: authgate deciding for another proxy. A real nginx with `auth_request` in front
//! of a real backend; Traefik's and Envoy's calls written out as those proxies send them; the
//! peers that may ask; the refusals each proxy can pass on.

#![allow(clippy::unwrap_used)]

mod support;

use http::Request;
use http_body_util::Full;
use serde_json::{json, Value};
use support::nginx::Nginx;
use support::{http1_client, send, start_gateway, upstream, Reply, TestGateway};

const SECRET: &str = "forward-auth-test-secret-of-32-bytes!";

fn token(subject: &str, scope: &str) -> String {
    let claims = json!({
        "iss": "https://dev.test/", "aud": "orders-api", "sub": subject, "scope": scope,
        "exp": authgate::auth::unix_now() + 600,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn config(forward_auth: &str) -> String {
    format!(
        r#"[server]
http = "127.0.0.1:0"

[admin]
listen = "127.0.0.1:0"

[forward_auth]
path = "/authz"
{forward_auth}

[[issuers]]
id = "dev"
issuer = "https://dev.test/"
audiences = ["orders-api"]
secret = "{SECRET}"

[[routes]]
id = "orders"
host = "api.example.com"
path = "/orders"
methods = ["GET", "POST"]
upstream = "none"
scopes = ["orders:read"]

[[routes]]
id = "shop"
path = "/orders"
upstream = "none"
scopes = ["shop:read"]

[[routes]]
id = "limited"
path = "/limited"
upstream = "none"
public = true
rate = "1/m"
burst = 1

[[routes]]
id = "public"
path = "/public"
upstream = "none"
public = true
"#
    )
}

/// Sends `method path` to the gateway with these headers; one with an empty value is not sent.
async fn call(
    gateway: &TestGateway,
    method: &str,
    path: &str,
    headers: &[(&str, impl AsRef<str>)],
) -> Reply {
    let mut request = Request::builder().method(method).uri(gateway.url(path));
    for (name, value) in headers {
        if !value.as_ref().is_empty() {
            request = request.header(*name, value.as_ref());
        }
    }
    send(&http1_client(), request.body(Full::default()).unwrap()).await
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[tokio::test]
async fn traefik_describes_the_request_in_x_forwarded_headers() {
    let gateway = start_gateway(&config("")).await;
    let alice = bearer(&token("alice", "orders:read"));
    // As Traefik's ForwardAuth sends it: a GET to the address, the original request in
    // X-Forwarded-*, and the client's own headers copied (a forged subject among them).
    let traefik = |uri: &'static str, auth: String| {
        vec![
            ("x-forwarded-method", "POST".to_string()),
            ("x-forwarded-proto", "https".to_string()),
            ("x-forwarded-host", "api.example.com".to_string()),
            ("x-forwarded-uri", uri.to_string()),
            ("x-forwarded-for", "203.0.113.7".to_string()),
            ("x-auth-subject", "mallory".to_string()),
            ("authorization", auth),
        ]
    };
    let owned = traefik("/orders/7?expand=items&page=2", alice.clone());
    let allowed = call(&gateway, "GET", "/authz", &owned).await;
    allowed.assert_status(200);
    assert!(allowed.body.is_empty(), "the decision has no body");
    assert_eq!(allowed.header("x-auth-subject"), Some("alice"));
    assert_eq!(allowed.header("x-auth-method"), Some("jwt"));
    assert_eq!(allowed.header("x-auth-scopes"), Some("orders:read"));
    // Nothing of the kind applies to a JWT: empty, never left to the client.
    assert_eq!(allowed.header("x-auth-key-id"), Some(""));
    assert!(allowed.header("x-request-id").is_some());
    // The matched route is the host's own, as a direct request to api.example.com would match.
    let metrics = support::get(&format!("http://{}/metrics", gateway.admin.unwrap())).await;
    assert!(
        metrics
            .text()
            .contains(r#"authgate_requests_total{route="orders",status="200"}"#),
        "{}",
        metrics.text()
    );

    // The described method decides the route: api.example.com's `orders` route takes GET and
    // POST only, so a DELETE falls to the any-host `shop` route, which needs another scope.
    let mut delete = traefik("/orders/7", alice.clone());
    delete[0].1 = "DELETE".into();
    let refused = call(&gateway, "GET", "/authz", &delete).await;
    refused.assert_status(403);
    let challenge = refused.header("www-authenticate").unwrap();
    assert!(challenge.contains(r#"scope="shop:read""#), "{challenge}");

    let missing = traefik("/orders/7", String::new());
    let refused = call(&gateway, "GET", "/authz", &missing).await;
    refused.assert_status(401);
    assert!(refused
        .header("www-authenticate")
        .unwrap()
        .starts_with("Bearer realm=\"authgate\""));
    assert!(refused.header("x-auth-subject").is_none());
    assert_eq!(refused.json()["error"], "unauthorized");

    let wrong_scope = traefik("/orders/7", bearer(&token("bob", "profile")));
    let refused = call(&gateway, "GET", "/authz", &wrong_scope).await;
    refused.assert_status(403);
    assert_eq!(refused.json()["error"], "insufficient_scope");

    // A described path is judged like a direct one: dot segments resolved, ambiguity refused.
    let sneaky = traefik("/public/../orders/7", String::new());
    call(&gateway, "GET", "/authz", &sneaky)
        .await
        .assert_status(401);
    let encoded = traefik("/public/..%2forders/7", String::new());
    call(&gateway, "GET", "/authz", &encoded)
        .await
        .assert_status(400);
}

#[tokio::test]
async fn envoy_sends_the_original_path_under_the_prefix() {
    let gateway = start_gateway(&config("")).await;
    // Envoy's ext_authz HTTP service (and Istio's envoyExtAuthzHttp): the original method,
    // `path_prefix + path` with its query, the original Host, an empty body.
    let envoy = |auth: &str| {
        vec![
            ("host", "api.example.com".to_string()),
            ("authorization", auth.to_string()),
            ("x-forwarded-proto", "https".to_string()),
            (
                "x-request-id",
                "9b2c6a5e-0d3e-4a55-9c1e-2f3c4d5e6f70".to_string(),
            ),
            ("x-envoy-expected-rq-timeout-ms", "200".to_string()),
            ("x-auth-subject", "mallory".to_string()),
            ("content-length", "0".to_string()),
        ]
    };
    let owned = envoy(&bearer(&token("alice", "orders:read")));
    let allowed = call(&gateway, "POST", "/authz/orders/7?dry_run=1", &owned).await;
    allowed.assert_status(200);
    assert_eq!(allowed.header("x-auth-subject"), Some("alice"));
    // The asking proxy's request id is kept, so both logs name the request alike.
    assert_eq!(
        allowed.header("x-request-id"),
        Some("9b2c6a5e-0d3e-4a55-9c1e-2f3c4d5e6f70")
    );

    let owned = envoy("Bearer not-a-token");
    let refused = call(&gateway, "POST", "/authz/orders/7", &owned).await;
    refused.assert_status(401);
    assert_eq!(refused.json()["error"], "invalid_token");

    // A public route: allowed, and no identity at all — the forged subject is not echoed.
    let public = call(
        &gateway,
        "GET",
        "/authz/public/page?q=1",
        &[("host", "api.example.com"), ("x-auth-subject", "mallory")],
    )
    .await;
    public.assert_status(200);
    // Every identity header is there, empty, so the proxy that copies them overwrites the
    // client's forgery (Envoy keeps a client header the answer does not name).
    assert_eq!(public.header("x-auth-subject"), Some(""));
    assert_eq!(public.header("x-auth-method"), Some(""));

    // Envoy may speak HTTP/2 to the service: the host is then the `:authority`.
    let request = Request::post(gateway.url("/authz/orders/7"))
        .header("authorization", bearer(&token("carol", "shop:read")))
        .body(Full::default())
        .unwrap();
    let over_h2 = send(&support::http2_client(), request).await;
    over_h2.assert_status(200);
    assert_eq!(over_h2.response.version(), http::Version::HTTP_2);
    assert_eq!(over_h2.header("x-auth-subject"), Some("carol"));

    // No route for the described request: 404 with the JSON body.
    let nowhere = call(
        &gateway,
        "GET",
        "/authz/elsewhere",
        &[("host", "api.example.com")],
    )
    .await;
    nowhere.assert_status(404);
    assert_eq!(nowhere.json()["error"], "not_found");
}

#[tokio::test]
async fn only_trusted_peers_may_ask_and_decide_only_routes_answer_nothing_directly() {
    // The test's client is 127.0.0.1: outside this list.
    let gateway = start_gateway(&config(r#"trusted = ["10.0.0.0/8"]"#)).await;
    let alice = bearer(&token("alice", "orders:read"));
    let refused = call(
        &gateway,
        "GET",
        "/authz",
        &[
            ("x-forwarded-uri", "/orders"),
            ("authorization", &alice),
            ("x-request-id", "chosen-by-the-caller"),
        ],
    )
    .await;
    refused.assert_status(403);
    assert_eq!(refused.json()["error"], "forbidden");
    assert_ne!(refused.header("x-request-id"), Some("chosen-by-the-caller"));
    assert!(refused.header("x-auth-subject").is_none());

    // `upstream = "none"` routes decide for other proxies and forward nothing themselves.
    let direct = call(&gateway, "GET", "/orders/7", &[("authorization", &alice)]).await;
    direct.assert_status(404);
}

#[tokio::test]
async fn rate_limits_answer_429_or_deny_status() {
    let gateway = start_gateway(&config("")).await;
    let ask = || {
        call(
            &gateway,
            "GET",
            "/authz",
            &[("x-forwarded-uri", "/limited")],
        )
    };
    ask().await.assert_status(200);
    let limited = ask().await;
    limited.assert_status(429);
    assert_eq!(limited.json()["error"], "rate_limited");
    assert!(limited.header("retry-after").is_some());
    assert!(limited.header("ratelimit").is_some());

    let nginx_style = start_gateway(&config("deny_status = 403")).await;
    let ask = || {
        call(
            &nginx_style,
            "GET",
            "/authz",
            &[("x-original-uri", "/limited")],
        )
    };
    ask().await.assert_status(200);
    let limited = ask().await;
    limited.assert_status(403);
    // The body still says why, for whoever reads it.
    assert_eq!(limited.json()["error"], "rate_limited");
}

/// The README's nginx block (`auth_request` to authgate, the subject copied to the backend),
/// pointed at this test's gateway and backend.
fn nginx_server(gateway: &TestGateway, backend: &str) -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let marker = "<!-- nginx-test -->\n```nginx\n";
    let start = readme.find(marker).expect("README.md has the nginx block") + marker.len();
    let block = &readme[start..start + readme[start..].find("```").unwrap()];
    assert!(
        block.contains("http://127.0.0.1:8080/authz") && block.contains("http://127.0.0.1:3000")
    );
    block
        .replace("http://127.0.0.1:8080", &gateway.url(""))
        .replace("http://127.0.0.1:3000", backend)
}

fn backend_saw(reply: &Reply, header: &str) -> Option<String> {
    let json: Value = reply.json();
    json["headers"][header].as_str().map(str::to_string)
}

#[tokio::test]
async fn behind_nginx_auth_request() {
    if support::nginx::binary().is_none() {
        eprintln!("skipped: nginx is not installed here (.ci/run installs it)");
        return;
    }
    let backend = upstream::start("backend").await;
    let gateway = start_gateway(&config("deny_status = 403")).await;
    let nginx = Nginx::start(&nginx_server(&gateway, &backend.url())).unwrap();
    let client = http1_client();
    let get = |path: &str, headers: &[(&str, String)]| {
        let mut request = Request::get(nginx.url(path));
        for (name, value) in headers {
            request = request.header(*name, value.as_str());
        }
        send(&client, request.body(Full::default()).unwrap())
    };

    // Without a host of its own, the request reaches the any-host `shop` route.
    let alice = bearer(&token("alice", "shop:read"));
    let allowed = get(
        "/orders/7?expand=items",
        &[
            ("authorization", alice.clone()),
            ("x-auth-subject", "mallory".into()),
        ],
    )
    .await;
    allowed.assert_status(200);
    assert_eq!(
        backend_saw(&allowed, "x-auth-subject").as_deref(),
        Some("alice")
    );
    assert_eq!(
        backend_saw(&allowed, "x-auth-scopes").as_deref(),
        Some("shop:read")
    );
    assert_eq!(allowed.json()["path"], "/orders/7");
    assert_eq!(
        backend_saw(&allowed, "authorization"),
        None,
        "the token stays at nginx"
    );

    let missing = get("/orders/7", &[]).await;
    missing.assert_status(401);
    assert!(
        missing
            .header("www-authenticate")
            .is_some_and(|c| c.starts_with("Bearer realm=\"authgate\"")),
        "nginx passes the challenge on: {:?}",
        missing.response.headers()
    );

    let wrong_scope = get(
        "/orders/7",
        &[("authorization", bearer(&token("bob", "profile")))],
    )
    .await;
    wrong_scope.assert_status(403);

    // A public route: the backend is reached, and the subject the client made up is not.
    let public = get("/public/page", &[("x-auth-subject", "mallory".into())]).await;
    public.assert_status(200);
    assert_eq!(backend_saw(&public, "x-auth-subject"), None);

    // The rate limit: 429 would be nginx's 500; deny_status makes it a 403 nginx passes on.
    get("/limited", &[]).await.assert_status(200);
    let limited = get("/limited", &[]).await;
    limited.assert_status(403);
    assert!(
        !nginx.error_log().contains("auth request unexpected status"),
        "{}",
        nginx.error_log()
    );
    assert_eq!(
        backend.requests.load(std::sync::atomic::Ordering::SeqCst),
        3
    );
}

#[test]
fn check_names_overlaps_and_bad_values() {
    let shadowed = config("deny_status = 500").replace(
        "[[routes]]\nid = \"limited\"\npath = \"/limited\"",
        "[[routes]]\nid = \"limited\"\npath = \"/authz/limited\"",
    );
    let (code, stderr) = support::check_config(&shadowed);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("deny_status 500 is not 401 or 403"),
        "{stderr}"
    );
    assert!(
        stderr.contains("route `limited` (path `/authz/limited`) is under forward_auth path"),
        "{stderr}"
    );
    assert!(stderr.contains("gateway.toml:"), "{stderr}");

    let without = config("").replace("[forward_auth]\npath = \"/authz\"\n", "");
    let (code, stderr) = support::check_config(&without);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("only answer forward-auth: add a [forward_auth] section"),
        "{stderr}"
    );
}

#[test]
fn the_access_log_names_the_decided_request_and_the_mode() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let toml = config("").replace("[admin]", "[log]\nformat = \"json\"\n\n[admin]");
    let gateway = support::GatewayProcess::spawn(&toml);
    let alice = bearer(&token("alice", "orders:read"));
    runtime.block_on(async {
        let request = Request::get(format!("http://{}/authz", gateway.http))
            .header("x-forwarded-method", "POST")
            .header("x-forwarded-host", "api.example.com")
            .header("x-forwarded-uri", "/orders/7?secret=hunter2")
            .header("authorization", &alice)
            .body(Full::default())
            .unwrap();
        send(&http1_client(), request).await.assert_status(200);
    });
    let line = gateway
        .wait_for_log(|line| line.contains("authgate::access").then(|| line.to_string()))
        .expect("an access log line");
    let entry: Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    assert_eq!(entry["mode"], "forward_auth", "{line}");
    assert_eq!(entry["route"], "orders");
    assert_eq!(entry["method"], "POST");
    assert_eq!(entry["path"], "/orders/7");
    assert_eq!(entry["principal"], "alice");
    assert!(
        !line.contains("hunter2") && !line.contains(&alice[7..]),
        "{line}"
    );
}
