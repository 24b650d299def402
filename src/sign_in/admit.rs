//! A request's session, on the path of every request to a route with `auth = ["session", …]`:
//! the cookie opened (its MAC checked against the gateway key), the record read from the store,
//! its standing judged (live, to be touched, to be refreshed, ended), and the identity the
//! upstream is told about built from it. A refresh with the provider is shared by every
//! request of one session that needs it at once.

use std::sync::Arc;

use http::header::HeaderMap;

use super::provider::{self, CallError};
use super::session::{SessionRecord, Standing};
use super::{flow, SignIn, REFRESH_RETRY};
use crate::auth::cache::Verified;
use crate::auth::error::AuthError;
use crate::auth::jwt::Claims;
use crate::auth::{unix_now, Authenticator, Identity, Issuer};
use crate::config::AuthRequirement;

impl SignIn {
    /// Authenticates a request for a route that accepts sessions (`auth = ["session", …]`). An
    /// explicit credential the route also accepts (a bearer token, an API key) is judged as
    /// such: the session cookie is ambient, sent by the browser with every request, and never
    /// reaches the upstream whichever is used.
    pub async fn authenticate(
        &self,
        auth: &Authenticator,
        requirement: &AuthRequirement,
        headers: &HeaderMap,
    ) -> Result<Identity, AuthError> {
        let explicit = auth.presented_method(requirement, headers) != "none";
        if explicit && (requirement.jwt || requirement.api_key) {
            return auth.authenticate(requirement, headers).await;
        }
        match self.cookies.session(headers) {
            Err(error) => Err(error),
            Ok(None) => auth.authenticate(requirement, headers).await,
            Ok(Some(value)) => {
                let (identity, issuer) = self.session(auth, value).await?;
                crate::auth::authorize_identity(requirement, &identity, &issuer)?;
                Ok(identity)
            }
        }
    }

    /// The kind of credential `headers` present on a route that takes sessions, for the
    /// metrics of a refusal: an explicit one first (as [`SignIn::authenticate`] judges), then
    /// `session` for a session cookie.
    pub fn presented(
        &self,
        auth: &Authenticator,
        requirement: &AuthRequirement,
        headers: &HeaderMap,
    ) -> &'static str {
        match auth.presented_method(requirement, headers) {
            "none" if self.cookies.session(headers).is_ok_and(|c| c.is_some()) => "session",
            presented => presented,
        }
    }

    /// The identity of the session a cookie names: renewed with the provider first when its
    /// tokens expired (once, however many requests wait for it).
    async fn session(
        &self,
        auth: &Authenticator,
        cookie: &str,
    ) -> Result<(Identity, Arc<Issuer>), AuthError> {
        let key = self.key.open(cookie).ok_or(AuthError::SessionEnded)?;
        let record = self.read(&key).await?.ok_or(AuthError::SessionEnded)?;
        let now = unix_now();
        let idle = self.idle_seconds();
        let record = match record.standing(now, idle) {
            Standing::Live => record,
            Standing::Ended => {
                self.end(&key);
                return Err(AuthError::SessionEnded);
            }
            Standing::Touch => {
                let mut touched = record;
                touched.last_seen = now;
                self.write_behind(key, touched.clone());
                touched
            }
            Standing::Refresh => self.refresh(auth, &key).await?,
        };
        let (index, issuer) = auth
            .issuer(&record.issuer)
            .map(|(index, issuer)| (index, issuer.clone()))
            .ok_or(AuthError::SessionEnded)?;
        let verified = Arc::new(Verified {
            issuer: index,
            generation: issuer.generation(),
            claims: Claims {
                subject: record.subject,
                scopes: record.scopes,
                expires_at: record.ends_at,
                all: record.claims,
            },
            roles: record.roles,
        });
        Ok((
            Identity::Session {
                verified,
                issuer: issuer.clone(),
            },
            issuer,
        ))
    }

    async fn read(&self, key: &str) -> Result<Option<SessionRecord>, AuthError> {
        self.state.store.get(key).await.map_err(|error| {
            tracing::warn!(%error, "a session could not be read");
            AuthError::SessionsUnavailable
        })
    }

    /// Forgets an ended session, in the background.
    fn end(&self, key: &str) {
        let state = self.state.clone();
        let key = key.to_string();
        tokio::spawn(async move {
            let _ = state.store.remove(&key).await;
            state.count_sessions();
        });
    }

    /// Writes a touched session without making the request wait for it.
    fn write_behind(&self, key: String, record: SessionRecord) {
        let state = self.state.clone();
        let expires_at = record.expires_at(self.idle_seconds());
        tokio::spawn(async move {
            if let Err(error) = state.store.put(&key, &record, expires_at).await {
                tracing::warn!(%error, "a session could not be touched");
            }
        });
    }

    /// Renews a session's provider tokens with its refresh token. Requests for one session
    /// share one refresh: the first refreshes, the others wait and read what it stored. A
    /// refresh the provider refuses ends the session — unless another gateway of the fleet
    /// refreshed it meanwhile (its token was rotated), whose result is then used. One the
    /// provider does not answer keeps the session as it is for [`REFRESH_RETRY`] seconds.
    async fn refresh(&self, auth: &Authenticator, key: &str) -> Result<SessionRecord, AuthError> {
        let flight = {
            let mut refreshing = self
                .state
                .refreshing
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            refreshing.entry(key.to_string()).or_default().clone()
        };
        let _turn = flight.lock().await;
        let outcome = self.refresh_once(auth, key).await;
        self.state
            .refreshing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(key);
        outcome
    }

    async fn refresh_once(
        &self,
        auth: &Authenticator,
        key: &str,
    ) -> Result<SessionRecord, AuthError> {
        // Read again: whoever held the turn before may have refreshed already.
        let mut record = self.read(key).await?.ok_or(AuthError::SessionEnded)?;
        let now = unix_now();
        match record.standing(now, self.idle_seconds()) {
            Standing::Refresh => {}
            Standing::Ended => return Err(AuthError::SessionEnded),
            Standing::Live | Standing::Touch => return Ok(record),
        }
        let (Some(refresh_token), Some(endpoints)) = (
            record.refresh_token.clone(),
            provider::endpoints(&self.issuer),
        ) else {
            return Ok(record);
        };
        let answer = self
            .provider
            .token(
                &endpoints.token,
                &self.client,
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", &refresh_token),
                    ("scope", &self.settings.scopes.join(" ")),
                ],
            )
            .await;
        let tokens = match answer {
            Ok(tokens) => tokens,
            Err(CallError::Refused) => {
                let current = self.read(key).await?;
                if let Some(current) =
                    current.filter(|c| c.refresh_token.as_deref() != Some(refresh_token.as_str()))
                {
                    return Ok(current);
                }
                crate::metrics::session_refresh("refused");
                self.end(key);
                return Err(AuthError::SessionEnded);
            }
            Err(CallError::Unreachable(why)) => {
                tracing::warn!(error = %why, "a session refresh could not reach the provider");
                crate::metrics::session_refresh("unavailable");
                record.refresh_retry_at = now + REFRESH_RETRY;
                self.store_refreshed(key, &record).await;
                return Ok(record);
            }
        };
        let mut id_token_exp = record.tokens_expire_at;
        if let Some(id_token) = &tokens.id_token {
            match self.verify_id_token(auth, id_token).await {
                Ok((_, verified)) if verified.claims.subject == record.subject => {
                    id_token_exp = verified.claims.expires_at;
                    record.claims = verified.claims.all;
                    record.roles = verified.roles;
                    record.id_token = id_token.clone();
                }
                _ => {
                    // A new ID token that does not verify, or names someone else: the session
                    // cannot go on as this user.
                    crate::metrics::session_refresh("refused");
                    self.end(key);
                    return Err(AuthError::SessionEnded);
                }
            }
        }
        if let Some(rotated) = tokens.refresh_token.clone() {
            record.refresh_token = Some(rotated);
        }
        if tokens.scope.is_some() {
            record.scopes = flow::granted_scopes(tokens.scope.as_deref(), &self.settings.scopes);
        }
        record.tokens_expire_at = flow::tokens_expire_at(&tokens, id_token_exp, now);
        record.last_seen = now;
        record.refresh_retry_at = 0;
        self.store_refreshed(key, &record).await;
        crate::metrics::session_refresh("ok");
        Ok(record)
    }

    async fn store_refreshed(&self, key: &str, record: &SessionRecord) {
        let expires_at = record.expires_at(self.idle_seconds());
        if let Err(error) = self.state.store.put(key, record, expires_at).await {
            tracing::warn!(%error, "a refreshed session could not be stored");
        }
    }
}
