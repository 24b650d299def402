//! Login brute-force counts a fleet shares, on Redis: the rule of [`super::limiter`] (a fixed
//! window from the first failure, per username and per client address, 429 once either is used
//! up, a success clears the username) with the counters in Redis, so that guessing does not get
//! N times the attempts by spreading over N replicas. Each step is one script; keys share the
//! hash tag `{authgate-logins}` and name the username and address only by their SHA-256.

use std::net::IpAddr;
use std::sync::Arc;

use redis::Script;

use crate::config::LoginLimit;
use crate::limits::consumer::address_key;
use crate::state::redis::{RedisState, ScriptCall};
use crate::state::StateError;

/// The seconds until the longest window that is used up ends, or 0.
const CHECK: &str = r"
local wait = 0
for i = 1, 2 do
  local count = tonumber(redis.call('GET', KEYS[i]) or 0)
  if count >= tonumber(ARGV[i]) then
    local ttl = redis.call('TTL', KEYS[i])
    if ttl > wait then wait = ttl end
  end
end
return wait
";

/// Counts one failure in both windows, starting a window at its first failure.
const FAILED: &str = r"
for i = 1, 2 do
  if redis.call('INCR', KEYS[i]) == 1 then
    redis.call('EXPIRE', KEYS[i], ARGV[1])
  end
end
return 1
";

/// Failure counts by username and client address, in Redis.
#[derive(Debug)]
pub struct SharedLoginLimiter {
    redis: Arc<RedisState>,
    check: Script,
    failed: Script,
}

fn hashed(kind: &str, value: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, value);
    let hex: String = digest.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{{authgate-logins}}:{kind}:{hex}")
}

fn keys(user: &str, client: IpAddr) -> [String; 2] {
    [
        hashed("user", user.as_bytes()),
        hashed("client", address_key(client).to_string().as_bytes()),
    ]
}

impl SharedLoginLimiter {
    /// Counts on `redis`.
    pub fn new(redis: Arc<RedisState>) -> Self {
        SharedLoginLimiter {
            redis,
            check: Script::new(CHECK),
            failed: Script::new(FAILED),
        }
    }

    async fn script(
        &self,
        script: &Script,
        keys: [String; 2],
        args: &[String],
    ) -> Result<i64, StateError> {
        let mut call = ScriptCall::new(script);
        for key in keys {
            call.key(key);
        }
        for arg in args {
            call.arg(arg);
        }
        self.redis
            .script("login_limit", self.redis.off_path_bound(), call)
            .await
    }

    /// `Ok(Err(seconds to wait))` when `user` or `client` has used up its failures.
    pub async fn check(
        &self,
        limit: &LoginLimit,
        user: &str,
        client: IpAddr,
    ) -> Result<Result<(), u64>, StateError> {
        let args = [limit.per_user.to_string(), limit.per_client.to_string()];
        let wait = self.script(&self.check, keys(user, client), &args).await?;
        Ok(match u64::try_from(wait) {
            Ok(0) | Err(_) => Ok(()),
            Ok(seconds) => Err(seconds),
        })
    }

    /// Counts a failed attempt.
    pub async fn failed(
        &self,
        limit: &LoginLimit,
        user: &str,
        client: IpAddr,
    ) -> Result<(), StateError> {
        let window = limit.window.as_secs().max(1).to_string();
        self.script(&self.failed, keys(user, client), &[window])
            .await
            .map(drop)
    }

    /// Clears a username's failures after it logged in.
    pub async fn succeeded(&self, user: &str) -> Result<(), StateError> {
        let key = hashed("user", user.as_bytes());
        self.redis
            .run(
                "login_limit",
                self.redis.off_path_bound(),
                move |mut connection| async move {
                    redis::cmd("DEL")
                        .arg(&key)
                        .query_async::<i64>(&mut connection)
                        .await
                },
            )
            .await
            .map(drop)
    }
}
