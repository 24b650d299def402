//! The token service's rules, written once against a store [`Transaction`]: issuing a token
//! pair, rotating a refresh token (with reuse detection), and revoking.
//!
//! Rotation (OAuth 2.0 Security BCP, RFC 9700 §4.14): every refresh retires the presented
//! token and issues a new one in the same family, in one atomic store write, so of two
//! concurrent refreshes with one token exactly one wins. A retired token presented again means
//! two parties hold it — one of them a thief — so the whole family is revoked, with the access
//! tokens it issued.

use jsonwebtoken::Header;
use serde_json::{Map, Value};

use super::store::{FamilyRecord, RefreshRecord, StoreError, TokenHash, Transaction};
use crate::config::PublishedKey;

/// The prefix of refresh tokens: tells them apart from JWTs at a glance and lets secret
/// scanners find leaked ones.
pub const REFRESH_PREFIX: &str = "agr_";

/// What an access token says about its holder.
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    /// `sub`.
    pub subject: String,
    /// `scope`.
    pub scopes: Vec<String>,
    /// `roles`.
    pub roles: Vec<String>,
    /// `client_id`, for the client-credentials grant.
    pub client_id: Option<String>,
}

/// A new random token: `bytes` random bytes, unpadded base64url.
pub fn random_token(bytes: usize) -> Result<String, StoreError> {
    let mut buffer = vec![0u8; bytes];
    aws_lc_rs::rand::fill(&mut buffer)
        .map_err(|_| StoreError("the system random generator failed".into()))?;
    Ok(base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        buffer,
    ))
}

/// A new refresh token: 256 random bits.
pub fn new_refresh_token() -> Result<String, StoreError> {
    Ok(format!("{REFRESH_PREFIX}{}", random_token(32)?))
}

/// The stored form of a refresh token.
pub fn refresh_hash(token: &str) -> TokenHash {
    crate::auth::cache::token_hash(token)
}

/// Signs an access token (RFC 9068 `at+jwt`).
pub fn sign_access_token(
    key: &PublishedKey,
    issuer: &str,
    audience: &str,
    grant: &Grant,
    jti: &str,
    issued_at: i64,
    expires_at: i64,
) -> Result<String, StoreError> {
    let mut claims = Map::new();
    claims.insert("iss".into(), issuer.into());
    claims.insert("sub".into(), grant.subject.clone().into());
    claims.insert("aud".into(), audience.into());
    claims.insert("iat".into(), issued_at.into());
    claims.insert("exp".into(), expires_at.into());
    claims.insert("jti".into(), jti.into());
    claims.insert("scope".into(), grant.scopes.join(" ").into());
    if !grant.roles.is_empty() {
        claims.insert("roles".into(), grant.roles.clone().into());
    }
    if let Some(client_id) = &grant.client_id {
        claims.insert("client_id".into(), client_id.clone().into());
    }
    let mut header = Header::new(key.signing.algorithm);
    header.kid = key.signing.kid.clone();
    header.typ = Some("at+jwt".into());
    jsonwebtoken::encode(&header, &Value::Object(claims), &key.signing.key)
        .map_err(|e| StoreError(format!("cannot sign the access token: {e}")))
}

/// Starts a family: its first refresh token and the first access token's id.
pub fn start_family(
    tx: &mut dyn Transaction,
    family_id: &str,
    family: &FamilyRecord,
    refresh: &TokenHash,
    refresh_idle: i64,
    now: i64,
) -> Result<(), StoreError> {
    tx.put_family(family_id, family)?;
    tx.put_refresh(
        refresh,
        &RefreshRecord {
            family: family_id.to_string(),
            issued_at: now,
            expires_at: family.expires_at.min(now.saturating_add(refresh_idle)),
            retired_at: None,
            successor: None,
        },
    )
}

/// The rotation's limits, in seconds.
#[derive(Debug, Clone, Copy)]
pub struct RotationRules {
    /// A refresh token unused this long expires.
    pub idle: i64,
    /// A retired token presented within this time is refused without revoking the family.
    pub reuse_grace: i64,
}

/// How a refresh went.
#[derive(Debug, Clone, PartialEq)]
pub enum Rotation {
    /// The presented token is retired, `next` replaces it; issue an access token for `family`.
    Rotated {
        /// The family, as it is now.
        family: FamilyRecord,
    },
    /// Refused, nothing changed.
    Refused(&'static str),
    /// The refresh asked for a scope the family was not granted; nothing changed.
    ScopeExceeded,
    /// A retired token came back: the family and these access tokens are now revoked.
    Reused {
        /// The family's id (random, not a credential), for the log.
        family: String,
        /// The subject the family was issued to, for the log.
        subject: String,
        /// `(jti, exp)` of the family's access tokens.
        revoked: Vec<(String, i64)>,
    },
}

/// What a rotation writes besides retiring the presented token.
#[derive(Debug, Clone)]
pub struct Replacement<'a> {
    /// The new refresh token's hash.
    pub refresh: &'a TokenHash,
    /// The new access token's id and expiry.
    pub access: (&'a str, i64),
}

/// Rotates the refresh token `presented`. `refuse` may stop a rotation the token itself would
/// allow (a disabled user, a scope beyond the grant); nothing is written then.
pub fn rotate(
    tx: &mut dyn Transaction,
    presented: &TokenHash,
    next: &Replacement<'_>,
    rules: RotationRules,
    refuse: &dyn Fn(&FamilyRecord) -> Option<Rotation>,
    now: i64,
) -> Result<Rotation, StoreError> {
    let Some(mut record) = tx.refresh(presented)? else {
        return Ok(Rotation::Refused("the refresh token is not valid"));
    };
    let Some(mut family) = tx.family(&record.family)? else {
        return Ok(Rotation::Refused("the refresh token is not valid"));
    };
    if family.revoked {
        return Ok(Rotation::Refused("the refresh token has been revoked"));
    }
    if let Some(retired_at) = record.retired_at {
        // The grace is for a client that lost the answer to its refresh and sends the same
        // token again: only the token the live one replaced qualifies. One retired before
        // that is reuse, however recent.
        let replaced_by_live = match &record.successor {
            Some(successor) => tx
                .refresh(successor)?
                .is_some_and(|next| next.retired_at.is_none()),
            None => true,
        };
        if replaced_by_live && now.saturating_sub(retired_at) < rules.reuse_grace {
            return Ok(Rotation::Refused("the refresh token was already used"));
        }
        let revoked = revoke_family(tx, &record.family, &mut family, now)?;
        return Ok(Rotation::Reused {
            family: record.family,
            subject: family.subject,
            revoked,
        });
    }
    if record.expires_at < now || family.expires_at < now {
        return Ok(Rotation::Refused("the refresh token has expired"));
    }
    if let Some(refusal) = refuse(&family) {
        return Ok(refusal);
    }
    record.retired_at = Some(now);
    record.successor = Some(*next.refresh);
    tx.put_refresh(presented, &record)?;
    tx.put_refresh(
        next.refresh,
        &RefreshRecord {
            family: record.family.clone(),
            issued_at: now,
            expires_at: family.expires_at.min(now.saturating_add(rules.idle)),
            retired_at: None,
            successor: None,
        },
    )?;
    family.access_tokens.retain(|(_, exp)| *exp >= now);
    family
        .access_tokens
        .push((next.access.0.to_string(), next.access.1));
    tx.put_family(&record.family, &family)?;
    Ok(Rotation::Rotated { family })
}

/// Revokes the family of the refresh token `presented` (logout, RFC 7009 revocation). Returns
/// the access tokens revoked with it; an unknown token revokes nothing.
pub fn revoke_by_refresh(
    tx: &mut dyn Transaction,
    presented: &TokenHash,
    now: i64,
) -> Result<Vec<(String, i64)>, StoreError> {
    let Some(record) = tx.refresh(presented)? else {
        return Ok(Vec::new());
    };
    let Some(mut family) = tx.family(&record.family)? else {
        return Ok(Vec::new());
    };
    revoke_family(tx, &record.family, &mut family, now)
}

fn revoke_family(
    tx: &mut dyn Transaction,
    family_id: &str,
    family: &mut FamilyRecord,
    now: i64,
) -> Result<Vec<(String, i64)>, StoreError> {
    family.revoked = true;
    let revoked: Vec<(String, i64)> = family
        .access_tokens
        .drain(..)
        .filter(|(_, exp)| *exp >= now)
        .collect();
    for (jti, exp) in &revoked {
        tx.revoke_access(jti, *exp)?;
    }
    tx.put_family(family_id, family)?;
    Ok(revoked)
}

// The rules are tested against every store by one suite: tests/token_store.rs.
