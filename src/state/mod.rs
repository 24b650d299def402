//! What the gateway keeps beyond one process: the store trait the limiters persist through, and
//! its implementations. [`QuotaStore`] is small on purpose: load everything at start, write a
//! batch of changed counters, delete what no longer matters. The limiter decides in memory and
//! writes behind (see `crate::limits::quota`), so a store is never on the request path.
//! [`embedded::EmbeddedQuotaStore`] is a redb file in `[state] data_dir`; [`MemoryQuotaStore`]
//! keeps the rows in a mutex (tests). [`redis::RedisState`] is the connection to the Redis a
//! fleet shares (`[state] backend = "redis"`), with its timeout and circuit breaker.
//! [`usage::UsageStore`] is the same for metering: usage records, daily totals, token and
//! budget counters.

pub mod embedded;
pub mod redis;
pub mod usage;

use std::collections::BTreeMap;
use std::sync::Mutex;

/// One quota counter as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaRow {
    /// The quota policy's name (`gold-quota`).
    pub policy: String,
    /// The consumer's id (`api_key:ci-bot-1`).
    pub consumer: String,
    /// The start of the window counted in, seconds since the epoch (UTC).
    pub window: i64,
    /// Units used in that window.
    pub used: u64,
}

/// A store failure: logged, and the counters stay in memory until the next write works.
#[derive(Debug, Clone, thiserror::Error)]
#[error("state store: {0}")]
pub struct StateError(pub String);

impl StateError {
    /// Wraps any error's text.
    pub fn from_display(error: impl std::fmt::Display) -> Self {
        StateError(error.to_string())
    }
}

/// Durable quota counters.
pub trait QuotaStore: Send + Sync + std::fmt::Debug {
    /// Every stored row.
    fn load(&self) -> Result<Vec<QuotaRow>, StateError>;
    /// Writes `rows` (replacing rows of the same policy and consumer) and deletes `removed`
    /// (policy, consumer), all in one atomic step.
    fn save(&self, rows: &[QuotaRow], removed: &[(String, String)]) -> Result<(), StateError>;
}

/// Rows in memory, lost at exit.
#[derive(Debug, Default)]
pub struct MemoryQuotaStore {
    rows: Mutex<BTreeMap<(String, String), (i64, u64)>>,
}

impl QuotaStore for MemoryQuotaStore {
    fn load(&self) -> Result<Vec<QuotaRow>, StateError> {
        let rows = self
            .rows
            .lock()
            .map_err(|_| StateError("the memory store is poisoned".into()))?;
        Ok(rows
            .iter()
            .map(|((policy, consumer), (window, used))| QuotaRow {
                policy: policy.clone(),
                consumer: consumer.clone(),
                window: *window,
                used: *used,
            })
            .collect())
    }

    fn save(&self, rows: &[QuotaRow], removed: &[(String, String)]) -> Result<(), StateError> {
        let mut stored = self
            .rows
            .lock()
            .map_err(|_| StateError("the memory store is poisoned".into()))?;
        for row in rows {
            stored.insert(
                (row.policy.clone(), row.consumer.clone()),
                (row.window, row.used),
            );
        }
        for key in removed {
            stored.remove(key);
        }
        Ok(())
    }
}
