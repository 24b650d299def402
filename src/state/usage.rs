//! The usage store: one record per metered request, totals per consumer, day and model, and
//! the token / budget counters metering reserves against. [`UsageStore`] is the trait a
//! shared backend implements too; [`EmbeddedUsageStore`] is a redb file, `usage.redb` in
//! `[state] data_dir`. A batch (records, the totals they add to, the counters) is one write
//! transaction, so totals always match the records that made them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::{QuotaRow, StateError};

/// The file's name in the data directory.
pub const FILE_NAME: &str = "usage.redb";

/// What one metered request used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRecord {
    /// Seconds since the epoch (UTC) when the response ended.
    pub time: i64,
    /// The request's `X-Request-Id`.
    pub request_id: String,
    /// The consumer's canonical id (`api_key:…`, `jwt:ISSUER:SUBJECT`, `ip:…`).
    pub consumer: String,
    /// The route's id.
    pub route: String,
    /// The model, from the response when it names one, else from the request.
    pub model: String,
    /// Input tokens, all of them (those read from and written to a cache included).
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Of the input, tokens read from the provider's cache.
    pub cached_tokens: u64,
    /// Of the input, tokens written to the provider's cache.
    pub cache_creation_tokens: u64,
    /// Cost in micro-USD (0 when the model has no price).
    pub cost_micro_usd: u64,
    /// The provider never reported usage (a stream cut short): the figures are estimates.
    pub estimated: bool,
    /// The upstream's status code.
    pub status: u16,
}

/// The totals of one consumer, day and model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Metered requests.
    pub requests: u64,
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Cached input tokens.
    pub cached_tokens: u64,
    /// Cost in micro-USD.
    pub cost_micro_usd: u64,
    /// Requests whose figures are estimates.
    pub estimated: u64,
}

impl Totals {
    /// Adds one record.
    pub fn add(&mut self, record: &UsageRecord) {
        self.requests += 1;
        self.input_tokens += record.input_tokens;
        self.output_tokens += record.output_tokens;
        self.cached_tokens += record.cached_tokens;
        self.cost_micro_usd += record.cost_micro_usd;
        self.estimated += u64::from(record.estimated);
    }
}

/// One row of the per-day totals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayTotals {
    /// Days since the epoch (UTC).
    pub day: i64,
    /// The consumer's id.
    pub consumer: String,
    /// The model.
    pub model: String,
    /// What was used.
    pub totals: Totals,
}

/// Durable usage: records, totals, counters.
pub trait UsageStore: Send + Sync + std::fmt::Debug {
    /// Every counter row (token and budget counters; `policy` names the limit).
    fn load_counters(&self) -> Result<Vec<QuotaRow>, StateError>;
    /// Appends `records` (adding them to their day's totals) and writes `counters`, in one
    /// atomic step.
    fn write(&self, records: &[UsageRecord], counters: &[QuotaRow]) -> Result<(), StateError>;
    /// Totals for days `from..=to` (days since the epoch), of one consumer or of all.
    fn totals(
        &self,
        consumer: Option<&str>,
        from: i64,
        to: i64,
    ) -> Result<Vec<DayTotals>, StateError>;
    /// Records of days `from..=to`, of one consumer or of all, in time order per day.
    fn records(
        &self,
        consumer: Option<&str>,
        from: i64,
        to: i64,
    ) -> Result<Vec<UsageRecord>, StateError>;
    /// Deletes records of days before `records_before` and totals of days before
    /// `totals_before`.
    fn prune(&self, records_before: i64, totals_before: i64) -> Result<(), StateError>;
}

/// (day, consumer, sequence) → the record as JSON.
const RECORDS: TableDefinition<(i64, &str, u64), &[u8]> = TableDefinition::new("usage_records");
/// (day, consumer, model) → the totals as JSON.
const TOTALS: TableDefinition<(i64, &str, &str), &[u8]> = TableDefinition::new("usage_totals");
/// (limit, consumer) → (window start, used).
const COUNTERS: super::embedded::CounterTable = TableDefinition::new("usage_counters");
/// "next" → the next record sequence number.
const SEQUENCE: TableDefinition<&str, u64> = TableDefinition::new("usage_sequence");

/// A redb file of usage.
pub struct EmbeddedUsageStore {
    db: Database,
    path: PathBuf,
}

impl std::fmt::Debug for EmbeddedUsageStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedUsageStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn failed(error: impl std::fmt::Display) -> StateError {
    StateError::from_display(error)
}

impl EmbeddedUsageStore {
    /// Opens (or creates) the store at `path`, creating its directory.
    pub fn open(path: &Path) -> Result<Self, StateError> {
        let db = super::embedded::create_database(path).map_err(StateError)?;
        let txn = db.begin_write().map_err(failed)?;
        txn.open_table(RECORDS).map_err(failed)?;
        txn.open_table(TOTALS).map_err(failed)?;
        txn.open_table(COUNTERS).map_err(failed)?;
        txn.open_table(SEQUENCE).map_err(failed)?;
        txn.commit().map_err(failed)?;
        Ok(EmbeddedUsageStore {
            db,
            path: path.to_path_buf(),
        })
    }
}

/// The day (since the epoch) holding `unix`.
pub fn day_of(unix: i64) -> i64 {
    unix.div_euclid(86_400)
}

impl UsageStore for EmbeddedUsageStore {
    fn load_counters(&self) -> Result<Vec<QuotaRow>, StateError> {
        super::embedded::read_rows(&self.db, COUNTERS)
    }

    fn write(&self, records: &[UsageRecord], counters: &[QuotaRow]) -> Result<(), StateError> {
        let txn = self.db.begin_write().map_err(failed)?;
        {
            let mut sequence = txn.open_table(SEQUENCE).map_err(failed)?;
            let mut next = sequence
                .get("next")
                .map_err(failed)?
                .map_or(0, |v| v.value());
            let mut table = txn.open_table(RECORDS).map_err(failed)?;
            let mut totals = txn.open_table(TOTALS).map_err(failed)?;
            for record in records {
                let day = day_of(record.time);
                let json = serde_json::to_vec(record).map_err(failed)?;
                table
                    .insert((day, record.consumer.as_str(), next), json.as_slice())
                    .map_err(failed)?;
                next += 1;
                let key = (day, record.consumer.as_str(), record.model.as_str());
                let mut sum: Totals = match totals.get(key).map_err(failed)? {
                    Some(bytes) => serde_json::from_slice(bytes.value()).map_err(failed)?,
                    None => Totals::default(),
                };
                sum.add(record);
                let json = serde_json::to_vec(&sum).map_err(failed)?;
                totals.insert(key, json.as_slice()).map_err(failed)?;
            }
            sequence.insert("next", next).map_err(failed)?;
            let mut table = txn.open_table(COUNTERS).map_err(failed)?;
            for row in counters {
                table
                    .insert(
                        (row.policy.as_str(), row.consumer.as_str()),
                        (row.window, row.used),
                    )
                    .map_err(failed)?;
            }
        }
        txn.commit().map_err(failed)
    }

    fn totals(
        &self,
        consumer: Option<&str>,
        from: i64,
        to: i64,
    ) -> Result<Vec<DayTotals>, StateError> {
        let txn = self.db.begin_read().map_err(failed)?;
        let table = txn.open_table(TOTALS).map_err(failed)?;
        let mut rows = Vec::new();
        for entry in table
            .range((from, "", "")..(to.saturating_add(1), "", ""))
            .map_err(failed)?
        {
            let (key, value) = entry.map_err(failed)?;
            let (day, who, model) = key.value();
            if consumer.is_some_and(|c| c != who) {
                continue;
            }
            rows.push(DayTotals {
                day,
                consumer: who.to_string(),
                model: model.to_string(),
                totals: serde_json::from_slice(value.value()).map_err(failed)?,
            });
        }
        Ok(rows)
    }

    fn records(
        &self,
        consumer: Option<&str>,
        from: i64,
        to: i64,
    ) -> Result<Vec<UsageRecord>, StateError> {
        let txn = self.db.begin_read().map_err(failed)?;
        let table = txn.open_table(RECORDS).map_err(failed)?;
        let mut records = Vec::new();
        for entry in table
            .range((from, "", 0)..(to.saturating_add(1), "", 0))
            .map_err(failed)?
        {
            let (key, value) = entry.map_err(failed)?;
            let (_, who, _) = key.value();
            if consumer.is_some_and(|c| c != who) {
                continue;
            }
            records.push(serde_json::from_slice(value.value()).map_err(failed)?);
        }
        Ok(records)
    }

    fn prune(&self, records_before: i64, totals_before: i64) -> Result<(), StateError> {
        let txn = self.db.begin_write().map_err(failed)?;
        {
            let mut table = txn.open_table(RECORDS).map_err(failed)?;
            table
                .retain_in((i64::MIN, "", 0)..(records_before, "", 0), |_, _| false)
                .map_err(failed)?;
            let mut totals = txn.open_table(TOTALS).map_err(failed)?;
            totals
                .retain_in((i64::MIN, "", "")..(totals_before, "", ""), |_, _| false)
                .map_err(failed)?;
        }
        txn.commit().map_err(failed)
    }
}

/// Usage in memory, lost at exit (tests, and a gateway whose data directory cannot be written).
#[derive(Debug, Default)]
pub struct MemoryUsageStore {
    inner: std::sync::Mutex<MemoryUsage>,
}

#[derive(Debug, Default)]
struct MemoryUsage {
    records: Vec<UsageRecord>,
    totals: BTreeMap<(i64, String, String), Totals>,
    counters: BTreeMap<(String, String), (i64, u64)>,
}

impl MemoryUsageStore {
    fn lock(&self) -> Result<std::sync::MutexGuard<'_, MemoryUsage>, StateError> {
        self.inner
            .lock()
            .map_err(|_| StateError("the memory store is poisoned".into()))
    }
}

impl UsageStore for MemoryUsageStore {
    fn load_counters(&self) -> Result<Vec<QuotaRow>, StateError> {
        Ok(self
            .lock()?
            .counters
            .iter()
            .map(|((policy, consumer), (window, used))| QuotaRow {
                policy: policy.clone(),
                consumer: consumer.clone(),
                window: *window,
                used: *used,
            })
            .collect())
    }

    fn write(&self, records: &[UsageRecord], counters: &[QuotaRow]) -> Result<(), StateError> {
        let mut inner = self.lock()?;
        for record in records {
            let key = (
                day_of(record.time),
                record.consumer.clone(),
                record.model.clone(),
            );
            inner.totals.entry(key).or_default().add(record);
            inner.records.push(record.clone());
        }
        for row in counters {
            inner.counters.insert(
                (row.policy.clone(), row.consumer.clone()),
                (row.window, row.used),
            );
        }
        Ok(())
    }

    fn totals(
        &self,
        consumer: Option<&str>,
        from: i64,
        to: i64,
    ) -> Result<Vec<DayTotals>, StateError> {
        Ok(self
            .lock()?
            .totals
            .iter()
            .filter(|((day, who, _), _)| {
                (from..=to).contains(day) && consumer.is_none_or(|c| c == who)
            })
            .map(|((day, who, model), totals)| DayTotals {
                day: *day,
                consumer: who.clone(),
                model: model.clone(),
                totals: *totals,
            })
            .collect())
    }

    fn records(
        &self,
        consumer: Option<&str>,
        from: i64,
        to: i64,
    ) -> Result<Vec<UsageRecord>, StateError> {
        Ok(self
            .lock()?
            .records
            .iter()
            .filter(|r| {
                (from..=to).contains(&day_of(r.time)) && consumer.is_none_or(|c| c == r.consumer)
            })
            .cloned()
            .collect())
    }

    fn prune(&self, records_before: i64, totals_before: i64) -> Result<(), StateError> {
        let mut inner = self.lock()?;
        inner.records.retain(|r| day_of(r.time) >= records_before);
        inner.totals.retain(|(day, _, _), _| *day >= totals_before);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn record(time: i64, consumer: &str, model: &str, input: u64) -> UsageRecord {
        UsageRecord {
            time,
            request_id: format!("r{time}"),
            consumer: consumer.into(),
            route: "llm".into(),
            model: model.into(),
            input_tokens: input,
            output_tokens: 2,
            cached_tokens: 1,
            cache_creation_tokens: 0,
            cost_micro_usd: 7,
            estimated: false,
            status: 200,
        }
    }

    fn exercise(store: &dyn UsageStore) {
        let day = 20_424 * 86_400;
        let counter = QuotaRow {
            policy: "team-tokens".into(),
            consumer: "api_key:a".into(),
            window: day,
            used: 30,
        };
        store
            .write(
                &[
                    record(day + 5, "api_key:a", "m", 10),
                    record(day + 6, "api_key:a", "m", 20),
                ],
                std::slice::from_ref(&counter),
            )
            .unwrap();
        store
            .write(&[record(day + 86_400, "api_key:b", "n", 1)], &[])
            .unwrap();
        assert_eq!(store.load_counters().unwrap(), vec![counter]);
        let totals = store.totals(Some("api_key:a"), 20_424, 20_425).unwrap();
        assert_eq!(totals.len(), 1);
        assert_eq!(totals[0].totals.requests, 2);
        assert_eq!(totals[0].totals.input_tokens, 30);
        assert_eq!(totals[0].totals.cost_micro_usd, 14);
        assert_eq!(store.totals(None, 20_424, 20_425).unwrap().len(), 2);
        assert_eq!(store.records(None, 20_425, 20_425).unwrap().len(), 1);
        store.prune(20_425, 20_424).unwrap();
        assert_eq!(store.records(None, 0, 30_000).unwrap().len(), 1);
        assert_eq!(store.totals(None, 0, 30_000).unwrap().len(), 2);
    }

    #[test]
    fn the_embedded_store_keeps_records_totals_and_counters_across_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        exercise(&EmbeddedUsageStore::open(&path).unwrap());
        let again = EmbeddedUsageStore::open(&path).unwrap();
        assert_eq!(again.records(None, 0, 30_000).unwrap().len(), 1);
        assert_eq!(again.load_counters().unwrap().len(), 1);
    }

    #[test]
    fn the_memory_store_behaves_the_same() {
        exercise(&MemoryUsageStore::default());
    }
}
