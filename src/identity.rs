//! Identity headers: the ones the gateway sets to tell the upstream who the caller is, and the
//! removal of every incoming header that could pose as one of them.
//!
//! A client must never be able to choose its own `X-Auth-Subject`. Header names are compared
//! case-insensitively with `_` read as `-`, because some servers and frameworks (CGI, PHP, many
//! WSGI stacks) fold `X_Auth_Subject` into the same variable as `X-Auth-Subject`.

use http::header::{HeaderMap, HeaderName, HeaderValue};

use crate::auth::error::AuthError;
use crate::auth::Identity;
use crate::config::{normalize_header_name, IdentitySettings};

/// Decides which incoming headers are identity headers a client may not send. Built once per
/// snapshot.
#[derive(Debug, Clone)]
pub struct IdentityStripper {
    /// Normalized prefixes.
    prefixes: Vec<String>,
    /// Normalized names of every header the gateway injects.
    exact: Vec<String>,
}

impl IdentityStripper {
    /// The stripper for `[identity]`.
    pub fn new(settings: &IdentitySettings) -> Self {
        IdentityStripper {
            prefixes: settings.strip_prefixes.clone(),
            exact: settings
                .injected_headers()
                .map(|h| normalize_header_name(h.as_str()))
                .collect(),
        }
    }

    /// Whether a client-sent header of this name must be removed.
    pub fn is_identity_header(&self, name: &HeaderName) -> bool {
        // `HeaderName` is already lowercase; only `_` needs reading as `-`.
        let name = name.as_str().as_bytes();
        let same = |wanted: &[u8], got: &[u8]| {
            wanted.len() <= got.len()
                && wanted
                    .iter()
                    .zip(got)
                    .all(|(w, g)| *w == if *g == b'_' { b'-' } else { *g })
        };
        self.prefixes.iter().any(|p| same(p.as_bytes(), name))
            || self
                .exact
                .iter()
                .any(|e| e.len() == name.len() && same(e.as_bytes(), name))
    }

    /// Removes every identity header from `headers` (all values of each).
    pub fn strip(&self, headers: &mut HeaderMap) {
        let doomed: Vec<HeaderName> = headers
            .keys()
            .filter(|name| self.is_identity_header(name))
            .cloned()
            .collect();
        for name in doomed {
            headers.remove(name);
        }
    }
}

/// Sets the identity headers for `identity`: subject, method, issuer, scopes, key id, and each
/// mapped claim (by dotted path; arrays joined with spaces). A value that is not a valid header
/// value (CR, LF, NUL, other control bytes) refuses the request rather than being altered or
/// dropped. UTF-8 text is passed on as its bytes.
pub fn inject(
    headers: &mut HeaderMap,
    settings: &IdentitySettings,
    identity: &Identity,
) -> Result<(), AuthError> {
    let value = |text: &str| {
        HeaderValue::from_bytes(text.as_bytes()).map_err(|_| AuthError::UnsafeIdentity)
    };
    headers.insert(settings.subject.clone(), value(identity.subject())?);
    headers.insert(
        settings.method.clone(),
        HeaderValue::from_static(identity.method()),
    );
    if let Some(issuer) = identity.issuer() {
        headers.insert(settings.issuer.clone(), value(issuer)?);
    }
    let scopes = identity.scopes();
    if !scopes.is_empty() {
        headers.insert(settings.scopes.clone(), value(&scopes.join(" "))?);
    }
    if let Some(key_id) = identity.key_id() {
        headers.insert(settings.key_id.clone(), value(key_id)?);
    }
    if let Some(assertion) = &settings.assertion {
        let request_id = headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let signed = crate::assertion::sign(assertion, identity, &request_id)
            .ok_or(AuthError::UnsafeIdentity)?;
        headers.insert(assertion.header.clone(), signed);
    }
    if let Some(claims) = identity.claims() {
        for (path, header) in &settings.claims {
            let Some(text) = crate::auth::claim_at(claims, path).and_then(claim_text) else {
                continue;
            };
            headers.insert(header.clone(), value(&text)?);
        }
    }
    Ok(())
}

/// A claim as header text: strings as they are, numbers and booleans written out, arrays of
/// those joined with spaces. Objects and nulls have no header form.
fn claim_text(claim: &serde_json::Value) -> Option<String> {
    use serde_json::Value;
    match claim {
        Value::String(s) => Some(s.clone()),
        Value::Number(_) | Value::Bool(_) => Some(claim.to_string()),
        Value::Array(items) => {
            let parts: Option<Vec<String>> = items
                .iter()
                .map(|item| match item {
                    Value::Array(_) | Value::Object(_) | Value::Null => None,
                    scalar => claim_text(scalar),
                })
                .collect();
            parts.map(|p| p.join(" "))
        }
        Value::Object(_) | Value::Null => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn settings() -> IdentitySettings {
        IdentitySettings {
            subject: HeaderName::from_static("x-auth-subject"),
            method: HeaderName::from_static("x-auth-method"),
            issuer: HeaderName::from_static("x-auth-issuer"),
            scopes: HeaderName::from_static("x-auth-scopes"),
            key_id: HeaderName::from_static("x-auth-key-id"),
            claims: vec![("email".into(), HeaderName::from_static("x-user-email"))],
            strip_prefixes: vec!["x-auth-".into()],
            forward_credentials: false,
            token_cookies: Vec::new(),
            assertion: None,
        }
    }

    #[test]
    fn strips_prefixes_in_any_case_and_with_underscores() {
        let stripper = IdentityStripper::new(&settings());
        let mut headers = HeaderMap::new();
        for name in [
            "X-Auth-Subject",
            "x_auth_subject",
            "X_AUTH_anything",
            "x-user-email",
            "x_user_email",
        ] {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_static("mallory"),
            );
        }
        headers.append("x-auth-subject", HeaderValue::from_static("second"));
        headers.insert("x-authority", HeaderValue::from_static("kept"));
        headers.insert("x-user-emails", HeaderValue::from_static("kept"));
        stripper.strip(&mut headers);
        let mut left: Vec<_> = headers.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["x-authority", "x-user-emails"]);
    }
}
