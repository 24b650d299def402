//! Logout, both kinds, at `[sign_in] logout`:
//!
//! - RP-initiated (a browser's GET or POST): the session ends here, its cookie is cleared, and
//!   the browser goes to the provider's `end_session_endpoint` with `id_token_hint` (and
//!   `post_logout_redirect_uri`), so the provider's own session ends too; without one, straight
//!   to `logout_redirect`.
//! - Back-channel (OpenID Connect Back-Channel Logout 1.0): the provider POSTs a
//!   `logout_token`, verified like an ID token (signature, `iss`, `aud` = client id, `iat`,
//!   `exp`) plus §2.6: the logout event in `events`, a `sid` or `sub`, no `nonce`, and a `jti`
//!   not seen before. Every session of that `sid` (or, without one, of that `sub`) ends, in the
//!   shared store, so every gateway refuses it on its next request.

use http::header::{HeaderMap, HeaderValue};
use serde_json::Value;

use super::error::{Redirect, SignInError};
use super::session::store_key;
use super::store::index_key;
use super::{provider, Origin, SignIn};
use crate::auth::error::AuthError;
use crate::auth::Authenticator;

/// The member of `events` that makes a JWT a logout token.
pub const LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

impl SignIn {
    /// Ends the browser's session and sends it to the provider to end that one too.
    pub async fn logout(&self, headers: &HeaderMap, origin: &Origin) -> Redirect {
        let key = self
            .cookies
            .session(headers)
            .ok()
            .flatten()
            .and_then(|value| self.key.open(value));
        let mut ended = None;
        if let Some(key) = key {
            match self.state.store.remove(&key).await {
                Ok(record) => ended = record,
                // The cookie is cleared all the same; the record expires by itself.
                Err(error) => tracing::warn!(%error, "a session could not be removed at logout"),
            }
            self.state.count_sessions();
        }
        crate::metrics::logout("rp");
        let landing = format!(
            "{}://{}{}",
            origin.scheme, origin.authority, self.settings.logout_redirect
        );
        let end_session = provider::endpoints(&self.issuer).and_then(|e| e.end_session);
        let location = match (ended, end_session) {
            (Some(record), Some(endpoint)) => {
                let mut query = form_urlencoded::Serializer::new(String::new());
                query
                    .append_pair("id_token_hint", &record.id_token)
                    .append_pair("post_logout_redirect_uri", &landing)
                    .append_pair("client_id", &self.settings.client_id);
                provider::with_query(&endpoint, &query.finish())
            }
            _ => self.settings.logout_redirect.clone(),
        };
        Redirect {
            location: HeaderValue::from_str(&location)
                .unwrap_or_else(|_| HeaderValue::from_static("/")),
            cookies: vec![self.cookies.clear_session()],
        }
    }

    /// Applies a back-channel `logout_token`: how many sessions it ended.
    pub async fn back_channel_logout(
        &self,
        auth: &Authenticator,
        token: &str,
    ) -> Result<usize, SignInError> {
        // A logout token may name a provider session (`sid`) and no subject; its `jti`, which
        // it must have, stands in as the verifier's subject, and `sub` is read below.
        let (_, verified) = auth
            .verify_issued_to(
                &self.settings.issuer,
                token,
                &self.settings.client_id,
                "jti",
            )
            .await
            .map_err(|error| match error {
                AuthError::KeysUnavailable { .. } => SignInError::ProviderNotReady,
                _ => SignInError::BadLogoutToken("it does not verify for this client"),
            })?;
        let claims = &verified.claims.all;
        let logout = logout_claims(claims).map_err(SignInError::BadLogoutToken)?;
        // Seen once, across the fleet, until it expires: a replayed token changes nothing.
        let jti = store_key(
            b"logout",
            format!("{}\0{}", self.settings.issuer, logout.jti).as_bytes(),
        );
        let first = self
            .state
            .store
            .first_use(&jti, verified.claims.expires_at)
            .await
            .map_err(|_| SignInError::StoreUnavailable)?;
        if !first {
            return Err(SignInError::BadLogoutToken("it has been used before"));
        }
        let index = match (&logout.sid, &logout.sub) {
            (Some(sid), _) => index_key("sid", &self.settings.issuer, sid),
            (None, Some(sub)) => index_key("sub", &self.settings.issuer, sub),
            (None, None) => return Err(SignInError::BadLogoutToken("it names no sid or sub")),
        };
        let ended = self
            .state
            .store
            .remove_indexed(&index)
            .await
            .map_err(|_| SignInError::StoreUnavailable)?;
        crate::metrics::logout("back_channel");
        self.state.count_sessions();
        Ok(ended)
    }
}

/// What a logout token names, once its claims pass Back-Channel Logout 1.0 §2.4 and §2.6.
#[derive(Debug, PartialEq, Eq)]
pub struct LogoutClaims {
    /// `jti`.
    pub jti: String,
    /// `sid`, if given.
    pub sid: Option<String>,
    /// `sub`, if given.
    pub sub: Option<String>,
}

/// Checks the claims that make a verified JWT a logout token (signature, `iss`, `aud`, `exp`
/// were checked by the verifier).
pub fn logout_claims(claims: &Value) -> Result<LogoutClaims, &'static str> {
    let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_string);
    if !claims.get("iat").is_some_and(Value::is_number) {
        return Err("it has no `iat`");
    }
    let event = claims
        .get("events")
        .and_then(|events| events.get(LOGOUT_EVENT));
    if !event.is_some_and(Value::is_object) {
        return Err("its `events` holds no back-channel logout event");
    }
    // A nonce marks an ID token: one must never pass as a logout token (§2.4).
    if claims.get("nonce").is_some() {
        return Err("it carries a `nonce`");
    }
    let jti = text("jti")
        .filter(|j| !j.is_empty())
        .ok_or("it has no `jti`")?;
    let sid = text("sid");
    let sub = text("sub");
    if sid.is_none() && sub.is_none() {
        return Err("it names no sid or sub");
    }
    Ok(LogoutClaims { jti, sid, sub })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn logout_tokens_need_the_event_an_id_and_no_nonce() {
        let good = json!({
            "iat": 1, "jti": "j1", "sid": "s1",
            "events": { LOGOUT_EVENT: {} }
        });
        assert_eq!(
            logout_claims(&good),
            Ok(LogoutClaims {
                jti: "j1".into(),
                sid: Some("s1".into()),
                sub: None
            })
        );
        let mut with_nonce = good.clone();
        with_nonce["nonce"] = "n".into();
        assert!(logout_claims(&with_nonce).is_err());
        let mut no_event = good.clone();
        no_event["events"] = json!({"other": {}});
        assert!(logout_claims(&no_event).is_err());
        let mut event_not_object = good.clone();
        event_not_object["events"] = json!({ LOGOUT_EVENT: "yes" });
        assert!(logout_claims(&event_not_object).is_err());
        let mut no_jti = good.clone();
        no_jti.as_object_mut().unwrap().remove("jti");
        assert!(logout_claims(&no_jti).is_err());
        let mut no_iat = good.clone();
        no_iat.as_object_mut().unwrap().remove("iat");
        assert!(logout_claims(&no_iat).is_err());
        let mut nobody = good;
        nobody.as_object_mut().unwrap().remove("sid");
        assert!(logout_claims(&nobody).is_err());
    }
}
