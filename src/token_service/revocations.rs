//! Revoked access tokens, in memory, for the edge: every request with a token from the token
//! service asks [`Revocations::is_revoked`] (one hash-map probe), on a cache hit too. The
//! store holds the same entries durably; this set is filled from it at start (and, in a
//! fleet, kept up to date from the shared stream: `revocation_feed.rs`).

use dashmap::DashMap;

/// Revoked `jti`s with the `exp` of their token (after which they need not be remembered).
#[derive(Debug, Default)]
pub struct Revocations {
    revoked: DashMap<String, i64>,
}

impl Revocations {
    /// Whether the token with this `jti` was revoked.
    pub fn is_revoked(&self, jti: &str) -> bool {
        self.revoked.contains_key(jti)
    }

    /// Remembers a revocation until `expires_at`.
    pub fn insert(&self, jti: String, expires_at: i64) {
        self.revoked.insert(jti, expires_at);
    }

    /// Forgets revocations of tokens that have expired anyway.
    pub fn purge(&self, now: i64) {
        self.revoked.retain(|_, expires_at| *expires_at >= now);
    }

    /// Every revocation still in force at `now`: `(jti, exp)`.
    pub fn entries(&self, now: i64) -> Vec<(String, i64)> {
        self.revoked
            .iter()
            .filter(|entry| *entry.value() >= now)
            .map(|entry| (entry.key().clone(), *entry.value()))
            .collect()
    }

    /// How many revocations are remembered.
    pub fn len(&self) -> usize {
        self.revoked.len()
    }

    /// Whether none are.
    pub fn is_empty(&self) -> bool {
        self.revoked.is_empty()
    }
}
