//! Sessions on the fleet's Redis. Every key shares the hash tag `{authgate-sessions}` (one
//! Cluster slot), so the scripts that touch a session, its indexes and the live set stay
//! atomic. Records expire in Redis by themselves (`EXAT`); the live set (`…:live`, scored by
//! expiry) is what the active-sessions gauge counts.
//!
//! Reads of a session are on the request path and bounded by `[state] timeout`; writes
//! (sign-in, touch, logout) by the longer off-path bound.

use std::sync::Arc;

use redis::Script;

use super::session::{PendingRecord, SessionRecord};
use super::store::indexes_of;
use crate::state::redis::{RedisState, ScriptCall};
use crate::state::StateError;

const PREFIX: &str = "{authgate-sessions}";

/// Stores a session, adds it to its indexes and the live set. KEYS: session, live set, then
/// the indexes. ARGV: the record, its expiry (epoch s), the session key, now.
const PUT: &str = r"
redis.call('SET', KEYS[1], ARGV[1], 'EXAT', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
for i = 3, #KEYS do
  redis.call('SADD', KEYS[i], ARGV[3])
  local ttl = redis.call('TTL', KEYS[i])
  if ttl < 0 or ttl < tonumber(ARGV[2]) - tonumber(ARGV[4]) then
    redis.call('EXPIREAT', KEYS[i], ARGV[2])
  end
end
return 1
";

/// Ends every session of an index. KEYS: the index, the live set. ARGV: the session-key
/// prefix. Returns how many sessions existed.
const REMOVE_INDEXED: &str = r"
local members = redis.call('SMEMBERS', KEYS[1])
local ended = 0
for _, member in ipairs(members) do
  ended = ended + redis.call('DEL', ARGV[1] .. member)
  redis.call('ZREM', KEYS[2], member)
end
redis.call('DEL', KEYS[1])
return ended
";

/// Ends one session, returning its record. KEYS: session, live set. ARGV: the session key.
const REMOVE: &str = r"
local record = redis.call('GET', KEYS[1])
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return record
";

/// The sessions of a fleet.
pub struct RedisSessions {
    redis: Arc<RedisState>,
    put: Script,
    remove: Script,
    remove_indexed: Script,
}

impl std::fmt::Debug for RedisSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSessions")
            .field("redis", &self.redis)
            .finish_non_exhaustive()
    }
}

fn session_key(key: &str) -> String {
    format!("{PREFIX}:session:{key}")
}

fn live_key() -> String {
    format!("{PREFIX}:live")
}

fn decode<T: serde::de::DeserializeOwned>(text: Option<String>) -> Result<Option<T>, StateError> {
    text.map(|text| {
        serde_json::from_str(&text)
            .map_err(|e| StateError(format!("a stored session is damaged: {e}")))
    })
    .transpose()
}

fn encode<T: serde::Serialize>(value: &T) -> Result<String, StateError> {
    serde_json::to_string(value).map_err(StateError::from_display)
}

impl RedisSessions {
    /// The sessions on `redis`.
    pub fn new(redis: Arc<RedisState>) -> Self {
        RedisSessions {
            redis,
            put: Script::new(PUT),
            remove: Script::new(REMOVE),
            remove_indexed: Script::new(REMOVE_INDEXED),
        }
    }

    pub(super) async fn get(&self, key: &str) -> Result<Option<SessionRecord>, StateError> {
        let key = session_key(key);
        let bound = self.redis.settings().timeout;
        let text = self
            .redis
            .run("session_read", bound, move |mut connection| async move {
                redis::cmd("GET")
                    .arg(&key)
                    .query_async::<Option<String>>(&mut connection)
                    .await
            })
            .await?;
        decode(text)
    }

    pub(super) async fn put(
        &self,
        key: &str,
        record: &SessionRecord,
        expires_at: i64,
    ) -> Result<(), StateError> {
        let mut call = ScriptCall::new(&self.put);
        call.key(session_key(key)).key(live_key());
        for index in indexes_of(record) {
            call.key(format!("{PREFIX}:index:{index}"));
        }
        call.arg(encode(record)?)
            .arg(expires_at)
            .arg(key)
            .arg(crate::auth::unix_now());
        self.redis
            .script::<i64>("session_write", self.redis.off_path_bound(), call)
            .await
            .map(drop)
    }

    pub(super) async fn remove(&self, key: &str) -> Result<Option<SessionRecord>, StateError> {
        let mut call = ScriptCall::new(&self.remove);
        call.key(session_key(key)).key(live_key()).arg(key);
        let text = self
            .redis
            .script::<Option<String>>("session_write", self.redis.off_path_bound(), call)
            .await?;
        decode(text)
    }

    pub(super) async fn remove_indexed(&self, index: &str) -> Result<usize, StateError> {
        let mut call = ScriptCall::new(&self.remove_indexed);
        call.key(format!("{PREFIX}:index:{index}"))
            .key(live_key())
            .arg(format!("{PREFIX}:session:"));
        let ended = self
            .redis
            .script::<i64>("session_write", self.redis.off_path_bound(), call)
            .await?;
        Ok(usize::try_from(ended).unwrap_or(0))
    }

    /// Runs one command off the request path.
    async fn command<T: redis::FromRedisValue + Send + 'static>(
        &self,
        command: redis::Cmd,
    ) -> Result<T, StateError> {
        self.redis
            .run(
                "session_write",
                self.redis.off_path_bound(),
                move |mut connection| async move { command.query_async::<T>(&mut connection).await },
            )
            .await
    }

    pub(super) async fn put_pending(
        &self,
        key: &str,
        record: &PendingRecord,
    ) -> Result<(), StateError> {
        let mut set = redis::cmd("SET");
        set.arg(format!("{PREFIX}:pending:{key}"))
            .arg(encode(record)?)
            .arg("EXAT")
            .arg(record.expires_at);
        self.command::<()>(set).await
    }

    pub(super) async fn take_pending(
        &self,
        key: &str,
    ) -> Result<Option<PendingRecord>, StateError> {
        // GETDEL: of two callbacks with one state, across the whole fleet, one gets it.
        let mut take = redis::cmd("GETDEL");
        take.arg(format!("{PREFIX}:pending:{key}"));
        decode(self.command::<Option<String>>(take).await?)
    }

    pub(super) async fn first_use(&self, key: &str, expires_at: i64) -> Result<bool, StateError> {
        let mut set = redis::cmd("SET");
        set.arg(format!("{PREFIX}:seen:{key}"))
            .arg(1)
            .arg("NX")
            .arg("EXAT")
            .arg(expires_at.max(crate::auth::unix_now() + 1));
        Ok(self.command::<Option<String>>(set).await?.is_some())
    }

    pub(super) async fn count(&self, now: i64) -> Result<u64, StateError> {
        let live = live_key();
        self.redis
            .run(
                "session_count",
                self.redis.off_path_bound(),
                move |mut connection| async move {
                    redis::pipe()
                        .cmd("ZREMRANGEBYSCORE")
                        .arg(&live)
                        .arg("-inf")
                        .arg(now)
                        .ignore()
                        .cmd("ZCARD")
                        .arg(&live)
                        .query_async::<(u64,)>(&mut connection)
                        .await
                        .map(|(count,)| count)
                },
            )
            .await
    }
}
