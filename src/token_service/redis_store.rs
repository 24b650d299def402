//! The token store on Redis, shared by every replica of a fleet.
//!
//! The rules stay in `grants.rs`, written against a [`Transaction`]; this store makes a `write`
//! atomic across processes by optimistic concurrency: the transaction's reads are plain GETs,
//! its writes wait in a draft, and one Lua script commits them only if every key read still
//! holds what was read (else nothing is written and the transaction runs again on fresh data).
//! So rotation, reuse detection and family revocation are one atomic step, exactly as in redb:
//! of two replicas refreshing with one token at once, one rotates and the other sees reuse.
//!
//! Keys share the hash tag `{authgate-tokens}`, so one script may touch them all (one Cluster
//! slot). Refresh tokens and families expire in Redis an hour after their own end (the purge
//! happens by itself); revoked access tokens live in a sorted set scored by `exp`, and every
//! revocation is also appended to a Stream that the replicas follow (`revocation_feed.rs`).

use std::collections::HashMap;
use std::sync::Arc;

use redis::Script;

use super::store::{FamilyRecord, RefreshRecord, StoreError, TokenHash, TokenStore, Transaction};
use crate::state::redis::{RedisState, ScriptCall};

/// Revoked access tokens: jti scored by `exp`.
pub const REVOKED_KEY: &str = "{authgate-tokens}:revoked";
/// Every revocation, in order, for the replicas to follow.
pub const STREAM_KEY: &str = "{authgate-tokens}:revocations";
/// Entries the stream keeps (approximately); a replica further behind rebuilds from the set.
pub const STREAM_KEEP: u64 = 100_000;
/// Seconds a record is kept in Redis after its own end.
const KEEP_AFTER_END: i64 = 3600;
/// Attempts at a transaction that keeps meeting concurrent writers.
const ATTEMPTS: usize = 16;

/// Commits a transaction's writes if its reads still hold. KEYS: the revoked set, the stream,
/// then the keys read, then the keys written. ARGV: counts (read, written, revoked), the
/// stream's length, each read's expected value ("=" value, or "-" for absent), each write's
/// (value, expire-at), each revocation's (jti, exp). Returns 1, or 0 on a conflict.
const COMMIT: &str = r"
local reads = tonumber(ARGV[1])
local writes = tonumber(ARGV[2])
local revoked = tonumber(ARGV[3])
local a = 5
for i = 1, reads do
  local want = ARGV[a]
  a = a + 1
  local have = redis.call('GET', KEYS[2 + i])
  if want == '-' then
    if have then return 0 end
  elseif (not have) or ('=' .. have) ~= want then
    return 0
  end
end
for i = 1, writes do
  redis.call('SET', KEYS[2 + reads + i], ARGV[a], 'EXAT', ARGV[a + 1])
  a = a + 2
end
for i = 1, revoked do
  redis.call('ZADD', KEYS[1], ARGV[a + 1], ARGV[a])
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', 'jti', ARGV[a], 'exp', ARGV[a + 1])
  a = a + 2
end
return 1
";

/// The token store of a fleet.
pub struct RedisTokenStore {
    redis: Arc<RedisState>,
    commit: Script,
}

impl std::fmt::Debug for RedisTokenStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTokenStore")
            .field("redis", &self.redis)
            .finish_non_exhaustive()
    }
}

impl RedisTokenStore {
    /// The store on `redis`.
    pub fn new(redis: Arc<RedisState>) -> Self {
        RedisTokenStore {
            redis,
            commit: Script::new(COMMIT),
        }
    }

    /// The connection it uses.
    pub fn redis(&self) -> &Arc<RedisState> {
        &self.redis
    }

    fn get(&self, key: String) -> Result<Option<String>, StoreError> {
        self.redis
            .run_blocking(
                "token_store_read",
                self.redis.off_path_bound(),
                move |mut connection| async move {
                    redis::cmd("GET")
                        .arg(&key)
                        .query_async::<Option<String>>(&mut connection)
                        .await
                },
            )
            .map_err(unavailable)
    }
}

fn unavailable(error: crate::state::StateError) -> StoreError {
    StoreError(error.0)
}

fn refresh_key(hash: &TokenHash) -> String {
    let mut key = String::with_capacity(32 + 64);
    key.push_str("{authgate-tokens}:refresh:");
    for byte in hash {
        key.push_str(&format!("{byte:02x}"));
    }
    key
}

fn family_key(id: &str) -> String {
    format!("{{authgate-tokens}}:family:{id}")
}

/// One attempt's reads (as first seen) and writes.
struct Draft<'s> {
    store: &'s RedisTokenStore,
    read: Vec<(String, Option<String>)>,
    written: HashMap<String, (String, i64)>,
    order: Vec<String>,
    revoked: Vec<(String, i64)>,
}

impl Draft<'_> {
    fn value(&mut self, key: String) -> Result<Option<String>, StoreError> {
        if let Some((value, _)) = self.written.get(&key) {
            return Ok(Some(value.clone()));
        }
        if let Some((_, value)) = self.read.iter().find(|(k, _)| *k == key) {
            return Ok(value.clone());
        }
        let value = self.store.get(key.clone())?;
        self.read.push((key, value.clone()));
        Ok(value)
    }

    fn put(&mut self, key: String, value: String, ends: i64) {
        let expire_at = ends
            .max(crate::auth::unix_now())
            .saturating_add(KEEP_AFTER_END);
        if self
            .written
            .insert(key.clone(), (value, expire_at))
            .is_none()
        {
            self.order.push(key);
        }
    }
}

fn decode<T: serde::de::DeserializeOwned>(text: Option<String>) -> Result<Option<T>, StoreError> {
    text.map(|text| {
        serde_json::from_str(&text)
            .map_err(|e| StoreError(format!("a stored record is damaged: {e}")))
    })
    .transpose()
}

fn encode<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(StoreError::from_display)
}

impl Transaction for Draft<'_> {
    fn refresh(&mut self, hash: &TokenHash) -> Result<Option<RefreshRecord>, StoreError> {
        decode(self.value(refresh_key(hash))?)
    }

    fn put_refresh(&mut self, hash: &TokenHash, record: &RefreshRecord) -> Result<(), StoreError> {
        self.put(refresh_key(hash), encode(record)?, record.expires_at);
        Ok(())
    }

    fn family(&mut self, id: &str) -> Result<Option<FamilyRecord>, StoreError> {
        decode(self.value(family_key(id))?)
    }

    fn put_family(&mut self, id: &str, family: &FamilyRecord) -> Result<(), StoreError> {
        self.put(family_key(id), encode(family)?, family.expires_at);
        Ok(())
    }

    fn revoke_access(&mut self, jti: &str, expires_at: i64) -> Result<(), StoreError> {
        self.revoked.push((jti.to_string(), expires_at));
        Ok(())
    }
}

impl RedisTokenStore {
    /// Commits `draft` if its reads still hold: whether it did.
    fn commit(&self, draft: Draft<'_>) -> Result<bool, StoreError> {
        if draft.written.is_empty() && draft.revoked.is_empty() {
            return Ok(true);
        }
        let mut call = ScriptCall::new(&self.commit);
        call.key(REVOKED_KEY).key(STREAM_KEY);
        call.arg(draft.read.len())
            .arg(draft.order.len())
            .arg(draft.revoked.len())
            .arg(STREAM_KEEP);
        for (key, value) in draft.read {
            call.key(key);
            match value {
                Some(value) => call.arg(format!("={value}")),
                None => call.arg("-"),
            };
        }
        for key in draft.order {
            if let Some((value, expire_at)) = draft.written.get(&key) {
                call.arg(value).arg(expire_at);
            }
            call.key(key);
        }
        for (jti, exp) in draft.revoked {
            call.arg(jti).arg(exp);
        }
        self.redis
            .script_blocking::<i64>("token_store_commit", self.redis.off_path_bound(), call)
            .map(|committed| committed == 1)
            .map_err(unavailable)
    }
}

impl TokenStore for RedisTokenStore {
    fn write(
        &self,
        change: &mut dyn FnMut(&mut dyn Transaction) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        for _ in 0..ATTEMPTS {
            let mut draft = Draft {
                store: self,
                read: Vec::new(),
                written: HashMap::new(),
                order: Vec::new(),
                revoked: Vec::new(),
            };
            change(&mut draft)?;
            if self.commit(draft)? {
                return Ok(());
            }
        }
        Err(StoreError(
            "the token store is too busy with this token: try again".into(),
        ))
    }

    fn revoked_access(&self, now: i64) -> Result<Vec<(String, i64)>, StoreError> {
        self.redis
            .run_blocking(
                "revocations_load",
                self.redis.off_path_bound(),
                move |mut connection| async move {
                    redis::cmd("ZRANGEBYSCORE")
                        .arg(REVOKED_KEY)
                        .arg(now)
                        .arg("+inf")
                        .arg("WITHSCORES")
                        .query_async::<Vec<(String, i64)>>(&mut connection)
                        .await
                },
            )
            .map_err(unavailable)
    }

    fn purge(&self, now: i64) -> Result<usize, StoreError> {
        // Refresh tokens and families expire by themselves; only the set needs trimming.
        self.redis
            .run_blocking(
                "revocations_purge",
                self.redis.off_path_bound(),
                move |mut connection| async move {
                    redis::cmd("ZREMRANGEBYSCORE")
                        .arg(REVOKED_KEY)
                        .arg("-inf")
                        .arg(format!("({now}"))
                        .query_async::<usize>(&mut connection)
                        .await
                },
            )
            .map_err(unavailable)
    }
}
