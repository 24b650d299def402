//! The signed identity assertion: a short-lived JWT the gateway adds to each authenticated
//! request (`X-Auth-Assertion`), so a backend can prove the request came through the gateway
//! rather than trusting plain headers that anyone on its network could set. Its public keys are
//! served at `/.well-known/jwks.json` on the admin listener.

use http::HeaderValue;
use jsonwebtoken::Header;
use serde_json::{Map, Value};

use crate::auth::{unix_now, Identity};
use crate::config::AssertionSettings;

/// Signs the assertion for `identity` on the request with id `request_id`.
pub fn sign(
    settings: &AssertionSettings,
    identity: &Identity,
    request_id: &str,
) -> Option<HeaderValue> {
    let now = unix_now();
    let mut claims = Map::new();
    claims.insert("iss".into(), settings.issuer.clone().into());
    claims.insert("aud".into(), settings.audience.clone().into());
    claims.insert("sub".into(), identity.subject().into());
    claims.insert("iat".into(), now.into());
    claims.insert(
        "exp".into(),
        (now + i64::try_from(settings.ttl.as_secs()).unwrap_or(60)).into(),
    );
    // The request id as `jti`: one assertion per request, and the link to the gateway's logs.
    claims.insert("jti".into(), request_id.into());
    claims.insert("auth_method".into(), identity.method().into());
    if !identity.scopes().is_empty() {
        claims.insert("scope".into(), identity.scopes().join(" ").into());
    }
    if let Some(issuer) = identity.issuer() {
        claims.insert("token_iss".into(), issuer.into());
    }
    if let Some(key_id) = identity.key_id() {
        claims.insert("key_id".into(), key_id.into());
    }
    let mut header = Header::new(settings.signing.algorithm);
    header.kid = settings.signing.kid.clone();
    let token =
        jsonwebtoken::encode(&header, &Value::Object(claims), &settings.signing.key).ok()?;
    HeaderValue::from_str(&token).ok()
}

/// The JWK Set a backend verifies assertions with.
pub fn jwks(settings: Option<&AssertionSettings>) -> Value {
    let keys: Vec<Value> = settings.map(|s| s.public_jwk.clone()).into_iter().collect();
    serde_json::json!({ "keys": keys })
}
