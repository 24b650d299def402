//! The verified-token cache: a token whose signature and claims were checked is remembered,
//! keyed by the SHA-256 of the whole token, so the next request with it skips the signature.
//!
//! An entry is used only while its token is unexpired and its issuer's key set is the one it
//! was verified with (a key-set change bumps the issuer's generation, which empties the cache
//! for that issuer in effect). Bounded: a full cache first drops expired entries, then starts
//! over, which costs a re-verification per token and never a wrong answer.

use std::sync::Arc;

use dashmap::DashMap;

use super::jwt::Claims;

/// What a verification established.
#[derive(Debug)]
pub struct Verified {
    /// Index of the issuer in the authenticator's list.
    pub issuer: usize,
    /// The issuer's key-set generation at verification.
    pub generation: u64,
    /// The checked claims.
    pub claims: Claims,
    /// Roles from the issuer's roles claim.
    pub roles: Vec<String>,
}

/// Verified tokens by hash.
#[derive(Debug)]
pub struct TokenCache {
    entries: DashMap<[u8; 32], Arc<Verified>>,
    capacity: usize,
}

/// The cache key of a token.
pub fn token_hash(token: &str) -> [u8; 32] {
    crate::key_material::sha256(token.as_bytes())
}

impl TokenCache {
    /// A cache of at most `capacity` tokens; 0 disables it.
    pub fn new(capacity: usize) -> Self {
        TokenCache {
            entries: DashMap::new(),
            capacity,
        }
    }

    /// Whether the cache is on.
    pub fn enabled(&self) -> bool {
        self.capacity > 0
    }

    /// The entry for `key` if it is still good: unexpired at `now` (with `leeway`) and from
    /// the current key-set generation of its issuer.
    pub fn get(
        &self,
        key: &[u8; 32],
        now: i64,
        valid: impl Fn(&Verified) -> bool,
    ) -> Option<Arc<Verified>> {
        let entry = self.entries.get(key)?.clone();
        if valid(&entry) && now <= entry.claims.expires_at {
            Some(entry)
        } else {
            self.entries.remove(key);
            None
        }
    }

    /// Remembers a verification.
    pub fn insert(&self, key: [u8; 32], verified: Arc<Verified>, now: i64) {
        if !self.enabled() {
            return;
        }
        if self.entries.len() >= self.capacity {
            self.entries.retain(|_, v| v.claims.expires_at >= now);
            if self.entries.len() >= self.capacity {
                self.entries.clear();
            }
        }
        self.entries.insert(key, verified);
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verified(expires_at: i64, generation: u64) -> Arc<Verified> {
        Arc::new(Verified {
            issuer: 0,
            generation,
            claims: Claims {
                subject: "s".into(),
                scopes: vec![],
                expires_at,
                all: serde_json::Value::Null,
            },
            roles: vec![],
        })
    }

    #[test]
    fn entries_die_at_exp_and_with_their_key_set() {
        let cache = TokenCache::new(10);
        let key = token_hash("a.b.c");
        cache.insert(key, verified(100, 1), 0);
        assert!(cache.get(&key, 50, |v| v.generation == 1).is_some());
        assert!(
            cache.get(&key, 50, |v| v.generation == 2).is_none(),
            "key set changed"
        );
        assert!(
            cache.get(&key, 50, |_| true).is_none(),
            "the stale entry was dropped"
        );
        cache.insert(key, verified(100, 1), 0);
        assert!(cache.get(&key, 101, |_| true).is_none(), "expired");
    }

    #[test]
    fn the_cache_stays_bounded() {
        let cache = TokenCache::new(3);
        for i in 0..10 {
            cache.insert(token_hash(&i.to_string()), verified(100, 0), 0);
            assert!(cache.len() <= 3);
        }
        let off = TokenCache::new(0);
        off.insert(token_hash("x"), verified(100, 0), 0);
        assert!(off.is_empty());
    }
}
