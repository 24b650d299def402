//! The gateway as a user runs it: the real binary, its `check` command, its admin endpoints,
//! large bodies streamed with bounded memory, SIGHUP reload and graceful shutdown on SIGTERM.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use support::{check_config, get, upstream, GatewayProcess};

const GIB: u64 = 1 << 30;

fn proxy_config(upstream: &str, extra_server: &str) -> String {
    format!(
        "[server]\nhttp = \"127.0.0.1:0\"\n{extra_server}\n\n[[routes]]\nid = \"r\"\nupstream = \"{upstream}\"\npublic = true\n"
    )
}

#[tokio::test]
async fn a_gibibyte_streams_both_ways_with_bounded_gateway_memory() {
    let up = upstream::start("big").await;
    let gateway =
        GatewayProcess::spawn(&proxy_config(&up.url(), "max_body = \"2GiB\"\nworkers = 2"));
    let base = format!("http://{}", gateway.http);
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();

    // Upload: 1 GiB generated on the fly, chunked; the upstream counts what arrives.
    let chunk = Bytes::from(vec![b'u'; 256 * 1024]);
    let chunks = futures_util::stream::iter(
        (0..GIB / chunk.len() as u64)
            .map(move |_| Ok::<_, std::convert::Infallible>(Frame::data(chunk.clone()))),
    );
    let upload = Request::post(format!("{base}/upload"))
        .body(StreamBody::new(chunks))
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(120), client.request(upload))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let summary: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(summary["body_bytes"], GIB);

    // Download: 1 GiB from the upstream, counted as it arrives.
    let download = Request::get(format!("{base}/download/{GIB}"))
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let response = tokio::time::timeout(Duration::from_secs(10), client.request(download))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut received = 0u64;
    let counted = async {
        while let Some(frame) = body.frame().await {
            received += frame.unwrap().data_ref().map_or(0, |d| d.len() as u64);
        }
    };
    tokio::time::timeout(Duration::from_secs(120), counted)
        .await
        .unwrap();
    assert_eq!(received, GIB);

    // Streaming means the gateway's peak memory is a tiny fraction of what passed through.
    let peak_kib = gateway.peak_rss_kib();
    eprintln!("gateway peak RSS after 2 GiB: {peak_kib} KiB");
    assert!(
        peak_kib < 64 * 1024,
        "gateway peak RSS {peak_kib} KiB after moving 2 GiB"
    );
}

#[tokio::test]
async fn sigterm_lets_the_request_in_flight_finish_then_exits_zero() {
    let up = upstream::start("slow").await;
    let mut gateway = GatewayProcess::spawn(&proxy_config(&up.url(), "shutdown_grace = \"10s\""));
    let url = format!("http://{}/slow/1500", gateway.http);
    let in_flight = tokio::spawn(async move { get(&url).await });
    up.wait_for_requests(1).await;

    gateway.signal("TERM");
    // New connections are refused once the listener is closed (bounded wait for it).
    let address = gateway.http;
    let mut refused = false;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(address).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused, "the gateway kept accepting after SIGTERM");

    let reply = in_flight.await.unwrap();
    assert_eq!(reply.status(), 200, "the in-flight request completed");
    assert_eq!(reply.json()["server"], "slow");
    let code = tokio::task::spawn_blocking(move || gateway.wait_exit(Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(code, Some(0));
}

#[tokio::test]
async fn sighup_reloads_routes_and_a_bad_file_keeps_the_running_config() {
    let (first, second) = tokio::join!(upstream::start("first"), upstream::start("second"));
    let gateway = GatewayProcess::spawn(&proxy_config(&first.url(), ""));
    let url = format!("http://{}/", gateway.http);
    assert_eq!(get(&url).await.json()["server"], "first");
    let config_path = gateway.dir.path().join("gateway.toml");
    let current = std::fs::read_to_string(&config_path).unwrap();

    // A broken file: the running config stays, the error names the place.
    std::fs::write(
        &config_path,
        current.replace("public = true", "public = true\nbogus = 1"),
    )
    .unwrap();
    gateway.signal("HUP");
    let error =
        gateway.wait_for_log(|line| line.contains("reload failed").then(|| line.to_string()));
    let error = error.expect("the failed reload is logged");
    assert!(
        error.contains("gateway.toml:9:1: unknown field `bogus`"),
        "{error}"
    );
    assert_eq!(get(&url).await.json()["server"], "first");

    // A good file: new requests go to the new upstream. Listeners keep their port 0 binding.
    std::fs::write(&config_path, current.replace(&first.url(), &second.url())).unwrap();
    gateway.signal("HUP");
    gateway
        .wait_for_log(|line| line.contains("configuration reloaded").then_some(()))
        .expect("reloaded");
    assert_eq!(get(&url).await.json()["server"], "second");
}

#[tokio::test]
async fn admin_endpoints_answer_on_their_own_listener_only() {
    let config = "[server]\nhttp = \"127.0.0.1:0\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n[[routes]]\nid = \"echo\"\nupstream = \"builtin:echo\"\npublic = true\n";
    let gateway = support::start_gateway(config).await;
    let admin = gateway.admin.unwrap();
    let health = get(&format!("http://{admin}/healthz")).await;
    assert_eq!(health.status(), 200);
    assert_eq!(health.json()["status"], "ok");
    assert_eq!(get(&format!("http://{admin}/readyz")).await.status(), 200);
    let missing = get(&format!("http://{admin}/nothing")).await;
    assert_eq!(missing.status(), 404);
    assert_eq!(missing.json()["error"], "not_found");
    assert_eq!(
        missing.json()["request_id"].as_str().map(str::len),
        Some(36)
    );
    // Through the proxy listener, /healthz is just a path routed like any other.
    let routed = get(&gateway.url("/healthz")).await;
    assert_eq!(routed.json()["path"], "/healthz");
}

/// The files a fresh clone ships that the gateway reads.
const SHIPPED: [&str; 3] = ["gateway.toml", "users.toml", "keys.toml"];

#[test]
fn check_accepts_the_shipped_gateway_toml_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    for file in SHIPPED {
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        std::fs::copy(shipped, dir.path().join(file)).unwrap();
    }
    let before = support::file_names(dir.path());
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_authgate"))
        .current_dir(dir.path())
        .args(["check", "--config", "gateway.toml"])
        .env_remove("AUTHGATE_DATA_DIR")
        .env_remove("STATE_DIRECTORY")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("signing key will be generated at"),
        "{stdout}"
    );
    assert_eq!(
        support::file_names(dir.path()),
        before,
        "check wrote into the config directory"
    );
}

/// Under systemd's `StateDirectory=` the key lands in `$STATE_DIRECTORY`; a data directory that
/// cannot be written stops the start with a message naming it and `data_dir`.
#[test]
fn the_token_service_keeps_its_data_where_the_service_manager_says() {
    let config = "[server]\nhttp = \"127.0.0.1:0\"\n\n[token_service]\nissuer = \"http://127.0.0.1/auth\"\naudience = \"a\"\nstore = \"memory\"\n\n[[routes]]\nid = \"r\"\nupstream = \"builtin:echo\"\npublic = true\n";
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("gateway.toml"), config).unwrap();
    let run = |env: &[(&str, &str)]| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_authgate"));
        command
            .args(["token", "--issuer", "authgate", "--sub", "x", "--config"])
            .arg(dir.path().join("gateway.toml"))
            .env_remove("AUTHGATE_DATA_DIR")
            .env_remove("STATE_DIRECTORY");
        for (name, value) in env {
            command.env(name, value);
        }
        command.output().unwrap()
    };
    // `token` writes nothing either: the key it would sign with does not exist yet.
    let output = run(&[("STATE_DIRECTORY", state.path().to_str().unwrap())]);
    assert!(!state.path().join("token-signing-key.pem").exists());
    drop(output);

    let mut gateway = std::process::Command::new(env!("CARGO_BIN_EXE_authgate"))
        .args(["run", "--config"])
        .arg(dir.path().join("gateway.toml"))
        .env("STATE_DIRECTORY", state.path())
        .env_remove("AUTHGATE_DATA_DIR")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let key = state.path().join("token-signing-key.pem");
    for _ in 0..100 {
        if key.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    gateway.kill().unwrap();
    gateway.wait().unwrap();
    assert!(key.exists(), "no key in $STATE_DIRECTORY");
    assert_eq!(
        support::file_names(dir.path()),
        ["gateway.toml"],
        "the config directory was written"
    );

    // /proc cannot be written, not even by root.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_authgate"))
        .args(["run", "--config"])
        .arg(dir.path().join("gateway.toml"))
        .env("AUTHGATE_DATA_DIR", "/proc/authgate-data")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("/proc/authgate-data/token-signing-key.pem") && stderr.contains("data_dir"),
        "{stderr}"
    );
}

#[test]
fn check_reports_a_syntax_or_unknown_key_error_with_line_and_column() {
    let (code, stderr) =
        check_config("[server]\nhttp = \"127.0.0.1:0\"\nheader_timout = \"10s\"\n");
    assert_eq!(code, 1);
    assert!(
        stderr.starts_with("gateway.toml:3:1: unknown field `header_timout`"),
        "{stderr}"
    );

    let (code, stderr) = check_config("[server]\nhttp = 127.0.0.1:0\n");
    assert_eq!(code, 1);
    assert!(stderr.starts_with("gateway.toml:2:"), "{stderr}");
}

#[test]
fn check_reports_every_validation_error_with_its_place() {
    let config = r#"[server]
http = "127.0.0.1:0"
idle_timeout = "10 parsecs"
trusted_proxies = ["10.0.0.0/8", "not-a-network"]

[[routes]]
id = "a"
upstream = "nowhere"
public = true

[[routes]]
id = "a"
path = "orders"
upstream = "builtin:echo"
public = true

[[routes]]
id = "env"
host = "${AUTHGATE_TEST_SURELY_UNSET_VARIABLE}"
upstream = "builtin:echo"
public = true
"#;
    let (code, stderr) = check_config(config);
    assert_eq!(code, 1);
    let lines: Vec<&str> = stderr.lines().collect();
    let expected = [
        "gateway.toml:3:16: unknown duration unit",
        "gateway.toml:4:34: `not-a-network` is not a CIDR",
        "gateway.toml:8:12: upstream `nowhere` is not defined",
        "gateway.toml:12:6: route id `a` is used twice",
        "gateway.toml:13:8: route path `orders` must start with `/`",
        "gateway.toml:19:8: environment variable `AUTHGATE_TEST_SURELY_UNSET_VARIABLE` is not set",
    ];
    for wanted in expected {
        assert!(
            lines.iter().any(|l| l.starts_with(wanted)),
            "missing `{wanted}` in:\n{stderr}"
        );
    }
}

#[test]
fn check_refuses_a_route_that_needs_credentials_nobody_can_present() {
    let (code, stderr) = check_config("[server]\nhttp = \"127.0.0.1:0\"\n\n[[routes]]\nid = \"private\"\nupstream = \"builtin:echo\"\n");
    assert_eq!(code, 1);
    assert!(
        stderr.contains("gateway.toml:4:1: route `private` requires credentials"),
        "{stderr}"
    );
}

#[test]
fn interpolation_fills_values_from_the_environment() {
    let config = "[server]\nhttp = \"${AUTHGATE_TEST_LISTEN:-127.0.0.1:0}\"\n\n[[routes]]\nid = \"r\"\nupstream = \"builtin:echo\"\npublic = true\n";
    let (code, stderr) = check_config(config);
    assert_eq!(code, 0, "{stderr}");
}

/// One run reports every problem: unknown keys beside validation errors, a missing file at
/// the line that names it, a certificate that is not one at its `cert` line, in file order.
#[test]
fn check_reports_unknown_keys_and_every_other_error_in_one_run() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("garbage.pem"),
        "-----BEGIN CERTIFICATE-----\nZ2FyYmFnZQ==\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("key.pem"), "not a key").unwrap();
    let config = r#"[server]
http = "127.0.0.1:0"
header_timeout = "10 fortnights"
htp = "127.0.0.1:0"

[[tls.certificates]]
cert = "garbage.pem"
key = "key.pem"

[api_keys]
file = "missing-keys.toml"

[[routes]]
id = "r"
upstream = "builtin:echo"
scope = ["orders:read"]
"#;
    std::fs::write(dir.path().join("gateway.toml"), config).unwrap();
    let (code, stderr) = support::check_in(dir.path());
    assert_eq!(code, 1);
    let lines: Vec<&str> = stderr.lines().collect();
    let expected = [
        ("gateway.toml:3:18: ", "unknown duration unit"),
        ("gateway.toml:4:1: ", "unknown field `htp` in [server]"),
        (
            "gateway.toml:7:8: ",
            "garbage.pem does not hold a valid X.509 certificate",
        ),
        ("gateway.toml:11:8: ", "cannot read the keys file"),
        (
            "gateway.toml:16:1: ",
            "unknown field `scope` in [routes[0]]",
        ),
    ];
    assert_eq!(lines.len(), expected.len(), "{stderr}");
    for (line, (place, message)) in lines.iter().zip(expected) {
        assert!(
            line.starts_with(place) && line.contains(message),
            "`{line}` is not {place}{message}\n{stderr}"
        );
    }
}

/// A rejected reload that named a file which does not exist is retried when the file appears.
#[test]
fn creating_the_file_a_rejected_config_names_retries_it() {
    let base = "[server]\nhttp = \"127.0.0.1:0\"\n\n[[routes]]\nid = \"r\"\nupstream = \"builtin:echo\"\npublic = true\n";
    let gateway = GatewayProcess::spawn(base);
    let with_keys = format!(
        "{base}\n[api_keys]\nfile = \"keys.toml\"\n\n[[routes]]\nid = \"keys\"\npath = \"/keys\"\nupstream = \"builtin:echo\"\n"
    );
    std::fs::write(gateway.dir.path().join("gateway.toml"), with_keys).unwrap();
    gateway
        .wait_for_log(|line| {
            (line.contains("reload failed") && line.contains("keys.toml")).then_some(())
        })
        .expect("the reload is refused while keys.toml is missing");
    let (_, entry) = authgate::auth::api_keys::new_entry(Some("k"), "svc", &[], &[], None).unwrap();
    std::fs::write(gateway.dir.path().join("keys.toml"), entry).unwrap();
    gateway
        .wait_for_log(|line| line.contains("configuration reloaded").then_some(()))
        .expect("creating keys.toml retries the config that names it");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let reply = runtime.block_on(get(&format!("http://{}/keys", gateway.http)));
    assert_eq!(reply.status(), 401, "the new route is in force");
}
