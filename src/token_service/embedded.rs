//! The embedded token store: one redb file under the configured data directory. redb write
//! transactions are serial and all-or-nothing, which is exactly what refresh rotation needs
//! (of two concurrent refreshes with one token, the second sees it retired), and a committed
//! transaction is on disk before the client gets its answer, so a restart loses nothing.

use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, Table, TableDefinition};

use super::store::{FamilyRecord, RefreshRecord, StoreError, TokenHash, TokenStore, Transaction};

/// Refresh tokens by the SHA-256 of the token; values are JSON [`RefreshRecord`]s.
const REFRESH: TableDefinition<&[u8], &[u8]> = TableDefinition::new("refresh_tokens");
/// Families by id; values are JSON [`FamilyRecord`]s.
const FAMILIES: TableDefinition<&str, &[u8]> = TableDefinition::new("families");
/// Revoked access tokens: jti → exp.
const REVOKED: TableDefinition<&str, i64> = TableDefinition::new("revoked_access_tokens");

/// A redb file holding the token service's state.
pub struct EmbeddedStore {
    db: Database,
    path: PathBuf,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl EmbeddedStore {
    /// Opens (or creates) the store at `path`, creating its directory. A second process cannot
    /// open the same file: redb locks it.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = crate::state::embedded::create_database(path).map_err(StoreError)?;
        // Create the tables up front so that readers never meet a missing one.
        let txn = db.begin_write().map_err(StoreError::from_display)?;
        txn.open_table(REFRESH).map_err(StoreError::from_display)?;
        txn.open_table(FAMILIES).map_err(StoreError::from_display)?;
        txn.open_table(REVOKED).map_err(StoreError::from_display)?;
        txn.commit().map_err(StoreError::from_display)?;
        Ok(EmbeddedStore {
            db,
            path: path.to_path_buf(),
        })
    }
}

struct RedbTransaction<'t> {
    refresh: Table<'t, &'static [u8], &'static [u8]>,
    families: Table<'t, &'static str, &'static [u8]>,
    revoked: Table<'t, &'static str, i64>,
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes)
        .map_err(|e| StoreError(format!("a stored record is damaged: {e}")))
}

fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(StoreError::from_display)
}

impl Transaction for RedbTransaction<'_> {
    fn refresh(&mut self, hash: &TokenHash) -> Result<Option<RefreshRecord>, StoreError> {
        let found = self
            .refresh
            .get(&hash[..])
            .map_err(StoreError::from_display)?;
        found.map(|value| decode(value.value())).transpose()
    }

    fn put_refresh(&mut self, hash: &TokenHash, record: &RefreshRecord) -> Result<(), StoreError> {
        self.refresh
            .insert(&hash[..], encode(record)?.as_slice())
            .map_err(StoreError::from_display)?;
        Ok(())
    }

    fn family(&mut self, id: &str) -> Result<Option<FamilyRecord>, StoreError> {
        let found = self.families.get(id).map_err(StoreError::from_display)?;
        found.map(|value| decode(value.value())).transpose()
    }

    fn put_family(&mut self, id: &str, family: &FamilyRecord) -> Result<(), StoreError> {
        self.families
            .insert(id, encode(family)?.as_slice())
            .map_err(StoreError::from_display)?;
        Ok(())
    }

    fn revoke_access(&mut self, jti: &str, expires_at: i64) -> Result<(), StoreError> {
        self.revoked
            .insert(jti, expires_at)
            .map_err(StoreError::from_display)?;
        Ok(())
    }
}

impl TokenStore for EmbeddedStore {
    fn write(
        &self,
        change: &mut dyn FnMut(&mut dyn Transaction) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(StoreError::from_display)?;
        {
            let mut tables = RedbTransaction {
                refresh: txn.open_table(REFRESH).map_err(StoreError::from_display)?,
                families: txn.open_table(FAMILIES).map_err(StoreError::from_display)?,
                revoked: txn.open_table(REVOKED).map_err(StoreError::from_display)?,
            };
            // On an error the transaction is dropped uncommitted: redb discards its writes.
            change(&mut tables)?;
        }
        txn.commit().map_err(StoreError::from_display)
    }

    fn revoked_access(&self, now: i64) -> Result<Vec<(String, i64)>, StoreError> {
        let txn = self.db.begin_read().map_err(StoreError::from_display)?;
        let table = txn.open_table(REVOKED).map_err(StoreError::from_display)?;
        let mut revoked = Vec::new();
        for entry in table.iter().map_err(StoreError::from_display)? {
            let (jti, exp) = entry.map_err(StoreError::from_display)?;
            if exp.value() >= now {
                revoked.push((jti.value().to_string(), exp.value()));
            }
        }
        Ok(revoked)
    }

    fn purge(&self, now: i64) -> Result<usize, StoreError> {
        let txn = self.db.begin_write().map_err(StoreError::from_display)?;
        let mut purged = 0;
        {
            // A record that cannot be read is kept: purging must never be what loses data.
            let mut refresh = txn.open_table(REFRESH).map_err(StoreError::from_display)?;
            refresh
                .retain(|_, value| {
                    let keep = !decode::<RefreshRecord>(value).is_ok_and(|r| r.expires_at < now);
                    purged += usize::from(!keep);
                    keep
                })
                .map_err(StoreError::from_display)?;
            let mut families = txn.open_table(FAMILIES).map_err(StoreError::from_display)?;
            families
                .retain(|_, value| {
                    let keep = !decode::<FamilyRecord>(value).is_ok_and(|f| f.expires_at < now);
                    purged += usize::from(!keep);
                    keep
                })
                .map_err(StoreError::from_display)?;
            let mut revoked = txn.open_table(REVOKED).map_err(StoreError::from_display)?;
            revoked
                .retain(|_, exp| {
                    let keep = exp >= now;
                    purged += usize::from(!keep);
                    keep
                })
                .map_err(StoreError::from_display)?;
        }
        txn.commit().map_err(StoreError::from_display)?;
        Ok(purged)
    }
}
