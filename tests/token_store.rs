//! One suite for every token store: in memory, redb, and Redis (a real redis-server). Each
//! store must make `write` all-or-nothing and serial, which is what the rotation rules in
//! `grants.rs` rely on.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;

use authgate::config::{OnFailure, RedisSettings};
use authgate::state::redis::RedisState;
use authgate::token_service::embedded::EmbeddedStore;
use authgate::token_service::grants::{
    revoke_by_refresh, rotate, start_family, Replacement, Rotation, RotationRules,
};
use authgate::token_service::redis_store::RedisTokenStore;
use authgate::token_service::store::{
    FamilyRecord, MemoryStore, StoreError, TokenHash, TokenStore,
};
use support::redis::RedisServer;

const RULES: RotationRules = RotationRules {
    idle: 100,
    reuse_grace: 0,
};

/// A store and whatever keeps it alive (a directory, a server).
struct Subject {
    store: Arc<dyn TokenStore>,
    _keep: Box<dyn std::any::Any>,
}

fn memory() -> Option<Subject> {
    Some(Subject {
        store: Arc::new(MemoryStore::default()),
        _keep: Box::new(()),
    })
}

fn embedded() -> Option<Subject> {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(&dir.path().join("store.redb")).unwrap();
    Some(Subject {
        store: Arc::new(store),
        _keep: Box::new(dir),
    })
}

fn redis() -> Option<Subject> {
    if !support::redis::available() {
        return None;
    }
    let server = RedisServer::start();
    let settings = RedisSettings {
        url: server.url(),
        timeout: std::time::Duration::from_millis(200),
        on_failure: OnFailure::Local,
    };
    let store = RedisTokenStore::new(RedisState::shared(&settings).unwrap());
    Some(Subject {
        store: Arc::new(store),
        _keep: Box::new(server),
    })
}

fn family() -> FamilyRecord {
    FamilyRecord {
        subject: "alice".into(),
        scopes: vec!["a".into()],
        roles: vec![],
        client_id: None,
        expires_at: 1_000,
        revoked: false,
        access_tokens: vec![("at-1".into(), 50)],
    }
}

fn started(store: &dyn TokenStore) {
    store
        .write(&mut |tx| start_family(tx, "f1", &family(), &[1; 32], RULES.idle, 0))
        .unwrap();
}

fn rotate_with(
    store: &dyn TokenStore,
    rules: RotationRules,
    presented: &TokenHash,
    next: &TokenHash,
    jti: &str,
    now: i64,
) -> Rotation {
    let mut outcome = None;
    store
        .write(&mut |tx| {
            let replacement = Replacement {
                refresh: next,
                access: (jti, now + 10),
            };
            outcome = Some(rotate(tx, presented, &replacement, rules, &|_| None, now)?);
            Ok(())
        })
        .unwrap();
    outcome.unwrap()
}

fn rotate_once(
    store: &dyn TokenStore,
    presented: &TokenHash,
    next: &TokenHash,
    jti: &str,
    now: i64,
) -> Rotation {
    rotate_with(store, RULES, presented, next, jti, now)
}

fn rotation_retires_the_old_token_and_reuse_revokes_the_family(store: &dyn TokenStore) {
    started(store);
    let rotated = rotate_once(store, &[1; 32], &[2; 32], "at-2", 10);
    assert!(matches!(rotated, Rotation::Rotated { .. }), "{rotated:?}");
    // The new token works once; the old one is reuse, which revokes every access token.
    let reused = rotate_once(store, &[1; 32], &[3; 32], "at-3", 20);
    assert_eq!(
        reused,
        Rotation::Reused {
            family: "f1".into(),
            subject: family().subject,
            revoked: vec![("at-1".into(), 50), ("at-2".into(), 20)]
        }
    );
    let mut revoked = store.revoked_access(20).unwrap();
    revoked.sort();
    assert_eq!(revoked, vec![("at-1".into(), 50), ("at-2".into(), 20)]);
    // Now the family is dead: its newest token is refused too.
    assert_eq!(
        rotate_once(store, &[2; 32], &[4; 32], "at-4", 21),
        Rotation::Refused("the refresh token has been revoked")
    );
}

fn idle_and_absolute_expiry_are_enforced(store: &dyn TokenStore) {
    started(store);
    assert_eq!(
        rotate_once(store, &[1; 32], &[2; 32], "x", 101),
        Rotation::Refused("the refresh token has expired")
    );
    assert_eq!(
        rotate_once(store, &[9; 32], &[2; 32], "x", 1),
        Rotation::Refused("the refresh token is not valid")
    );
}

fn a_reuse_within_the_grace_is_refused_without_revoking(store: &dyn TokenStore) {
    started(store);
    let grace = RotationRules {
        idle: 100,
        reuse_grace: 5,
    };
    assert!(matches!(
        rotate_with(store, grace, &[1; 32], &[2; 32], "j", 10),
        Rotation::Rotated { .. }
    ));
    assert_eq!(
        rotate_with(store, grace, &[1; 32], &[3; 32], "j", 12),
        Rotation::Refused("the refresh token was already used")
    );
    assert!(matches!(
        rotate_once(store, &[2; 32], &[4; 32], "k", 13),
        Rotation::Rotated { .. }
    ));
    assert!(store.revoked_access(0).unwrap().is_empty());
}

fn only_the_token_the_live_one_replaced_has_the_grace(store: &dyn TokenStore) {
    started(store);
    let grace = RotationRules {
        idle: 100,
        reuse_grace: 5,
    };
    assert!(matches!(
        rotate_with(store, grace, &[1; 32], &[2; 32], "j", 10),
        Rotation::Rotated { .. }
    ));
    assert!(matches!(
        rotate_with(store, grace, &[2; 32], &[3; 32], "k", 11),
        Rotation::Rotated { .. }
    ));
    // Token 1 was retired a moment ago, but token 2 replaced it and is retired too: reuse.
    assert!(matches!(
        rotate_with(store, grace, &[1; 32], &[4; 32], "l", 12),
        Rotation::Reused { .. }
    ));
    assert_eq!(
        rotate_once(store, &[3; 32], &[5; 32], "m", 13),
        Rotation::Refused("the refresh token has been revoked")
    );
}

fn revoking_by_refresh_token_kills_the_family(store: &dyn TokenStore) {
    started(store);
    store
        .write(&mut |tx| revoke_by_refresh(tx, &[1; 32], 0).map(drop))
        .unwrap();
    assert_eq!(store.revoked_access(0).unwrap(), vec![("at-1".into(), 50)]);
    assert_eq!(
        rotate_once(store, &[1; 32], &[2; 32], "x", 1),
        Rotation::Refused("the refresh token has been revoked")
    );
}

fn a_failed_write_leaves_nothing_behind(store: &dyn TokenStore) {
    let failed = store.write(&mut |tx| {
        start_family(tx, "f1", &family(), &[1; 32], RULES.idle, 0)?;
        tx.revoke_access("at-9", 99)?;
        Err(StoreError("changed my mind".into()))
    });
    assert!(failed.is_err());
    assert_eq!(
        rotate_once(store, &[1; 32], &[2; 32], "x", 1),
        Rotation::Refused("the refresh token is not valid")
    );
    assert!(store.revoked_access(0).unwrap().is_empty());
}

fn of_concurrent_refreshes_with_one_token_exactly_one_rotates(store: Arc<dyn TokenStore>) {
    started(store.as_ref());
    let racers: Vec<_> = (0..8u8)
        .map(|n| {
            let store = store.clone();
            std::thread::spawn(move || {
                rotate_once(
                    store.as_ref(),
                    &[1; 32],
                    &[10 + n; 32],
                    &format!("at-{n}"),
                    10,
                )
            })
        })
        .collect();
    let outcomes: Vec<Rotation> = racers.into_iter().map(|r| r.join().unwrap()).collect();
    let rotated = outcomes
        .iter()
        .filter(|o| matches!(o, Rotation::Rotated { .. }))
        .count();
    assert_eq!(rotated, 1, "{outcomes:?}");
    // The others presented a retired token: reuse, and the first of them revoked the family.
    assert!(outcomes
        .iter()
        .any(|o| matches!(o, Rotation::Reused { .. })));
}

fn revocations_are_listed_until_they_expire_and_then_purged(store: &dyn TokenStore) {
    store
        .write(&mut |tx| {
            tx.revoke_access("early", 10)?;
            tx.revoke_access("late", 100)
        })
        .unwrap();
    let mut all = store.revoked_access(5).unwrap();
    all.sort();
    assert_eq!(all, vec![("early".into(), 10), ("late".into(), 100)]);
    assert_eq!(
        store.revoked_access(50).unwrap(),
        vec![("late".into(), 100)]
    );
    assert!(store.purge(50).unwrap() >= 1);
    assert_eq!(store.revoked_access(0).unwrap(), vec![("late".into(), 100)]);
}

macro_rules! suite {
    ($backend:ident) => {
        mod $backend {
            use super::*;

            fn subject() -> Option<Subject> {
                super::$backend()
            }

            #[test]
            fn rotation_and_reuse() {
                let Some(s) = subject() else { return };
                rotation_retires_the_old_token_and_reuse_revokes_the_family(s.store.as_ref());
            }

            #[test]
            fn expiry() {
                let Some(s) = subject() else { return };
                idle_and_absolute_expiry_are_enforced(s.store.as_ref());
            }

            #[test]
            fn reuse_grace() {
                let Some(s) = subject() else { return };
                a_reuse_within_the_grace_is_refused_without_revoking(s.store.as_ref());
            }

            #[test]
            fn reuse_grace_is_for_the_immediate_predecessor_only() {
                let Some(s) = subject() else { return };
                only_the_token_the_live_one_replaced_has_the_grace(s.store.as_ref());
            }

            #[test]
            fn revocation_by_refresh_token() {
                let Some(s) = subject() else { return };
                revoking_by_refresh_token_kills_the_family(s.store.as_ref());
            }

            #[test]
            fn all_or_nothing() {
                let Some(s) = subject() else { return };
                a_failed_write_leaves_nothing_behind(s.store.as_ref());
            }

            #[test]
            fn concurrent_rotation() {
                let Some(s) = subject() else { return };
                of_concurrent_refreshes_with_one_token_exactly_one_rotates(s.store.clone());
            }

            #[test]
            fn revocation_listing_and_purge() {
                let Some(s) = subject() else { return };
                revocations_are_listed_until_they_expire_and_then_purged(s.store.as_ref());
            }
        }
    };
}

suite!(memory);
suite!(embedded);
suite!(redis);
