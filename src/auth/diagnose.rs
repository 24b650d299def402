//! Why a credential was refused, in the detail an operator needs and a caller must not get:
//! what the token says (`alg`, `kid`, `iss`, `aud`, `exp`) beside what the route expects
//! (issuers, their `iss`, audiences and algorithms). Built only when debug logging is on, from
//! the token's own claims decoded without trusting them; it never holds the token, a signature,
//! a key or a secret, and every value taken from the token is shortened.

use base64::Engine;
use http::HeaderMap;
use serde_json::Value;

use super::{credentials, Authenticator};
use crate::config::AuthRequirement;

/// The longest value copied from a token into a diagnosis.
const MAX_VALUE_CHARS: usize = 80;

/// A one-line description of the credential in `headers` and of what `requirement` accepts.
pub fn describe(
    auth: &Authenticator,
    requirement: &AuthRequirement,
    headers: &HeaderMap,
) -> String {
    let expected = expected(auth, requirement);
    match credentials::bearer(headers, requirement.cookie.as_deref()) {
        Ok(Some(token)) => format!("presented: {}; expected: {expected}", token_summary(token)),
        Ok(None) => match auth.api_key_header().filter(|h| headers.contains_key(*h)) {
            Some(header) => format!("presented: an API key in {header}; expected: {expected}"),
            None => format!("presented: no credential; expected: {expected}"),
        },
        Err(_) => format!(
            "presented: an Authorization header that is not one bearer token; expected: {expected}"
        ),
    }
}

/// `alg`, `kid`, `typ`, `iss`, `aud` and `exp` of a token, as it states them.
fn token_summary(token: &str) -> String {
    let mut parts = token.split('.');
    let decode = |segment: Option<&str>| -> Option<Value> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(segment?)
            .ok()?;
        serde_json::from_slice(&bytes).ok()
    };
    let (Some(header), Some(claims)) = (decode(parts.next()), decode(parts.next())) else {
        return "a bearer value that is not a JWT (its header or claims do not decode)".into();
    };
    let field = |object: &Value, name: &str| match object.get(name) {
        None => "-".to_string(),
        Some(value) => shorten(&value.to_string()),
    };
    format!(
        "alg={} kid={} typ={} iss={} aud={} exp={}",
        field(&header, "alg"),
        field(&header, "kid"),
        field(&header, "typ"),
        field(&claims, "iss"),
        field(&claims, "aud"),
        field(&claims, "exp"),
    )
}

/// The issuers (with `iss`, audiences, algorithms) and credential kinds the route accepts.
fn expected(auth: &Authenticator, requirement: &AuthRequirement) -> String {
    let mut accepted = Vec::new();
    if requirement.jwt {
        for issuer in auth.issuers() {
            let settings = &issuer.settings;
            let allowed = requirement
                .issuers
                .as_ref()
                .is_none_or(|ids| ids.contains(&settings.id));
            if allowed {
                let algorithms: Vec<&str> = settings
                    .algorithms
                    .iter()
                    .map(|a| super::keys::algorithm_name(*a))
                    .collect();
                accepted.push(format!(
                    "issuer {} (iss={:?} aud={:?} alg={:?})",
                    settings.id, settings.issuer, settings.audiences, algorithms
                ));
            }
        }
    }
    if requirement.api_key {
        if let Some(header) = auth.api_key_header() {
            accepted.push(format!("an API key in {header}"));
        }
    }
    if !requirement.scopes.is_empty() {
        accepted.push(format!("scopes {:?}", requirement.scopes));
    }
    if accepted.is_empty() {
        "nothing".into()
    } else {
        accepted.join(", ")
    }
}

fn shorten(value: &str) -> String {
    if value.chars().count() <= MAX_VALUE_CHARS {
        return value.to_string();
    }
    let mut short: String = value.chars().take(MAX_VALUE_CHARS).collect();
    short.push('…');
    short
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_summarized_by_its_claims_and_never_copied() {
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &serde_json::json!({"iss": "https://idp/", "aud": ["a"], "exp": 5, "sub": "alice"}),
            &jsonwebtoken::EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef"),
        )
        .unwrap();
        let summary = token_summary(&token);
        assert_eq!(
            summary,
            r#"alg="HS256" kid=- typ="JWT" iss="https://idp/" aud=["a"] exp=5"#
        );
        assert!(!summary.contains(token.rsplit('.').next().unwrap()));
        assert!(token_summary("garbage").contains("not a JWT"));
        let long = format!("{}…", "x".repeat(80));
        assert_eq!(shorten(&"x".repeat(200)), long);
    }
}
