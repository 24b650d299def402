//! Rates: the generic cell rate algorithm (GCRA), one 8-byte timestamp per consumer and policy.
//!
//! A cell holds its theoretical arrival time (TAT): when the consumer's allowance would be full
//! again. Taking `cost` units at `now` moves it to `max(TAT, now) + cost × interval`, allowed
//! while that stays within `burst × interval` of `now`. There is no window edge, so no double
//! burst across one, and the wait after a refusal is exact: the moment the new TAT would fit.
//! Times are nanoseconds of a monotonic clock passed in by the caller (tests inject their own).
//!
//! [`RateTable`] keeps the cells in a sharded map; a cell whose TAT has passed is the same as
//! no cell, so [`RateTable::sweep`] drops it and memory follows the consumers active within
//! their burst's recovery time.

use std::hash::BuildHasherDefault;
use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;

use super::{Key, Limiter, Now, Standing};
use crate::config::RateLimit;

/// One rate policy's numbers, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gcra {
    /// Time one unit takes to come back.
    pub interval: u64,
    /// Units allowed at once.
    pub burst: u64,
}

impl Gcra {
    /// The numbers of a configured limit.
    pub fn new(limit: &RateLimit) -> Gcra {
        Gcra {
            interval: limit.rate.interval_nanos(),
            burst: limit.burst.max(1),
        }
    }

    /// The cell's TAT after taking `cost` units at `now`, or how long (ns) until it could.
    /// A cost above the burst can never be taken: `Err(u64::MAX)`.
    pub fn take(&self, tat: u64, now: u64, cost: u64) -> Result<u64, u64> {
        if cost > self.burst {
            return Err(u64::MAX);
        }
        let next = tat
            .max(now)
            .saturating_add(self.interval.saturating_mul(cost));
        let limit = now.saturating_add(self.interval.saturating_mul(self.burst));
        if next <= limit {
            Ok(next)
        } else {
            Err(next - limit)
        }
    }

    /// Units that could be taken at `now`.
    pub fn remaining(&self, tat: u64, now: u64) -> u64 {
        let limit = now.saturating_add(self.interval.saturating_mul(self.burst));
        limit.saturating_sub(tat.max(now)) / self.interval
    }

    /// Nanoseconds until the allowance is full again.
    pub fn full_in(&self, tat: u64, now: u64) -> u64 {
        tat.saturating_sub(now)
    }

    fn standing(&self, tat: u64, now: u64, wait: Option<u64>) -> Standing {
        Standing {
            remaining: self.remaining(tat, now),
            reset_nanos: self.full_in(tat, now),
            wait_nanos: wait,
        }
    }
}

/// A hasher for keys that are already uniformly distributed (see `consumer::table_key`).
#[derive(Debug, Default, Clone, Copy)]
pub struct PassThrough(u64);

impl std::hash::Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

/// A map indexed by table keys.
pub type KeyMap<V> = DashMap<u64, V, BuildHasherDefault<PassThrough>>;

/// Every consumer's rate cells, in memory.
#[derive(Default)]
pub struct RateTable {
    cells: KeyMap<AtomicU64>,
}

impl std::fmt::Debug for RateTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A million cells are no one's debugging aid: their number is.
        f.debug_struct("RateTable")
            .field("cells", &self.cells.len())
            .finish()
    }
}

impl RateTable {
    /// Drops cells whose allowance is full at `now`; returns how many are left.
    pub fn sweep(&self, now: u64) -> usize {
        self.cells
            .retain(|_, tat| tat.load(Ordering::Relaxed) > now);
        self.cells.len()
    }

    /// Cells held.
    pub fn len(&self) -> usize {
        self.cells.len()
    }

    /// Whether no cell is held.
    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    fn gcra(key: &Key<'_>) -> Gcra {
        match key.policy.kind {
            super::PolicyKind::Rate(gcra) => gcra,
            // A quota policy is never handed to the rate table; treat it as unlimited.
            super::PolicyKind::Quota(_) => Gcra {
                interval: 1,
                burst: u64::MAX,
            },
        }
    }
}

impl Limiter for RateTable {
    fn acquire(&self, key: &Key<'_>, cost: u64, now: Now) -> Standing {
        let gcra = Self::gcra(key);
        let now = now.nanos;
        let cell = match self.cells.get(&key.hash) {
            Some(cell) => cell,
            None => self
                .cells
                .entry(key.hash)
                .or_insert_with(|| AtomicU64::new(0))
                .downgrade(),
        };
        let mut tat = cell.load(Ordering::Acquire);
        loop {
            match gcra.take(tat, now, cost) {
                Ok(next) => {
                    match cell.compare_exchange_weak(tat, next, Ordering::AcqRel, Ordering::Acquire)
                    {
                        Ok(_) => return gcra.standing(next, now, None),
                        Err(current) => tat = current,
                    }
                }
                Err(wait) => return gcra.standing(tat, now, Some(wait)),
            }
        }
    }

    fn release(&self, key: &Key<'_>, cost: u64, _now: Now) {
        let gcra = Self::gcra(key);
        if let Some(cell) = self.cells.get(&key.hash) {
            let back = gcra.interval.saturating_mul(cost);
            let _ = cell.fetch_update(Ordering::AcqRel, Ordering::Acquire, |tat| {
                Some(tat.saturating_sub(back))
            });
        }
    }

    fn standing(&self, key: &Key<'_>, now: Now) -> Option<Standing> {
        let gcra = Self::gcra(key);
        let tat = self.cells.get(&key.hash)?.load(Ordering::Acquire);
        Some(gcra.standing(tat, now.nanos, None))
    }

    fn reset(&self, key: &Key<'_>) -> bool {
        self.cells.remove(&key.hash).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn ten_per_second_burst_five() -> Gcra {
        Gcra {
            interval: 100 * MS,
            burst: 5,
        }
    }

    #[test]
    fn a_burst_passes_then_exactly_one_per_interval() {
        let gcra = ten_per_second_burst_five();
        let start = 1_000 * MS;
        let mut tat = 0;
        let mut allowed = 0;
        for _ in 0..30 {
            if let Ok(next) = gcra.take(tat, start, 1) {
                tat = next;
                allowed += 1;
            }
        }
        assert_eq!(allowed, 5);
        // The sixth waits exactly one interval.
        assert_eq!(gcra.take(tat, start, 1), Err(100 * MS));
        assert_eq!(gcra.take(tat, start + 100 * MS - 1, 1), Err(1));
        // Then one per 100 ms, never two.
        for step in 1..=20 {
            let now = start + step * 100 * MS;
            tat = gcra.take(tat, now, 1).expect("one per interval");
            assert_eq!(gcra.take(tat, now, 1), Err(100 * MS), "step {step}");
            assert_eq!(gcra.remaining(tat, now), 0);
        }
    }

    #[test]
    fn remaining_and_reset_follow_the_allowance() {
        let gcra = ten_per_second_burst_five();
        let now = 5_000 * MS;
        assert_eq!(gcra.remaining(0, now), 5);
        let tat = gcra.take(0, now, 2).unwrap();
        assert_eq!(gcra.remaining(tat, now), 3);
        assert_eq!(gcra.full_in(tat, now), 200 * MS);
        // Idle for a second: full again, no credit beyond the burst.
        assert_eq!(gcra.remaining(tat, now + 1_000 * MS), 5);
        assert_eq!(gcra.full_in(tat, now + 1_000 * MS), 0);
    }

    #[test]
    fn a_cell_is_dropped_once_its_allowance_is_full_again() {
        use crate::limits::{Consumer, Now, Policy};
        let table = RateTable::default();
        let limit = crate::config::RateLimit {
            rate: crate::config::parse_rate("10/s").unwrap(),
            burst: 5,
        };
        let policy = Policy::rate("p", &limit);
        let now = |nanos| Now { nanos, unix: 0 };
        for i in 0..1000u64 {
            let id = i.to_string();
            let consumer = Consumer::ApiKey(&id);
            table.acquire(&policy.key(&consumer, consumer.hash()), 3, now(1_000 * MS));
        }
        // Three taken, back after 300 ms: kept before, dropped after.
        assert_eq!(table.sweep(1_000 * MS + 299 * MS), 1000);
        assert_eq!(table.sweep(1_000 * MS + 300 * MS), 0);
        assert!(table.is_empty());
    }

    #[test]
    fn a_cost_is_taken_whole_or_not_at_all() {
        let gcra = ten_per_second_burst_five();
        let now = 1_000 * MS;
        let tat = gcra.take(0, now, 4).unwrap();
        assert_eq!(gcra.take(tat, now, 2), Err(100 * MS));
        assert!(gcra.take(tat, now, 1).is_ok());
        assert_eq!(gcra.take(0, now, 6), Err(u64::MAX));
    }
}
