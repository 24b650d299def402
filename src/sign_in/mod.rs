//! Browser sign-in: authgate as an OpenID Connect relying party in front of web apps.
//!
//! A navigation without a session is sent to the provider (authorization code with PKCE S256,
//! `state`, `nonce`); its callback, on the gateway listener, exchanges the code through the
//! gateway's own outbound connector, verifies the ID token with the same verifier as bearer
//! tokens, and opens a server-side session: the cookie holds a random id and its MAC only.
//! Routes with `auth = ["session", …]` then accept the browser, and the upstream is told who it
//! is exactly as for a JWT. Logout is RP-initiated (to the provider's `end_session_endpoint`)
//! or back-channel (a verified `logout_token`).

mod admit;
pub mod cookie;
pub mod error;
pub mod flow;
pub mod logout;
pub mod provider;
pub mod redis_store;
mod requests;
pub mod session;
pub mod store;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use http::header::{HeaderMap, HeaderValue, CACHE_CONTROL, CONTENT_TYPE, LOCATION, SET_COOKIE};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::auth::error::AuthError;
use crate::auth::{unix_now, Authenticator, Issuer};
use crate::config::{KeySource, SessionStoreLocation, SignInSettings};
use crate::{full_body, Body};
use cookie::Cookies;
use error::{Redirect, SignInError};
use provider::{ClientCredentials, ProviderClient};
use session::CookieKey;
use store::SessionStore;

/// How often the active-sessions gauge is recounted (and the embedded store purged).
const JANITOR_EVERY: Duration = Duration::from_secs(30);
/// After a refresh that could not reach the provider, how long the session is served as it is
/// before the next try.
pub(crate) const REFRESH_RETRY: i64 = 30;

/// Where a request came in: the scheme and authority the browser used, from which the
/// redirect URI and post-logout landing are built.
#[derive(Debug, Clone)]
pub struct Origin {
    /// `https` on TLS (or behind a trusted proxy that says so), else `http`.
    pub scheme: &'static str,
    /// The host (and port) the client asked for.
    pub authority: String,
}

impl Origin {
    /// The origin of a request on a TLS connection or not, whose `X-Forwarded-Proto` counts
    /// only from a trusted proxy.
    pub fn of(tls: bool, trusted: bool, headers: &HeaderMap, authority: &HeaderValue) -> Origin {
        let forwarded_https = trusted
            && headers
                .get("x-forwarded-proto")
                .is_some_and(|proto| proto.as_bytes().eq_ignore_ascii_case(b"https"));
        Origin {
            scheme: if tls || forwarded_https {
                "https"
            } else {
                "http"
            },
            authority: authority.to_str().unwrap_or_default().to_ascii_lowercase(),
        }
    }
}

/// One of the gateway's own sign-in endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `[sign_in] callback`.
    Callback,
    /// `[sign_in] logout`.
    Logout,
    /// `[sign_in] start`.
    Start,
}

/// State that outlives reloads: the store and the refreshes in flight.
#[derive(Debug)]
pub struct SignInState {
    location: SessionStoreLocation,
    store: SessionStore,
    /// One lock per session being refreshed: concurrent requests share one refresh.
    refreshing: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl SignInState {
    fn open(location: &SessionStoreLocation) -> Result<Arc<Self>, String> {
        let state = Arc::new(SignInState {
            location: location.clone(),
            store: SessionStore::open(location)?,
            refreshing: Mutex::new(HashMap::new()),
        });
        start_janitor(Arc::downgrade(&state));
        Ok(state)
    }

    /// Recounts the active sessions for the gauge, in the background.
    fn count_sessions(self: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let state = self.clone();
        runtime.spawn(async move {
            if let Ok(count) = state.store.count(unix_now()).await {
                crate::metrics::sessions_active(count);
            }
        });
    }

    /// The store sessions are kept in.
    pub fn store(&self) -> &SessionStore {
        &self.store
    }
}

/// Recounts sessions and purges the expired ones, for as long as the state is in use.
fn start_janitor(state: Weak<SignInState>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        let mut ticks = tokio::time::interval(JANITOR_EVERY);
        loop {
            ticks.tick().await;
            let Some(state) = state.upgrade() else { return };
            let now = unix_now();
            if let Err(error) = state.store.purge(now).await {
                tracing::warn!(%error, "session store purge failed");
            }
            if let Ok(count) = state.store.count(now).await {
                crate::metrics::sessions_active(count);
            }
        }
    });
}

/// Sign-in for one snapshot.
#[derive(Debug)]
pub struct SignIn {
    /// `[sign_in]` as validated.
    pub settings: SignInSettings,
    issuer: Arc<Issuer>,
    client: ClientCredentials,
    /// The HTTP client for the provider's token endpoint.
    provider: ProviderClient,
    cookies: Cookies,
    key: CookieKey,
    state: Arc<SignInState>,
}

impl SignIn {
    /// Builds sign-in for a snapshot whose issuers are `auth`'s, taking over `previous`'s
    /// state when the store location is unchanged (a reload keeps every session).
    pub fn new(
        settings: SignInSettings,
        auth: &Authenticator,
        previous: Option<&SignIn>,
    ) -> Result<Self, String> {
        let issuer = auth
            .issuer(&settings.issuer)
            .map(|(_, issuer)| issuer.clone())
            .ok_or_else(|| format!("sign-in issuer `{}` is not configured", settings.issuer))?;
        let ca = match &issuer.settings.keys {
            KeySource::Remote(remote) => remote.ca.clone(),
            KeySource::Static(_) => Vec::new(),
        };
        let state = match previous {
            Some(previous) if previous.state.location == settings.store => previous.state.clone(),
            _ => SignInState::open(&settings.store)?,
        };
        Ok(SignIn {
            // Built with each snapshot, so a reload that changes the issuer's `ca` uses it.
            provider: ProviderClient::new(&ca),
            client: ClientCredentials {
                id: settings.client_id.clone(),
                secret: settings.client_secret.as_ref().map(|s| s.0.clone()),
            },
            cookies: Cookies::new(&settings.cookie),
            key: CookieKey::new(&settings.cookie_secret.0),
            issuer,
            state,
            settings,
        })
    }

    /// The state shared with the snapshots before and after.
    pub fn state(&self) -> &Arc<SignInState> {
        &self.state
    }

    /// The gateway's cookies (removed from every request before it is forwarded).
    pub fn cookies(&self) -> &Cookies {
        &self.cookies
    }

    fn idle_seconds(&self) -> i64 {
        i64::try_from(self.settings.session_idle.as_secs()).unwrap_or(i64::MAX / 4)
    }

    fn max_seconds(&self) -> i64 {
        i64::try_from(self.settings.session_max.as_secs()).unwrap_or(i64::MAX / 4)
    }

    /// The endpoint a (normalized) path names, if any.
    pub fn endpoint(&self, path: &str) -> Option<Endpoint> {
        if path == self.settings.callback {
            Some(Endpoint::Callback)
        } else if path == self.settings.logout {
            Some(Endpoint::Logout)
        } else if path == self.settings.start {
            Some(Endpoint::Start)
        } else {
            None
        }
    }

    /// Answers a request to one of the endpoints.
    pub async fn handle(
        &self,
        endpoint: Endpoint,
        request: Request<Incoming>,
        auth: &Authenticator,
        origin: &Origin,
    ) -> Result<Response<Body>, SignInError> {
        match (endpoint, request.method()) {
            (Endpoint::Callback, &Method::GET) => {
                let outcome = self
                    .callback(auth, request.uri(), request.headers())
                    .await
                    .inspect_err(|error| crate::metrics::sign_in_failed(error.reason()));
                Ok(redirect(outcome?))
            }
            (Endpoint::Start, &Method::GET) => {
                let return_to = match flow::query_param(request.uri(), "return_to") {
                    Some(target) => flow::safe_return_to(&target, &origin.authority)
                        .ok_or(SignInError::BadReturnTo)?,
                    None => "/".to_string(),
                };
                Ok(redirect(
                    self.begin(request.headers(), origin, return_to).await?,
                ))
            }
            (Endpoint::Logout, &Method::POST) => {
                let headers = request.headers().clone();
                let form = requests::form(request).await;
                match form.as_ref().and_then(|f| f.get("logout_token")) {
                    Some(token) => {
                        self.back_channel_logout(auth, token).await?;
                        Ok(no_store(Response::new(crate::empty_body())))
                    }
                    None => Ok(redirect(self.logout(&headers, origin).await)),
                }
            }
            (Endpoint::Logout, &Method::GET) => {
                Ok(redirect(self.logout(request.headers(), origin).await))
            }
            _ => {
                let mut response = Response::new(full_body(
                    r#"{"error":"invalid_request","error_description":"this method is not served here"}"#,
                ));
                *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
                response
                    .headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                Ok(response)
            }
        }
    }

    /// Turns a refusal of a route that accepts sessions into a redirect to the provider when
    /// the request is a browser navigating without a live session; any other refusal (and any
    /// script's request) is answered as it is.
    pub async fn redirect_instead(
        &self,
        error: crate::error::GatewayError,
        method: &Method,
        uri: &http::Uri,
        headers: &HeaderMap,
        origin: &Origin,
    ) -> crate::error::GatewayError {
        use crate::error::GatewayError;
        let signing_in = matches!(
            &error,
            GatewayError::Auth(AuthError::Missing(_) | AuthError::SessionEnded)
        );
        if !signing_in || !flow::is_navigation(method, headers) {
            return error;
        }
        let here = uri.path_and_query().map_or("/", |p| p.as_str());
        let return_to = flow::safe_return_to(here, &origin.authority).unwrap_or_else(|| "/".into());
        match self.begin(headers, origin, return_to).await {
            Ok(redirect) => GatewayError::SignIn(SignInError::Required(Box::new(redirect))),
            Err(failure) => GatewayError::SignIn(failure),
        }
    }
}

/// A 302 to `redirect`'s location with its cookies, never cached.
fn redirect(redirect: Redirect) -> Response<Body> {
    let mut response = Response::new(crate::empty_body());
    *response.status_mut() = StatusCode::FOUND;
    let headers = response.headers_mut();
    headers.insert(LOCATION, redirect.location);
    for cookie in redirect.cookies {
        headers.append(SET_COOKIE, cookie);
    }
    no_store(response)
}

/// `Cache-Control: no-store`: no answer of these endpoints may be kept by a cache.
fn no_store(mut response: Response<Body>) -> Response<Body> {
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The response for a redirect the request path produced (a navigation sent to sign in).
pub fn redirect_response(redirect_to: &Redirect) -> Response<Body> {
    redirect(redirect_to.clone())
}
