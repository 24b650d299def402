//! The embedded quota store: one redb file, `quotas.redb` in `[state] data_dir`. A batch of
//! counters is one write transaction, so a crash leaves either the old or the new values, and
//! redb's file lock keeps a second process from sharing (and double-counting in) the file.

use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::{QuotaRow, QuotaStore, StateError};

/// The file's name in the data directory.
pub const FILE_NAME: &str = "quotas.redb";

/// (policy, consumer) → (window start, used).
const QUOTAS: CounterTable = TableDefinition::new("quotas");

/// A table of counters keyed (policy, consumer) → (window start, used), the shape of the
/// quotas here and of metering's token and budget counters.
pub type CounterTable = TableDefinition<'static, (&'static str, &'static str), (i64, u64)>;

/// Every row of a counter table.
pub fn read_rows(db: &Database, table: CounterTable) -> Result<Vec<QuotaRow>, StateError> {
    let txn = db.begin_read().map_err(StateError::from_display)?;
    let table = txn.open_table(table).map_err(StateError::from_display)?;
    let mut rows = Vec::new();
    for entry in table.iter().map_err(StateError::from_display)? {
        let (key, value) = entry.map_err(StateError::from_display)?;
        let (policy, consumer) = key.value();
        let (window, used) = value.value();
        rows.push(QuotaRow {
            policy: policy.to_string(),
            consumer: consumer.to_string(),
            window,
            used,
        });
    }
    Ok(rows)
}

/// Opens (or creates) the redb file at `path`, creating its directory; the one way every
/// embedded store opens its file. A second process cannot open the same file: redb locks it.
pub fn create_database(path: &Path) -> Result<Database, String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create the directory {}: {e}", dir.display()))?;
    }
    Database::create(path).map_err(|e| format!("cannot open {}: {e}", path.display()))
}

/// A redb file of quota counters.
pub struct EmbeddedQuotaStore {
    db: Database,
    path: PathBuf,
}

impl std::fmt::Debug for EmbeddedQuotaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedQuotaStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl EmbeddedQuotaStore {
    /// Opens (or creates) the store at `path`, creating its directory.
    pub fn open(path: &Path) -> Result<Self, StateError> {
        let db = create_database(path).map_err(StateError)?;
        let txn = db.begin_write().map_err(StateError::from_display)?;
        txn.open_table(QUOTAS).map_err(StateError::from_display)?;
        txn.commit().map_err(StateError::from_display)?;
        Ok(EmbeddedQuotaStore {
            db,
            path: path.to_path_buf(),
        })
    }
}

impl QuotaStore for EmbeddedQuotaStore {
    fn load(&self) -> Result<Vec<QuotaRow>, StateError> {
        read_rows(&self.db, QUOTAS)
    }

    fn save(&self, rows: &[QuotaRow], removed: &[(String, String)]) -> Result<(), StateError> {
        let txn = self.db.begin_write().map_err(StateError::from_display)?;
        {
            let mut table = txn.open_table(QUOTAS).map_err(StateError::from_display)?;
            for row in rows {
                table
                    .insert(
                        (row.policy.as_str(), row.consumer.as_str()),
                        (row.window, row.used),
                    )
                    .map_err(StateError::from_display)?;
            }
            for (policy, consumer) in removed {
                table
                    .remove((policy.as_str(), consumer.as_str()))
                    .map_err(StateError::from_display)?;
            }
        }
        txn.commit().map_err(StateError::from_display)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_survive_reopening_and_deletes_land() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join(FILE_NAME);
        let row = |consumer: &str, used| QuotaRow {
            policy: "free-quota".into(),
            consumer: consumer.into(),
            window: 1_700_000_000,
            used,
        };
        {
            let store = EmbeddedQuotaStore::open(&path).unwrap();
            store.save(&[row("a", 3), row("b", 4)], &[]).unwrap();
            store
                .save(&[row("a", 5)], &[("free-quota".into(), "b".into())])
                .unwrap();
        }
        let store = EmbeddedQuotaStore::open(&path).unwrap();
        assert_eq!(store.load().unwrap(), vec![row("a", 5)]);
    }
}
