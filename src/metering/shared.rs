//! Token and budget counters a fleet shares: every replica reserves, settles and releases in
//! one Redis, so a consumer's `tokens` and `budget` hold across replicas as they hold in one.
//!
//! One hash per limit, consumer and window, `{authgate-budget:HASH}:LIMIT:WINDOW_START` (the
//! hash tag is a SHA-256 of the consumer's id, as for the shared rate limits): `used`, and one
//! `r:ID` field per reservation in flight holding `amount:deadline`. A reservation checks and
//! takes from every limit of the request in one Lua script, all or none. A reservation whose
//! replica died before settling stops counting at its deadline ([`HOLD_SECONDS`]), so a lost
//! replica cannot lock a consumer out for the rest of the window.

use std::sync::Arc;

use redis::Script;

use crate::state::redis::{RedisState, ScriptCall};

/// How long a reservation counts without being settled: longer than any response streams in
/// practice, short enough that a crashed replica's holds do not outlive a working session.
pub const HOLD_SECONDS: i64 = 15 * 60;

/// KEYS: one hash per limit. ARGV: reservation id, now (unix s), deadline, then per limit its
/// count, the amount wanted and the window's end. Returns `{0}`, or `{index refused}`.
const RESERVE: &str = r"
local id, now, deadline = ARGV[1], tonumber(ARGV[2]), ARGV[3]
for i = 1, #KEYS do
  local limit = tonumber(ARGV[1 + i * 3])
  local amount = tonumber(ARGV[2 + i * 3])
  local fields = redis.call('HGETALL', KEYS[i])
  local used, held = 0, 0
  for j = 1, #fields, 2 do
    local name, value = fields[j], fields[j + 1]
    if name == 'used' then
      used = tonumber(value)
    elseif string.sub(name, 1, 2) == 'r:' then
      local wanted, until_ = string.match(value, '^(%d+):(%d+)$')
      if tonumber(until_) < now then
        redis.call('HDEL', KEYS[i], name)
      else
        held = held + tonumber(wanted)
      end
    end
  end
  if used >= limit or used + held + amount > limit then
    return {i}
  end
end
for i = 1, #KEYS do
  redis.call('HSET', KEYS[i], 'r:' .. id, ARGV[2 + i * 3] .. ':' .. deadline)
  redis.call('EXPIREAT', KEYS[i], tonumber(ARGV[3 + i * 3]) + 86400)
end
return {0}
";

/// KEYS: the hashes a reservation holds. ARGV: its id, then per key what was used (0 to give
/// the reservation back unused).
const SETTLE: &str = r"
for i = 1, #KEYS do
  redis.call('HDEL', KEYS[i], 'r:' .. ARGV[1])
  local used = tonumber(ARGV[1 + i])
  if used > 0 then
    redis.call('HINCRBY', KEYS[i], 'used', used)
  end
end
return 0
";

/// One limit a request wants to take from.
#[derive(Debug, Clone)]
pub struct Want {
    /// The limit's name (`PLAN-tokens`, `PLAN-budget`).
    pub name: String,
    /// Its allowance in the window.
    pub count: u64,
    /// Where its window starts and ends (unix seconds).
    pub window: (i64, i64),
    /// The amount reserved.
    pub amount: u64,
}

/// A reservation held in Redis: the keys it holds and its id.
#[derive(Debug, Clone)]
pub struct Held {
    id: String,
    keys: Vec<String>,
}

/// What Redis answered to a reservation.
#[derive(Debug)]
pub enum Reserved {
    /// Taken from every limit.
    Held(Held),
    /// The limit at this index refused; nothing was taken.
    Refused(usize),
}

/// The token and budget counters of a fleet, on its Redis.
#[derive(Debug, Clone)]
pub struct SharedBudgets {
    redis: Arc<RedisState>,
    reserve: Script,
    settle: Script,
}

impl SharedBudgets {
    /// Counters on `redis`.
    pub fn new(redis: Arc<RedisState>) -> SharedBudgets {
        SharedBudgets {
            redis,
            reserve: Script::new(RESERVE),
            settle: Script::new(SETTLE),
        }
    }

    /// Reserves every `want` for `consumer`, or none. Bounded by `[state] timeout`; an error
    /// means Redis could not decide (`on_failure` says what then).
    pub async fn reserve(
        &self,
        consumer: &str,
        wants: &[Want],
        now: i64,
    ) -> Result<Reserved, crate::state::StateError> {
        let tag = crate::state::redis::hash_tag(consumer);
        let id = uuid::Uuid::new_v4().simple().to_string();
        let mut call = ScriptCall::new(&self.reserve);
        call.arg(&id).arg(now).arg(now + HOLD_SECONDS);
        let mut keys = Vec::with_capacity(wants.len());
        for want in wants {
            let key = format!("{{authgate-budget:{tag}}}:{}:{}", want.name, want.window.0);
            call.key(key.clone())
                .arg(want.count)
                .arg(want.amount)
                .arg(want.window.1);
            keys.push(key);
        }
        let bound = self.redis.settings().timeout;
        let reply: Vec<i64> = self.redis.script("budgets", bound, call).await?;
        Ok(match reply.first().copied().unwrap_or(0) {
            0 => Reserved::Held(Held { id, keys }),
            refused => Reserved::Refused(usize::try_from(refused - 1).unwrap_or(0)),
        })
    }

    /// Replaces `held` with what was used (`used[i]` for its i-th limit; all 0 gives it back),
    /// off the request path: a response that ends never waits for Redis. A failure is counted
    /// in `authgate_state_backend_errors_total{operation="budgets_settle"}`, and the hold then
    /// ends at its deadline.
    pub fn settle(&self, held: Held, used: Vec<u64>) {
        let mut call = ScriptCall::new(&self.settle);
        call.arg(&held.id);
        for (key, used) in held.keys.into_iter().zip(used) {
            call.key(key).arg(used);
        }
        let redis = self.redis.clone();
        let bound = redis.off_path_bound();
        self.redis.spawn(async move {
            let settled: Result<i64, _> = redis.script("budgets_settle", bound, call).await;
            if let Err(error) = settled {
                tracing::warn!(%error, "a metered request's usage did not reach the shared budgets");
            }
        });
    }
}
