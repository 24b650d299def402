//! A fleet: three gateway processes (the real binary) on one real redis-server. Refresh-token
//! families, revocations and the gateway's behaviour while Redis is away, as the replicas see
//! them together.
#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use authgate::token_service::{passwords, users};
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::{json, Value};
use support::redis::RedisServer;
use support::{http1_client, send, GatewayProcess, Reply};

/// What every replica shares: the signing key, the users, an API key.
struct Fleet {
    key_pem: String,
    users: String,
    api_key: String,
    api_key_entry: String,
}

impl Fleet {
    fn new() -> Fleet {
        let hash = passwords::hash("alice-password").unwrap();
        let (api_key, entry) = authgate::auth::api_keys::new_entry(
            Some("ci-bot-1"),
            "ci-bot",
            &["orders:read".to_string()],
            &[],
            None,
        )
        .unwrap();
        Fleet {
            key_pem: rcgen::KeyPair::generate().unwrap().serialize_pem(),
            users: users::entry("alice", &hash, &["profile".into()], &["reader".into()]),
            api_key,
            api_key_entry: entry.replace("[[keys]]\n", ""),
        }
    }

    fn config(&self, redis: &RedisServer) -> String {
        format!(
            r#"[server]
http = "127.0.0.1:0"

[admin]
listen = "127.0.0.1:0"

[state]
backend = "redis"
url = "{url}"
timeout = "50ms"

[token_service]
issuer = "https://gateway.test/auth"
audience = "demo"
users = "users.toml"
signing_keys = ["ts.pem"]

[api_keys]
[[api_keys.keys]]
{entry}

[[routes]]
id = "api"
path = "/api"
upstream = "builtin:echo"
auth = ["jwt"]
issuers = ["authgate"]

[[routes]]
id = "keys"
path = "/keys"
upstream = "builtin:echo"
auth = ["api_key"]
"#,
            url = redis.url(),
            entry = self.api_key_entry,
        )
    }

    fn replica(&self, redis: &RedisServer) -> Replica {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "gateway.toml", &self.config(redis));
        write(dir.path(), "users.toml", &self.users);
        write(dir.path(), "ts.pem", &self.key_pem);
        let process = GatewayProcess::spawn_in(dir, &[("RUST_LOG", "info")]);
        let admin = process.listener("admin").unwrap();
        Replica {
            http: process.http,
            admin,
            _process: process,
        }
    }
}

/// One gateway process of the fleet.
struct Replica {
    http: SocketAddr,
    admin: SocketAddr,
    _process: GatewayProcess,
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

struct Client {
    runtime: tokio::runtime::Runtime,
}

impl Client {
    fn new() -> Client {
        Client {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
        }
    }

    fn post_json(&self, addr: SocketAddr, path: &str, body: Value) -> Reply {
        let request = Request::post(format!("http://{addr}{path}"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap();
        self.runtime.block_on(send(&http1_client(), request))
    }

    fn login(&self, addr: SocketAddr) -> Reply {
        self.post_json(
            addr,
            "/auth/login",
            json!({"username": "alice", "password": "alice-password"}),
        )
    }

    fn refresh(&self, addr: SocketAddr, token: &str) -> Reply {
        self.post_json(addr, "/auth/refresh", json!({ "refresh_token": token }))
    }

    fn logout(&self, addr: SocketAddr, access: &str) -> u16 {
        let request = Request::post(format!("http://{addr}/auth/logout"))
            .header("authorization", format!("Bearer {access}"))
            .body(Full::default())
            .unwrap();
        self.runtime
            .block_on(send(&http1_client(), request))
            .status()
    }

    fn call(&self, addr: SocketAddr, access: &str) -> u16 {
        let request = Request::get(format!("http://{addr}/api"))
            .header("authorization", format!("Bearer {access}"))
            .body(Full::default())
            .unwrap();
        self.runtime
            .block_on(send(&http1_client(), request))
            .status()
    }

    fn call_with_key(&self, addr: SocketAddr, key: &str) -> u16 {
        let request = Request::get(format!("http://{addr}/keys"))
            .header("x-api-key", key)
            .body(Full::default())
            .unwrap();
        self.runtime
            .block_on(send(&http1_client(), request))
            .status()
    }

    /// Whether `addr` refuses `access` within a second.
    fn refuses_soon(&self, addr: SocketAddr, access: &str) -> bool {
        self.refused_within(addr, access, Duration::from_secs(1))
            .is_some()
    }

    fn metrics(&self, admin: SocketAddr) -> String {
        self.runtime
            .block_on(support::get(&format!("http://{admin}/metrics")))
            .text()
    }

    /// How long until `addr` refuses `access` (bounded: `None` after `limit`).
    fn refused_within(&self, addr: SocketAddr, access: &str, limit: Duration) -> Option<Duration> {
        let started = Instant::now();
        while started.elapsed() < limit {
            if self.call(addr, access) == 401 {
                return Some(started.elapsed());
            }
        }
        None
    }
}

fn field(reply: &Reply, name: &str) -> String {
    reply.assert_status(200);
    reply.json()[name].as_str().unwrap().to_string()
}

#[test]
fn login_on_one_refresh_on_another_reuse_on_a_third_revokes_the_family_everywhere() {
    if !support::redis::available() {
        return;
    }
    let redis = RedisServer::start();
    let fleet = Fleet::new();
    let replicas: Vec<Replica> = (0..3).map(|_| fleet.replica(&redis)).collect();
    let [a, b, c] = [replicas[0].http, replicas[1].http, replicas[2].http];
    let client = Client::new();

    let first = client.login(a);
    let first_refresh = field(&first, "refresh_token");
    let refreshed = client.refresh(b, &first_refresh);
    let second_access = field(&refreshed, "access_token");
    let second_refresh = field(&refreshed, "refresh_token");
    for replica in [a, b, c] {
        assert_eq!(client.call(replica, &second_access), 200);
    }

    // The retired token comes back on a third replica: reuse.
    let reused = client.refresh(c, &first_refresh);
    reused.assert_status(400);
    assert_eq!(reused.json()["error"], "invalid_grant");
    // The family is dead on every replica: its newest refresh token and its access tokens.
    let after = client.refresh(a, &second_refresh);
    assert_eq!(after.json()["error"], "invalid_grant");
    for replica in [a, b, c] {
        assert!(
            client.refuses_soon(replica, &second_access),
            "replica {replica} still accepts an access token of the revoked family"
        );
    }
}

#[test]
fn a_revocation_on_one_replica_is_refused_on_the_others_within_a_second() {
    if !support::redis::available() {
        return;
    }
    let redis = RedisServer::start();
    let fleet = Fleet::new();
    let replicas: Vec<Replica> = (0..3).map(|_| fleet.replica(&redis)).collect();
    let [a, b, c] = [replicas[0].http, replicas[1].http, replicas[2].http];
    let client = Client::new();
    let mut lags = Vec::new();
    for _ in 0..20 {
        let access = field(&client.login(a), "access_token");
        // Verified (and cached) on every replica first.
        for replica in [a, b, c] {
            assert_eq!(client.call(replica, &access), 200);
        }
        assert_eq!(client.logout(a, &access), 204);
        assert_eq!(
            client.call(a, &access),
            401,
            "refused at once where it was revoked"
        );
        let revoked_at = Instant::now();
        for replica in [b, c] {
            let waited = client.refused_within(replica, &access, Duration::from_secs(1));
            assert!(
                waited.is_some(),
                "replica {replica} still accepts it after 1 s"
            );
            lags.push(revoked_at.elapsed());
        }
    }
    lags.sort();
    let at = |q: f64| lags[((lags.len() - 1) as f64 * q).round() as usize];
    eprintln!(
        "revocation lag over {} observations: p50 {:?}, p99 {:?}, max {:?}",
        lags.len(),
        at(0.5),
        at(0.99),
        lags[lags.len() - 1]
    );
    assert!(lags[lags.len() - 1] < Duration::from_secs(1));
    // The replicas measure it too.
    let metrics = client.metrics(replicas[1].admin);
    assert!(
        metrics.contains("authgate_revocation_lag_seconds_count"),
        "{metrics}"
    );
}

#[test]
fn with_redis_away_tokens_and_keys_keep_working_and_the_token_service_says_503() {
    if !support::redis::available() {
        return;
    }
    let mut redis = RedisServer::start();
    let fleet = Fleet::new();
    let replicas: Vec<Replica> = (0..2).map(|_| fleet.replica(&redis)).collect();
    let [a, b] = [replicas[0].http, replicas[1].http];
    let client = Client::new();
    let access = field(&client.login(a), "access_token");
    let revoked = field(&client.login(a), "access_token");
    assert_eq!(client.logout(a, &revoked), 204);
    assert!(client.refuses_soon(b, &revoked));

    redis.stop();
    // Edge decisions never wait on Redis: every answer comes quickly.
    let started = Instant::now();
    for _ in 0..50 {
        for replica in [a, b] {
            let one = Instant::now();
            assert_eq!(client.call(replica, &access), 200);
            assert_eq!(client.call(replica, &revoked), 401);
            assert_eq!(client.call_with_key(replica, &fleet.api_key), 200);
            assert!(
                one.elapsed() < Duration::from_millis(50),
                "{:?}",
                one.elapsed()
            );
        }
    }
    eprintln!("300 edge requests with Redis down: {:?}", started.elapsed());
    // The token service cannot keep its promises without the store: 503, quickly.
    for replica in [a, b] {
        let one = Instant::now();
        let login = client.login(replica);
        login.assert_status(503);
        assert_eq!(login.json()["error"], "temporarily_unavailable");
        eprintln!("login with Redis down answered in {:?}", one.elapsed());
        assert!(one.elapsed() < Duration::from_secs(2));
    }

    // Redis comes back empty: refresh tokens are lost (sign in again), revocations are not —
    // the replicas write back what they know, so even a replica started now refuses the token.
    redis.restart();
    let started = Instant::now();
    let login = loop {
        let login = client.login(b);
        if login.status() == 200 || started.elapsed() > Duration::from_secs(5) {
            break login;
        }
    };
    login.assert_status(200);
    eprintln!(
        "the token service answered again {:?} after Redis came back",
        started.elapsed()
    );
    let late = fleet.replica(&redis);
    assert!(
        client.refuses_soon(late.http, &revoked),
        "a replica started after the empty restart accepts a revoked token"
    );
    assert_eq!(client.call(late.http, &access), 200);
}
