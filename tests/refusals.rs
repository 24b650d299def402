//! What a refused caller is told, and what the operator can find out: the missing-credential
//! answer names every kind the route takes, an API key sent as a bearer token is named as
//! such, the refusal metrics carry the kind that was presented, and the debug log says what the
//! token stated beside what the route expects, without ever holding the token.
#![allow(clippy::unwrap_used)]

mod support;

use http::Request;
use http_body_util::Full;
use support::{send, upstream, GatewayProcess};

const SECRET: &str = "an-hmac-secret-of-at-least-32-bytes!";

fn config(upstream: &str, keys: &str) -> String {
    format!(
        r#"[server]
http = "127.0.0.1:0"

[admin]
listen = "127.0.0.1:0"

[[issuers]]
id = "dev"
issuer = "https://dev.test/"
audiences = ["orders-api"]
algorithms = ["HS256"]
secret = "{SECRET}"

[api_keys]
[[api_keys.keys]]
{keys}
[[routes]]
id = "orders"
path = "/orders"
upstream = "{upstream}"

[[routes]]
id = "jwt-only"
path = "/jwt-only"
upstream = "{upstream}"
auth = ["jwt"]
"#
    )
}

#[test]
fn a_refusal_says_what_to_send_and_the_debug_log_says_why() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let up = runtime.block_on(upstream::start("up"));
    let (key, entry) =
        authgate::auth::api_keys::new_entry(Some("k"), "ci-bot", &[], &[], None).unwrap();
    let entry = entry.trim_start_matches("[[keys]]\n");
    let gateway = GatewayProcess::spawn_with(
        &config(&up.url(), entry),
        &[("RUST_LOG", "info,authgate=debug")],
    );
    let admin = gateway.listener("admin").expect("the admin listener");
    let call = |path: &str, header: Option<(&str, String)>| {
        let mut request = Request::get(format!("http://{}{path}", gateway.http));
        if let Some((name, value)) = header {
            request = request.header(name, value);
        }
        runtime.block_on(send(
            &support::http1_client(),
            request.body(Full::default()).unwrap(),
        ))
    };

    let missing = call("/orders", None);
    missing.assert_status(401);
    assert_eq!(
        missing.json()["error_description"],
        "this route needs a credential: send `Authorization: Bearer <token>` or `x-api-key: <key>`"
    );
    let jwt_only = call("/jwt-only", None);
    assert_eq!(
        jwt_only.json()["error_description"],
        "this route needs a credential: send `Authorization: Bearer <token>`"
    );

    let as_bearer = call("/orders", Some(("authorization", format!("Bearer {key}"))));
    as_bearer.assert_status(401);
    assert_eq!(
        as_bearer.json()["error_description"],
        "an API key was sent as a bearer token: send it in the `x-api-key` header"
    );

    // A token for another audience: the log names what it says and what was expected.
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &serde_json::json!({"iss": "https://dev.test/", "aud": "billing-api", "sub": "alice",
                            "exp": authgate::auth::unix_now() + 600}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let wrong = call(
        "/orders",
        Some(("authorization", format!("Bearer {token}"))),
    );
    wrong.assert_status(401);
    let request_id = wrong.header("x-request-id").unwrap().to_string();
    let line = gateway
        .wait_for_log(|line| {
            (line.contains("credential refused") && line.contains(&request_id))
                .then(|| line.to_string())
        })
        .expect("a debug line for the refusal");
    assert!(line.contains("wrong_audience"), "{line}");
    assert!(
        line.contains(r#"aud=\"billing-api\""#) || line.contains(r#"aud="billing-api""#),
        "{line}"
    );
    assert!(
        line.contains("orders-api") && line.contains("HS256"),
        "{line}"
    );
    assert!(
        !line.contains(&token) && !line.contains(token.rsplit('.').next().unwrap()),
        "{line}"
    );

    // The refusal is counted under the kind of credential that was presented.
    let metrics = runtime.block_on(support::get(&format!("http://{admin}/metrics")));
    let page = metrics.text();
    assert!(
        page.lines()
            .any(|l| l.starts_with("authgate_auth_decisions_total")
                && l.contains("route=\"orders\"")
                && l.contains("method=\"jwt\"")
                && l.contains("reason=\"wrong_audience\"")),
        "{page}"
    );
}
