//! The token service's HTTP endpoints, under `[token_service] path` (default `/auth`) on the
//! gateway listener:
//!
//! | endpoint | request | answer |
//! |---|---|---|
//! | `POST {path}/login` | JSON `{"username","password"}` | a token pair |
//! | `POST {path}/token` | RFC 6749 form: `client_credentials` or `refresh_token` grant | a token (pair) |
//! | `POST {path}/refresh` | JSON `{"refresh_token"}` | a new token pair |
//! | `POST {path}/revoke` | RFC 7009 form: `token` | 200, always |
//! | `POST {path}/logout` | JSON `{"refresh_token"}` and/or `Authorization: Bearer` | 204 |
//! | `GET {path}/.well-known/jwks.json`, `GET /.well-known/jwks.json` | | the signing keys |
//! | `GET {path}/.well-known/openid-configuration` (and at `/`) | | discovery metadata |
//!
//! Refusals use RFC 6749 §5.2 codes in the gateway's JSON body shape, and every answer that
//! holds a token says `Cache-Control: no-store`.

use std::net::IpAddr;

use bytes::Bytes;
use http::header::{HeaderValue, CACHE_CONTROL};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use serde_json::json;
use tracing::Instrument;

use super::errors::json_response;
pub use super::errors::ServiceError;
use super::grants::{self, Grant, Replacement, Rotation, RotationRules, REFRESH_PREFIX};
use super::requests::{
    basic_credentials, bearer_token, param, parse_form, parse_json, read_body, LoginRequest,
    LogoutRequest, RefreshRequest,
};
use super::store::{FamilyRecord, StoreError, TokenStore};
use super::TokenService;
use crate::auth::{jwt, unix_now, Authenticator, Identity};
use crate::{full_body, Body};

/// One of the service's endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST {path}/login`.
    Login,
    /// `POST {path}/token`.
    Token,
    /// `POST {path}/refresh`.
    Refresh,
    /// `POST {path}/revoke`.
    Revoke,
    /// `POST {path}/logout`.
    Logout,
    /// `GET …/.well-known/jwks.json`.
    Jwks,
    /// `GET …/.well-known/openid-configuration`.
    Discovery,
}

impl Endpoint {
    /// The `endpoint` label.
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Login => "login",
            Endpoint::Token => "token",
            Endpoint::Refresh => "refresh",
            Endpoint::Revoke => "revoke",
            Endpoint::Logout => "logout",
            Endpoint::Jwks => "jwks",
            Endpoint::Discovery => "discovery",
        }
    }
}

/// Who is asking, as far as the service needs to know.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    /// The client's address (behind a trusted proxy: the address it forwarded for).
    pub address: IpAddr,
}

/// Tokens issued by one request.
#[derive(Debug)]
struct Issued {
    access_token: String,
    expires_in: u64,
    refresh_token: Option<String>,
    scope: String,
}

impl Issued {
    fn into_response(self) -> Response<Body> {
        let mut body = json!({
            "access_token": self.access_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "scope": self.scope,
        });
        if let Some(refresh) = self.refresh_token {
            body["refresh_token"] = refresh.into();
        }
        json_response(StatusCode::OK, &body)
    }
}

fn seconds(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX / 4)
}

impl TokenService {
    /// The endpoint `path` names, if any.
    pub fn endpoint(&self, path: &str) -> Option<Endpoint> {
        let well_known = |rest: &str| match rest {
            "/.well-known/jwks.json" => Some(Endpoint::Jwks),
            "/.well-known/openid-configuration" | "/.well-known/oauth-authorization-server" => {
                Some(Endpoint::Discovery)
            }
            _ => None,
        };
        if let Some(endpoint) = well_known(path) {
            return Some(endpoint);
        }
        // RFC 8414 §3.1: for an issuer with a path, the well-known segment goes before it.
        if path.strip_prefix("/.well-known/oauth-authorization-server") == Some(&self.settings.path)
        {
            return Some(Endpoint::Discovery);
        }
        let rest = path.strip_prefix(self.settings.path.as_str())?;
        match rest {
            "/login" => Some(Endpoint::Login),
            "/token" => Some(Endpoint::Token),
            "/refresh" => Some(Endpoint::Refresh),
            "/revoke" => Some(Endpoint::Revoke),
            "/logout" => Some(Endpoint::Logout),
            _ => well_known(rest),
        }
    }

    /// Answers one request to `endpoint`.
    pub async fn handle<B>(
        &self,
        endpoint: Endpoint,
        request: Request<B>,
        caller: Caller,
        auth: &Authenticator,
        request_id: &str,
    ) -> Response<Body>
    where
        B: http_body::Body<Data = Bytes> + Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        // Whatever the service logs about this request names it by its id.
        let span = tracing::info_span!("token_service", request_id);
        let outcome = self
            .answer(endpoint, request, caller, auth)
            .instrument(span)
            .await;
        let result = outcome.as_ref().map_or_else(ServiceError::code, |_| "ok");
        crate::metrics::token_service(endpoint.name(), result);
        outcome.unwrap_or_else(|error| error.into_response(request_id))
    }

    async fn answer<B>(
        &self,
        endpoint: Endpoint,
        request: Request<B>,
        caller: Caller,
        auth: &Authenticator,
    ) -> Result<Response<Body>, ServiceError>
    where
        B: http_body::Body<Data = Bytes> + Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (parts, body) = request.into_parts();
        match endpoint {
            Endpoint::Jwks | Endpoint::Discovery => {
                if parts.method != Method::GET && parts.method != Method::HEAD {
                    return Err(ServiceError::MethodNotAllowed("GET"));
                }
                let document = match endpoint {
                    Endpoint::Jwks => self.settings.jwks(),
                    _ => self.discovery(),
                };
                let mut response = json_response(StatusCode::OK, &document);
                // Public, and changed only by a reload: verifiers may cache it a little while.
                response.headers_mut().insert(
                    CACHE_CONTROL,
                    HeaderValue::from_static("public, max-age=300"),
                );
                return Ok(response);
            }
            _ if parts.method != Method::POST => {
                return Err(ServiceError::MethodNotAllowed("POST"))
            }
            _ => {}
        }
        let form = matches!(endpoint, Endpoint::Token | Endpoint::Revoke);
        let body = read_body(&parts.headers, body, form).await?;
        let now = unix_now();
        match endpoint {
            Endpoint::Login => {
                let login: LoginRequest = parse_json(&body)?;
                self.login(login, caller, now).await
            }
            Endpoint::Refresh => {
                let refresh: RefreshRequest = parse_json(&body)?;
                self.refresh(&refresh.refresh_token, None, now).await
            }
            Endpoint::Token => self.token(&parts.headers, &body, auth, now).await,
            Endpoint::Revoke => {
                let params = parse_form(&body)?;
                let token = param(&params, "token").ok_or(ServiceError::InvalidRequest(
                    "the `token` parameter is missing",
                ))?;
                self.revoke(token, now).await?;
                // RFC 7009 §2.2: the same answer whether or not the token was known.
                Ok(Response::new(full_body(Bytes::new())))
            }
            Endpoint::Logout => {
                let logout: LogoutRequest = if body.is_empty() {
                    LogoutRequest::default()
                } else {
                    parse_json(&body)?
                };
                let bearer = bearer_token(&parts.headers);
                if logout.refresh_token.is_none() && bearer.is_none() {
                    return Err(ServiceError::InvalidRequest(
                        "send the refresh token, the access token as Bearer, or both",
                    ));
                }
                for token in logout
                    .refresh_token
                    .iter()
                    .map(String::as_str)
                    .chain(bearer)
                {
                    self.revoke(token, now).await?;
                }
                let mut response = Response::new(full_body(Bytes::new()));
                *response.status_mut() = StatusCode::NO_CONTENT;
                Ok(response)
            }
            Endpoint::Jwks | Endpoint::Discovery => Err(ServiceError::MethodNotAllowed("GET")),
        }
    }

    fn discovery(&self) -> serde_json::Value {
        let base = self.settings.issuer.trim_end_matches('/');
        json!({
            "issuer": self.settings.issuer,
            "jwks_uri": format!("{base}/.well-known/jwks.json"),
            "token_endpoint": format!("{base}/token"),
            "revocation_endpoint": format!("{base}/revoke"),
            "grant_types_supported": ["client_credentials", "refresh_token"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "revocation_endpoint_auth_methods_supported": ["none"],
            // Only what exists: no authorization endpoint (so no response type) and no ID
            // tokens (so no ID-token algorithms).
            "response_types_supported": [],
        })
    }

    async fn login(
        &self,
        login: LoginRequest,
        caller: Caller,
        now: i64,
    ) -> Result<Response<Body>, ServiceError> {
        if login.username.len() > 256 || login.password.len() > 1024 {
            return Err(ServiceError::InvalidCredentials);
        }
        let limit = &self.settings.login_limit;
        let limiter = &self.state.limiter;
        let shared = self.state.shared_limiter.as_ref();
        let allowed = match shared {
            Some(shared) => shared
                .check(limit, &login.username, caller.address)
                .await
                .map_err(|e| ServiceError::Unavailable(e.0))?,
            None => limiter.check(limit, &login.username, caller.address, now),
        };
        if let Err(retry_after) = allowed {
            tracing::warn!(
                username = login.username,
                client = %caller.address,
                retry_after,
                "login refused: too many failed attempts for this username or client"
            );
            return Err(ServiceError::TooManyAttempts(retry_after));
        }
        let user = self.settings.users.get(&login.username).cloned();
        // An unknown username is checked against a dummy hash: the same work, the same time.
        let hash = user.as_ref().map_or_else(
            || self.state.dummy_hash.clone(),
            |u| u.password_hash.clone(),
        );
        let matches = self.slow_check(move || super::passwords::verify(&login.password, &hash));
        let matches = matches.await?;
        match user {
            Some(user) if matches && !user.disabled => {
                match shared {
                    Some(shared) => shared
                        .succeeded(&user.username)
                        .await
                        .map_err(|e| ServiceError::Unavailable(e.0))?,
                    None => limiter.succeeded(&user.username),
                }
                let grant = Grant {
                    subject: user.subject.clone(),
                    scopes: user.scopes.clone(),
                    roles: user.roles.clone(),
                    client_id: None,
                };
                Ok(self.issue_pair(grant, now).await?.into_response())
            }
            _ => {
                let why = match &user {
                    None => "no such user",
                    Some(user) if user.disabled => "the user is disabled",
                    Some(_) => "wrong password",
                };
                tracing::info!(
                    username = login.username,
                    client = %caller.address,
                    reason = why,
                    "login failed"
                );
                match shared {
                    Some(shared) => shared
                        .failed(limit, &login.username, caller.address)
                        .await
                        .map_err(|e| ServiceError::Unavailable(e.0))?,
                    None => limiter.failed(limit, &login.username, caller.address, now),
                }
                Err(ServiceError::InvalidCredentials)
            }
        }
    }

    /// Runs an argon2 check on the blocking pool, a few at a time.
    async fn slow_check(
        &self,
        check: impl FnOnce() -> bool + Send + 'static,
    ) -> Result<bool, ServiceError> {
        let _permit = self
            .state
            .hashing
            .acquire()
            .await
            .map_err(|e| ServiceError::Unavailable(e.to_string()))?;
        tokio::task::spawn_blocking(check)
            .await
            .map_err(|e| ServiceError::Unavailable(e.to_string()))
    }

    async fn store_write<T: Send + 'static>(
        &self,
        work: impl FnOnce(&dyn TokenStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, ServiceError> {
        let store = self.state.store.clone();
        // A store write may wait for the disk; it never holds up the reactor.
        let joined = tokio::task::spawn_blocking(move || work(store.as_ref())).await;
        joined
            .map_err(|e| ServiceError::Unavailable(e.to_string()))?
            .map_err(Into::into)
    }

    fn sign(
        &self,
        grant: &Grant,
        jti: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<String, ServiceError> {
        let key = self
            .settings
            .keys
            .first()
            .ok_or_else(|| ServiceError::Unavailable("no signing key".into()))?;
        // RFC 9068 §2.2: `client_id` is required. A login through `{path}/login` is made by
        // the gateway's own sign-in, so the client is the service itself.
        let mut grant = grant.clone();
        grant
            .client_id
            .get_or_insert_with(|| self.settings.id.clone());
        Ok(grants::sign_access_token(
            key,
            &self.settings.issuer,
            &self.settings.audience,
            &grant,
            jti,
            now,
            expires_at,
        )?)
    }

    /// An access token and the first refresh token of a new family.
    async fn issue_pair(&self, grant: Grant, now: i64) -> Result<Issued, ServiceError> {
        let refresh = grants::new_refresh_token()?;
        let refresh_hash = grants::refresh_hash(&refresh);
        let jti = grants::random_token(16)?;
        let access_ttl = seconds(self.settings.access_ttl);
        let expires_at = now.saturating_add(access_ttl);
        let family_id = grants::random_token(16)?;
        let family = FamilyRecord {
            subject: grant.subject.clone(),
            scopes: grant.scopes.clone(),
            roles: grant.roles.clone(),
            client_id: grant.client_id.clone(),
            expires_at: now.saturating_add(seconds(self.settings.refresh_ttl)),
            revoked: false,
            access_tokens: vec![(jti.clone(), expires_at)],
        };
        let idle = seconds(self.settings.refresh_idle);
        self.store_write(move |store| {
            store.write(&mut |tx| {
                grants::start_family(tx, &family_id, &family, &refresh_hash, idle, now)
            })
        })
        .await?;
        Ok(Issued {
            access_token: self.sign(&grant, &jti, now, expires_at)?,
            expires_in: self.settings.access_ttl.as_secs(),
            refresh_token: Some(refresh),
            scope: grant.scopes.join(" "),
        })
    }

    /// The refresh grant: rotates `presented`, optionally narrowing the scope.
    async fn refresh(
        &self,
        presented: &str,
        narrowed: Option<Vec<String>>,
        now: i64,
    ) -> Result<Response<Body>, ServiceError> {
        if !presented.starts_with(REFRESH_PREFIX) {
            return Err(ServiceError::InvalidGrant("the refresh token is not valid"));
        }
        let presented = grants::refresh_hash(presented);
        let next = grants::new_refresh_token()?;
        let next_hash = grants::refresh_hash(&next);
        let jti = grants::random_token(16)?;
        let expires_at = now.saturating_add(seconds(self.settings.access_ttl));
        let rules = RotationRules {
            idle: seconds(self.settings.refresh_idle),
            reuse_grace: seconds(self.settings.reuse_grace),
        };
        let users = self.settings.users.clone();
        let wanted = narrowed.clone();
        let access_id = jti.clone();
        let outcome = self
            .store_write(move |store| {
                let refuse = |family: &FamilyRecord| {
                    // A user who was disabled or removed gets nothing more from old tokens.
                    let holder_gone = family.client_id.is_none()
                        && users
                            .by_subject(&family.subject)
                            .is_none_or(|user| user.disabled);
                    if holder_gone {
                        return Some(Rotation::Refused(
                            "the account this token was issued to can no longer get tokens",
                        ));
                    }
                    let exceeds = wanted
                        .as_ref()
                        .is_some_and(|w| w.iter().any(|s| !family.scopes.contains(s)));
                    exceeds.then_some(Rotation::ScopeExceeded)
                };
                let replacement = Replacement {
                    refresh: &next_hash,
                    access: (&access_id, expires_at),
                };
                let mut outcome = None;
                store.write(&mut |tx| {
                    outcome = Some(grants::rotate(
                        tx,
                        &presented,
                        &replacement,
                        rules,
                        &refuse,
                        now,
                    )?);
                    Ok(())
                })?;
                outcome.ok_or_else(|| StoreError("the rotation did not run".into()))
            })
            .await?;
        match outcome {
            Rotation::Rotated { family } => {
                let grant = Grant {
                    subject: family.subject,
                    scopes: narrowed.unwrap_or(family.scopes),
                    roles: family.roles,
                    client_id: family.client_id,
                };
                let issued = Issued {
                    access_token: self.sign(&grant, &jti, now, expires_at)?,
                    expires_in: self.settings.access_ttl.as_secs(),
                    refresh_token: Some(next),
                    scope: grant.scopes.join(" "),
                };
                Ok(issued.into_response())
            }
            Rotation::Refused(why) => Err(ServiceError::InvalidGrant(why)),
            Rotation::ScopeExceeded => Err(ServiceError::InvalidScope),
            Rotation::Reused {
                family,
                subject,
                revoked,
            } => {
                tracing::warn!(
                    subject,
                    family,
                    revoked_access_tokens = revoked.len(),
                    "a retired refresh token was presented again: its family is revoked"
                );
                for (jti, exp) in revoked {
                    self.state.revocations.insert(jti, exp);
                }
                Err(ServiceError::InvalidGrant(
                    "the refresh token was already used; its sessions are revoked",
                ))
            }
        }
    }

    /// `POST {path}/token`.
    async fn token(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        auth: &Authenticator,
        now: i64,
    ) -> Result<Response<Body>, ServiceError> {
        let params = parse_form(body)?;
        let requested = param(&params, "scope").map(|scope| {
            scope
                .split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect::<Vec<_>>()
        });
        match param(&params, "grant_type") {
            Some("refresh_token") => {
                let token = param(&params, "refresh_token").ok_or(ServiceError::InvalidRequest(
                    "the `refresh_token` parameter is missing",
                ))?;
                self.refresh(token, requested, now).await
            }
            Some("client_credentials") => {
                let grant = self.authenticate_client(headers, &params, auth).await?;
                let scopes = match requested {
                    Some(wanted) if wanted.iter().any(|s| !grant.scopes.contains(s)) => {
                        return Err(ServiceError::InvalidScope)
                    }
                    Some(wanted) => wanted,
                    None => grant.scopes.clone(),
                };
                let grant = Grant { scopes, ..grant };
                let jti = grants::random_token(16)?;
                let expires_at = now.saturating_add(seconds(self.settings.access_ttl));
                // RFC 6749 §4.4.3: no refresh token; the client can simply ask again.
                let issued = Issued {
                    access_token: self.sign(&grant, &jti, now, expires_at)?,
                    expires_in: self.settings.access_ttl.as_secs(),
                    refresh_token: None,
                    scope: grant.scopes.join(" "),
                };
                Ok(issued.into_response())
            }
            Some(_) => Err(ServiceError::UnsupportedGrantType),
            None => Err(ServiceError::InvalidRequest(
                "the `grant_type` parameter is missing",
            )),
        }
    }

    /// The client of a client-credentials request: HTTP Basic, or `client_id` and
    /// `client_secret` in the form (RFC 6749 §2.3.1), or an API key in its header.
    async fn authenticate_client(
        &self,
        headers: &HeaderMap,
        params: &[(String, String)],
        auth: &Authenticator,
    ) -> Result<Grant, ServiceError> {
        let basic = basic_credentials(headers)?;
        let posted = match (param(params, "client_id"), param(params, "client_secret")) {
            (Some(id), Some(secret)) => Some((id.to_string(), secret.to_string())),
            (None, None) => None,
            _ => {
                return Err(ServiceError::InvalidRequest(
                    "send both client_id and client_secret, or neither",
                ))
            }
        };
        let with_basic = basic.is_some();
        let (id, secret) = match (basic, posted) {
            (Some(_), Some(_)) => {
                return Err(ServiceError::InvalidRequest(
                    "authenticate the client one way only",
                ))
            }
            (Some(pair), None) | (None, Some(pair)) => pair,
            (None, None) => {
                return match auth.api_key_identity(headers) {
                    Some(Ok(Identity::ApiKey(entry))) => Ok(Grant {
                        subject: entry.subject.clone(),
                        scopes: entry.scopes.clone(),
                        roles: entry.roles.clone(),
                        client_id: Some(entry.id.clone()),
                    }),
                    Some(_) => Err(ServiceError::InvalidClient { basic: false }),
                    None => Err(ServiceError::InvalidClient { basic: true }),
                };
            }
        };
        let refused = ServiceError::InvalidClient { basic: with_basic };
        let client = match self.settings.clients.get(&id) {
            Some(client) if !client.disabled => client.clone(),
            _ => return Err(refused),
        };
        let hash = client.secret.clone();
        let matches = if hash.is_slow() {
            self.slow_check(move || hash.matches(&secret)).await?
        } else {
            hash.matches(&secret)
        };
        if !matches {
            return Err(refused);
        }
        Ok(Grant {
            subject: client.id.clone(),
            scopes: client.scopes.clone(),
            roles: Vec::new(),
            client_id: Some(client.id),
        })
    }

    /// Revokes a refresh token's family, or one of the service's own access tokens. Anything
    /// else is ignored (RFC 7009: an invalid token is no error).
    async fn revoke(&self, token: &str, now: i64) -> Result<(), ServiceError> {
        if token.starts_with(REFRESH_PREFIX) {
            let hash = grants::refresh_hash(token);
            let revoked = self
                .store_write(move |store| {
                    let mut revoked = Vec::new();
                    store.write(&mut |tx| {
                        revoked = grants::revoke_by_refresh(tx, &hash, now)?;
                        Ok(())
                    })?;
                    Ok(revoked)
                })
                .await?;
            for (jti, exp) in revoked {
                self.state.revocations.insert(jti, exp);
            }
            return Ok(());
        }
        let Some((jti, exp)) = self.own_access_token(token, now) else {
            return Ok(());
        };
        let stored = jti.clone();
        self.store_write(move |store| store.write(&mut |tx| tx.revoke_access(&stored, exp)))
            .await?;
        self.state.revocations.insert(jti, exp);
        Ok(())
    }

    /// `(jti, exp)` of an unexpired access token this service signed.
    fn own_access_token(&self, token: &str, now: i64) -> Option<(String, i64)> {
        let unverified = jwt::parse(token).ok()?;
        jwt::verify_signature(&unverified, &self.keys).ok()?;
        let claims = jwt::parse_claims(&unverified.payload).ok()?;
        if claims.get("iss")?.as_str()? != self.settings.issuer {
            return None;
        }
        let jti = claims.get("jti")?.as_str()?.to_string();
        let exp = claims.get("exp")?.as_i64()?;
        (exp >= now).then_some((jti, exp))
    }
}
