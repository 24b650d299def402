//! Helpers for the plans and quotas tests: API keys on plans, calls with a key or a forwarded
//! address, and the `RateLimit` field read back.

use authgate::auth::api_keys;
use http::Request;
use http_body_util::Full;

use super::{send, Reply};

/// An API key and its keys-file entry.
pub struct Key {
    pub key: String,
    pub entry: String,
}

/// A new key with the id (and subject) `id`, on `plan`.
pub fn new_key(id: &str, plan: Option<&str>) -> Key {
    let (key, mut entry) = api_keys::new_entry(Some(id), id, &[], &[], None).unwrap();
    if let Some(plan) = plan {
        entry.push_str(&format!("plan = \"{plan}\"\n"));
    }
    Key { key, entry }
}

/// Replaces the keys file in `dir`, by rename as deployment tools do.
pub fn write_keys(dir: &std::path::Path, entries: &[&str]) {
    let temporary = dir.join("keys.toml.new");
    std::fs::write(&temporary, entries.join("\n")).unwrap();
    std::fs::rename(&temporary, dir.join("keys.toml")).unwrap();
}

/// GET `url`, with an API key and an X-Forwarded-For when given.
pub async fn call(url: &str, key: Option<&str>, forwarded_for: Option<&str>) -> Reply {
    let mut request = Request::get(url);
    if let Some(key) = key {
        request = request.header("x-api-key", key);
    }
    if let Some(address) = forwarded_for {
        request = request.header("x-forwarded-for", address);
    }
    send(
        &super::http1_client(),
        request.body(Full::default()).unwrap(),
    )
    .await
}

/// `r` of the `RateLimit` item named `policy`.
pub fn remaining(reply: &Reply, policy: &str) -> Option<u64> {
    let header = reply.header("ratelimit")?;
    let item = header
        .split(", ")
        .find(|item| item.starts_with(&format!("\"{policy}\";")))?;
    item.split(';')
        .find_map(|p| p.strip_prefix("r="))?
        .parse()
        .ok()
}

/// Plans: `free` (10/s, burst 5; the default), `gold` (1000/s, 1000/day), `slow` (1/m).
pub const PLANS: &str = r#"
[plans.free]
rate = "10/s"
burst = 5

[plans.gold]
rate = "1000/s"
quota = "1000/day"

[plans.slow]
rate = "1/m"
burst = 1

[consumers]
default_plan = "free"
"#;

/// A gateway with the keys file, a route `/api` to `upstream` and a `/scoped` one needing
/// `admin`, under [`PLANS`].
pub fn config(upstream: &str) -> String {
    format!(
        r#"[server]
http = "127.0.0.1:0"

[admin]
listen = "127.0.0.1:0"

[api_keys]
file = "keys.toml"

[[routes]]
id = "api"
path = "/api"
upstream = "{upstream}"
auth = ["api_key"]

[[routes]]
id = "scoped"
path = "/scoped"
upstream = "builtin:echo"
auth = ["api_key"]
scopes = ["admin"]
{PLANS}"#
    )
}
