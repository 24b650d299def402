//! `authgate token`: minting a token with an issuer whose signing key is configured (a
//! `private_key` or `secret`), for development and tests. Tokens minted here pass the same
//! verification as any other.

use jsonwebtoken::Header;
use serde_json::{Map, Value};

use super::keys::algorithm_name;
use crate::config::units::parse_duration;
use crate::config::Config;

/// Mints a signed token. `claims` are `NAME=VALUE` pairs; a VALUE that parses as JSON is used
/// as such (`n=5`, `admin=true`, `roles=["a","b"]`), otherwise as a string.
pub fn mint(
    config: &Config,
    issuer_id: &str,
    subject: &str,
    scope: Option<&str>,
    audience: Option<&str>,
    ttl: &str,
    claims: &[String],
) -> Result<String, String> {
    let issuer = config
        .issuers
        .iter()
        .find(|i| i.id == issuer_id)
        .ok_or_else(|| format!("no issuer `{issuer_id}` in {}", config.file.display()))?;
    let signing = issuer.signing.as_ref().ok_or_else(|| {
        format!("issuer `{issuer_id}` has no `private_key` or `secret` to sign with")
    })?;
    let ttl = parse_duration(ttl)?;
    let now = super::unix_now();
    let audience = audience
        .map(str::to_string)
        .or_else(|| issuer.audiences.first().cloned())
        .ok_or("no audience")?;
    let mut payload = Map::new();
    for pair in claims {
        let (name, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("`{pair}` is not NAME=VALUE"))?;
        let value =
            serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_string()));
        payload.insert(name.to_string(), value);
    }
    payload.insert("iss".into(), issuer.issuer.clone().into());
    payload.insert("sub".into(), subject.into());
    payload.insert("aud".into(), audience.into());
    payload.insert("iat".into(), now.into());
    payload.insert(
        "exp".into(),
        (now + i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2)).into(),
    );
    if let Some(scope) = scope {
        payload.insert("scope".into(), scope.into());
    }
    let mut header = Header::new(signing.algorithm);
    header.kid = signing.kid.clone();
    jsonwebtoken::encode(&header, &Value::Object(payload), &signing.key).map_err(|e| {
        format!(
            "cannot sign with {}: {e}",
            algorithm_name(signing.algorithm)
        )
    })
}
