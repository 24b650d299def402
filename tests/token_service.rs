//! The token service through a real gateway: the whole login → call → refresh → reuse →
//! revocation flow, client credentials (secret and API key), signing-key rotation, a restart
//! of the real binary that keeps refresh tokens and revocations, the concurrent-refresh race,
//! the brute-force limit, `authgate users add`, and another gateway verifying these tokens
//! through OIDC discovery.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::time::Duration;

use authgate::config::Config;
use authgate::token_service::{passwords, users};
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::{json, Value};
use support::{http1_client, send, start_gateway_in, GatewayProcess, Reply, TestGateway};

/// Writes a users file with one user per `(name, password, scopes)`.
fn write_users(dir: &Path, people: &[(&str, &str, &[&str])]) {
    let mut text = String::new();
    for (name, password, scopes) in people {
        let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
        let hash = passwords::hash(password).unwrap();
        text.push_str(&users::entry(name, &hash, &scopes, &["reader".into()]));
    }
    std::fs::write(dir.join("users.toml"), text).unwrap();
}

/// A gateway config: the token service (plus `extra` lines in its table), a protected route
/// `/api` that needs the `profile` scope, a second protected route `/other`, and an API key.
fn config(extra: &str, api_key_entry: &str) -> String {
    format!(
        r#"[server]
http = "127.0.0.1:0"

[token_service]
issuer = "https://gateway.test/auth"
audience = "demo"
users = "users.toml"
{extra}

[api_keys]
[[api_keys.keys]]
{api_key_entry}

[[routes]]
id = "api"
path = "/api"
upstream = "builtin:echo"
issuers = ["authgate"]
scopes = ["profile"]

[[routes]]
id = "other"
path = "/other"
upstream = "builtin:echo"
auth = ["jwt"]
"#
    )
}

/// An API key and its keys-file entry (the inline table's body).
fn api_key() -> (String, String) {
    let (key, entry) = authgate::auth::api_keys::new_entry(
        Some("ci-bot-1"),
        "ci-bot",
        &["orders:read".to_string()],
        &[],
        None,
    )
    .unwrap();
    (key, entry.replace("[[keys]]\n", ""))
}

async fn start(extra: &str) -> (TestGateway, String) {
    let dir = tempfile::tempdir().unwrap();
    write_users(
        dir.path(),
        &[
            ("alice", "alice-password", &["profile", "orders:read"]),
            ("bob", "bob-password", &["profile"]),
        ],
    );
    let (key, entry) = api_key();
    let gateway = start_gateway_in(dir, &config(extra, &entry)).await;
    (gateway, key)
}

async fn post(gateway: &TestGateway, path: &str, content_type: &str, body: String) -> Reply {
    let request = Request::post(gateway.url(path))
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    send(&http1_client(), request).await
}

/// `POST /auth/token` with a form body and one extra header (the client's credential).
async fn token_with(gateway: &TestGateway, header: (&str, &str), body: &'static str) -> Reply {
    let request = Request::post(gateway.url("/auth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header(header.0, header.1)
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    send(&http1_client(), request).await
}

/// The decoded JOSE header of a token.
fn jwt_header(token: &str) -> Value {
    let encoded = token.split('.').next().unwrap();
    let bytes =
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, encoded).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

async fn post_json(gateway: &TestGateway, path: &str, body: Value) -> Reply {
    post(gateway, path, "application/json", body.to_string()).await
}

async fn login(gateway: &TestGateway, username: &str, password: &str) -> Reply {
    let body = json!({"username": username, "password": password});
    post_json(gateway, "/auth/login", body).await
}

async fn refresh(gateway: &TestGateway, token: &str) -> Reply {
    post_json(gateway, "/auth/refresh", json!({ "refresh_token": token })).await
}

async fn call(gateway: &TestGateway, path: &str, token: &str) -> Reply {
    let request = Request::get(gateway.url(path))
        .header("authorization", format!("Bearer {token}"))
        .body(Full::default())
        .unwrap();
    send(&http1_client(), request).await
}

fn field(reply: &Reply, name: &str) -> String {
    reply.json()[name]
        .as_str()
        .unwrap_or_else(|| panic!("no `{name}` in {}", reply.json()))
        .to_string()
}

fn assert_revoked(reply: &Reply) {
    reply.assert_status(401);
    let challenge = reply.header("www-authenticate").unwrap();
    assert!(
        challenge.contains("error=\"invalid_token\"") && challenge.contains("revoked"),
        "{challenge}"
    );
}

#[tokio::test]
async fn login_call_refresh_then_reuse_revokes_the_family_and_its_access_tokens() {
    let (gateway, _) = start("").await;

    let first = login(&gateway, "alice", "alice-password").await;
    first.assert_status(200);
    assert_eq!(first.header("cache-control"), Some("no-store"));
    let body = first.json();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert_eq!(body["scope"], "profile orders:read");
    let access_1 = field(&first, "access_token");
    let refresh_1 = field(&first, "refresh_token");
    assert!(refresh_1.starts_with("agr_") && refresh_1.len() >= 4 + 43);

    // The access token is a JWT the gateway verifies like any issuer's.
    let header = jwt_header(&access_1);
    assert_eq!(header["typ"], "at+jwt");
    let echoed = call(&gateway, "/api/me", &access_1).await;
    assert_eq!(echoed.status(), 200);
    let seen = &echoed.json()["headers"];
    assert_eq!(seen["x-auth-subject"], "alice");
    assert_eq!(seen["x-auth-issuer"], "https://gateway.test/auth");
    let mut scopes: Vec<&str> = seen["x-auth-scopes"].as_str().unwrap().split(' ').collect();
    scopes.sort_unstable();
    assert_eq!(scopes, ["orders:read", "profile"]);

    // Refresh: a new pair, and the old refresh token is retired.
    let second = refresh(&gateway, &refresh_1).await;
    assert_eq!(second.status(), 200);
    let access_2 = field(&second, "access_token");
    let refresh_2 = field(&second, "refresh_token");
    assert_ne!(refresh_2, refresh_1);
    assert_eq!(call(&gateway, "/api/me", &access_2).await.status(), 200);

    // The retired token comes back: a theft signal. The answer is invalid_grant, and the whole
    // family dies — the newest refresh token and every access token it issued.
    let reused = refresh(&gateway, &refresh_1).await;
    assert_eq!(reused.status(), 400);
    assert_eq!(reused.json()["error"], "invalid_grant");
    let after = refresh(&gateway, &refresh_2).await;
    assert_eq!(after.status(), 400);
    assert_eq!(after.json()["error"], "invalid_grant");
    assert_revoked(&call(&gateway, "/api/me", &access_1).await);
    assert_revoked(&call(&gateway, "/other", &access_2).await);

    // Another login of the same user is a new family and unaffected.
    let again = login(&gateway, "alice", "alice-password").await;
    assert_eq!(
        call(&gateway, "/api/me", &field(&again, "access_token"))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn revoked_and_logged_out_tokens_are_refused_at_the_edge_on_every_route() {
    let (gateway, _) = start("").await;
    let pair = login(&gateway, "bob", "bob-password").await;
    let access = field(&pair, "access_token");
    // Verified once, so the next requests hit the verified-token cache: revocation must win.
    assert_eq!(call(&gateway, "/api/x", &access).await.status(), 200);
    let revoke = post(
        &gateway,
        "/auth/revoke",
        "application/x-www-form-urlencoded",
        format!("token={access}&token_type_hint=access_token"),
    )
    .await;
    assert_eq!(revoke.status(), 200);
    assert_revoked(&call(&gateway, "/api/x", &access).await);
    assert_revoked(&call(&gateway, "/other", &access).await);
    // RFC 7009: an unknown token gets the same 200.
    let unknown = post(
        &gateway,
        "/auth/revoke",
        "application/x-www-form-urlencoded",
        "token=nonsense".into(),
    )
    .await;
    assert_eq!(unknown.status(), 200);

    // Logout with both tokens: the refresh token's family and the access token end.
    let pair = login(&gateway, "bob", "bob-password").await;
    let (access, refresh_token) = (field(&pair, "access_token"), field(&pair, "refresh_token"));
    let request = Request::post(gateway.url("/auth/logout"))
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {access}"))
        .body(Full::new(Bytes::from(
            json!({ "refresh_token": refresh_token }).to_string(),
        )))
        .unwrap();
    let logout = send(&http1_client(), request).await;
    assert_eq!(logout.status(), 204);
    assert_revoked(&call(&gateway, "/api/x", &access).await);
    assert_eq!(
        refresh(&gateway, &refresh_token).await.json()["error"],
        "invalid_grant"
    );
}

#[tokio::test]
async fn client_credentials_with_a_client_secret_and_with_an_api_key() {
    let secret = "s3cret-for-the-billing-job-0123456789";
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, secret.as_bytes());
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    let clients = format!(
        "[[token_service.clients]]\nid = \"billing\"\nsecret_hash = \"sha256:{hex}\"\nscopes = [\"profile\", \"invoices:write\"]\n"
    );
    let (gateway, api_key) = start(&clients).await;
    let form = "application/x-www-form-urlencoded";

    // HTTP Basic (RFC 6749 §2.3.1).
    let basic = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("billing:{secret}"),
    );
    let basic = format!("Basic {basic}");
    let issued = token_with(
        &gateway,
        ("authorization", &basic),
        "grant_type=client_credentials",
    )
    .await;
    issued.assert_status(200);
    assert!(issued.json().get("refresh_token").is_none());
    assert_eq!(issued.json()["scope"], "profile invoices:write");
    let echoed = call(&gateway, "/api/run", &field(&issued, "access_token")).await;
    assert_eq!(echoed.json()["headers"]["x-auth-subject"], "billing");

    // Credentials in the form, narrowing the scope; a scope it was not granted is refused.
    let body = format!(
        "grant_type=client_credentials&client_id=billing&client_secret={secret}&scope=profile"
    );
    let narrowed = post(&gateway, "/auth/token", form, body).await;
    assert_eq!(narrowed.json()["scope"], "profile");
    let body = format!(
        "grant_type=client_credentials&client_id=billing&client_secret={secret}&scope=admin"
    );
    let too_wide = post(&gateway, "/auth/token", form, body).await;
    assert_eq!(
        (too_wide.status(), too_wide.json()["error"].clone()),
        (400, json!("invalid_scope"))
    );

    // A wrong secret: 401 invalid_client, with a Basic challenge for a Basic attempt.
    let wrong = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "billing:nope");
    let wrong = format!("Basic {wrong}");
    let refused = token_with(
        &gateway,
        ("authorization", &wrong),
        "grant_type=client_credentials",
    )
    .await;
    assert_eq!(refused.status(), 401);
    assert_eq!(refused.json()["error"], "invalid_client");
    assert_eq!(
        refused.header("www-authenticate"),
        Some("Basic realm=\"authgate\"")
    );

    // An API key as the client credential: the token speaks for the key's subject and scopes.
    let by_key = token_with(
        &gateway,
        ("x-api-key", &api_key),
        "grant_type=client_credentials",
    )
    .await;
    by_key.assert_status(200);
    assert_eq!(by_key.json()["scope"], "orders:read");
    let echoed = call(&gateway, "/other", &field(&by_key, "access_token")).await;
    assert_eq!(echoed.json()["headers"]["x-auth-subject"], "ci-bot");

    // Malformed requests get RFC 6749 answers.
    let twice = post(
        &gateway,
        "/auth/token",
        form,
        "grant_type=a&grant_type=b".into(),
    )
    .await;
    assert_eq!(twice.json()["error"], "invalid_request");
    let other = post(&gateway, "/auth/token", form, "grant_type=password".into()).await;
    assert_eq!(other.json()["error"], "unsupported_grant_type");
    let json_body = post(&gateway, "/auth/token", "application/json", "{}".into()).await;
    assert_eq!(json_body.status(), 415);
}

/// A P-256 private key in PEM, written to `dir/name`.
fn write_key(dir: &Path, name: &str) {
    let key = rcgen::KeyPair::generate().unwrap();
    std::fs::write(dir.join(name), key.serialize_pem()).unwrap();
}

#[tokio::test]
async fn a_rotated_signing_key_keeps_verifying_until_it_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    write_users(dir.path(), &[("alice", "alice-password", &["profile"])]);
    write_key(dir.path(), "old.pem");
    write_key(dir.path(), "new.pem");
    let (_, entry) = api_key();
    let with_keys = |keys: &str| {
        config(
            &format!("store = \"memory\"\nsigning_keys = [{keys}]"),
            &entry,
        )
    };
    let gateway = start_gateway_in(dir, &with_keys("\"old.pem\"")).await;
    let old_token = field(
        &login(&gateway, "alice", "alice-password").await,
        "access_token",
    );

    // Rotation step 1: the new key first (it signs), the old one still published.
    let reload = |toml: String| {
        let path = gateway.dir.path().join("gateway.toml");
        std::fs::write(&path, toml).unwrap();
        gateway
            .gateway
            .as_ref()
            .unwrap()
            .reloader()
            .apply(Config::load(&path).unwrap())
            .unwrap();
    };
    reload(with_keys("\"new.pem\", \"old.pem\""));
    let jwks = support::get(&gateway.url("/.well-known/jwks.json"))
        .await
        .json();
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids.len(), 2);
    let new_token = field(
        &login(&gateway, "alice", "alice-password").await,
        "access_token",
    );
    assert_eq!(jwt_header(&new_token)["kid"], kids[0]);
    assert_eq!(jwt_header(&old_token)["kid"], kids[1]);
    assert_eq!(call(&gateway, "/api", &old_token).await.status(), 200);
    assert_eq!(call(&gateway, "/api", &new_token).await.status(), 200);

    // Step 2, after the longest token lifetime: the old key goes, and so do its tokens.
    reload(with_keys("\"new.pem\""));
    assert_eq!(call(&gateway, "/api", &old_token).await.status(), 401);
    assert_eq!(call(&gateway, "/api", &new_token).await.status(), 200);
}

#[tokio::test]
async fn of_concurrent_refreshes_with_one_token_exactly_one_wins() {
    // With a grace, losers of the race do not revoke the winner's family.
    let (gateway, _) = start("reuse_grace = \"30s\"").await;
    let refresh_token = field(
        &login(&gateway, "alice", "alice-password").await,
        "refresh_token",
    );
    let gateway = std::sync::Arc::new(gateway);
    let racers: Vec<_> = (0..8)
        .map(|_| {
            let gateway = gateway.clone();
            let token = refresh_token.clone();
            tokio::spawn(async move { refresh(&gateway, &token).await })
        })
        .collect();
    let mut winners = Vec::new();
    for racer in racers {
        let reply = racer.await.unwrap();
        match reply.status() {
            200 => winners.push(field(&reply, "refresh_token")),
            400 => assert_eq!(reply.json()["error"], "invalid_grant"),
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one refresh wins");
    assert_eq!(refresh(&gateway, &winners[0]).await.status(), 200);
}

#[tokio::test]
async fn failed_logins_are_limited_per_username_and_per_client() {
    let limit = "[token_service.login_limit]\nper_user = 3\nper_client = 6\nwindow = \"1m\"";
    let (gateway, _) = start(limit).await;
    for _ in 0..3 {
        let wrong = login(&gateway, "alice", "guess").await;
        assert_eq!(wrong.status(), 401);
        assert_eq!(wrong.json()["error"], "invalid_credentials");
    }
    // Locked: even the right password gets 429 until the window ends.
    let locked = login(&gateway, "alice", "alice-password").await;
    assert_eq!(locked.status(), 429);
    let wait: u64 = locked.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    // An unknown username reads exactly like a wrong password.
    let unknown = login(&gateway, "mallory", "guess").await;
    assert_eq!(unknown.status(), 401);
    assert_eq!(
        unknown.json()["error_description"],
        "the username or password is not correct"
    );
    // Bob is not locked by Alice's failures...
    assert_eq!(login(&gateway, "bob", "bob-password").await.status(), 200);
    // ...until this client address has failed too often across usernames.
    for name in ["carol", "dave"] {
        login(&gateway, name, "guess").await;
    }
    assert_eq!(login(&gateway, "bob", "bob-password").await.status(), 429);
}

#[test]
fn restarting_the_binary_keeps_refresh_tokens_and_revocations() {
    let data = tempfile::tempdir().unwrap();
    let users_dir = tempfile::tempdir().unwrap();
    write_users(
        users_dir.path(),
        &[("alice", "alice-password", &["profile"])],
    );
    let (_, entry) = api_key();
    let toml = config(&format!("data_dir = \"{}\"", data.path().display()), &entry).replace(
        "users = \"users.toml\"",
        &format!(
            "users = \"{}\"",
            users_dir.path().join("users.toml").display()
        ),
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let post_json = |addr: std::net::SocketAddr, path: &str, body: Value| {
        let request = Request::post(format!("http://{addr}{path}"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap();
        runtime.block_on(send(&http1_client(), request))
    };
    let call = |addr: std::net::SocketAddr, token: &str| {
        let request = Request::get(format!("http://{addr}/api"))
            .header("authorization", format!("Bearer {token}"))
            .body(Full::default())
            .unwrap();
        runtime.block_on(send(&http1_client(), request)).status()
    };

    let mut first = GatewayProcess::spawn(&toml);
    let credentials = json!({"username": "alice", "password": "alice-password"});
    let pair = post_json(first.http, "/auth/login", credentials.clone());
    let refresh_token = field(&pair, "refresh_token");
    let revoked = field(
        &post_json(first.http, "/auth/login", credentials),
        "access_token",
    );
    let logout = Request::post(format!("http://{}/auth/logout", first.http))
        .header("authorization", format!("Bearer {revoked}"))
        .body(Full::default())
        .unwrap();
    assert_eq!(
        runtime.block_on(send(&http1_client(), logout)).status(),
        204
    );
    first.signal("TERM");
    assert_eq!(first.wait_exit(Duration::from_secs(10)), Some(0));

    let second = GatewayProcess::spawn(&toml);
    let refreshed = post_json(
        second.http,
        "/auth/refresh",
        json!({ "refresh_token": refresh_token }),
    );
    refreshed.assert_status(200);
    assert_eq!(call(second.http, &field(&refreshed, "access_token")), 200);
    assert_eq!(
        call(second.http, &revoked),
        401,
        "the revocation survived the restart"
    );
}

fn authgate(args: &[&str], stdin: &[u8]) -> std::process::Output {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_authgate"))
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    // A refused command may exit without reading stdin: a closed pipe is no error here.
    let _ = child.stdin.take().unwrap().write_all(stdin);
    child.wait_with_output().unwrap()
}

#[test]
fn users_add_writes_an_argon2id_hash_that_logs_in() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("users.toml");
    let file_arg = file.to_str().unwrap();
    let add = |name: &str, password: &[u8]| {
        authgate(
            &["users", "add", name, "--scopes", "a,b", "--file", file_arg],
            password,
        )
    };
    let short = add("erin", b"pa55 word\n");
    assert!(!short.status.success());
    assert!(String::from_utf8_lossy(&short.stderr).contains("shorter than 12"));
    assert!(add("erin", b"pa55 word long\n").status.success());
    let duplicate = add("erin", b"pa55 word long\n");
    assert!(!duplicate.status.success());
    assert!(String::from_utf8_lossy(&duplicate.stderr).contains("already"));
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("$argon2id$") && !text.contains("pa55"));
    let table = users::load_file(&file, None).unwrap();
    let erin = table.get("erin").unwrap();
    assert_eq!(erin.scopes, ["a", "b"]);
    assert!(passwords::verify("pa55 word long", &erin.password_hash));
}

/// `clients add … >> gateway.toml` appends a client whose secret then works at /auth/token.
#[tokio::test]
async fn clients_add_appends_a_client_whose_secret_is_granted_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        "[server]\nhttp = \"127.0.0.1:0\"\n\n[token_service]\nissuer = \"http://127.0.0.1/auth\"\naudience = \"api\"\nstore = \"memory\"\n\n[[routes]]\nid = \"r\"\nupstream = \"builtin:echo\"\npublic = true\n",
    )
    .unwrap();
    let secret_file = dir.path().join("billing.secret");
    let output = authgate(
        &[
            "clients",
            "add",
            "billing-job",
            "--scopes",
            "orders:read",
            "--secret-out",
            secret_file.to_str().unwrap(),
        ],
        b"",
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let entry = String::from_utf8(output.stdout).unwrap();
    let secret = std::fs::read_to_string(&secret_file)
        .unwrap()
        .trim()
        .to_string();
    assert!(!entry.contains(&secret), "the secret is in the entry");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&entry);
    let gateway = support::start_gateway_in(dir, &text).await;
    let request = Request::post(gateway.url("/auth/token"))
        .header(
            "authorization",
            format!(
                "Basic {}",
                base64::Engine::encode(
                    &base64::engine::general_purpose::STANDARD,
                    format!("billing-job:{secret}")
                )
            ),
        )
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::from("grant_type=client_credentials"))
        .unwrap();
    let reply = send(&support::http1_client(), request).await;
    reply.assert_status(200);
    assert_eq!(reply.json()["scope"], "orders:read");
}

#[test]
fn token_service_config_errors_name_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("users.toml"),
        "[[users]]\nusername = \"x\"\npassword_hash = \"plain\"\n",
    )
    .unwrap();
    let toml = "[server]\nhttp = \"127.0.0.1:0\"\n\n[token_service]\nissuer = \"i\"\naudience = \"a\"\nusers = \"users.toml\"\npath = \"/\"\nstore = \"cloud\"\n";
    std::fs::write(dir.path().join("gateway.toml"), toml).unwrap();
    let (code, stderr) = support::check_in(dir.path());
    assert_eq!(code, 1);
    assert!(stderr.contains("gateway.toml:8:8"), "{stderr}");
    assert!(stderr.contains("gateway.toml:9:9"), "{stderr}");
    assert!(stderr.contains("users.toml:3:17"), "{stderr}");
}

#[tokio::test]
async fn another_gateway_verifies_these_tokens_through_oidc_discovery() {
    // The issuing gateway's URL must be known before it starts: take a free port.
    let port = support::closed_port().port();
    let issuer_dir = tempfile::tempdir().unwrap();
    write_users(
        issuer_dir.path(),
        &[("alice", "alice-password", &["profile"])],
    );
    let issuer_url = format!("http://127.0.0.1:{port}/auth");
    let issuing = start_gateway_in(
        issuer_dir,
        &format!(
            "[server]\nhttp = \"127.0.0.1:{port}\"\n\n[token_service]\nissuer = \"{issuer_url}\"\naudience = \"orders\"\nusers = \"users.toml\"\nstore = \"memory\"\n"
        ),
    )
    .await;
    let verifying = start_gateway_in(
        tempfile::tempdir().unwrap(),
        &format!(
            "[server]\nhttp = \"127.0.0.1:0\"\n\n[[issuers]]\nid = \"gw\"\nissuer = \"{issuer_url}\"\naudiences = [\"orders\"]\nalgorithms = [\"EdDSA\"]\ndiscovery = true\n\n[[routes]]\nid = \"orders\"\npath = \"/orders\"\nupstream = \"builtin:echo\"\n"
        ),
    )
    .await;
    let token = field(
        &login(&issuing, "alice", "alice-password").await,
        "access_token",
    );
    // The verifying gateway fetches the keys in the background; bounded wait for them.
    let mut status = 0;
    for _ in 0..50 {
        status = call(&verifying, "/orders", &token).await.status();
        if status != 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200);
}

/// RFC 9068 and RFC 8414: login tokens carry `client_id`; the discovery documents (OIDC and
/// OAuth authorization-server metadata) advertise only what the service does.
#[tokio::test]
async fn access_tokens_and_metadata_follow_rfc_9068_and_rfc_8414() {
    let (gateway, _) = start("").await;
    let access = field(
        &login(&gateway, "alice", "alice-password").await,
        "access_token",
    );
    let payload = access.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["client_id"], "authgate", "{claims}");
    assert_eq!(jwt_header(&access)["typ"], "at+jwt");

    for path in [
        "/auth/.well-known/openid-configuration",
        "/auth/.well-known/oauth-authorization-server",
        "/.well-known/oauth-authorization-server/auth",
    ] {
        let reply = support::get(&gateway.url(path)).await;
        reply.assert_status(200);
        let document = reply.json();
        assert_eq!(document["issuer"], "https://gateway.test/auth", "{path}");
        assert!(
            document
                .get("id_token_signing_alg_values_supported")
                .is_none(),
            "{path}"
        );
        assert_eq!(document["response_types_supported"], json!([]), "{path}");
        assert_eq!(
            document["token_endpoint"],
            "https://gateway.test/auth/token"
        );
    }
}

/// RFC 9068 §4: a token signed with the service's own key but not typed `at+jwt` (an ID
/// token, or any other JWT the key once signed) is not an access token here.
#[tokio::test]
async fn the_services_own_tokens_must_say_they_are_access_tokens() {
    let key = support::idp::TestKey::generate("ts-1", jsonwebtoken::Algorithm::EdDSA);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ts.pem"), &key.private_pem).unwrap();
    write_users(dir.path(), &[("alice", "alice-password", &["profile"])]);
    let (_, entry) = api_key();
    let gateway = start_gateway_in(
        dir,
        &config("signing_keys = [\"ts.pem\"]\nstore = \"memory\"", &entry),
    )
    .await;
    let now = authgate::auth::unix_now();
    let claims = json!({"iss": "https://gateway.test/auth", "aud": "demo", "sub": "alice",
                        "exp": now + 600, "iat": now, "scope": "profile", "client_id": "x"});
    for (typ, status) in [("at+jwt", 200), ("JWT", 401)] {
        let token = key.sign_with_header(&json!({"alg": "EdDSA", "typ": typ}), &claims);
        let reply = call(&gateway, "/api/me", &token).await;
        assert_eq!(reply.status(), status, "typ {typ}: {}", reply.text());
    }
}
