//! Authentication: a request's credentials → a verified [`Identity`], or an [`AuthError`]
//! saying why not.
//!
//! For a bearer JWT, in order: take exactly one credential (two is ambiguous, never a guess);
//! consult the verified-token cache; parse the token; pick the issuer by its `iss` (an untrusted
//! hint that only chooses whose keys to check with); check the route accepts that issuer; check
//! the signature with the issuer's keys (an unknown `kid` may trigger one shared, rate-limited
//! refetch); validate the claims; check the route's scopes.

pub use crate::api_keys;
pub mod cache;
pub mod credentials;
pub mod diagnose;
pub mod error;
pub mod jwt;
pub mod key_store;
pub use crate::key_material as keys;
pub mod mint;
pub mod remote;
pub use crate::strict_json;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use http::HeaderMap;

use crate::config::{ApiKeySettings, AuthRequirement, IssuerSettings, KeySource};
use api_keys::KeyEntry;
use cache::{TokenCache, Verified};
use error::{Accepted, AuthError};
use jwt::{ClaimRules, JwtError};
use key_store::KeyStore;
use keys::KeySet;
use remote::RemoteKeys;

use crate::token_service::revocations::Revocations;

/// Who the caller is, as established by a credential.
#[derive(Debug, Clone)]
pub enum Identity {
    /// A verified bearer JWT.
    Jwt {
        /// The verification behind it.
        verified: Arc<Verified>,
        /// The issuer's `iss`.
        issuer: Arc<Issuer>,
    },
    /// A valid API key.
    ApiKey(Arc<KeyEntry>),
    /// A signed-in browser: the session holds the claims of the provider's ID token.
    Session {
        /// The ID token's verified claims (refreshed with the session).
        verified: Arc<Verified>,
        /// The provider.
        issuer: Arc<Issuer>,
    },
}

impl Identity {
    /// `jwt` or `api_key`.
    pub fn method(&self) -> &'static str {
        match self {
            Identity::Jwt { .. } => "jwt",
            Identity::ApiKey(_) => "api_key",
            Identity::Session { .. } => "session",
        }
    }

    /// The caller's subject.
    pub fn subject(&self) -> &str {
        match self {
            Identity::Jwt { verified, .. } | Identity::Session { verified, .. } => {
                &verified.claims.subject
            }
            Identity::ApiKey(entry) => &entry.subject,
        }
    }

    /// The granted scopes.
    pub fn scopes(&self) -> &[String] {
        match self {
            Identity::Jwt { verified, .. } | Identity::Session { verified, .. } => {
                &verified.claims.scopes
            }
            Identity::ApiKey(entry) => &entry.scopes,
        }
    }

    /// The granted roles.
    pub fn roles(&self) -> &[String] {
        match self {
            Identity::Jwt { verified, .. } | Identity::Session { verified, .. } => &verified.roles,
            Identity::ApiKey(entry) => &entry.roles,
        }
    }

    /// The token issuer's `iss` (JWT only).
    pub fn issuer(&self) -> Option<&str> {
        match self {
            Identity::Jwt { issuer, .. } | Identity::Session { issuer, .. } => {
                Some(&issuer.settings.issuer)
            }
            Identity::ApiKey(_) => None,
        }
    }

    /// The API key's id (API keys only).
    pub fn key_id(&self) -> Option<&str> {
        match self {
            Identity::Jwt { .. } | Identity::Session { .. } => None,
            Identity::ApiKey(entry) => Some(&entry.id),
        }
    }

    /// The token's claims (JWT only).
    pub fn claims(&self) -> Option<&serde_json::Value> {
        match self {
            Identity::Jwt { verified, .. } | Identity::Session { verified, .. } => {
                Some(&verified.claims.all)
            }
            Identity::ApiKey(_) => None,
        }
    }
}

/// A route's authorization rules checked for an identity established outside
/// [`Authenticator::authenticate`] (a session): issuers, scopes, roles, claims.
pub fn authorize_identity(
    requirement: &AuthRequirement,
    identity: &Identity,
    issuer: &Issuer,
) -> Result<(), AuthError> {
    accepts_issuer(requirement, issuer)?;
    authorize(requirement, identity)
}

/// The value at a dotted path (`realm_access.roles`) of a claims set.
pub fn claim_at<'v>(claims: &'v serde_json::Value, path: &str) -> Option<&'v serde_json::Value> {
    // A claim whose own name holds a dot wins over the nested reading.
    if let Some(value) = claims.get(path) {
        return Some(value);
    }
    path.split('.')
        .try_fold(claims, |value, part| value.get(part))
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

    /// The provider's OpenID Connect discovery document, when its keys come from discovery and
    /// it has been fetched (by the background refresh, never on the request path).
    pub fn discovery_document(&self) -> Option<Arc<serde_json::Value>> {
        match &self.keys {
            IssuerKeys::Static(_) => None,
            IssuerKeys::Remote(remote) => remote.discovery_document(),
        }
    }

    /// Whether `/readyz` may report ready as far as this issuer is concerned.
    pub fn is_ready(&self) -> bool {
        !self.settings.required_for_ready || self.keys().is_some()
    }

    /// What `/readyz` says while this issuer keeps the gateway from being ready.
    pub fn waiting_for(&self) -> Option<String> {
        if self.is_ready() {
            return None;
        }
        let mut reason = format!("keys of issuer `{}`", self.settings.id);
        if let IssuerKeys::Remote(remote) = &self.keys {
            match remote.last_error() {
                Some(error) => reason.push_str(&format!(" (last fetch: {error})")),
                None => reason.push_str(" (first fetch under way)"),
            }
        }
        Some(reason)
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
    api_keys: Option<Arc<KeyStore>>,
    /// The token service's issuer (by index) and its revoked token ids, checked on every
    /// request with one of its tokens, cached or not.
    revocable: Option<(usize, Arc<Revocations>)>,
}

impl Authenticator {
    /// Builds the issuers (reusing remote key sources from `previous` where unchanged) and the
    /// API key store.
    pub fn new(
        settings: &[IssuerSettings],
        api_keys: Option<&ApiKeySettings>,
        cache_size: usize,
        previous: Option<&Authenticator>,
        revocations: Option<(&str, Arc<Revocations>)>,
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
        let revocable = revocations.and_then(|(id, revoked)| {
            let index = issuers.iter().position(|i| i.settings.id == id)?;
            Some((index, revoked))
        });
        Authenticator {
            revocable,
            issuers,
            by_iss,
            cache: TokenCache::new(cache_size),
            api_keys: api_keys.map(KeyStore::start),
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

    /// The issuers readiness waits for, each with why.
    pub fn waiting_for(&self) -> Vec<String> {
        self.issuers
            .iter()
            .filter_map(|issuer| issuer.waiting_for())
            .collect()
    }

    /// The API key header, when API keys are configured.
    pub fn api_key_header(&self) -> Option<&http::HeaderName> {
        self.api_keys.as_ref().map(|store| &store.header)
    }

    /// Authenticates a request for a route that is not public, then checks that the identity
    /// holds what the route requires (scopes, roles, claims).
    pub async fn authenticate(
        &self,
        requirement: &AuthRequirement,
        headers: &HeaderMap,
    ) -> Result<Identity, AuthError> {
        let api_key = match &self.api_keys {
            Some(store) => credentials::single(headers, &store.header)?,
            None => None,
        };
        let token = credentials::bearer(headers, requirement.cookie.as_deref())?;
        // A key in the wrong place is named as such, rather than as a malformed token.
        if let (None, Some(token), Some(header)) = (api_key, token, self.api_key_header()) {
            if token.starts_with(api_keys::PREFIX) {
                return Err(AuthError::KeyAsBearer(header.clone()));
            }
        }
        let identity = match (api_key, token) {
            // Two credentials are never merged, nor one picked over the other.
            (Some(_), Some(_)) => return Err(AuthError::Ambiguous),
            (None, None) => {
                return Err(AuthError::Missing(Accepted {
                    session: requirement.session,
                    jwt: requirement.jwt && !self.issuers.is_empty(),
                    api_key: self
                        .api_key_header()
                        .filter(|_| requirement.api_key)
                        .cloned(),
                }))
            }
            (Some(_), None) if !requirement.api_key => return Err(AuthError::MethodNotAccepted),
            (None, Some(_)) if !requirement.jwt => return Err(AuthError::MethodNotAccepted),
            (Some(key), None) => self.check_api_key(key)?,
            (None, Some(token)) => self.verify_jwt(token, requirement).await?,
        };
        authorize(requirement, &identity)?;
        Ok(identity)
    }

    /// The kind of credential `headers` present (`jwt`, `api_key` or `none`), for the metrics of
    /// a refusal: what was tried, whether or not it was any good.
    pub fn presented_method(
        &self,
        requirement: &AuthRequirement,
        headers: &HeaderMap,
    ) -> &'static str {
        if self
            .api_key_header()
            .is_some_and(|h| headers.contains_key(h))
        {
            "api_key"
        } else if headers.contains_key(http::header::AUTHORIZATION)
            || requirement
                .cookie
                .as_deref()
                .is_some_and(|name| credentials::has_cookie(headers, name))
        {
            "jwt"
        } else {
            "none"
        }
    }

    /// The identity of the API key in `headers`, if one was sent (the token service takes an
    /// API key as a client credential).
    pub fn api_key_identity(&self, headers: &HeaderMap) -> Option<Result<Identity, AuthError>> {
        let store = self.api_keys.as_ref()?;
        match credentials::single(headers, &store.header) {
            Ok(Some(key)) => Some(self.check_api_key(key)),
            Ok(None) => None,
            Err(error) => Some(Err(error)),
        }
    }

    fn check_api_key(&self, key: &str) -> Result<Identity, AuthError> {
        let store = self.api_keys.as_ref().ok_or(AuthError::MethodNotAccepted)?;
        let entry = store
            .table()
            .check(key, unix_now())
            .map_err(AuthError::ApiKey)?;
        Ok(Identity::ApiKey(entry))
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
        // The issuer's `algorithms` decide, before any key is looked for: a token in another
        // algorithm is "not accepted", never an unknown key worth a refetch.
        if !issuer.settings.algorithms.contains(&unverified.alg) {
            return Err(AuthError::Token(JwtError::UnsupportedAlgorithm));
        }
        if let Some(expected) = &issuer.settings.typ {
            if !jwt::typ_matches(unverified.typ.as_deref(), expected) {
                return Err(AuthError::Token(JwtError::WrongType));
            }
        }
        let generation = self.check_signature(issuer, &unverified).await?;
        let rules = ClaimRules {
            issuer: &issuer.settings.issuer,
            audiences: &issuer.settings.audiences,
            subject_claim: &issuer.settings.subject_claim,
            leeway: i64::try_from(issuer.settings.leeway.as_secs()).unwrap_or(i64::MAX),
            now,
        };
        let claims = jwt::validate_claims(claims, &rules).map_err(AuthError::Token)?;
        let roles = roles_of(&claims.all, &issuer.settings.roles_claim)?;
        let verified = Arc::new(Verified {
            issuer: index,
            generation,
            claims,
            roles,
        });
        self.cache.insert(key, verified.clone(), now);
        self.identity(verified, requirement)
    }

    /// Checks `unverified`'s signature with `issuer`'s keys; an unknown `kid` may trigger one
    /// shared, rate-limited refetch. The key-set generation the signature was checked against.
    async fn check_signature(
        &self,
        issuer: &Issuer,
        unverified: &jwt::Unverified<'_>,
    ) -> Result<u64, AuthError> {
        let generation = issuer.generation();
        let keys = issuer.keys().ok_or_else(|| AuthError::KeysUnavailable {
            issuer: issuer.settings.id.clone(),
        })?;
        match jwt::verify_signature(unverified, &keys) {
            Ok(()) => Ok(generation),
            Err(JwtError::UnknownKey) if unverified.kid.is_some() => {
                // A key the IdP may have just rotated in: one shared, rate-limited refetch.
                if !issuer.refetch_for_unknown_kid(generation).await {
                    return Err(AuthError::Token(JwtError::UnknownKey));
                }
                let generation = issuer.generation();
                let keys = issuer.keys().ok_or_else(|| AuthError::KeysUnavailable {
                    issuer: issuer.settings.id.clone(),
                })?;
                jwt::verify_signature(unverified, &keys).map_err(AuthError::Token)?;
                Ok(generation)
            }
            Err(error) => Err(AuthError::Token(error)),
        }
    }

    /// The configured issuer with this id, and its index.
    pub fn issuer(&self, id: &str) -> Option<(usize, &Arc<Issuer>)> {
        self.issuers
            .iter()
            .enumerate()
            .find(|(_, issuer)| issuer.settings.id == id)
    }

    /// Verifies a token that `issuer_id` issued to `audience` rather than to an API (an OpenID
    /// Connect ID token or logout token, whose audience is the gateway's client id): the same
    /// checks as a bearer token's (algorithms, signature, `exp`/`nbf`/`iat`, `iss`, `aud`),
    /// with the issuer's roles. `subject_claim` is the claim that must name a subject (`sub`
    /// for an ID token). Never cached: such a token is checked once.
    pub async fn verify_issued_to(
        &self,
        issuer_id: &str,
        token: &str,
        audience: &str,
        subject_claim: &str,
    ) -> Result<(Arc<Issuer>, Verified), AuthError> {
        let (index, issuer) = self
            .issuer(issuer_id)
            .ok_or(AuthError::Token(JwtError::WrongIssuer))?;
        let unverified = jwt::parse(token).map_err(AuthError::Token)?;
        if !issuer.settings.algorithms.contains(&unverified.alg) {
            return Err(AuthError::Token(JwtError::UnsupportedAlgorithm));
        }
        let claims = jwt::parse_claims(&unverified.payload).map_err(AuthError::Token)?;
        let generation = self.check_signature(issuer, &unverified).await?;
        let audiences = [audience.to_string()];
        let rules = ClaimRules {
            issuer: &issuer.settings.issuer,
            audiences: &audiences,
            subject_claim,
            leeway: i64::try_from(issuer.settings.leeway.as_secs()).unwrap_or(i64::MAX),
            now: unix_now(),
        };
        let claims = jwt::validate_claims(claims, &rules).map_err(AuthError::Token)?;
        let roles = roles_of(&claims.all, &issuer.settings.roles_claim)?;
        Ok((
            issuer.clone(),
            Verified {
                issuer: index,
                generation,
                claims,
                roles,
            },
        ))
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
        // Only the token service's own tokens can be revoked; others skip the `jti` lookup.
        if let Some((_, revoked)) = self
            .revocable
            .as_ref()
            .filter(|(index, _)| *index == verified.issuer)
        {
            let jti = verified.claims.all.get("jti").and_then(|j| j.as_str());
            if jti.is_some_and(|jti| revoked.is_revoked(jti)) {
                return Err(AuthError::Revoked);
            }
        }
        Ok(Identity::Jwt {
            issuer: issuer.clone(),
            verified,
        })
    }
}

/// Roles from the claim at `path`: an array of strings, or a space-separated string.
pub fn roles_of(claims: &serde_json::Value, path: &str) -> Result<Vec<String>, AuthError> {
    match claim_at(claims, path) {
        None => Ok(Vec::new()),
        Some(serde_json::Value::String(roles)) => Ok(roles
            .split(' ')
            .filter(|r| !r.is_empty())
            .map(str::to_string)
            .collect()),
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().map(str::to_string))
            .collect::<Option<Vec<String>>>()
            .ok_or(AuthError::Token(JwtError::InvalidClaims(
                "the roles claim holds a non-string",
            ))),
        Some(_) => Err(AuthError::Token(JwtError::InvalidClaims(
            "the roles claim is not a list of strings",
        ))),
    }
}

/// The route's authorization rules: every scope, at least one role (when listed), every claim.
fn authorize(requirement: &AuthRequirement, identity: &Identity) -> Result<(), AuthError> {
    let granted = identity.scopes();
    if !requirement
        .scopes
        .iter()
        .all(|needed| granted.contains(needed))
    {
        return Err(AuthError::InsufficientScope {
            needed: requirement.scopes.join(" "),
        });
    }
    if !requirement.roles.is_empty()
        && !requirement
            .roles
            .iter()
            .any(|role| identity.roles().contains(role))
    {
        return Err(AuthError::Forbidden(
            "the credential holds none of the roles this route needs",
        ));
    }
    for (path, expected) in &requirement.claims {
        if identity.claims().and_then(|claims| claim_at(claims, path)) != Some(expected) {
            return Err(AuthError::Forbidden(
                "the credential's claims do not match what this route needs",
            ));
        }
    }
    Ok(())
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
