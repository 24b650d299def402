//! Where the token service keeps what must outlive a request: refresh tokens (by hash only),
//! their families, and revoked access-token ids.
//!
//! [`TokenStore`] is deliberately small: one atomic read-modify-write ([`TokenStore::write`])
//! over a [`Transaction`], plus two maintenance calls. Every rule (rotation, reuse detection,
//! expiry) is written once, in `grants.rs`, against a `Transaction`; a store only has to make
//! a `write` all-or-nothing and serial. [`MemoryStore`] keeps everything in a mutex (tests,
//! development); [`super::embedded::EmbeddedStore`] keeps it in a redb file that survives
//! restarts. A store shared by several replicas implements the same trait.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// The SHA-256 of a refresh token: the only form in which a refresh token is stored.
pub type TokenHash = [u8; 32];

/// One refresh token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefreshRecord {
    /// The family (one login, or one grant) it belongs to.
    pub family: String,
    /// When it was issued (seconds since the epoch).
    pub issued_at: i64,
    /// Unusable after this: the earlier of the family's absolute end and `refresh_idle`.
    pub expires_at: i64,
    /// Set when a rotation retired it; presenting it again is reuse.
    pub retired_at: Option<i64>,
    /// The token that rotation issued in its place: only a token whose successor is still
    /// live has the `reuse_grace`. (Absent in records written before it was kept.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub successor: Option<TokenHash>,
}

/// What every refresh token of one login shares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FamilyRecord {
    /// The subject tokens are issued to.
    pub subject: String,
    /// The scopes granted at login; a refresh may narrow them, never widen.
    pub scopes: Vec<String>,
    /// The roles granted at login.
    pub roles: Vec<String>,
    /// The client, for grants made to a client.
    pub client_id: Option<String>,
    /// The absolute end of the family (`refresh_ttl` after login).
    pub expires_at: i64,
    /// Set once the family is revoked (logout, revocation, detected reuse).
    pub revoked: bool,
    /// Access tokens issued in this family that may still be unexpired: `(jti, exp)`. Revoking
    /// the family revokes these too.
    pub access_tokens: Vec<(String, i64)>,
}

/// A store failure: the service answers 503 and changes nothing.
#[derive(Debug, Clone, thiserror::Error)]
#[error("token store: {0}")]
pub struct StoreError(pub String);

impl StoreError {
    /// Wraps any error's text.
    pub fn from_display(error: impl std::fmt::Display) -> Self {
        StoreError(error.to_string())
    }
}

/// The reads and writes one atomic [`TokenStore::write`] may make.
pub trait Transaction {
    /// The refresh token with this hash.
    fn refresh(&mut self, hash: &TokenHash) -> Result<Option<RefreshRecord>, StoreError>;
    /// Stores (or replaces) a refresh token.
    fn put_refresh(&mut self, hash: &TokenHash, record: &RefreshRecord) -> Result<(), StoreError>;
    /// The family with this id.
    fn family(&mut self, id: &str) -> Result<Option<FamilyRecord>, StoreError>;
    /// Stores (or replaces) a family.
    fn put_family(&mut self, id: &str, family: &FamilyRecord) -> Result<(), StoreError>;
    /// Records an access token as revoked until `expires_at`.
    fn revoke_access(&mut self, jti: &str, expires_at: i64) -> Result<(), StoreError>;
}

/// A durable, serial store of the token service's state.
pub trait TokenStore: Send + Sync + std::fmt::Debug {
    /// Runs `change` atomically: every write it made lands, or (when it returns an error) none
    /// does. Writes are serial: two concurrent calls never see each other half done.
    fn write(
        &self,
        change: &mut dyn FnMut(&mut dyn Transaction) -> Result<(), StoreError>,
    ) -> Result<(), StoreError>;

    /// Every revoked access token that is not yet expired at `now`: `(jti, exp)`.
    fn revoked_access(&self, now: i64) -> Result<Vec<(String, i64)>, StoreError>;

    /// Deletes what can no longer matter at `now`: expired refresh tokens, families and
    /// revocations. Returns how many entries went.
    fn purge(&self, now: i64) -> Result<usize, StoreError>;
}

/// Everything in memory, lost at exit.
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Mutex<MemoryState>,
}

#[derive(Debug, Default)]
struct MemoryState {
    refresh: HashMap<TokenHash, RefreshRecord>,
    families: HashMap<String, FamilyRecord>,
    revoked: HashMap<String, i64>,
}

/// The writes of one transaction, applied to the state only when it succeeds.
struct Draft<'a> {
    base: &'a MemoryState,
    writes: MemoryState,
}

impl Transaction for Draft<'_> {
    fn refresh(&mut self, hash: &TokenHash) -> Result<Option<RefreshRecord>, StoreError> {
        let record = self
            .writes
            .refresh
            .get(hash)
            .or_else(|| self.base.refresh.get(hash));
        Ok(record.cloned())
    }

    fn put_refresh(&mut self, hash: &TokenHash, record: &RefreshRecord) -> Result<(), StoreError> {
        self.writes.refresh.insert(*hash, record.clone());
        Ok(())
    }

    fn family(&mut self, id: &str) -> Result<Option<FamilyRecord>, StoreError> {
        let family = self
            .writes
            .families
            .get(id)
            .or_else(|| self.base.families.get(id));
        Ok(family.cloned())
    }

    fn put_family(&mut self, id: &str, family: &FamilyRecord) -> Result<(), StoreError> {
        self.writes.families.insert(id.to_string(), family.clone());
        Ok(())
    }

    fn revoke_access(&mut self, jti: &str, expires_at: i64) -> Result<(), StoreError> {
        self.writes.revoked.insert(jti.to_string(), expires_at);
        Ok(())
    }
}

impl TokenStore for MemoryStore {
    fn write(
        &self,
        change: &mut dyn FnMut(&mut dyn Transaction) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut state = self
            .state
            .lock()
            .map_err(|_| StoreError("the memory store is poisoned".into()))?;
        // Writes wait in a draft, so that an error leaves the state as it was.
        let mut draft = Draft {
            base: &state,
            writes: MemoryState::default(),
        };
        change(&mut draft)?;
        let writes = draft.writes;
        state.refresh.extend(writes.refresh);
        state.families.extend(writes.families);
        state.revoked.extend(writes.revoked);
        Ok(())
    }

    fn revoked_access(&self, now: i64) -> Result<Vec<(String, i64)>, StoreError> {
        let state = self
            .state
            .lock()
            .map_err(|_| StoreError("the memory store is poisoned".into()))?;
        Ok(state
            .revoked
            .iter()
            .filter(|(_, exp)| **exp >= now)
            .map(|(jti, exp)| (jti.clone(), *exp))
            .collect())
    }

    fn purge(&self, now: i64) -> Result<usize, StoreError> {
        let mut state = self
            .state
            .lock()
            .map_err(|_| StoreError("the memory store is poisoned".into()))?;
        let before = state.refresh.len() + state.families.len() + state.revoked.len();
        state.refresh.retain(|_, r| r.expires_at >= now);
        state.families.retain(|_, f| f.expires_at >= now);
        state.revoked.retain(|_, exp| *exp >= now);
        Ok(before - (state.refresh.len() + state.families.len() + state.revoked.len()))
    }
}
