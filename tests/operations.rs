//! Operating the gateway: Prometheus metrics, the access log, reloads on file change (routes
//! and certificates), and the proofs under load: reloads with zero failed requests, a graceful
//! shutdown that finishes what it accepted.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::Request;
use http_body_util::Full;
use support::{get, send, start_gateway, upstream, GatewayProcess};

/// The lines of a Prometheus text page for `name` that carry every label in `labels`.
fn series<'a>(page: &'a str, name: &str, labels: &[&str]) -> Vec<&'a str> {
    page.lines()
        .filter(|line| line.starts_with(name) && labels.iter().all(|label| line.contains(label)))
        .collect()
}

#[tokio::test]
async fn metrics_carry_every_contract_name_with_its_labels() {
    let up = upstream::start("up").await;
    let dead = support::closed_port();
    let config = format!(
        r#"[server]
http = "127.0.0.1:0"

[admin]
listen = "127.0.0.1:0"

[[issuers]]
id = "metrics-idp"
issuer = "https://metrics.test/"
audiences = ["api"]
secret = "0123456789abcdef0123456789abcdef"

[upstreams.dead]
targets = ["http://{dead}"]

[[routes]]
id = "m-open"
path = "/open"
upstream = "{}"
public = true

[[routes]]
id = "m-closed"
path = "/closed"
upstream = "{}"

[[routes]]
id = "m-dead"
path = "/dead"
upstream = "dead"
public = true
"#,
        up.url(),
        up.url()
    );
    let gateway = start_gateway(&config).await;
    assert_eq!(get(&gateway.url("/open")).await.status(), 200);
    assert_eq!(get(&gateway.url("/closed")).await.status(), 401);
    assert_eq!(get(&gateway.url("/dead")).await.status(), 502);
    assert_eq!(get(&gateway.url("/nowhere-metrics")).await.status(), 404);
    let token = {
        let claims = serde_json::json!({"iss": "https://metrics.test/", "aud": "api", "sub": "m", "exp": authgate::auth::unix_now() + 600});
        jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef"),
        )
        .unwrap()
    };
    for _ in 0..2 {
        let request = Request::get(gateway.url("/closed"))
            .header("authorization", format!("Bearer {token}"))
            .body(Full::default())
            .unwrap();
        assert_eq!(send(&support::http1_client(), request).await.status(), 200);
    }

    let reply = get(&format!("http://{}/metrics", gateway.admin.unwrap())).await;
    assert_eq!(reply.status(), 200);
    assert!(reply
        .header("content-type")
        .unwrap()
        .starts_with("text/plain"));
    let page = String::from_utf8(reply.body.to_vec()).unwrap();
    let expect = |name: &str, labels: &[&str]| {
        assert!(
            !series(&page, name, labels).is_empty(),
            "no {name} with {labels:?} in:\n{page}"
        );
    };
    expect(
        "authgate_requests_total",
        &["route=\"m-open\"", "status=\"200\""],
    );
    expect(
        "authgate_requests_total",
        &["route=\"m-dead\"", "status=\"502\""],
    );
    expect(
        "authgate_requests_total",
        &["route=\"-\"", "status=\"404\""],
    );
    expect(
        "authgate_request_duration_seconds_bucket",
        &["route=\"m-open\"", "le=\"0.00005\""],
    );
    expect(
        "authgate_request_duration_seconds_bucket",
        &["route=\"m-open\"", "le=\"10\""],
    );
    expect(
        "authgate_auth_decisions_total",
        &[
            "route=\"m-closed\"",
            "method=\"none\"",
            "result=\"deny\"",
            "reason=\"missing\"",
        ],
    );
    expect(
        "authgate_auth_decisions_total",
        &[
            "route=\"m-closed\"",
            "method=\"jwt\"",
            "result=\"allow\"",
            "reason=\"ok\"",
        ],
    );
    expect(
        "authgate_upstream_errors_total",
        &["route=\"m-dead\"", "kind=\"connect\""],
    );
    expect("authgate_token_cache_total", &["result=\"hit\""]);
    expect("authgate_token_cache_total", &["result=\"miss\""]);
    expect("authgate_connections", &["listener=\"http\""]);
    // Label values come from closed sets: a path or a token never becomes a label.
    assert!(!page.contains("nowhere-metrics"));
    assert!(!page.contains(&token));
}

#[tokio::test]
async fn reloads_under_load_fail_no_request_and_switch_cleanly() {
    let (first, second) = tokio::join!(upstream::start("first"), upstream::start("second"));
    let config_for = |target: &str| {
        format!("[server]\nhttp = \"127.0.0.1:0\"\n\n[[routes]]\nid = \"r\"\nupstream = \"{target}\"\npublic = true\n")
    };
    let gateway = start_gateway(&config_for(&first.url())).await;
    let path = gateway.dir.path().join("gateway.toml");
    let running = gateway.gateway.as_ref().unwrap();
    let valid = [config_for(&first.url()), config_for(&second.url())];
    let invalid = "[server]\nhttp = \"BROKEN\"\n".to_string();

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (stop, ok, failed, url) = (stop.clone(), ok.clone(), failed.clone(), gateway.url("/"));
        clients.push(tokio::spawn(async move {
            let client = support::http1_client();
            // Bounded: at most 20 000 requests per client, stopping when told.
            for _ in 0..20_000 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let outcome = tokio::time::timeout(
                    Duration::from_secs(5),
                    client.request(Request::get(&url).body(Full::default()).unwrap()),
                )
                .await;
                match outcome {
                    Ok(Ok(response)) if response.status() == 200 => {
                        ok.fetch_add(1, Ordering::SeqCst)
                    }
                    _ => failed.fetch_add(1, Ordering::SeqCst),
                };
            }
        }));
    }
    for round in 0..20 {
        let text = if round % 3 == 2 {
            &invalid
        } else {
            &valid[round % 2]
        };
        std::fs::write(&path, text).unwrap();
        let loaded = authgate::config::Config::load(&path);
        match (round % 3 == 2, loaded) {
            (true, Err(_)) => {}
            (false, Ok(config)) => running.reload(config).unwrap(),
            (invalid, outcome) => panic!(
                "round {round}: invalid={invalid} but load gave {:?}",
                outcome.is_ok()
            ),
        }
        // After a valid reload, every new request sees the new snapshot.
        if round % 3 != 2 {
            let expected = if round % 2 == 0 { "first" } else { "second" };
            assert_eq!(
                get(&gateway.url("/")).await.json()["server"],
                expected,
                "round {round}"
            );
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.await.unwrap();
    }
    assert!(
        ok.load(Ordering::SeqCst) > 100,
        "too few requests: {}",
        ok.load(Ordering::SeqCst)
    );
    assert_eq!(
        failed.load(Ordering::SeqCst),
        0,
        "requests failed across 20 reloads"
    );
}

#[tokio::test]
async fn a_graceful_shutdown_under_load_completes_every_accepted_request() {
    let up = upstream::start("slow").await;
    let config = format!("[server]\nhttp = \"127.0.0.1:0\"\nshutdown_grace = \"10s\"\n\n[[routes]]\nid = \"r\"\nupstream = \"{}\"\npublic = true\n", up.url());
    let mut gateway = start_gateway(&config).await;
    let url = gateway.url("/slow/300");
    let (completed, broken_after_accept) =
        (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut clients = Vec::new();
    for _ in 0..16 {
        let (url, completed, broken) =
            (url.clone(), completed.clone(), broken_after_accept.clone());
        clients.push(tokio::spawn(async move {
            // One request on a fresh connection: once its head is accepted it must complete.
            let client = support::http1_client();
            match tokio::time::timeout(
                Duration::from_secs(10),
                client.request(Request::get(&url).body(Full::default()).unwrap()),
            )
            .await
            {
                Ok(Ok(response)) if response.status() == 200 => {
                    completed.fetch_add(1, Ordering::SeqCst);
                }
                _ => {
                    broken.fetch_add(1, Ordering::SeqCst);
                }
            }
        }));
    }
    up.wait_for_requests(16).await;
    let drained = gateway.shutdown().await;
    for client in clients {
        client.await.unwrap();
    }
    assert!(drained, "the drain finished within the grace period");
    assert_eq!(completed.load(Ordering::SeqCst), 16);
    assert_eq!(broken_after_accept.load(Ordering::SeqCst), 0);
}

#[test]
fn the_binary_reloads_when_its_files_change_and_logs_json_access_lines() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (first, second) = runtime
        .block_on(async { tokio::join!(upstream::start("first"), upstream::start("second")) });
    let config = |target: &str| {
        format!("[server]\nhttp = \"127.0.0.1:0\"\n\n[log]\nformat = \"json\"\n\n[[routes]]\nid = \"r\"\nupstream = \"{target}\"\npublic = true\n")
    };
    let gateway = GatewayProcess::spawn(&config(&first.url()));
    let url = format!("http://{}/logged?secret=hunter2", gateway.http);
    runtime.block_on(async {
        let request = Request::get(&url)
            .header("authorization", "Bearer not-logged")
            .body(Full::default())
            .unwrap();
        assert_eq!(
            send(&support::http1_client(), request).await.json()["server"],
            "first"
        );
    });
    let line = gateway
        .wait_for_log(|line| line.contains("authgate::access").then(|| line.to_string()))
        .expect("an access log line");
    let entry: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    assert_eq!(entry["route"], "r");
    assert_eq!(entry["method"], "GET");
    assert_eq!(entry["path"], "/logged");
    assert_eq!(entry["status"], 200);
    assert_eq!(entry["client"], "127.0.0.1");
    assert!(entry["request_id"]
        .as_str()
        .is_some_and(|id| id.len() == 36));
    assert!(entry["duration_ms"].is_number());
    assert!(
        !line.contains("hunter2") && !line.contains("not-logged"),
        "secrets in the log: {line}"
    );

    // Editing the file is enough: no signal.
    let path = gateway.dir.path().join("gateway.toml");
    let bound = gateway.http.to_string();
    std::fs::write(&path, config(&second.url())).unwrap();
    gateway
        .wait_for_log(|line| line.contains("configuration reloaded").then_some(()))
        .expect("reloaded on change");
    runtime.block_on(async {
        assert_eq!(
            get(&format!("http://{bound}/")).await.json()["server"],
            "second"
        );
    });
}

#[tokio::test]
async fn traceparent_passes_through_unchanged_or_is_generated() {
    let up = upstream::start("up").await;
    let config = support::public_route_config(&up.url());
    let gateway = start_gateway(&config).await;
    let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let request = Request::get(gateway.url("/"))
        .header("traceparent", incoming)
        .body(Full::default())
        .unwrap();
    assert_eq!(
        send(&support::http1_client(), request).await.json()["headers"]["traceparent"],
        incoming
    );
    let generated = get(&gateway.url("/")).await.json()["headers"]["traceparent"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        authgate::proxy::headers::valid_traceparent(generated.as_bytes()),
        "{generated}"
    );
    assert_ne!(generated, incoming);
}

#[tokio::test]
async fn a_certificate_reload_serves_new_handshakes_and_keeps_live_connections() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    support::install_crypto();
    let ca = support::certs::TestCa::new();
    let (old, new) = (ca.issue(&["api.test"]), ca.issue(&["api.test"]));
    let dir = tempfile::tempdir().unwrap();
    support::write_file(dir.path(), "api.pem", &old.cert_pem);
    support::write_file(dir.path(), "api-key.pem", &old.key_pem);
    let config = "[server]\nhttps = \"127.0.0.1:0\"\n\n[[tls.certificates]]\ncert = \"api.pem\"\nkey = \"api-key.pem\"\n\n[[routes]]\nid = \"r\"\nupstream = \"builtin:echo\"\npublic = true\n";
    let gateway = support::start_gateway_in(dir, config).await;
    let address = gateway.https.unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(ca.client_config(&[b"http/1.1"])));
    let connect = || async {
        let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
        connector
            .connect(support::certs::server_name("api.test"), tcp)
            .await
            .unwrap()
    };
    let mut live = connect().await;
    assert_eq!(live.get_ref().1.peer_certificates().unwrap()[0], old.der);

    support::write_file(gateway.dir.path(), "api.pem", &new.cert_pem);
    support::write_file(gateway.dir.path(), "api-key.pem", &new.key_pem);
    let reloaded =
        authgate::config::Config::load(&gateway.dir.path().join("gateway.toml")).unwrap();
    gateway.gateway.as_ref().unwrap().reload(reloaded).unwrap();

    let fresh = connect().await;
    assert_eq!(
        fresh.get_ref().1.peer_certificates().unwrap()[0],
        new.der,
        "new handshakes get the new certificate"
    );
    // The connection opened before the reload still works.
    live.write_all(b"GET /still-alive HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(5), live.read_to_string(&mut response))
        .await
        .unwrap()
        .unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
}

#[tokio::test]
async fn websockets_and_http2_connections_survive_reloads() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let up = upstream::start("up").await;
    let config = support::public_route_config(&up.url());
    let gateway = start_gateway(&config).await;
    let (mut socket, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/ws", gateway.http.unwrap()))
            .await
            .unwrap();
    let h2 = support::http2_client();
    assert_eq!(
        send(
            &h2,
            Request::get(gateway.url("/"))
                .body(Full::default())
                .unwrap()
        )
        .await
        .status(),
        200
    );
    let path = gateway.dir.path().join("gateway.toml");
    for round in 0..5 {
        let config = authgate::config::Config::load(&path).unwrap();
        gateway.gateway.as_ref().unwrap().reload(config).unwrap();
        socket
            .send(Message::text(format!("after reload {round}")))
            .await
            .unwrap();
        let echoed = tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(echoed, Message::text(format!("after reload {round}")));
        assert_eq!(
            send(
                &h2,
                Request::get(gateway.url("/"))
                    .body(Full::default())
                    .unwrap()
            )
            .await
            .status(),
            200
        );
    }
}

#[tokio::test]
async fn an_idp_outage_under_load_keeps_known_keys_passing_and_shows_the_staleness() {
    use support::idp::{claims, Idp, TestKey};
    let key = TestKey::generate("k1", jsonwebtoken::Algorithm::ES256);
    let idp = Idp::start(vec![key.jwk.clone()]).await;
    let config = format!(
        "[server]\nhttp = \"127.0.0.1:0\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n[[issuers]]\nid = \"outage-idp\"\nissuer = \"{}\"\naudiences = [\"api\"]\njwks_url = \"{}\"\nrefresh = \"1s\"\n\n[[routes]]\nid = \"outage\"\nupstream = \"builtin:echo\"\n",
        idp.url(),
        idp.jwks_url()
    );
    let gateway = start_gateway(&config).await;
    idp.wait_for_fetches(1).await;
    let token = key.sign(&claims(&idp.url(), "alice"));
    let call = || {
        let request = Request::get(gateway.url("/"))
            .header("authorization", format!("Bearer {token}"))
            .body(Full::default())
            .unwrap();
        async { send(&support::http1_client(), request).await.status() }
    };
    for _ in 0..200 {
        if call().await == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    idp.set_up(false);
    // Two refresh periods of outage with traffic flowing.
    let deadline = tokio::time::Instant::now() + Duration::from_millis(2500);
    let mut served = 0;
    while tokio::time::Instant::now() < deadline {
        assert_eq!(
            call().await,
            200,
            "a known key stopped working during the outage"
        );
        served += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(served > 20);
    let page = String::from_utf8(
        get(&format!("http://{}/metrics", gateway.admin.unwrap()))
            .await
            .body
            .to_vec(),
    )
    .unwrap();
    let failed = series(
        &page,
        "authgate_jwks_refresh_total",
        &["issuer=\"outage-idp\"", "result=\"error\""],
    );
    assert!(!failed.is_empty(), "failed refreshes are counted:\n{page}");
    let age = series(
        &page,
        "authgate_jwks_age_seconds",
        &["issuer=\"outage-idp\""],
    );
    let seconds: f64 = age
        .first()
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap();
    assert!(
        seconds >= 1.0,
        "the key set's age shows the staleness: {seconds}"
    );
}

#[tokio::test]
async fn memory_stays_flat_across_many_requests() {
    let gateway = GatewayProcess::spawn("[server]\nhttp = \"127.0.0.1:0\"\nworkers = 2\n\n[[routes]]\nid = \"r\"\nupstream = \"builtin:echo\"\npublic = true\n");
    let url = format!("http://{}/flat", gateway.http);
    let rss_kib = || {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", gateway.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap()
    };
    let round = || async {
        let mut clients = Vec::new();
        for _ in 0..8 {
            let url = url.clone();
            clients.push(tokio::spawn(async move {
                let client = support::http1_client();
                for _ in 0..500 {
                    let response = client
                        .request(Request::get(&url).body(Full::default()).unwrap())
                        .await
                        .unwrap();
                    assert_eq!(response.status(), 200);
                }
            }));
        }
        for client in clients {
            client.await.unwrap();
        }
    };
    // The first round warms pools, buffers and the allocator; later rounds must not grow.
    round().await;
    let warm = rss_kib();
    for _ in 0..4 {
        round().await;
    }
    let after = rss_kib();
    eprintln!("gateway RSS: {warm} KiB after 4,000 requests, {after} KiB after 20,000");
    assert!(
        after < warm + 4 * 1024,
        "RSS grew from {warm} KiB to {after} KiB over 16,000 requests"
    );
}

/// The watcher starts from the version of the file the running config was read from: an edit
/// made after the read but before the watcher runs (while the listeners start, say) is applied,
/// even when it keeps the file's length and lands within one tick of the file system's clock.
#[tokio::test]
async fn an_edit_made_while_the_gateway_starts_is_reloaded() {
    let (first, second) = tokio::join!(upstream::start("first"), upstream::start("second"));
    let config = |target: &str, width: usize| {
        let text = format!("[server]\nhttp = \"127.0.0.1:0\"\n\n[[routes]]\nid = \"r\"\nupstream = \"{target}\"\npublic = true\n");
        format!("{text}{}\n", "#".repeat(width - text.len()))
    };
    let (a, b) = (config(&first.url(), 200), config(&second.url(), 200));
    assert_eq!(a.len(), b.len());
    support::install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, &a).unwrap();

    let baseline = authgate::server::Baseline::before_reading(&path);
    let loaded = authgate::config::Config::load(&path).unwrap();
    let baseline = baseline.with_sources(&loaded);
    std::fs::write(&path, &b).unwrap();
    let gateway = authgate::server::RunningGateway::start(loaded)
        .await
        .unwrap();
    let watcher = gateway.reloader().watch(path.clone(), baseline);

    let url = format!("http://{}/", gateway.http_addr.unwrap());
    let mut server = String::new();
    for _ in 0..100 {
        server = get(&url).await.json()["server"]
            .as_str()
            .unwrap()
            .to_string();
        if server == "second" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    watcher.abort();
    assert_eq!(
        server, "second",
        "the edit made before the watcher started was never applied"
    );
}
