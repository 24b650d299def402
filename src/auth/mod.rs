//! Authentication: a request's credentials → a verified [`Identity`], or an [`AuthError`]
//! saying why not.
//!
//! For a bearer JWT, in order: take exactly one credential (two is ambiguous, never a guess);
//! consult the verified-token cache; parse the token; pick the issuer by its `iss` (an untrusted
//! hint that only chooses whose keys to check with); check the route accepts that issuer; check
//! the signature with the issuer's keys (an unknown `kid` may trigger one shared, rate-limited
//! refetch); validate the claims; check the route's scopes.

pub mod cache;
pub mod credentials;
pub mod jwt;
pub mod keys;
pub mod mint;
pub mod remote;
pub mod strict_json;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use http::HeaderMap;

use crate::config::{AuthRequirement, IssuerSettings, KeySource};
use crate::error::AuthError;
use cache::{TokenCache, Verified};
use jwt::{ClaimRules, JwtError};
use keys::KeySet;
use remote::RemoteKeys;

/// Who the caller is, as established by a credential.
#[derive(Debug, Clone)]
pub struct Identity {
    /// `jwt` or `api_key`.
    pub method: &'static str,
    /// The verification behind this identity.
    pub verified: Arc<Verified>,
    /// The issuer's `iss`.
    pub issuer: String,
}

impl Identity {
    /// The caller's subject.
    pub fn subject(&self) -> &str {
        &self.verified.claims.subject
    }

    /// The granted scopes.
    pub fn scopes(&self) -> &[String] {
        &self.verified.claims.scopes
    }
}

/// One configured issuer with its keys.
#[derive(Debug)]
pub struct Issuer {
    /// The configuration it was built from.
    pub settings: IssuerSettings,
    keys: IssuerKeys,
}

#[derive(Debug)]
enum IssuerKeys {
    Static(Arc<KeySet>),
    Remote(Arc<RemoteKeys>),
}

impl Issuer {
    /// Builds an issuer; a remote key source with unchanged settings is taken over from
    /// `previous` (the snapshot being replaced), so a reload neither refetches nor empties it.
    pub fn new(settings: IssuerSettings, previous: &[Arc<Issuer>]) -> Issuer {
        let keys = match &settings.keys {
            KeySource::Static(set) => IssuerKeys::Static(Arc::new(set.clone())),
            KeySource::Remote(remote) => {
                let reused = previous.iter().find_map(|issuer| match &issuer.keys {
                    IssuerKeys::Remote(keys) if keys.settings() == remote.as_ref() => {
                        Some(keys.clone())
                    }
                    _ => None,
                });
                IssuerKeys::Remote(
                    reused.unwrap_or_else(|| RemoteKeys::start(remote.as_ref().clone())),
                )
            }
        };
        Issuer { settings, keys }
    }

    /// The keys to verify with now, or `None` when they are not available (never fetched, or
    /// stale beyond `max_staleness`).
    pub fn keys(&self) -> Option<Arc<KeySet>> {
        match &self.keys {
            IssuerKeys::Static(set) => Some(set.clone()),
            IssuerKeys::Remote(remote) => remote.current(),
        }
    }

    /// Changes whenever the key set changes.
    pub fn generation(&self) -> u64 {
        match &self.keys {
            IssuerKeys::Static(_) => 0,
            IssuerKeys::Remote(remote) => remote.generation(),
        }
    }

    /// Whether `/readyz` may report ready as far as this issuer is concerned.
    pub fn is_ready(&self) -> bool {
        !self.settings.required_for_ready || self.keys().is_some()
    }

    async fn refetch_for_unknown_kid(&self, seen_generation: u64) -> bool {
        match &self.keys {
            IssuerKeys::Static(_) => false,
            IssuerKeys::Remote(remote) => remote.refetch_for_unknown_kid(seen_generation).await,
        }
    }
}

/// Everything one snapshot needs to authenticate requests.
#[derive(Debug)]
pub struct Authenticator {
    issuers: Vec<Arc<Issuer>>,
    by_iss: HashMap<String, usize>,
    cache: TokenCache,
}

impl Authenticator {
    /// Builds the issuers (reusing remote key sources from `previous` where unchanged).
    pub fn new(
        settings: &[IssuerSettings],
        cache_size: usize,
        previous: Option<&Authenticator>,
    ) -> Self {
        let previous = previous.map_or(&[][..], |p| &p.issuers[..]);
        let issuers: Vec<Arc<Issuer>> = settings
            .iter()
            .map(|s| Arc::new(Issuer::new(s.clone(), previous)))
            .collect();
        let by_iss = issuers
            .iter()
            .enumerate()
            .map(|(i, issuer)| (issuer.settings.issuer.clone(), i))
            .collect();
        Authenticator {
            issuers,
            by_iss,
            cache: TokenCache::new(cache_size),
        }
    }

    /// The configured issuers.
    pub fn issuers(&self) -> &[Arc<Issuer>] {
        &self.issuers
    }

    /// Whether every issuer that gates readiness has keys.
    pub fn is_ready(&self) -> bool {
        self.issuers.iter().all(|issuer| issuer.is_ready())
    }

    /// Authenticates a request for a route that is not public.
    pub async fn authenticate(
        &self,
        requirement: &AuthRequirement,
        headers: &HeaderMap,
    ) -> Result<Identity, AuthError> {
        let token = credentials::bearer(headers, requirement.cookie.as_deref())?;
        let Some(token) = token.filter(|_| requirement.jwt) else {
            return Err(AuthError::Missing);
        };
        let identity = self.verify_jwt(token, requirement).await?;
        let missing: Vec<&str> = requirement
            .scopes
            .iter()
            .filter(|needed| !identity.scopes().contains(needed))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            return Err(AuthError::InsufficientScope {
                needed: requirement.scopes.join(" "),
            });
        }
        Ok(identity)
    }

    async fn verify_jwt(
        &self,
        token: &str,
        requirement: &AuthRequirement,
    ) -> Result<Identity, AuthError> {
        let now = unix_now();
        let key = cache::token_hash(token);
        if self.cache.enabled() {
            let hit = self.cache.get(&key, now, |v| {
                self.issuers
                    .get(v.issuer)
                    .is_some_and(|i| i.generation() == v.generation)
            });
            crate::metrics::token_cache(hit.is_some());
            if let Some(verified) = hit {
                return self.identity(verified, requirement);
            }
        }
        let unverified = jwt::parse(token).map_err(AuthError::Token)?;
        let claims = jwt::parse_claims(&unverified.payload).map_err(AuthError::Token)?;
        let iss = claims
            .get("iss")
            .and_then(|v| v.as_str())
            .ok_or(AuthError::Token(JwtError::WrongIssuer))?;
        let index = *self
            .by_iss
            .get(iss)
            .ok_or(AuthError::Token(JwtError::WrongIssuer))?;
        let issuer = &self.issuers[index];
        accepts_issuer(requirement, issuer)?;
        let generation = issuer.generation();
        let keys = issuer.keys().ok_or_else(|| AuthError::KeysUnavailable {
            issuer: issuer.settings.id.clone(),
        })?;
        let generation = match jwt::verify_signature(&unverified, &keys) {
            Ok(()) => generation,
            Err(JwtError::UnknownKey) if unverified.kid.is_some() => {
                // A key the IdP may have just rotated in: one shared, rate-limited refetch.
                if !issuer.refetch_for_unknown_kid(generation).await {
                    return Err(AuthError::Token(JwtError::UnknownKey));
                }
                let generation = issuer.generation();
                let keys = issuer.keys().ok_or_else(|| AuthError::KeysUnavailable {
                    issuer: issuer.settings.id.clone(),
                })?;
                jwt::verify_signature(&unverified, &keys).map_err(AuthError::Token)?;
                generation
            }
            Err(error) => return Err(AuthError::Token(error)),
        };
        let rules = ClaimRules {
            issuer: &issuer.settings.issuer,
            audiences: &issuer.settings.audiences,
            leeway: i64::try_from(issuer.settings.leeway.as_secs()).unwrap_or(i64::MAX),
            now,
        };
        let claims = jwt::validate_claims(claims, &rules).map_err(AuthError::Token)?;
        let verified = Arc::new(Verified {
            issuer: index,
            generation,
            claims,
        });
        self.cache.insert(key, verified.clone(), now);
        self.identity(verified, requirement)
    }

    fn identity(
        &self,
        verified: Arc<Verified>,
        requirement: &AuthRequirement,
    ) -> Result<Identity, AuthError> {
        let issuer = self
            .issuers
            .get(verified.issuer)
            .ok_or(AuthError::Token(JwtError::WrongIssuer))?;
        accepts_issuer(requirement, issuer)?;
        Ok(Identity {
            method: "jwt",
            issuer: issuer.settings.issuer.clone(),
            verified,
        })
    }
}

fn accepts_issuer(requirement: &AuthRequirement, issuer: &Issuer) -> Result<(), AuthError> {
    match &requirement.issuers {
        Some(allowed) if !allowed.contains(&issuer.settings.id) => {
            Err(AuthError::IssuerNotAccepted)
        }
        _ => Ok(()),
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
