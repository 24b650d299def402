//! Test harness: a real gateway (in-process from a config string, or the real binary as a
//! child process), a real upstream that reports what it received, HTTP clients, and test
//! certificates. Everything listens on 127.0.0.1 port 0.
#![allow(dead_code, clippy::unwrap_used)]

pub mod certs;
pub mod grpc;
pub mod idp;
pub mod limits;
pub mod nginx;
pub mod oidc;
pub mod provider;
pub mod raw_upstream;
pub mod redis;
pub mod upstream;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use authgate::config::Config;
use authgate::server::RunningGateway;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tempfile::TempDir;

/// A gateway running in this process, with the directory its config lives in.
pub struct TestGateway {
    pub gateway: Option<RunningGateway>,
    pub http: Option<SocketAddr>,
    pub https: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
    pub dir: TempDir,
}

impl TestGateway {
    /// `http://127.0.0.1:PORT` of the plain listener, followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!(
            "http://{}{path}",
            self.http.expect("the config has an http listener")
        )
    }

    /// Stops the gateway gracefully; returns whether everything finished within the grace.
    pub async fn shutdown(&mut self) -> bool {
        self.gateway.take().expect("running").shutdown().await
    }
}

/// Whether `found` (a program the tests need is installed); when it is not, prints why the
/// caller skips, and panics in CI, whose `.ci/run` installs it. `what` names it, `install` says
/// how to get it.
pub fn installed_or_skip(found: bool, what: &str, install: &str) -> bool {
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "{what} is missing in CI: .ci/run installs it"
        );
        eprintln!("skipped: {what} is not installed ({install})");
    }
    found
}

/// Whether `program --version` runs.
pub fn runs(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Waits (at most 10 s) until the gateway's `/readyz` answers 200.
pub async fn wait_ready(gateway: &TestGateway) {
    let url = format!(
        "http://{}/readyz",
        gateway.admin.expect("an admin listener")
    );
    for _ in 0..1000 {
        if get(&url).await.status() == 200 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("not ready within 10 s");
}

/// Installs the crypto provider the binary installs (once per test process).
pub fn install_crypto() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// Starts a gateway from `toml`, written as `gateway.toml` in a new temporary directory.
pub async fn start_gateway(toml: &str) -> TestGateway {
    start_gateway_in(tempfile::tempdir().unwrap(), toml).await
}

/// Starts a gateway from `toml`, written as `gateway.toml` in `dir` (which may already hold the
/// certificates the config names).
pub async fn start_gateway_in(dir: TempDir, toml: &str) -> TestGateway {
    install_crypto();
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, toml).unwrap();
    let config = Config::load(&path).unwrap_or_else(|e| panic!("test config is invalid:\n{e}"));
    let gateway = RunningGateway::start(config).await.unwrap();
    TestGateway {
        http: gateway.http_addr,
        https: gateway.https_addr,
        admin: gateway.admin_addr,
        gateway: Some(gateway),
        dir,
    }
}

/// The real `authgate` binary running as a child process.
pub struct GatewayProcess {
    pub child: Child,
    pub http: SocketAddr,
    pub dir: TempDir,
    log: mpsc::Receiver<String>,
}

impl GatewayProcess {
    /// Starts `authgate run` on `toml` and waits (bounded) until its http listener is bound.
    pub fn spawn(toml: &str) -> GatewayProcess {
        GatewayProcess::spawn_with(toml, &[("RUST_LOG", "info")])
    }

    /// Starts `authgate run` on `toml` with these environment variables set.
    pub fn spawn_with(toml: &str, env: &[(&str, &str)]) -> GatewayProcess {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("gateway.toml"), toml).unwrap();
        GatewayProcess::spawn_in(dir, env)
    }

    /// Starts `authgate run --config gateway.toml` in `dir`, with these environment variables.
    pub fn spawn_in(dir: TempDir, env: &[(&str, &str)]) -> GatewayProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_authgate"))
            .current_dir(dir.path())
            .args(["run", "--config", "gateway.toml"])
            .env_remove("AUTHGATE_DATA_DIR")
            .env_remove("STATE_DIRECTORY")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (sender, log) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let mut process = GatewayProcess {
            child,
            http: "0.0.0.0:0".parse().unwrap(),
            dir,
            log,
        };
        process.http = process
            .listener("http")
            .expect("the gateway binds its http listener within the time limit");
        process
    }

    /// Waits (bounded) for the "listening" line of `name` (`http`, `https`, `admin`); its
    /// address. Listeners are logged in that order, so ask for them in that order.
    pub fn listener(&self, name: &str) -> Option<SocketAddr> {
        self.wait_for_log(|line| {
            if line.contains(&format!("listener=\"{name}\"")) {
                // Text logs: `… listener="http" address=127.0.0.1:PORT`.
                return line.rsplit("address=").next()?.trim().parse().ok();
            }
            // JSON logs: `{…,"listener":"http","address":"127.0.0.1:PORT"}`.
            let entry: serde_json::Value = serde_json::from_str(line).ok()?;
            (entry["listener"] == name)
                .then(|| entry["address"].as_str()?.parse().ok())
                .flatten()
        })
    }

    /// Reads log lines (for at most 10 s) until `pick` finds something in one.
    pub fn wait_for_log<T>(&self, mut pick: impl FnMut(&str) -> Option<T>) -> Option<T> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            match self.log.recv_timeout(left) {
                Ok(line) => {
                    if let Some(found) = pick(&line) {
                        return Some(found);
                    }
                }
                Err(_) => return None,
            }
        }
        None
    }

    /// Sends a signal (`TERM`, `HUP`, …) to the process.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// The process's peak resident memory in KiB (VmHWM).
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// Waits (at most `limit`) for the process to exit; its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `authgate check` on `toml` (written as gateway.toml in a new directory); returns the
/// exit code and stderr.
pub fn check_config(toml: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("gateway.toml"), toml).unwrap();
    check_in(dir.path())
}

/// Runs `authgate check` on the gateway.toml in `dir`; returns the exit code and stderr.
pub fn check_in(dir: &Path) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_authgate"))
        .current_dir(dir)
        .args(["check", "--config", "gateway.toml"])
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The simplest config: a plain listener on port 0 and one public route `r` to `upstream`.
pub fn public_route_config(upstream: &str) -> String {
    format!("[server]\nhttp = \"127.0.0.1:0\"\n\n[[routes]]\nid = \"r\"\nupstream = \"{upstream}\"\npublic = true\n")
}

/// A plain HTTP/1.1 client.
pub fn http1_client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// A plain HTTP/2 client (prior knowledge, no upgrade dance).
pub fn http2_client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

/// A response with its whole body read.
pub struct Reply {
    pub response: Response<()>,
    pub body: Bytes,
}

impl Reply {
    pub fn status(&self) -> u16 {
        self.response.status().as_u16()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
    }

    /// Asserts the status, showing the body when it differs.
    pub fn assert_status(&self, expected: u16) {
        assert_eq!(
            self.status(),
            expected,
            "{}",
            String::from_utf8_lossy(&self.body)
        );
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

/// Sends `request` with `client` and reads the whole response (bounded to 10 s).
pub async fn send(
    client: &Client<HttpConnector, Full<Bytes>>,
    request: Request<Full<Bytes>>,
) -> Reply {
    let exchange = async {
        let response = client.request(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        Reply {
            response: Response::from_parts(parts, ()),
            body,
        }
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .expect("response within 10 s")
}

/// GET `url` over HTTP/1.1.
pub async fn get(url: &str) -> Reply {
    send(
        &http1_client(),
        Request::get(url).body(Full::default()).unwrap(),
    )
    .await
}

/// An address nothing listens on (bound, then released).
pub fn closed_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// Writes `contents` to `name` inside `dir`.
pub fn write_file(dir: &Path, name: &str, contents: impl AsRef<[u8]>) {
    std::fs::write(dir.join(name), contents).unwrap();
}

/// Sends `bytes` on a new TCP connection to `addr` and reads the first response: until its
/// head and Content-Length body are in, or the gateway closes (bounded to 5 s). The text of
/// what arrived, empty if the connection was closed without an answer.
pub async fn raw_request(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stream, bytes)
        .await
        .unwrap();
    read_response(&mut stream).await
}

/// Reads one response from `stream` (see [`raw_request`]).
pub async fn read_response(stream: &mut tokio::net::TcpStream) -> String {
    let mut received = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut buffer = [0u8; 4096];
    loop {
        if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&received[..end]).to_ascii_lowercase();
            let length = head
                .split("\r\n")
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if received.len() >= end + 4 + length {
                break;
            }
        }
        match tokio::time::timeout_at(deadline, tokio::io::AsyncReadExt::read(stream, &mut buffer))
            .await
        {
            Err(_) => panic!(
                "no complete response within 5 s; got:\n{}",
                String::from_utf8_lossy(&received)
            ),
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => received.extend_from_slice(&buffer[..n]),
        }
    }
    String::from_utf8_lossy(&received).into_owned()
}

/// The names of the entries of `dir`, sorted: what a test compares to see that nothing was
/// written there.
pub fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}
