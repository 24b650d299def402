//! `[sign_in]`: browser sign-in through an OpenID Connect provider (authorization code with
//! PKCE, sessions kept server-side). Only data lives here: which issuer, the client's
//! credentials, the gateway's own paths, the cookie and the session lifetimes. The flow itself
//! is `crate::sign_in`.

use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use super::raw::{RawSignIn, Text};
use super::{IssuerSettings, KeySource, RemoteLocation, StateBackend, Validator};

/// The shortest cookie secret accepted: 256 bits, the size of the MAC key it becomes.
pub const MIN_COOKIE_SECRET: usize = 32;
/// The file sessions are kept in, in `[state] data_dir`, when the state is embedded.
pub const SESSIONS_FILE: &str = "sessions.redb";

/// `[sign_in]`, validated.
#[derive(Debug, Clone)]
pub struct SignInSettings {
    /// The `[[issuers]]` id of the provider (its keys come from discovery).
    pub issuer: String,
    /// The client id registered at the provider; the ID token's audience.
    pub client_id: String,
    /// The client secret (`client_secret_basic`); `None` for a public client (PKCE alone).
    pub client_secret: Option<Secret>,
    /// Scopes asked for; always holds `openid`.
    pub scopes: Vec<String>,
    /// The redirect URI's path, on the gateway listener.
    pub callback: String,
    /// RP-initiated logout (GET) and back-channel logout (POST with a `logout_token`).
    pub logout: String,
    /// Starts a sign-in explicitly (`?return_to=/path`), for pages that got a 401.
    pub start: String,
    /// Where the browser lands after logout (a path on the same host).
    pub logout_redirect: String,
    /// The session cookie.
    pub cookie: CookieSettings,
    /// The key cookie MACs are made with; every gateway of a fleet shares it.
    pub cookie_secret: Secret,
    /// A session unused this long ends.
    pub session_idle: Duration,
    /// A session ends this long after sign-in, used or not.
    pub session_max: Duration,
    /// Where sessions are kept.
    pub store: SessionStoreLocation,
}

/// Where sessions live: the state store of `[state]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionStoreLocation {
    /// A redb file in `[state] data_dir` (one gateway).
    Embedded(PathBuf),
    /// The fleet's Redis.
    Redis(super::RedisSettings),
}

/// The session cookie's name and attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieSettings {
    /// Its name (`__Host-authgate` by default).
    pub name: String,
    /// `Domain=`, for a `__Secure-` (or unprefixed) cookie shared by sub-domains.
    pub domain: Option<String>,
    /// Whether `Secure` is set (always, unless an unprefixed name turns it off for plain-http
    /// development).
    pub secure: bool,
}

/// A secret from the configuration: never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl SignInSettings {
    /// Whether `path` (normalized) is one of the gateway's own sign-in paths.
    pub fn serves(&self, path: &str) -> bool {
        path == self.callback || path == self.logout || path == self.start
    }
}

impl Validator<'_> {
    pub(super) fn sign_in(
        &mut self,
        spanned: &Spanned<RawSignIn>,
        issuers: &[IssuerSettings],
        state: &StateBackend,
        data_dir: &std::path::Path,
    ) -> Option<SignInSettings> {
        let raw = spanned.get_ref();
        let errors_before = self.errors.len();
        let issuer = self.text(&raw.issuer)?;
        match issuers.iter().find(|i| i.id == issuer) {
            None => self.error(
                raw.issuer.span(),
                format!("issuer `{issuer}` is not defined in [[issuers]]"),
            ),
            Some(settings) => {
                let discovered = matches!(&settings.keys, KeySource::Remote(remote)
                    if matches!(remote.location, RemoteLocation::Discovery(_)));
                if !discovered {
                    self.error(
                        raw.issuer.span(),
                        format!("issuer `{issuer}` needs `discovery = true`: sign-in finds the provider's endpoints in its discovery document"),
                    );
                }
            }
        }
        let client_id = self.text(&raw.client_id).unwrap_or_default();
        if client_id.is_empty() {
            self.error(raw.client_id.span(), "`client_id` cannot be empty");
        }
        let client_secret = self
            .secret(
                raw.client_secret.as_ref(),
                raw.client_secret_file.as_ref(),
                "client_secret",
                spanned.span(),
            )
            .map(Secret);
        if client_secret.as_ref().is_some_and(|s| s.0.is_empty()) {
            self.error(spanned.span(), "the client secret is empty");
        }
        let cookie_secret = match self.secret(
            raw.cookie_secret.as_ref(),
            raw.cookie_secret_file.as_ref(),
            "cookie_secret",
            spanned.span(),
        ) {
            Some(bytes) if bytes.len() >= MIN_COOKIE_SECRET => Secret(bytes),
            Some(bytes) => {
                let span = raw
                    .cookie_secret
                    .as_ref()
                    .or(raw.cookie_secret_file.as_ref())
                    .map_or(spanned.span(), Spanned::span);
                // The length is safe to say; the secret is not.
                self.error(
                    span,
                    format!(
                        "the cookie secret has {} bytes; it needs at least {MIN_COOKIE_SECRET} (e.g. `openssl rand -base64 48`)",
                        bytes.len()
                    ),
                );
                Secret(Vec::new())
            }
            None => {
                if raw.cookie_secret.is_none() && raw.cookie_secret_file.is_none() {
                    self.error(
                        spanned.span(),
                        "[sign_in] needs `cookie_secret` or `cookie_secret_file` (at least 32 bytes, the same on every gateway of a fleet)",
                    );
                }
                Secret(Vec::new())
            }
        };
        let scopes = match &raw.scopes {
            None => ["openid", "email", "profile"].map(String::from).to_vec(),
            Some(list) => {
                let scopes: Vec<String> = list.iter().filter_map(|s| self.text(s)).collect();
                if !scopes.iter().any(|s| s == "openid") {
                    let span = list.first().map_or(spanned.span(), Spanned::span);
                    self.error(span, "`scopes` must include \"openid\"");
                }
                if let Some(bad) = list
                    .iter()
                    .find(|s| s.get_ref().is_empty() || s.get_ref().contains([' ', '"', '\\']))
                {
                    self.error(bad.span(), "a scope is one word without quotes");
                }
                scopes
            }
        };
        let path = |validator: &mut Self, text: Option<&Text>, default: &str| match text {
            None => default.to_string(),
            Some(text) => validator
                .endpoint_path(text)
                .unwrap_or_else(|| default.to_string()),
        };
        let callback = path(self, raw.callback.as_ref(), "/_authgate/callback");
        let logout = path(self, raw.logout.as_ref(), "/_authgate/logout");
        let start = path(self, raw.start.as_ref(), "/_authgate/sign_in");
        if callback == logout || callback == start || logout == start {
            self.error(
                spanned.span(),
                "`callback`, `logout` and `start` must be three different paths",
            );
        }
        let logout_redirect = match &raw.logout_redirect {
            None => "/".to_string(),
            Some(text) => {
                let value = self.text(text).unwrap_or_default();
                if !value.starts_with('/') || value.starts_with("//") || value.contains('\\') {
                    self.error(
                        text.span(),
                        format!("`logout_redirect` `{value}` must be a path on the gateway's host, like \"/\""),
                    );
                }
                value
            }
        };
        let cookie = self.cookie(raw, spanned.span());
        let session_idle = self.duration(raw.session_idle.as_ref(), Duration::from_secs(8 * 3600));
        let session_max = self.duration(raw.session_max.as_ref(), Duration::from_secs(24 * 3600));
        if session_idle.is_zero() || session_max.is_zero() {
            self.error(spanned.span(), "session lifetimes must be longer than zero");
        } else if session_idle > session_max {
            let span = raw
                .session_idle
                .as_ref()
                .map_or(spanned.span(), Spanned::span);
            self.error(span, "`session_idle` is longer than `session_max`");
        }
        let store = match state {
            StateBackend::Embedded => SessionStoreLocation::Embedded(data_dir.join(SESSIONS_FILE)),
            StateBackend::Redis(settings) => SessionStoreLocation::Redis(settings.clone()),
        };
        (self.errors.len() == errors_before).then_some(SignInSettings {
            issuer,
            client_id,
            client_secret,
            scopes,
            callback,
            logout,
            start,
            logout_redirect,
            cookie,
            cookie_secret,
            session_idle,
            session_max,
            store,
        })
    }

    /// A secret given inline (`${ENV}` allowed) or in a file, one of them.
    fn secret(
        &mut self,
        inline: Option<&Text>,
        file: Option<&Text>,
        key: &str,
        span: std::ops::Range<usize>,
    ) -> Option<Vec<u8>> {
        match (inline, file) {
            (Some(_), Some(_)) => {
                self.error(span, format!("set `{key}` or `{key}_file`, not both"));
                None
            }
            (Some(text), None) => self.text(text).map(String::into_bytes),
            (None, Some(text)) => {
                let path = self.path(text)?;
                match std::fs::read(&path) {
                    // A trailing newline from `echo … > file` is not part of the secret.
                    Ok(bytes) => Some(super::issuers::trim_newline(bytes)),
                    Err(e) => {
                        self.error(text.span(), format!("cannot read {}: {e}", path.display()));
                        None
                    }
                }
            }
            (None, None) => None,
        }
    }

    /// The cookie's name and attributes, with the rules of its prefix (RFC 6265bis §4.1.3):
    /// `__Host-` is Secure, `Path=/` and has no Domain; `__Secure-` is Secure.
    fn cookie(&mut self, raw: &RawSignIn, span: std::ops::Range<usize>) -> CookieSettings {
        let name = match &raw.cookie {
            None => "__Host-authgate".to_string(),
            Some(text) => {
                let value = self.text(text).unwrap_or_default();
                let token = !value.is_empty()
                    && value
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
                if !token {
                    self.error(text.span(), format!("`{value}` is not a cookie name"));
                }
                value
            }
        };
        let host_prefix = name.starts_with("__Host-");
        let prefixed = host_prefix || name.starts_with("__Secure-");
        let domain = raw.domain.as_ref().and_then(|text| {
            let value = self.text(text)?.trim_start_matches('.').to_ascii_lowercase();
            if host_prefix {
                self.error(
                    text.span(),
                    "a `__Host-` cookie cannot have a `domain`: name it `__Secure-…` to share it with sub-domains",
                );
                return None;
            }
            let valid = !value.is_empty()
                && value.split('.').all(|label| {
                    !label.is_empty() && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                });
            if !valid {
                self.error(text.span(), format!("`{value}` is not a domain name"));
                return None;
            }
            Some(value)
        });
        let secure = raw.cookie_secure.unwrap_or(true);
        if !secure && prefixed {
            self.error(
                span,
                format!("cookie `{name}` must be Secure (its prefix says so): drop `cookie_secure = false`, or use a name without `__Host-`/`__Secure-` for plain-http development"),
            );
        }
        CookieSettings {
            name,
            domain,
            secure,
        }
    }
}
