//! The authorization code flow with PKCE: the redirect to the provider (a new `state`, `nonce`
//! and S256 code verifier, kept server-side until the callback and bound to the browser by
//! the flow cookie) and the callback (the state taken once, the code exchanged, the ID token
//! verified, a session opened, the browser sent back where it was going).
//!
//! Where the browser returns to is always a path on the host it signed in on: the request's
//! own path, or a `return_to` that names this host. `//evil`, `/\evil` and URLs to other hosts
//! are refused, so the gateway is never an open redirect.

use http::header::{HeaderMap, HeaderValue, ACCEPT};
use http::{Method, Uri};

use super::error::{CallbackFailure, Redirect, SignInError};
use super::provider::{self, CallError};
use super::session::{pkce_challenge, random_token, store_key, PendingRecord, SessionRecord};
use super::{cookie::FLOW_SECONDS, Origin, SignIn};
use crate::auth::error::AuthError;
use crate::auth::{unix_now, Authenticator};

/// Whether a request is a browser navigating to a page (which is sent to sign in) rather than
/// a script's request (which gets a 401): `Sec-Fetch-Mode: navigate` when the browser sends
/// fetch metadata, else an `Accept` naming `text/html`. Only GET and HEAD are sent: a redirect
/// would turn any other method into a GET.
pub fn is_navigation(method: &Method, headers: &HeaderMap) -> bool {
    if method != Method::GET && method != Method::HEAD {
        return false;
    }
    if let Some(mode) = headers.get("sec-fetch-mode") {
        return mode.as_bytes().eq_ignore_ascii_case(b"navigate");
    }
    headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|accept| accept.to_ascii_lowercase().contains("text/html"))
}

/// `candidate` as a place to return to on `host`: a path (with its query) on this host, or
/// `None`. An absolute URL is accepted only when it names this very host, and becomes its path.
pub fn safe_return_to(candidate: &str, host: &str) -> Option<String> {
    if candidate
        .bytes()
        .any(|b| b.is_ascii_control() || b == b'\\' || b == b' ')
    {
        return None;
    }
    let path = if candidate.starts_with('/') {
        candidate.to_string()
    } else {
        let uri: Uri = candidate.parse().ok()?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) {
            return None;
        }
        let authority = uri.authority()?;
        if !authority.as_str().eq_ignore_ascii_case(host) {
            return None;
        }
        uri.path_and_query()
            .map_or_else(|| "/".to_string(), |p| p.as_str().to_string())
    };
    // `//host` is a network-path reference: a browser reads it as another host.
    if path.starts_with("//") || !path.starts_with('/') {
        return None;
    }
    Some(path)
}

/// The query parameter `name` of `uri`, decoded.
pub fn query_param(uri: &Uri, name: &str) -> Option<String> {
    form_urlencoded::parse(uri.query()?.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

impl SignIn {
    /// Starts a sign-in for a browser going to `return_to`: keeps the state, verifier and nonce
    /// server-side, and sends the browser to the provider's authorization endpoint.
    pub async fn begin(
        &self,
        headers: &HeaderMap,
        origin: &Origin,
        return_to: String,
    ) -> Result<Redirect, SignInError> {
        let endpoints = provider::endpoints(&self.issuer).ok_or(SignInError::ProviderNotReady)?;
        let state = random_token();
        let nonce = random_token();
        let verifier = random_token();
        // One binding per browser: several tabs signing in at once share it.
        let binding = self
            .cookies
            .flow(headers)
            .filter(|b| {
                b.len() == 43
                    && b.bytes()
                        .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
            })
            .map_or_else(random_token, str::to_string);
        let redirect_uri = format!(
            "{}://{}{}",
            origin.scheme, origin.authority, self.settings.callback
        );
        let pending = PendingRecord {
            verifier: verifier.clone(),
            nonce: nonce.clone(),
            return_to,
            redirect_uri: redirect_uri.clone(),
            binding: store_key(b"binding", binding.as_bytes()),
            expires_at: unix_now() + FLOW_SECONDS,
        };
        self.state
            .store
            .put_pending(&store_key(b"state", state.as_bytes()), &pending)
            .await
            .map_err(|error| {
                tracing::warn!(%error, "a sign-in could not be stored");
                SignInError::StoreUnavailable
            })?;
        let mut query = form_urlencoded::Serializer::new(String::new());
        query
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.settings.client_id)
            .append_pair("redirect_uri", &redirect_uri)
            .append_pair("scope", &self.settings.scopes.join(" "))
            .append_pair("state", &state)
            .append_pair("nonce", &nonce)
            .append_pair("code_challenge", &pkce_challenge(&verifier))
            .append_pair("code_challenge_method", "S256");
        let location = provider::with_query(&endpoints.authorization, &query.finish());
        Ok(Redirect {
            location: HeaderValue::from_str(&location)
                .map_err(|_| SignInError::ProviderNotReady)?,
            cookies: vec![self.cookies.set_flow(&binding)],
        })
    }

    /// The callback: checks the state (once), exchanges the code, verifies the ID token, opens
    /// the session, and sends the browser back where it was going.
    pub async fn callback(
        &self,
        auth: &Authenticator,
        uri: &Uri,
        headers: &HeaderMap,
    ) -> Result<Redirect, SignInError> {
        let failed = |failure| Err(SignInError::Callback(failure));
        let Some(state) = query_param(uri, "state") else {
            return failed(CallbackFailure::MissingState);
        };
        // Taken before anything else is checked: a state is good for one callback, whatever
        // becomes of it.
        let pending = self
            .state
            .store
            .take_pending(&store_key(b"state", state.as_bytes()))
            .await
            .map_err(|error| {
                tracing::warn!(%error, "a sign-in could not be read");
                SignInError::StoreUnavailable
            })?;
        let Some(pending) = pending.filter(|p| p.expires_at > unix_now()) else {
            return failed(CallbackFailure::UnknownState);
        };
        let binding = self
            .cookies
            .flow(headers)
            .map(|b| store_key(b"binding", b.as_bytes()));
        if binding.as_deref() != Some(pending.binding.as_str()) {
            return failed(CallbackFailure::OtherBrowser);
        }
        if query_param(uri, "error").is_some() {
            return failed(CallbackFailure::ProviderRefused);
        }
        let Some(code) = query_param(uri, "code") else {
            return failed(CallbackFailure::MissingCode);
        };
        let endpoints = provider::endpoints(&self.issuer).ok_or(SignInError::ProviderNotReady)?;
        let tokens = self
            .provider
            .token(
                &endpoints.token,
                &self.client,
                &[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("redirect_uri", &pending.redirect_uri),
                    ("code_verifier", &pending.verifier),
                ],
            )
            .await
            .map_err(|error| match error {
                CallError::Refused => SignInError::Callback(CallbackFailure::CodeRefused),
                CallError::Unreachable(why) => {
                    tracing::warn!(error = %why, "the code exchange failed");
                    SignInError::ProviderUnreachable
                }
            })?;
        let Some(id_token) = tokens.id_token.clone() else {
            return failed(CallbackFailure::MissingIdToken);
        };
        let (_, verified) = self.verify_id_token(auth, &id_token).await?;
        let nonce = verified.claims.all.get("nonce").and_then(|n| n.as_str());
        if nonce != Some(pending.nonce.as_str()) {
            return failed(CallbackFailure::WrongNonce);
        }
        let now = unix_now();
        let record = SessionRecord {
            issuer: self.settings.issuer.clone(),
            subject: verified.claims.subject.clone(),
            sid: verified
                .claims
                .all
                .get("sid")
                .and_then(|s| s.as_str())
                .map(str::to_string),
            roles: verified.roles.clone(),
            scopes: granted_scopes(tokens.scope.as_deref(), &self.settings.scopes),
            claims: verified.claims.all.clone(),
            id_token,
            refresh_token: tokens.refresh_token.clone(),
            created_at: now,
            last_seen: now,
            ends_at: now.saturating_add(self.max_seconds()),
            tokens_expire_at: tokens_expire_at(&tokens, verified.claims.expires_at, now),
            refresh_retry_at: 0,
        };
        let (cookie, key) = self.key.issue();
        self.state
            .store
            .put(&key, &record, record.expires_at(self.idle_seconds()))
            .await
            .map_err(|error| {
                tracing::warn!(%error, "a session could not be stored");
                SignInError::StoreUnavailable
            })?;
        crate::metrics::sign_in();
        self.state.count_sessions();
        Ok(Redirect {
            location: HeaderValue::from_str(&pending.return_to)
                .unwrap_or_else(|_| HeaderValue::from_static("/")),
            cookies: vec![self.cookies.set_session(&cookie, self.max_seconds())],
        })
    }

    /// Verifies an ID token from the provider for this client (`aud` = `client_id`, and
    /// `azp`, when present, too).
    pub(super) async fn verify_id_token(
        &self,
        auth: &Authenticator,
        id_token: &str,
    ) -> Result<
        (
            std::sync::Arc<crate::auth::Issuer>,
            crate::auth::cache::Verified,
        ),
        SignInError,
    > {
        let verified = auth
            .verify_issued_to(
                &self.settings.issuer,
                id_token,
                &self.settings.client_id,
                "sub",
            )
            .await
            .map_err(|error| match error {
                AuthError::KeysUnavailable { .. } => SignInError::ProviderNotReady,
                other => SignInError::Callback(CallbackFailure::IdToken(other.reason())),
            })?;
        let azp = verified.1.claims.all.get("azp").and_then(|a| a.as_str());
        if azp.is_some_and(|azp| azp != self.settings.client_id) {
            return Err(SignInError::Callback(CallbackFailure::IdToken(
                "wrong_audience",
            )));
        }
        Ok(verified)
    }
}

/// The scopes the provider says it granted, else the ones asked for (RFC 6749 §5.1: `scope`
/// may be left out when it is what was asked).
pub fn granted_scopes(granted: Option<&str>, asked: &[String]) -> Vec<String> {
    match granted {
        Some(scope) => scope
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        None => asked.to_vec(),
    }
}

/// When the provider's tokens expire: after `expires_in`, else with the ID token.
pub fn tokens_expire_at(tokens: &provider::Tokens, id_token_exp: i64, now: i64) -> i64 {
    match tokens.expires_in {
        Some(seconds) => now.saturating_add(seconds.max(0)),
        None => id_token_exp,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_to_stays_on_this_host() {
        let host = "app.example.com";
        assert_eq!(
            safe_return_to("/reports?q=1", host).as_deref(),
            Some("/reports?q=1")
        );
        assert_eq!(
            safe_return_to("https://app.example.com/x?y", host).as_deref(),
            Some("/x?y")
        );
        assert_eq!(
            safe_return_to("http://APP.example.com", host).as_deref(),
            Some("/")
        );
        for refused in [
            "//evil.example/",
            "/\\evil.example/",
            "\\\\evil.example",
            "https://evil.example/",
            "https://app.example.com.evil.example/",
            "https://app.example.com@evil.example/",
            "javascript:alert(1)",
            "evil.example",
            "/ok\r\nSet-Cookie: x",
            "",
        ] {
            assert_eq!(safe_return_to(refused, host), None, "{refused:?}");
        }
    }

    #[test]
    fn navigations_are_told_from_scripts() {
        let mut headers = HeaderMap::new();
        headers.insert(
            ACCEPT,
            HeaderValue::from_static("text/html,application/xhtml+xml"),
        );
        assert!(is_navigation(&Method::GET, &headers));
        assert!(!is_navigation(&Method::POST, &headers));
        headers.insert("sec-fetch-mode", HeaderValue::from_static("cors"));
        assert!(
            !is_navigation(&Method::GET, &headers),
            "fetch metadata decides"
        );
        headers.insert("sec-fetch-mode", HeaderValue::from_static("navigate"));
        assert!(is_navigation(&Method::GET, &headers));
        let mut xhr = HeaderMap::new();
        xhr.insert(ACCEPT, HeaderValue::from_static("application/json"));
        assert!(!is_navigation(&Method::GET, &xhr));
        assert!(!is_navigation(&Method::GET, &HeaderMap::new()));
    }
}
