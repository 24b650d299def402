//! Quotas: units counted per consumer in calendar windows of UTC (a day, a month), persisted.
//!
//! Counting happens in memory, so the request path never waits on a disk; [`QuotaTable::flush`]
//! writes the counters that changed to the [`QuotaStore`] in one transaction — every second
//! from a background task, and once more at shutdown — and a start loads them back. A crash
//! can therefore forget at most the last second's counts; a restart or a reload forgets none.
//! Counters of windows that have ended are dropped from memory and from the store.

use std::sync::{Arc, Mutex};

use super::gcra::KeyMap;
use super::{Key, Limiter, Now, PolicyKind, Standing};
use crate::calendar;
use crate::config::{Quota, QuotaWindow};
use crate::state::{QuotaRow, QuotaStore, StateError};

/// The window holding `unix` (seconds): its start and end.
pub fn window(kind: QuotaWindow, unix: i64) -> (i64, i64) {
    match kind {
        QuotaWindow::Day => {
            let start = unix.div_euclid(86_400) * 86_400;
            (start, start + 86_400)
        }
        QuotaWindow::Month => {
            let (year, month, _) = calendar::civil_from_days(unix.div_euclid(86_400));
            let start = calendar::days_from_civil(year, month, 1) * 86_400;
            let (next_year, next_month) = if month == 12 {
                (year + 1, 1)
            } else {
                (year, month + 1)
            };
            (
                start,
                calendar::days_from_civil(next_year, next_month, 1) * 86_400,
            )
        }
    }
}

#[derive(Debug)]
struct Counter {
    policy: Arc<str>,
    consumer: Box<str>,
    window: i64,
    used: u64,
    /// Changed since it was last written.
    dirty: bool,
}

/// Every consumer's quota counters, and the store they are kept in.
pub struct QuotaTable {
    counters: KeyMap<Counter>,
    store: Box<dyn QuotaStore>,
    /// Serializes flushes: two writers must not interleave their batches.
    flushing: Mutex<()>,
}

impl std::fmt::Debug for QuotaTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuotaTable")
            .field("counters", &self.counters.len())
            .field("store", &self.store)
            .finish()
    }
}

impl QuotaTable {
    /// A table holding what `store` kept.
    pub fn open(store: Box<dyn QuotaStore>) -> Result<QuotaTable, StateError> {
        let table = QuotaTable {
            counters: KeyMap::default(),
            store,
            flushing: Mutex::new(()),
        };
        for row in table.store.load()? {
            let Some(consumer) = super::Consumer::parse(&row.consumer) else {
                continue;
            };
            let key = super::consumer::table_key(
                consumer.hash(),
                super::consumer::policy_salt(&row.policy),
            );
            table.counters.insert(
                key,
                Counter {
                    policy: row.policy.as_str().into(),
                    consumer: row.consumer.as_str().into(),
                    window: row.window,
                    used: row.used,
                    dirty: false,
                },
            );
        }
        Ok(table)
    }

    /// Counters held in memory.
    pub fn len(&self) -> usize {
        self.counters.len()
    }

    /// Whether no counter is held.
    pub fn is_empty(&self) -> bool {
        self.counters.is_empty()
    }

    /// Writes every changed counter, and removes the counters of ended windows, at `unix`.
    /// On a store failure the counters stay marked changed and are written next time.
    pub fn flush(&self, unix: i64) -> Result<(), StateError> {
        let _serial = self.flushing.lock().unwrap_or_else(|e| e.into_inner());
        let mut rows = Vec::new();
        let mut written = Vec::new();
        let mut removed = Vec::new();
        let mut ended = Vec::new();
        for mut entry in self.counters.iter_mut() {
            let key = *entry.key();
            let counter = entry.value_mut();
            if counter.dirty {
                counter.dirty = false;
                written.push(key);
                rows.push(QuotaRow {
                    policy: counter.policy.to_string(),
                    consumer: counter.consumer.to_string(),
                    window: counter.window,
                    used: counter.used,
                });
            } else if longest_end(counter.window) <= unix {
                // No window lasts longer than a month: this one has certainly ended.
                ended.push(key);
                removed.push((counter.policy.to_string(), counter.consumer.to_string()));
            }
        }
        if rows.is_empty() && removed.is_empty() {
            return Ok(());
        }
        match self.store.save(&rows, &removed) {
            Ok(()) => {
                for key in ended {
                    self.counters.remove_if(&key, |_, c| !c.dirty);
                }
                Ok(())
            }
            Err(error) => {
                for key in written {
                    if let Some(mut counter) = self.counters.get_mut(&key) {
                        counter.dirty = true;
                    }
                }
                Err(error)
            }
        }
    }

    fn quota(key: &Key<'_>) -> Option<Quota> {
        match key.policy.kind {
            PolicyKind::Quota(quota) => Some(quota),
            PolicyKind::Rate(_) => None,
        }
    }
}

/// A bound on when a window that started at `start` ends: 31 days.
fn longest_end(start: i64) -> i64 {
    start + 31 * 86_400
}

fn standing(quota: &Quota, used: u64, end: i64, now: Now, wait: bool) -> Standing {
    // Seconds, and the window ends on a whole second: never earlier than the real time.
    let reset = u64::try_from(end - now.unix).unwrap_or(0) * 1_000_000_000;
    Standing {
        remaining: quota.count.saturating_sub(used),
        reset_nanos: reset,
        wait_nanos: wait.then_some(reset),
    }
}

impl Limiter for QuotaTable {
    fn acquire(&self, key: &Key<'_>, cost: u64, now: Now) -> Standing {
        let Some(quota) = Self::quota(key) else {
            return Standing::unlimited();
        };
        let (start, end) = window(quota.window, now.unix);
        let mut counter = self.counters.entry(key.hash).or_insert_with(|| Counter {
            policy: key.policy.name.clone(),
            consumer: key.consumer.to_string().into_boxed_str(),
            window: start,
            used: 0,
            dirty: false,
        });
        if counter.window != start {
            counter.window = start;
            counter.used = 0;
            counter.dirty = true;
        }
        if counter.used.saturating_add(cost) > quota.count {
            return standing(&quota, counter.used, end, now, true);
        }
        counter.used += cost;
        counter.dirty = true;
        standing(&quota, counter.used, end, now, false)
    }

    fn release(&self, key: &Key<'_>, cost: u64, _now: Now) {
        if let Some(mut counter) = self.counters.get_mut(&key.hash) {
            counter.used = counter.used.saturating_sub(cost);
            counter.dirty = true;
        }
    }

    fn standing(&self, key: &Key<'_>, now: Now) -> Option<Standing> {
        let quota = Self::quota(key)?;
        let counter = self.counters.get(&key.hash)?;
        let (start, end) = window(quota.window, now.unix);
        let used = if counter.window == start {
            counter.used
        } else {
            0
        };
        Some(standing(&quota, used, end, now, false))
    }

    fn reset(&self, key: &Key<'_>) -> bool {
        match self.counters.get_mut(&key.hash) {
            Some(mut counter) => {
                counter.used = 0;
                counter.dirty = true;
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::{Consumer, Policy};
    use crate::state::MemoryQuotaStore;

    #[test]
    fn windows_are_utc_days_and_calendar_months() {
        // 2024-02-29T13:00:00Z, a leap day.
        let t = 1_709_211_600;
        assert_eq!(window(QuotaWindow::Day, t), (1_709_164_800, 1_709_251_200));
        // February 2024 runs from the 1st to March 1st: 29 days.
        let (start, end) = window(QuotaWindow::Month, t);
        assert_eq!(start, 1_706_745_600);
        assert_eq!(end - start, 29 * 86_400);
        let (start, end) = window(QuotaWindow::Month, 1_735_689_599); // 2024-12-31T23:59:59Z
        assert_eq!((end - start) / 86_400, 31);
        assert_eq!(end, 1_735_689_600);
    }

    fn policy() -> Policy {
        Policy::quota(
            "free-quota",
            Quota {
                count: 3,
                window: QuotaWindow::Day,
            },
        )
    }

    #[test]
    fn counts_to_the_quota_then_refuses_until_the_window_ends() {
        let table = QuotaTable::open(Box::new(MemoryQuotaStore::default())).unwrap();
        let policy = policy();
        let consumer = Consumer::ApiKey("k");
        let key = policy.key(&consumer, consumer.hash());
        let now = Now {
            nanos: 1,
            unix: 86_400 * 100 + 3600,
        };
        for remaining in [2, 1, 0] {
            let standing = table.acquire(&key, 1, now);
            assert_eq!((standing.wait_nanos, standing.remaining), (None, remaining));
        }
        let refused = table.acquire(&key, 1, now);
        assert_eq!(refused.wait_nanos, Some(23 * 3600 * 1_000_000_000));
        // The next day starts afresh.
        let tomorrow = Now {
            nanos: 2,
            unix: 86_400 * 101,
        };
        assert_eq!(table.acquire(&key, 1, tomorrow).remaining, 2);
    }

    #[test]
    fn flushed_counters_come_back_and_ended_windows_go() {
        let store = Arc::new(MemoryQuotaStore::default());
        #[derive(Debug)]
        struct Shared(Arc<MemoryQuotaStore>);
        impl QuotaStore for Shared {
            fn load(&self) -> Result<Vec<QuotaRow>, StateError> {
                self.0.load()
            }
            fn save(
                &self,
                rows: &[QuotaRow],
                removed: &[(String, String)],
            ) -> Result<(), StateError> {
                self.0.save(rows, removed)
            }
        }
        let policy = policy();
        let consumer = Consumer::Jwt {
            issuer: "idp",
            subject: "alice",
        };
        let key = policy.key(&consumer, consumer.hash());
        let now = Now {
            nanos: 1,
            unix: 86_400 * 100,
        };
        let table = QuotaTable::open(Box::new(Shared(store.clone()))).unwrap();
        table.acquire(&key, 2, now);
        table.flush(now.unix).unwrap();
        let again = QuotaTable::open(Box::new(Shared(store.clone()))).unwrap();
        assert_eq!(again.standing(&key, now).unwrap().remaining, 1);
        // A month later the row is gone from memory and from the store.
        again.flush(now.unix + 40 * 86_400).unwrap();
        assert!(again.is_empty());
        assert!(store.load().unwrap().is_empty());
    }
}
