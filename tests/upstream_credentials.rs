//! The upstream's own credential held at the gateway, through a real gateway and the provider
//! double: the client's value under the same name never reaches the provider, the gateway's
//! value never reaches the client, the log or `check`; query-parameter credentials; rotation of
//! a `value_file` by reload while requests are in flight, none failing.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use http::Request;
use http_body_util::Full;
use support::limits::{new_key, write_keys};
use support::{http1_client, provider, send, start_gateway_in, GatewayProcess};

const SECRET: &str = "sk-provider-0123456789abcdef";

fn config(provider: &str, credentials: &str) -> String {
    format!(
        r#"[server]
http = "127.0.0.1:0"

[api_keys]
file = "keys.toml"

[upstreams.provider]
targets = ["{provider}"]
credentials = {credentials}

[[routes]]
id = "llm"
path = "/v1"
upstream = "provider"
auth = ["api_key"]

[[routes]]
id = "open"
path = "/open"
upstream = "provider"
public = true
"#
    )
}

#[tokio::test]
async fn the_clients_authorization_is_replaced_and_the_providers_key_reaches_neither_client_nor_log(
) {
    let provider = provider::start().await;
    let dir = tempfile::tempdir().unwrap();
    let alice = new_key("alice", None);
    write_keys(dir.path(), &[&alice.entry]);
    let toml = config(
        &provider.url(),
        r#"{ header = "Authorization", value = "Bearer ${PROVIDER_KEY}" }"#,
    );
    std::fs::write(dir.path().join("gateway.toml"), toml).unwrap();
    let gateway = GatewayProcess::spawn_in(dir, &[("RUST_LOG", "debug"), ("PROVIDER_KEY", SECRET)]);
    let client = http1_client();
    let url = format!("http://{}/v1/chat/completions", gateway.http);
    let protected = send(
        &client,
        Request::post(&url)
            .header("x-api-key", &alice.key)
            .header("content-type", "application/json")
            .body(Full::from(r#"{"model":"m","messages":[]}"#))
            .unwrap(),
    )
    .await;
    // On a public route the client may send its own Authorization: it is replaced.
    let open = send(
        &client,
        Request::get(format!("http://{}/open/x", gateway.http))
            .header("authorization", "Bearer sk-the-clients-own")
            .header("authorization", "Bearer sk-a-second-one")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    for reply in [&protected, &open] {
        reply.assert_status(200);
        assert!(!reply.text().contains(SECRET));
        for (name, value) in reply.response.headers() {
            let leaked = value
                .as_bytes()
                .windows(SECRET.len())
                .any(|w| w == SECRET.as_bytes());
            assert!(!leaked, "{name}");
        }
    }
    let received = provider.received();
    assert_eq!(received.len(), 2);
    for request in &received {
        let authorizations: Vec<_> = request.headers.get_all("authorization").iter().collect();
        assert_eq!(authorizations, [format!("Bearer {SECRET}").as_str()]);
    }
    assert!(
        received[0].headers.get("x-api-key").is_none(),
        "the gateway's own key stays"
    );

    // Every log line up to the access line of this request is free of the secret.
    let mut leaked = Vec::new();
    let mut access_lines = 0;
    let access = gateway.wait_for_log(|line| {
        if line.contains(SECRET) {
            leaked.push(line.to_string());
        }
        access_lines += usize::from(line.contains("authgate::access"));
        (access_lines == 2).then_some(())
    });
    assert!(access.is_some(), "both access lines are written");
    assert!(leaked.is_empty(), "{leaked:?}");
}

#[tokio::test]
async fn a_query_credential_replaces_the_clients_parameter() {
    let provider = provider::start().await;
    let dir = tempfile::tempdir().unwrap();
    let alice = new_key("alice", None);
    write_keys(dir.path(), &[&alice.entry]);
    let gateway = start_gateway_in(
        dir,
        &config(&provider.url(), r#"{ query = "key", value = "g/w+key" }"#),
    )
    .await;
    let reply = send(
        &http1_client(),
        Request::get(gateway.url("/v1/models?key=client&alt=json&ke%79=sneaky"))
            .header("x-api-key", &alice.key)
            .body(Full::default())
            .unwrap(),
    )
    .await;
    reply.assert_status(200);
    let received = provider.received();
    assert_eq!(
        received[0].query.as_deref(),
        Some("alt=json&key=g%2Fw%2Bkey")
    );
}

#[tokio::test]
async fn a_rotated_value_file_takes_over_on_reload_without_a_failed_request() {
    let provider = provider::start().await;
    let dir = tempfile::tempdir().unwrap();
    let alice = new_key("alice", None);
    write_keys(dir.path(), &[&alice.entry]);
    std::fs::write(dir.path().join("provider.key"), "Bearer first-key\n").unwrap();
    let gateway = start_gateway_in(
        dir,
        &config(
            &provider.url(),
            r#"{ header = "x-api-key-upstream", value_file = "provider.key" }"#,
        ),
    )
    .await;
    let url = gateway.url("/v1/models");
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let sent = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (url, key, stop, failures, sent) = (
            url.clone(),
            alice.key.clone(),
            stop.clone(),
            failures.clone(),
            sent.clone(),
        );
        workers.push(tokio::spawn(async move {
            let client = http1_client();
            // Bounded: the main task stops the loop; the cap is a safety net.
            for _ in 0..10_000 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let reply = send(
                    &client,
                    Request::get(&url)
                        .header("x-api-key", &key)
                        .body(Full::default())
                        .unwrap(),
                )
                .await;
                sent.fetch_add(1, Ordering::SeqCst);
                if reply.status() != 200 {
                    failures.fetch_add(1, Ordering::SeqCst);
                }
            }
        }));
    }
    let wait_for_sent = |n: usize| {
        let sent = sent.clone();
        async move {
            for _ in 0..1000 {
                if sent.load(Ordering::SeqCst) >= n {
                    return;
                }
                tokio::task::yield_now().await;
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            panic!("requests did not flow");
        }
    };
    wait_for_sent(20).await;
    let path = gateway.dir.path().join("provider.key");
    std::fs::write(&path, "Bearer second-key\n").unwrap();
    let reloader = gateway.gateway.as_ref().unwrap().reloader();
    assert!(reloader.reload_file(&gateway.dir.path().join("gateway.toml")));
    let after_reload = sent.load(Ordering::SeqCst);
    wait_for_sent(after_reload + 20).await;
    stop.store(true, Ordering::SeqCst);
    for worker in workers {
        worker.await.unwrap();
    }
    assert_eq!(failures.load(Ordering::SeqCst), 0);
    let values: Vec<String> = provider
        .received()
        .iter()
        .map(|r| {
            r.headers["x-api-key-upstream"]
                .to_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(values.first().unwrap(), "Bearer first-key");
    assert_eq!(values.last().unwrap(), "Bearer second-key");
    // Once the new value is in use, the old one never comes back.
    let first_new = values
        .iter()
        .position(|v| v == "Bearer second-key")
        .unwrap();
    assert!(values[first_new..].iter().all(|v| v == "Bearer second-key"));
}

#[test]
fn check_names_bad_credentials_at_their_place_and_never_prints_a_value() {
    let toml = config(
        "http://127.0.0.1:1",
        r#"{ header = "Authorization", query = "key", value = "Bearer sk-never-printed" }"#,
    )
    .replace("[api_keys]\nfile = \"keys.toml\"\n", "")
    .replace("auth = [\"api_key\"]", "public = true");
    let line = toml
        .lines()
        .position(|l| l.starts_with("credentials"))
        .unwrap()
        + 1;
    let (code, stderr) = support::check_config(&toml);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!("gateway.toml:{line}:15:")),
        "{stderr}"
    );
    assert!(stderr.contains("one `header` or one `query`"), "{stderr}");
    assert!(!stderr.contains("sk-never-printed"), "{stderr}");

    let (code, stderr) = support::check_config(
        &config(
            "http://127.0.0.1:1",
            "{ header = \"Authorization\", value = \"Bearer sk-never-\\u0001printed\", extra = 1 }",
        )
        .replace("[api_keys]\nfile = \"keys.toml\"\n", "")
        .replace("auth = [\"api_key\"]", "public = true"),
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("extra"), "{stderr}");
    assert!(stderr.contains("control character"), "{stderr}");
    assert!(!stderr.contains("sk-never"), "{stderr}");
}
