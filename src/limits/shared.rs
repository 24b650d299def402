//! Limits a fleet shares: every rate and quota of a request decided in Redis, in one Lua script
//! (one round trip per request, whatever number of limits apply), all or nothing — a request one
//! limit refuses takes nothing from the others, so there is nothing to give back.
//!
//! The numbers are those of this process's limiter ([`super::gcra::Gcra`] and calendar windows
//! from [`super::quota::window`]); the clock of the rates is Redis's own `TIME`, so replicas
//! whose clocks differ still share one timeline. Keys are `{authgate-limits:HASH}:POLICY`: the
//! hash tag is a SHA-256 of the consumer's id (no subject or key id is written to Redis), so a
//! consumer's keys share a slot. A failure (timeout, Redis down, the breaker open) is returned
//! as such; what it means (`on_failure`) is decided by the caller.

use std::sync::Arc;

use redis::Script;

use super::{Consumer, Now, Policy, PolicyKind, Standing};
use crate::state::redis::{RedisState, ScriptCall};

/// Checks every policy, then (when all allow) takes `cost` from each. KEYS: one per policy.
/// ARGV: cost, then per policy its kind and two numbers — `r`, interval (µs), burst; or `q`,
/// limit, window end (unix seconds). Returns `{refused index or 0, wait µs, then per policy
/// remaining and reset µs}`.
const DECIDE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local cost = tonumber(ARGV[1])
local out = {0, 0}
local pending = {}
for i = 1, #KEYS do
  local kind = ARGV[2 + (i - 1) * 3]
  local a = tonumber(ARGV[3 + (i - 1) * 3])
  local b = tonumber(ARGV[4 + (i - 1) * 3])
  if kind == 'r' then
    local tat = tonumber(redis.call('GET', KEYS[i]) or now)
    if tat < now then tat = now end
    local limit = now + a * b
    local new = tat + cost * a
    if new > limit then
      return {i, new - limit, 0, tat - now}
    end
    pending[i] = new
    out[#out + 1] = math.floor((limit - new) / a)
    out[#out + 1] = new - now
  else
    local used = tonumber(redis.call('GET', KEYS[i]) or 0)
    local reset = b * 1000000 - now
    if reset < 0 then reset = 0 end
    if used + cost > a then
      return {i, reset, 0, reset}
    end
    pending[i] = used + cost
    out[#out + 1] = a - used - cost
    out[#out + 1] = reset
  end
end
for i = 1, #KEYS do
  local kind = ARGV[2 + (i - 1) * 3]
  if kind == 'r' then
    local ms = math.ceil((pending[i] - now) / 1000)
    if ms < 1 then ms = 1 end
    redis.call('SET', KEYS[i], string.format('%.0f', pending[i]), 'PX', ms)
  else
    redis.call('SET', KEYS[i], pending[i], 'EXAT', tonumber(ARGV[4 + (i - 1) * 3]) + 60)
  end
end
return out
";

/// The limits of a fleet, on its Redis.
#[derive(Debug, Clone)]
pub struct SharedLimits {
    redis: Arc<RedisState>,
    script: Script,
}

/// What Redis decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Taken from every policy: each one's standing, in the order given.
    Allowed(Vec<Standing>),
    /// The policy at this index refused; nothing was taken.
    Refused {
        /// Its index in the policies given.
        index: usize,
        /// Where it stands (its wait set).
        standing: Standing,
    },
}

impl SharedLimits {
    /// Limits on `redis`.
    pub fn new(redis: Arc<RedisState>) -> SharedLimits {
        SharedLimits {
            redis,
            script: Script::new(DECIDE),
        }
    }

    /// The connection (for its settings and health).
    pub fn redis(&self) -> &Arc<RedisState> {
        &self.redis
    }

    /// Takes `cost` from every policy for `consumer`, or from none. Bounded by `[state]
    /// timeout`; an error means Redis could not decide.
    pub async fn decide(
        &self,
        consumer: &Consumer<'_>,
        policies: &[&Policy],
        cost: u64,
        now: Now,
    ) -> Result<Decision, crate::state::StateError> {
        let tag = consumer_tag(consumer);
        let mut call = ScriptCall::new(&self.script);
        call.arg(cost);
        for policy in policies {
            match policy.kind {
                PolicyKind::Rate(gcra) => {
                    call.key(format!("{{authgate-limits:{tag}}}:{}", policy.name))
                        .arg("r")
                        .arg((gcra.interval / 1000).max(1))
                        .arg(gcra.burst);
                }
                PolicyKind::Quota(quota) => {
                    let (start, end) = super::quota::window(quota.window, now.unix);
                    call.key(format!("{{authgate-limits:{tag}}}:{}:{start}", policy.name))
                        .arg("q")
                        .arg(quota.count)
                        .arg(end);
                }
            }
        }
        let bound = self.redis.settings().timeout;
        let reply: Vec<i64> = self.redis.script("limits", bound, call).await?;
        Ok(read_reply(&reply, policies.len()))
    }
}

fn micros_to_nanos(micros: i64) -> u64 {
    u64::try_from(micros).unwrap_or(0).saturating_mul(1000)
}

fn read_reply(reply: &[i64], policies: usize) -> Decision {
    let refused = reply.first().copied().unwrap_or(0);
    if refused > 0 {
        let wait = micros_to_nanos(reply.get(1).copied().unwrap_or(0));
        return Decision::Refused {
            index: usize::try_from(refused - 1)
                .unwrap_or(0)
                .min(policies.saturating_sub(1)),
            standing: Standing {
                remaining: 0,
                reset_nanos: micros_to_nanos(reply.get(3).copied().unwrap_or(0)),
                wait_nanos: Some(wait.max(1)),
            },
        };
    }
    let standings = reply
        .get(2..)
        .unwrap_or(&[])
        .chunks(2)
        .map(|pair| Standing {
            remaining: u64::try_from(pair[0]).unwrap_or(0),
            reset_nanos: micros_to_nanos(pair.get(1).copied().unwrap_or(0)),
            wait_nanos: None,
        })
        .collect();
    Decision::Allowed(standings)
}

/// The consumer's hash tag (see [`crate::state::redis::hash_tag`]).
fn consumer_tag(consumer: &Consumer<'_>) -> String {
    crate::state::redis::hash_tag(&consumer.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_read_as_decisions() {
        assert_eq!(
            read_reply(&[0, 0, 4, 20_000, 99, 3_600_000_000], 2),
            Decision::Allowed(vec![
                Standing {
                    remaining: 4,
                    reset_nanos: 20_000_000,
                    wait_nanos: None
                },
                Standing {
                    remaining: 99,
                    reset_nanos: 3_600_000_000_000,
                    wait_nanos: None
                },
            ])
        );
        assert_eq!(
            read_reply(&[2, 5_000, 0, 7_000], 2),
            Decision::Refused {
                index: 1,
                standing: Standing {
                    remaining: 0,
                    reset_nanos: 7_000_000,
                    wait_nanos: Some(5_000_000)
                }
            }
        );
    }

    #[test]
    fn tags_hide_the_consumer_and_differ_between_consumers() {
        let a = consumer_tag(&Consumer::ApiKey("ci-bot-1"));
        let b = consumer_tag(&Consumer::ApiKey("ci-bot-2"));
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
        assert!(!a.contains("ci-bot"));
    }
}
