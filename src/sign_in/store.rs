//! Where sessions live: the state store of `[state]`. Embedded, a redb file
//! (`sessions.redb` in `data_dir`) for one gateway; on Redis (`redis_store.rs`) for a fleet, so
//! a browser signed in through one gateway is signed in at all of them, and a logout at one
//! ends the session at all of them on their next request.
//!
//! Besides the sessions themselves the store keeps what must be single-use across the fleet:
//! sign-ins under way (taken once by their callback) and the `jti`s of logout tokens already
//! applied; and two indexes (by subject and by the provider's `sid`) for back-channel logout.
//! Every key holds hashes only (see `session::store_key`), never a cookie, state or token.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use super::redis_store::RedisSessions;
use super::session::{PendingRecord, SessionRecord};
use crate::config::SessionStoreLocation;
use crate::state::redis::RedisState;
use crate::state::StateError;

/// Sessions by store key; JSON [`SessionRecord`]s.
const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");
/// `"{index}\x1f{session key}"` → the session's expiry; `index` from [`index_key`].
const INDEX: TableDefinition<&str, i64> = TableDefinition::new("session_index");
/// Sign-ins under way by store key; JSON [`PendingRecord`]s.
const PENDING: TableDefinition<&str, &[u8]> = TableDefinition::new("pending_sign_ins");
/// Logout-token ids already applied → when they expire.
const SEEN: TableDefinition<&str, i64> = TableDefinition::new("seen_logout_tokens");

/// The store of one gateway (or fleet).
#[derive(Debug, Clone)]
pub enum SessionStore {
    /// A redb file.
    Embedded(Arc<EmbeddedSessions>),
    /// The fleet's Redis.
    Redis(Arc<RedisSessions>),
}

/// The index entry for sessions of a subject (`sub`) or of a provider session (`sid`).
pub fn index_key(kind: &str, issuer: &str, value: &str) -> String {
    super::session::store_key(kind.as_bytes(), format!("{issuer}\0{value}").as_bytes())
}

/// The index keys a session is found under.
pub fn indexes_of(record: &SessionRecord) -> Vec<String> {
    let mut keys = vec![index_key("sub", &record.issuer, &record.subject)];
    if let Some(sid) = &record.sid {
        keys.push(index_key("sid", &record.issuer, sid));
    }
    keys
}

impl SessionStore {
    /// Opens the store at `location` (the redb file is created; Redis is not waited for).
    pub fn open(location: &SessionStoreLocation) -> Result<Self, String> {
        match location {
            SessionStoreLocation::Embedded(path) => Ok(SessionStore::Embedded(Arc::new(
                EmbeddedSessions::open(path).map_err(|e| e.to_string())?,
            ))),
            SessionStoreLocation::Redis(settings) => {
                let redis = RedisState::shared(settings).map_err(|e| e.to_string())?;
                Ok(SessionStore::Redis(Arc::new(RedisSessions::new(redis))))
            }
        }
    }

    /// The session stored under `key`.
    pub async fn get(&self, key: &str) -> Result<Option<SessionRecord>, StateError> {
        match self {
            SessionStore::Embedded(db) => {
                let key = key.to_string();
                blocking(db, move |db| db.get(&key)).await
            }
            SessionStore::Redis(redis) => redis.get(key).await,
        }
    }

    /// Stores (or replaces) a session; it is forgotten at `expires_at`.
    pub async fn put(
        &self,
        key: &str,
        record: &SessionRecord,
        expires_at: i64,
    ) -> Result<(), StateError> {
        match self {
            SessionStore::Embedded(db) => {
                let (key, record) = (key.to_string(), record.clone());
                blocking(db, move |db| db.put(&key, &record, expires_at)).await
            }
            SessionStore::Redis(redis) => redis.put(key, record, expires_at).await,
        }
    }

    /// Ends one session; returns what it held, if it existed.
    pub async fn remove(&self, key: &str) -> Result<Option<SessionRecord>, StateError> {
        match self {
            SessionStore::Embedded(db) => {
                let key = key.to_string();
                blocking(db, move |db| db.remove(&key)).await
            }
            SessionStore::Redis(redis) => redis.remove(key).await,
        }
    }

    /// Ends every session found under the index key `index`; how many there were.
    pub async fn remove_indexed(&self, index: &str) -> Result<usize, StateError> {
        match self {
            SessionStore::Embedded(db) => {
                let index = index.to_string();
                blocking(db, move |db| db.remove_indexed(&index)).await
            }
            SessionStore::Redis(redis) => redis.remove_indexed(index).await,
        }
    }

    /// Keeps a sign-in under way until its callback (or `record.expires_at`).
    pub async fn put_pending(&self, key: &str, record: &PendingRecord) -> Result<(), StateError> {
        match self {
            SessionStore::Embedded(db) => {
                let (key, record) = (key.to_string(), record.clone());
                blocking(db, move |db| db.put_pending(&key, &record)).await
            }
            SessionStore::Redis(redis) => redis.put_pending(key, record).await,
        }
    }

    /// Takes a sign-in under way: the first caller gets it, every later one `None`.
    pub async fn take_pending(&self, key: &str) -> Result<Option<PendingRecord>, StateError> {
        match self {
            SessionStore::Embedded(db) => {
                let key = key.to_string();
                blocking(db, move |db| db.take_pending(&key)).await
            }
            SessionStore::Redis(redis) => redis.take_pending(key).await,
        }
    }

    /// Records `key` as used until `expires_at`: whether this was its first use.
    pub async fn first_use(&self, key: &str, expires_at: i64) -> Result<bool, StateError> {
        match self {
            SessionStore::Embedded(db) => {
                let key = key.to_string();
                blocking(db, move |db| db.first_use(&key, expires_at)).await
            }
            SessionStore::Redis(redis) => redis.first_use(key, expires_at).await,
        }
    }

    /// How many sessions are live at `now` (across the fleet, on Redis).
    pub async fn count(&self, now: i64) -> Result<u64, StateError> {
        match self {
            SessionStore::Embedded(db) => blocking(db, move |db| db.count(now)).await,
            SessionStore::Redis(redis) => redis.count(now).await,
        }
    }

    /// Deletes what expired by `now` (Redis expires keys by itself).
    pub async fn purge(&self, now: i64) -> Result<usize, StateError> {
        match self {
            SessionStore::Embedded(db) => blocking(db, move |db| db.purge(now)).await,
            SessionStore::Redis(_) => Ok(0),
        }
    }
}

/// Runs a redb operation on the blocking pool: a write waits for the disk.
async fn blocking<T: Send + 'static>(
    db: &Arc<EmbeddedSessions>,
    work: impl FnOnce(&EmbeddedSessions) -> Result<T, StateError> + Send + 'static,
) -> Result<T, StateError> {
    let db = db.clone();
    tokio::task::spawn_blocking(move || work(&db))
        .await
        .map_err(StateError::from_display)?
}

/// The redb file of one gateway's sessions.
pub struct EmbeddedSessions {
    db: Database,
    path: PathBuf,
}

impl std::fmt::Debug for EmbeddedSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedSessions")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, StateError> {
    serde_json::to_vec(value).map_err(StateError::from_display)
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, StateError> {
    serde_json::from_slice(bytes)
        .map_err(|e| StateError(format!("a stored session is damaged: {e}")))
}

impl EmbeddedSessions {
    /// Opens (or creates) the file at `path`; a second process cannot open it (redb locks it).
    pub fn open(path: &Path) -> Result<Self, StateError> {
        let db = crate::state::embedded::create_database(path).map_err(StateError)?;
        let txn = db.begin_write().map_err(StateError::from_display)?;
        txn.open_table(SESSIONS).map_err(StateError::from_display)?;
        txn.open_table(INDEX).map_err(StateError::from_display)?;
        txn.open_table(PENDING).map_err(StateError::from_display)?;
        txn.open_table(SEEN).map_err(StateError::from_display)?;
        txn.commit().map_err(StateError::from_display)?;
        Ok(EmbeddedSessions {
            db,
            path: path.to_path_buf(),
        })
    }

    fn get(&self, key: &str) -> Result<Option<SessionRecord>, StateError> {
        let txn = self.db.begin_read().map_err(StateError::from_display)?;
        let table = txn.open_table(SESSIONS).map_err(StateError::from_display)?;
        let found = table.get(key).map_err(StateError::from_display)?;
        found.map(|bytes| decode(bytes.value())).transpose()
    }

    /// Runs `change` in one write transaction.
    fn write<T>(
        &self,
        change: impl FnOnce(&redb::WriteTransaction) -> Result<T, redb::Error>,
    ) -> Result<T, StateError> {
        let txn = self.db.begin_write().map_err(StateError::from_display)?;
        let value = change(&txn).map_err(StateError::from_display)?;
        txn.commit().map_err(StateError::from_display)?;
        Ok(value)
    }

    fn put(&self, key: &str, record: &SessionRecord, expires_at: i64) -> Result<(), StateError> {
        let bytes = encode(record)?;
        let indexes = indexes_of(record);
        self.write(|txn| {
            txn.open_table(SESSIONS)?.insert(key, bytes.as_slice())?;
            let mut index = txn.open_table(INDEX)?;
            for entry in &indexes {
                index.insert(format!("{entry}\x1f{key}").as_str(), expires_at)?;
            }
            Ok(())
        })
    }

    fn remove(&self, key: &str) -> Result<Option<SessionRecord>, StateError> {
        let removed = self.write(|txn| {
            let mut sessions = txn.open_table(SESSIONS)?;
            let removed = sessions.remove(key)?.map(|bytes| bytes.value().to_vec());
            Ok(removed)
        })?;
        let Some(bytes) = removed else {
            return Ok(None);
        };
        let record: SessionRecord = decode(&bytes)?;
        // The index entries go too, so the index never outgrows the sessions.
        self.write(|txn| {
            let mut index = txn.open_table(INDEX)?;
            for entry in indexes_of(&record) {
                index.remove(format!("{entry}\x1f{key}").as_str())?;
            }
            Ok(())
        })?;
        Ok(Some(record))
    }

    fn remove_indexed(&self, index_key: &str) -> Result<usize, StateError> {
        let start = format!("{index_key}\x1f");
        let end = format!("{index_key}\x20");
        self.write(|txn| {
            let mut index = txn.open_table(INDEX)?;
            let entries: Vec<String> = index
                .range(start.as_str()..end.as_str())?
                .map(|entry| entry.map(|(key, _)| key.value().to_string()))
                .collect::<Result<_, _>>()?;
            let mut sessions = txn.open_table(SESSIONS)?;
            let mut ended = 0;
            for entry in &entries {
                index.remove(entry.as_str())?;
                if let Some((_, session)) = entry.split_once('\x1f') {
                    ended += usize::from(sessions.remove(session)?.is_some());
                }
            }
            Ok(ended)
        })
    }

    fn put_pending(&self, key: &str, record: &PendingRecord) -> Result<(), StateError> {
        let bytes = encode(record)?;
        self.write(|txn| {
            txn.open_table(PENDING)?.insert(key, bytes.as_slice())?;
            Ok(())
        })
    }

    fn take_pending(&self, key: &str) -> Result<Option<PendingRecord>, StateError> {
        let taken = self.write(|txn| {
            let mut pending = txn.open_table(PENDING)?;
            let taken = pending.remove(key)?.map(|bytes| bytes.value().to_vec());
            Ok(taken)
        })?;
        taken.map(|bytes| decode(&bytes)).transpose()
    }

    fn first_use(&self, key: &str, expires_at: i64) -> Result<bool, StateError> {
        self.write(|txn| {
            let mut seen = txn.open_table(SEEN)?;
            if seen.get(key)?.is_some() {
                return Ok(false);
            }
            seen.insert(key, expires_at)?;
            Ok(true)
        })
    }

    fn count(&self, now: i64) -> Result<u64, StateError> {
        // Sessions past their end but not yet purged are not counted: each has a `sub` entry
        // in the index with its expiry.
        let txn = self.db.begin_read().map_err(StateError::from_display)?;
        let index = txn.open_table(INDEX).map_err(StateError::from_display)?;
        let sessions = txn.open_table(SESSIONS).map_err(StateError::from_display)?;
        if sessions.len().map_err(StateError::from_display)? == 0 {
            return Ok(0);
        }
        let mut live = std::collections::HashSet::new();
        for entry in index.iter().map_err(StateError::from_display)? {
            let (key, expires) = entry.map_err(StateError::from_display)?;
            if expires.value() > now {
                if let Some((_, session)) = key.value().split_once('\x1f') {
                    live.insert(session.to_string());
                }
            }
        }
        let mut count = 0;
        for session in live {
            count += u64::from(
                sessions
                    .get(session.as_str())
                    .map_err(StateError::from_display)?
                    .is_some(),
            );
        }
        Ok(count)
    }

    fn purge(&self, now: i64) -> Result<usize, StateError> {
        self.write(|txn| {
            let mut purged = 0;
            let mut index = txn.open_table(INDEX)?;
            let expired: Vec<String> = index
                .iter()?
                .filter_map(|entry| match entry {
                    Ok((key, expires)) if expires.value() <= now => {
                        Some(Ok(key.value().to_string()))
                    }
                    Ok(_) => None,
                    Err(e) => Some(Err(e)),
                })
                .collect::<Result<_, _>>()?;
            let mut sessions = txn.open_table(SESSIONS)?;
            for entry in &expired {
                index.remove(entry.as_str())?;
                if let Some((_, session)) = entry.split_once('\x1f') {
                    purged += usize::from(sessions.remove(session)?.is_some());
                }
            }
            let mut pending = txn.open_table(PENDING)?;
            let stale: Vec<String> = pending
                .iter()?
                .filter_map(|entry| {
                    let (key, bytes) = entry.ok()?;
                    let record: Option<PendingRecord> = decode(bytes.value()).ok();
                    record
                        .is_none_or(|r| r.expires_at <= now)
                        .then(|| key.value().to_string())
                })
                .collect();
            for key in &stale {
                pending.remove(key.as_str())?;
            }
            let mut seen = txn.open_table(SEEN)?;
            seen.retain(|_, expires| expires > now)?;
            Ok(purged + stale.len())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(subject: &str, sid: Option<&str>) -> SessionRecord {
        SessionRecord {
            issuer: "corp".into(),
            subject: subject.into(),
            sid: sid.map(str::to_string),
            claims: serde_json::json!({"sub": subject}),
            roles: Vec::new(),
            scopes: Vec::new(),
            id_token: "h.p.s".into(),
            refresh_token: None,
            created_at: 0,
            last_seen: 0,
            ends_at: 1000,
            tokens_expire_at: 1000,
            refresh_retry_at: 0,
        }
    }

    #[tokio::test]
    async fn sessions_pending_sign_ins_and_logout_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let location = SessionStoreLocation::Embedded(dir.path().join("sessions.redb"));
        let store = SessionStore::open(&location).unwrap();
        store
            .put("a", &record("alice", Some("s1")), 1000)
            .await
            .unwrap();
        store
            .put("b", &record("alice", Some("s2")), 1000)
            .await
            .unwrap();
        store
            .put("c", &record("bob", Some("s1")), 1000)
            .await
            .unwrap();
        assert_eq!(store.get("a").await.unwrap().unwrap().subject, "alice");
        assert_eq!(store.count(10).await.unwrap(), 3);
        // By sid: only that provider session; by subject: all of them.
        assert_eq!(
            store
                .remove_indexed(&index_key("sid", "corp", "s2"))
                .await
                .unwrap(),
            1
        );
        assert!(store.get("b").await.unwrap().is_none());
        assert_eq!(
            store
                .remove_indexed(&index_key("sub", "corp", "alice"))
                .await
                .unwrap(),
            1
        );
        assert!(store.get("a").await.unwrap().is_none());
        assert_eq!(store.remove("c").await.unwrap().unwrap().subject, "bob");
        assert!(store.remove("c").await.unwrap().is_none());
        assert_eq!(store.count(10).await.unwrap(), 0);

        let pending = PendingRecord {
            verifier: "v".into(),
            nonce: "n".into(),
            return_to: "/".into(),
            redirect_uri: "http://h/cb".into(),
            binding: "b".into(),
            expires_at: 100,
        };
        store.put_pending("p", &pending).await.unwrap();
        assert_eq!(store.take_pending("p").await.unwrap(), Some(pending));
        assert_eq!(store.take_pending("p").await.unwrap(), None);

        assert!(store.first_use("j", 100).await.unwrap());
        assert!(!store.first_use("j", 100).await.unwrap());

        store.put("d", &record("carol", None), 50).await.unwrap();
        assert_eq!(store.count(60).await.unwrap(), 0, "expired, not counted");
        assert_eq!(store.purge(60).await.unwrap(), 1);
        assert!(store.get("d").await.unwrap().is_none());
    }
}
