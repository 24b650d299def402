//! The gateway's own cookies: the session cookie and the short-lived binding cookie of a
//! sign-in under way (`{name}-flow`). Both are `HttpOnly; SameSite=Lax; Path=/`, `Secure`
//! unless an unprefixed name turned it off for plain-http development, and `Domain=` only when
//! configured (never for `__Host-`). Neither ever reaches an upstream.

use http::header::{HeaderMap, HeaderValue};

use crate::auth::error::AuthError;
use crate::config::CookieSettings;

/// How long a sign-in may take, from the redirect to the provider to its callback.
pub const FLOW_SECONDS: i64 = 600;

/// The names of the gateway's cookies, for reading and for removing before forwarding.
#[derive(Debug, Clone)]
pub struct Cookies {
    settings: CookieSettings,
    flow: String,
    /// Both names, as the removal takes them.
    names: Vec<String>,
}

impl Cookies {
    /// The cookies of `settings`.
    pub fn new(settings: &CookieSettings) -> Self {
        let flow = format!("{}-flow", settings.name);
        Cookies {
            names: vec![settings.name.clone(), flow.clone()],
            settings: settings.clone(),
            flow,
        }
    }

    /// The session cookie's value; ambiguous when the request carries two (never guessed
    /// between).
    pub fn session<'h>(&self, headers: &'h HeaderMap) -> Result<Option<&'h str>, AuthError> {
        crate::auth::credentials::cookie_value(headers, &self.settings.name)
    }

    /// The binding cookie's value.
    pub fn flow<'h>(&self, headers: &'h HeaderMap) -> Option<&'h str> {
        crate::auth::credentials::cookie_value(headers, &self.flow)
            .ok()
            .flatten()
    }

    /// Takes the gateway's cookies out of a request about to be forwarded.
    pub fn remove(&self, headers: &mut HeaderMap) {
        crate::auth::credentials::remove_cookies(headers, &self.names);
    }

    /// `Set-Cookie` for a new session, kept by the browser for `max_age` seconds.
    pub fn set_session(&self, value: &str, max_age: i64) -> HeaderValue {
        self.header(&self.settings.name, value, max_age)
    }

    /// `Set-Cookie` ending the session cookie.
    pub fn clear_session(&self) -> HeaderValue {
        self.header(&self.settings.name, "", 0)
    }

    /// `Set-Cookie` binding a sign-in to this browser.
    pub fn set_flow(&self, value: &str) -> HeaderValue {
        self.header(&self.flow, value, FLOW_SECONDS)
    }

    fn header(&self, name: &str, value: &str, max_age: i64) -> HeaderValue {
        let mut text = format!("{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax");
        if self.settings.secure {
            text.push_str("; Secure");
        }
        if let Some(domain) = &self.settings.domain {
            text.push_str("; Domain=");
            text.push_str(domain);
        }
        // Names, domains and values are validated tokens and base64url: always a valid value.
        let mut header =
            HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""));
        header.set_sensitive(true);
        header
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cookies(name: &str, domain: Option<&str>, secure: bool) -> Cookies {
        Cookies::new(&CookieSettings {
            name: name.into(),
            domain: domain.map(str::to_string),
            secure,
        })
    }

    #[test]
    fn host_prefixed_cookies_are_secure_with_root_path_and_no_domain() {
        let host = cookies("__Host-authgate", None, true);
        assert_eq!(
            host.set_session("abc", 3600),
            "__Host-authgate=abc; Path=/; Max-Age=3600; HttpOnly; SameSite=Lax; Secure"
        );
        assert_eq!(
            host.clear_session(),
            "__Host-authgate=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax; Secure"
        );
        assert!(host
            .set_flow("xyz")
            .to_str()
            .unwrap()
            .starts_with("__Host-authgate-flow=xyz; Path=/; Max-Age=600;"));
        let shared = cookies("__Secure-authgate", Some("example.com"), true);
        assert_eq!(
            shared.set_session("abc", 60),
            "__Secure-authgate=abc; Path=/; Max-Age=60; HttpOnly; SameSite=Lax; Secure; Domain=example.com"
        );
        let dev = cookies("authgate", None, false);
        assert!(!dev
            .set_session("abc", 60)
            .to_str()
            .unwrap()
            .contains("Secure"));
    }

    #[test]
    fn only_the_gateways_cookies_are_removed() {
        let jar = cookies("__Host-authgate", None, true);
        let mut headers = HeaderMap::new();
        headers.append(
            "cookie",
            HeaderValue::from_static("theme=dark; __Host-authgate=abc.def"),
        );
        headers.append(
            "cookie",
            HeaderValue::from_static("__Host-authgate-flow=x; lang=en"),
        );
        assert_eq!(jar.session(&headers).unwrap(), Some("abc.def"));
        assert_eq!(jar.flow(&headers), Some("x"));
        jar.remove(&mut headers);
        assert_eq!(headers["cookie"], "theme=dark; lang=en");
        let mut twice = HeaderMap::new();
        twice.insert(
            "cookie",
            HeaderValue::from_static("__Host-authgate=a; __Host-authgate=b"),
        );
        assert!(matches!(jar.session(&twice), Err(AuthError::Ambiguous)));
    }
}
