//! API keys through a real gateway: what a valid key yields, every way a key is refused, the
//! one-credential rule, and keys added, revoked and rotated by editing the keys file while
//! requests keep flowing.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use authgate::auth::api_keys;
use http::Request;
use http_body_util::Full;
use support::{send, start_gateway_in, Reply, TestGateway};

struct Key {
    key: String,
    entry: String,
}

fn new_key(id: &str, subject: &str, scopes: &[&str]) -> Key {
    let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
    let (key, entry) = api_keys::new_entry(Some(id), subject, &scopes, &[], None).unwrap();
    Key { key, entry }
}

fn write_keys(gateway_dir: &std::path::Path, entries: &[&str]) {
    // Write then rename, as deployment tools do, so the watcher never reads half a file.
    let temporary = gateway_dir.join("keys.toml.new");
    std::fs::write(&temporary, entries.join("\n")).unwrap();
    std::fs::rename(&temporary, gateway_dir.join("keys.toml")).unwrap();
}

const CONFIG: &str = r#"[server]
http = "127.0.0.1:0"

[api_keys]
file = "keys.toml"

[[routes]]
id = "keys"
path = "/keys"
upstream = "builtin:echo"
auth = ["api_key"]

[[routes]]
id = "scoped"
path = "/scoped"
upstream = "builtin:echo"
scopes = ["orders:write"]

[[routes]]
id = "jwt-only"
path = "/jwt-only"
upstream = "builtin:echo"
auth = ["jwt"]

[[issuers]]
id = "dev"
issuer = "https://dev.test/"
audiences = ["api"]
secret = "0123456789abcdef0123456789abcdef"
"#;

async fn gateway_with(entries: &[&str]) -> TestGateway {
    let dir = tempfile::tempdir().unwrap();
    write_keys(dir.path(), entries);
    start_gateway_in(dir, CONFIG).await
}

async fn call(gateway: &TestGateway, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut request = Request::get(gateway.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    send(
        &support::http1_client(),
        request.body(Full::default()).unwrap(),
    )
    .await
}

#[tokio::test]
async fn a_valid_key_passes_with_its_identity_and_is_not_forwarded() {
    let bot = new_key("ci-bot-1", "ci-bot", &["orders:read", "orders:write"]);
    let gateway = gateway_with(&[&bot.entry]).await;
    let reply = call(
        &gateway,
        "/keys/run",
        &[("x-api-key", &bot.key), ("x-auth-key-id", "forged")],
    )
    .await;
    reply.assert_status(200);
    let seen = &reply.json()["headers"];
    assert_eq!(seen["x-auth-subject"], "ci-bot");
    assert_eq!(seen["x-auth-method"], "api_key");
    assert_eq!(seen["x-auth-key-id"], "ci-bot-1");
    assert_eq!(seen["x-auth-scopes"], "orders:read orders:write");
    assert!(
        seen.get("x-api-key").is_none(),
        "the key is not forwarded: {seen}"
    );
    assert!(seen.get("x-auth-issuer").is_none());
    // The default `auth` accepts both kinds; the key's scopes satisfy the route.
    assert_eq!(
        call(&gateway, "/scoped", &[("x-api-key", &bot.key)])
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn refused_keys_get_401_and_say_why_without_confirming_revoked_ones() {
    let now = authgate::auth::unix_now();
    let good = new_key("good", "svc", &["orders:read"]);
    let (expired_key, expired_entry) =
        api_keys::new_entry(Some("old"), "svc", &[], &[], Some(now - 10)).unwrap();
    let disabled = new_key("off", "svc", &[]);
    let disabled_entry = format!("{}disabled = true\n", disabled.entry);
    let gateway = gateway_with(&[&good.entry, &expired_entry, &disabled_entry]).await;

    let mut typo = good.key.clone().into_bytes();
    typo[20] = if typo[20] == b'a' { b'b' } else { b'a' };
    let typo = String::from_utf8(typo).unwrap();
    let unknown = api_keys::generate().unwrap();
    let cases = [
        (typo.as_str(), "malformed"),
        (&good.key[..good.key.len() - 3], "malformed"),
        ("not-a-key", "malformed"),
        (unknown.as_str(), "not valid"),
        (disabled.key.as_str(), "not valid"),
        (expired_key.as_str(), "expired"),
    ];
    for (key, description) in cases {
        let reply = call(&gateway, "/keys", &[("x-api-key", key)]).await;
        assert_eq!(reply.status(), 401, "{key}");
        assert_eq!(reply.json()["error"], "invalid_token");
        let text = reply.json()["error_description"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(text.contains(description), "{key}: {text}");
        assert!(!text.contains(key), "the description never echoes the key");
    }
    // Insufficient scope is a 403.
    let reply = call(&gateway, "/scoped", &[("x-api-key", &good.key)]).await;
    assert_eq!(reply.status(), 403);
}

#[tokio::test]
async fn one_credential_only_and_never_from_the_query_string() {
    let bot = new_key("bot", "bot", &[]);
    let gateway = gateway_with(&[&bot.entry]).await;
    let token = {
        let key = jsonwebtoken::EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef");
        let claims = serde_json::json!({"iss": "https://dev.test/", "aud": "api", "sub": "alice", "exp": authgate::auth::unix_now() + 600});
        jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap()
    };
    let bearer = format!("Bearer {token}");
    // Both kinds together: refused, not merged.
    let reply = call(
        &gateway,
        "/scoped",
        &[("x-api-key", &bot.key), ("authorization", &bearer)],
    )
    .await;
    assert_eq!(reply.status(), 401);
    assert!(reply
        .header("www-authenticate")
        .unwrap()
        .contains("invalid_request"));
    // The same key twice.
    let reply = call(
        &gateway,
        "/keys",
        &[("x-api-key", &bot.key), ("x-api-key", &bot.key)],
    )
    .await;
    assert_eq!(reply.status(), 401);
    // In the query string it is not a credential at all.
    let reply = call(
        &gateway,
        &format!("/keys?api_key={}&x-api-key={}", bot.key, bot.key),
        &[],
    )
    .await;
    assert_eq!(reply.status(), 401);
    assert_eq!(
        reply.header("www-authenticate"),
        Some("Bearer realm=\"authgate\"")
    );
    // A route that takes only JWTs refuses a key, and an API-key route refuses a JWT.
    assert_eq!(
        call(&gateway, "/jwt-only", &[("x-api-key", &bot.key)])
            .await
            .status(),
        401
    );
    assert_eq!(
        call(&gateway, "/keys", &[("authorization", &bearer)])
            .await
            .status(),
        401
    );
    assert_eq!(
        call(&gateway, "/jwt-only", &[("authorization", &bearer)])
            .await
            .status(),
        200
    );
}

/// Waits (at most 10 s) until `key` gets `status` on /keys.
async fn wait_for_status(gateway: &TestGateway, key: &str, status: u16) {
    for _ in 0..200 {
        if call(gateway, "/keys", &[("x-api-key", key)]).await.status() == status {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the key never got {status}");
}

#[tokio::test]
async fn keys_are_added_revoked_and_rotated_by_editing_the_file_without_a_failed_request() {
    let steady = new_key("steady", "steady", &[]);
    let old = new_key("rot-old", "rotating", &[]);
    let new = new_key("rot-new", "rotating", &[]);
    let gateway = gateway_with(&[&steady.entry, &old.entry]).await;
    let dir = gateway.dir.path().to_path_buf();
    wait_for_status(&gateway, &steady.key, 200).await;

    // Keep requests with the steady key flowing for the whole test: none may fail.
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let url = gateway.url("/keys");
    let flow = {
        let (stop, sent, failed, key) = (
            stop.clone(),
            sent.clone(),
            failed.clone(),
            steady.key.clone(),
        );
        tokio::spawn(async move {
            let client = support::http1_client();
            // Bounded: at most 20 000 requests, and it stops when told.
            for _ in 0..20_000 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let request = Request::get(&url)
                    .header("x-api-key", &key)
                    .body(Full::default())
                    .unwrap();
                let status = send(&client, request).await.status();
                sent.fetch_add(1, Ordering::SeqCst);
                if status != 200 {
                    failed.fetch_add(1, Ordering::SeqCst);
                }
            }
        })
    };

    // Rotation: add the new key beside the old one; then revoke the old one.
    write_keys(&dir, &[&steady.entry, &old.entry, &new.entry]);
    wait_for_status(&gateway, &new.key, 200).await;
    assert_eq!(
        call(&gateway, "/keys", &[("x-api-key", &old.key)])
            .await
            .status(),
        200,
        "both work during rotation"
    );
    let disabled_old = format!("{}disabled = true\n", old.entry);
    write_keys(&dir, &[&steady.entry, &disabled_old, &new.entry]);
    wait_for_status(&gateway, &old.key, 401).await;

    // A broken file is refused and the last good keys keep working.
    write_keys(
        &dir,
        &["[[keys]]\nid = \"broken\"\nhash = \"nope\"\nsubject = \"x\"\n"],
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        call(&gateway, "/keys", &[("x-api-key", &new.key)])
            .await
            .status(),
        200
    );

    // Removal revokes too.
    write_keys(&dir, &[&steady.entry]);
    wait_for_status(&gateway, &new.key, 401).await;

    stop.store(true, Ordering::SeqCst);
    flow.await.unwrap();
    assert!(
        sent.load(Ordering::SeqCst) > 50,
        "too few requests to prove anything"
    );
    assert_eq!(
        failed.load(Ordering::SeqCst),
        0,
        "requests with a valid key failed during reloads"
    );
}

#[tokio::test]
async fn a_hundred_thousand_keys_load_and_each_answers() {
    let mut file = String::new();
    let mut sample = Vec::new();
    for i in 0..100_000 {
        let (key, entry) = api_keys::new_entry(
            Some(&format!("k{i}")),
            &format!("svc{}", i % 100),
            &[],
            &[],
            None,
        )
        .unwrap();
        file.push_str(&entry);
        file.push('\n');
        if i % 25_000 == 7 {
            sample.push((key, format!("k{i}")));
        }
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("keys.toml"), file).unwrap();
    let gateway = start_gateway_in(dir, CONFIG).await;
    for (key, id) in sample {
        let reply = call(&gateway, "/keys", &[("x-api-key", &key)]).await;
        assert_eq!(reply.status(), 200);
        assert_eq!(reply.json()["headers"]["x-auth-key-id"], id);
    }
}
