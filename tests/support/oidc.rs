//! A real OpenID Connect provider for the sign-in tests: oauth2-mock-server (npm, pinned by
//! tests/oidc/package-lock.json) served by `node tests/oidc/provider.mjs` on a free loopback
//! port, killed when dropped; and a small browser-like client (a cookie jar, redirects
//! followed by hand) to drive the flow over real HTTP.
//!
//! The packages are installed with `npm ci` the first time a test needs them; a lock file keeps
//! parallel test processes from installing at once. Without Node, the tests say why and skip
//! (in CI they fail instead: `.ci/run` installs it).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::Value;

use super::{http1_client, send, Reply};

/// The npm package folder.
pub fn package_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc")
}

/// Whether Node is installed; when it is not, prints why the caller skips (and panics in CI).
pub fn node_available() -> bool {
    super::installed_or_skip(super::runs("node"), "node", "apt-get install nodejs npm")
}

fn installed(dir: &Path) -> bool {
    ["oauth2-mock-server", "playwright-core"]
        .iter()
        .all(|name| {
            dir.join("node_modules")
                .join(name)
                .join("package.json")
                .is_file()
        })
}

/// Runs `npm ci` in tests/oidc unless the packages are there, once across test processes.
pub fn ensure_packages() {
    let dir = package_dir();
    let lock = dir.join(".npm-ci.lock");
    let deadline = Instant::now() + Duration::from_secs(300);
    while !installed(&dir) {
        assert!(
            Instant::now() < deadline,
            "npm ci did not finish within 5 minutes"
        );
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&lock)
        {
            Ok(_) => {
                let status = Command::new("npm")
                    .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                    .current_dir(&dir)
                    .status();
                let _ = std::fs::remove_file(&lock);
                assert!(
                    status.is_ok_and(|s| s.success()),
                    "npm ci failed in {}",
                    dir.display()
                );
            }
            Err(_) => {
                // Another test process installs; a lock left by a killed one goes after 5 min.
                let stale = std::fs::metadata(&lock)
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > Duration::from_secs(300)));
                if stale {
                    let _ = std::fs::remove_file(&lock);
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

/// A running provider.
pub struct Provider {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl Provider {
    /// Starts the provider and waits (at most 20 s) for it to print its port.
    pub fn start() -> Provider {
        ensure_packages();
        let mut child = Command::new("node")
            .arg("provider.mjs")
            .current_dir(package_dir())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node runs");
        let stdout = child.stdout.take().unwrap();
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = sender.send(line);
        });
        let line = receiver
            .recv_timeout(Duration::from_secs(20))
            .expect("the provider prints its port within 20 s");
        let port = serde_json::from_str::<Value>(&line)
            .ok()
            .and_then(|v| v["port"].as_u64())
            .unwrap_or_else(|| panic!("the provider printed {line:?}"));
        Provider {
            child,
            port: u16::try_from(port).unwrap(),
        }
    }

    /// `http://127.0.0.1:PORT`, its issuer.
    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn control(&self, method: &str, path: &str, body: Value) -> Value {
        let request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.issuer()))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap();
        let reply = send(&http1_client(), request).await;
        reply.assert_status(200);
        reply.json()
    }

    /// Changes how the provider answers (see provider.mjs).
    pub async fn set(&self, settings: Value) {
        self.control("POST", "/control/set", settings).await;
    }

    /// A JWT with `claims` signed with the provider's own key.
    pub async fn sign(&self, claims: Value, typ: Option<&str>) -> String {
        let reply = self
            .control(
                "POST",
                "/control/sign",
                serde_json::json!({ "claims": claims, "typ": typ }),
            )
            .await;
        reply["token"].as_str().unwrap().to_string()
    }

    /// What the provider was asked: token calls by grant, end-session calls.
    pub async fn calls(&self) -> Value {
        self.control("GET", "/control/calls", Value::Null).await
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A gateway with sign-in through `provider` (client `authgate`, an unprefixed cookie without
/// `Secure` for plain http), its `[state]` section `state`, a protected app on `upstream`
/// (sessions or JWTs; `/admin` needs the `admins` role from `groups`), and a public landing
/// page at `/public`; `extra` is appended.
pub fn gateway_config(
    provider: &Provider,
    upstream: &str,
    secret: &str,
    state: &str,
    extra: &str,
) -> String {
    format!(
        r#"[server]
http = "127.0.0.1:0"

[admin]
listen = "127.0.0.1:0"

[state]
{state}

[identity]
claims = {{ email = "X-Auth-Email", groups = "X-Auth-Groups" }}

[[issuers]]
id = "corp"
issuer = "{issuer}"
audiences = ["orders-api"]
discovery = true
roles_claim = "groups"

[sign_in]
issuer = "corp"
client_id = "authgate"
client_secret = "client-secret-1"
cookie = "authgate"
cookie_secure = false
cookie_secret = "{secret}"
logout_redirect = "/public"
session_idle = "1h"
session_max = "8h"

[[routes]]
id = "public"
path = "/public"
upstream = "builtin:echo"
public = true

[[routes]]
id = "admin"
path = "/admin"
upstream = "{upstream}"
auth = ["session"]
roles = ["admins"]

[[routes]]
id = "app"
path = "/"
upstream = "{upstream}"
auth = ["session", "jwt"]
{extra}"#,
        issuer = provider.issuer(),
    )
}

/// A client that keeps cookies like a browser (by name, for every 127.0.0.1 port, as browsers
/// do: cookies do not care about ports) and follows redirects only when asked.
#[derive(Default, Clone)]
pub struct Browser {
    /// Cookie name → value.
    pub jar: HashMap<String, String>,
    /// Every `Set-Cookie` received, as sent.
    pub set_cookies: Vec<String>,
}

/// One hop of a navigation.
pub struct Hop {
    pub url: String,
    pub reply: Reply,
}

impl Browser {
    /// The `Cookie` header the jar sends.
    pub fn cookie_header(&self) -> String {
        let mut pairs: Vec<String> = self.jar.iter().map(|(k, v)| format!("{k}={v}")).collect();
        pairs.sort();
        pairs.join("; ")
    }

    /// One request, cookies sent and kept; `headers` added.
    pub async fn request(&mut self, method: &str, url: &str, headers: &[(&str, &str)]) -> Reply {
        let mut builder = Request::builder().method(method).uri(url);
        if !self.jar.is_empty() {
            builder = builder.header("cookie", self.cookie_header());
        }
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let reply = send(&http1_client(), builder.body(Full::default()).unwrap()).await;
        self.keep(&reply);
        reply
    }

    /// Keeps the cookies a response sets (Max-Age=0 deletes).
    pub fn keep(&mut self, reply: &Reply) {
        for value in reply.response.headers().get_all("set-cookie") {
            let text = value.to_str().unwrap().to_string();
            let pair = text.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            if text.contains("Max-Age=0") {
                self.jar.remove(name);
            } else {
                self.jar.insert(name.to_string(), value.to_string());
            }
            self.set_cookies.push(text);
        }
    }

    /// A GET as a browser's navigation (`Sec-Fetch-Mode: navigate`, HTML accepted).
    pub async fn visit(&mut self, url: &str) -> Reply {
        self.request(
            "GET",
            url,
            &[
                ("accept", "text/html,application/xhtml+xml"),
                ("sec-fetch-mode", "navigate"),
            ],
        )
        .await
    }

    /// A script's request (`fetch`, XHR): JSON accepted, no navigation.
    pub async fn fetch(&mut self, url: &str) -> Reply {
        self.request("GET", url, &[("accept", "application/json")])
            .await
    }

    /// A navigation to `url`, following redirects (at most 10) as a browser does; every hop.
    pub async fn navigate(&mut self, url: &str) -> Vec<Hop> {
        let mut hops = Vec::new();
        let mut next = url.to_string();
        for _ in 0..10 {
            let reply = self.visit(&next).await;
            let location = reply.header("location").map(|l| resolve(&next, l));
            let redirected = (300..400).contains(&reply.status());
            hops.push(Hop {
                url: next.clone(),
                reply,
            });
            match location {
                Some(location) if redirected => next = location,
                _ => return hops,
            }
        }
        panic!("more than 10 redirects from {url}");
    }
}

/// `location` resolved against `base` (absolute URLs as they are; paths on base's origin).
pub fn resolve(base: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        return location.to_string();
    }
    let uri: http::Uri = base.parse().unwrap();
    format!(
        "{}://{}{location}",
        uri.scheme_str().unwrap(),
        uri.authority().unwrap()
    )
}

/// The query parameter `name` of `url`, decoded.
pub fn query_param(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    form_urlencoded_pairs(query)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

fn form_urlencoded_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Some((decode(k)?, decode(v)?))
        })
        .collect()
}

fn decode(text: &str) -> Option<String> {
    percent_encoding::percent_decode_str(&text.replace('+', " "))
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

/// `url` with its query parameter `name` set to `value` (or removed, for `None`).
pub fn with_param(url: &str, name: &str, value: Option<&str>) -> String {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut pairs: Vec<String> = query
        .split('&')
        .filter(|p| !p.is_empty() && p.split('=').next() != Some(name))
        .map(str::to_string)
        .collect();
    if let Some(value) = value {
        let encoded: String =
            percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC)
                .collect();
        pairs.push(format!("{name}={encoded}"));
    }
    format!("{base}?{}", pairs.join("&"))
}
