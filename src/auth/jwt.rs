//! JWS/JWT checking in three layers, each usable alone:
//!
//! 1. [`parse`]: the compact form, strictly: exactly three segments, unpadded base64url, a JSON
//!    header without duplicate keys, an `alg` authgate verifies, no `crit` extension (none is
//!    understood, so any is fatal, RFC 7515 §4.1.11). `jku`, `x5u`, `jwk` and `x5c` are never
//!    read: keys come only from configuration.
//! 2. [`verify_signature`]: the signature, with keys from the issuer's set whose algorithms
//!    include the header's `alg` (and whose `kid` matches, when the token names one).
//! 3. [`validate_claims`]: the claims set: `exp` required, `nbf`/`iat` checked with leeway,
//!    `iss` byte for byte, `aud` holding a configured audience, well-typed `sub`/`scope`/`scp`.

use jsonwebtoken::Algorithm;
use serde_json::Value;

use super::keys::{self, KeySet};
use super::strict_json;

/// Why a token was refused. Each maps to one `reason` label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// Not a well-formed compact JWS/JWT.
    #[error("the token is malformed: {0}")]
    Malformed(&'static str),
    /// The header names an algorithm authgate does not verify, or one the issuer's
    /// `algorithms` leave out.
    #[error("the token's algorithm is not accepted")]
    UnsupportedAlgorithm,
    /// No key of the issuer has the token's `kid` (or fits its `alg`).
    #[error("the token was signed with a key this gateway does not know")]
    UnknownKey,
    /// The signature does not verify.
    #[error("the token's signature is invalid")]
    BadSignature,
    /// `exp` is past.
    #[error("the token has expired")]
    Expired,
    /// `nbf` or `iat` is in the future.
    #[error("the token is not valid yet")]
    NotYetValid,
    /// `iss` is not the issuer's.
    #[error("the token's issuer is not accepted")]
    WrongIssuer,
    /// `aud` holds none of the configured audiences.
    #[error("the token is not meant for this audience")]
    WrongAudience,
    /// A claim is missing or of the wrong type.
    #[error("the token's claims are invalid: {0}")]
    InvalidClaims(&'static str),
    /// The header's `typ` is not the one the issuer's tokens carry (an ID token presented as
    /// an access token, say).
    #[error("the token is not of the type this issuer's tokens have")]
    WrongType,
}

impl JwtError {
    /// The `reason` label for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            JwtError::Malformed(_) => "malformed",
            JwtError::UnsupportedAlgorithm => "algorithm_not_accepted",
            JwtError::UnknownKey => "unknown_key",
            JwtError::BadSignature => "bad_signature",
            JwtError::Expired => "expired",
            JwtError::NotYetValid => "not_yet_valid",
            JwtError::WrongIssuer => "wrong_issuer",
            JwtError::WrongAudience => "wrong_audience",
            JwtError::InvalidClaims(_) => "invalid_claims",
            JwtError::WrongType => "wrong_type",
        }
    }
}

/// A token whose structure is sound but whose signature is not yet checked. Nothing in it may
/// be trusted except to choose the issuer and key to check it with.
#[derive(Debug)]
pub struct Unverified<'t> {
    /// The header's `alg`.
    pub alg: Algorithm,
    /// The header's `kid`.
    pub kid: Option<String>,
    /// The header's `typ`.
    pub typ: Option<String>,
    /// `header.payload`, the signed bytes.
    pub signing_input: &'t str,
    /// The base64url signature segment.
    pub signature: &'t str,
    /// The decoded payload.
    pub payload: Vec<u8>,
}

/// Splits and decodes a compact JWS, checking its header (layer 1).
pub fn parse(token: &str) -> Result<Unverified<'_>, JwtError> {
    let mut segments = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) = (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) else {
        return Err(JwtError::Malformed(
            "a token has exactly three dot-separated parts",
        ));
    };
    if header.is_empty() || signature.is_empty() {
        return Err(JwtError::Malformed("the header or signature is empty"));
    }
    let header_bytes =
        keys::b64url(header).map_err(|_| JwtError::Malformed("the header is not base64url"))?;
    let header_json = strict_json::parse(&header_bytes)
        .map_err(|_| JwtError::Malformed("the header is not valid JSON"))?;
    let header_object = header_json
        .as_object()
        .ok_or(JwtError::Malformed("the header is not a JSON object"))?;
    let alg = match header_object.get("alg") {
        Some(Value::String(name)) => {
            keys::parse_algorithm(name).ok_or(JwtError::UnsupportedAlgorithm)?
        }
        _ => return Err(JwtError::Malformed("the header has no `alg`")),
    };
    if header_object.contains_key("crit") {
        return Err(JwtError::Malformed(
            "the header lists critical extensions this gateway does not implement",
        ));
    }
    if header_object
        .get("b64")
        .is_some_and(|b64| b64 != &Value::Bool(true))
    {
        return Err(JwtError::Malformed("unencoded payloads are not accepted"));
    }
    let kid = match header_object.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err(JwtError::Malformed("the header's `kid` is not a string")),
    };
    let typ = match header_object.get("typ") {
        None => None,
        Some(Value::String(typ)) => Some(typ.clone()),
        Some(_) => return Err(JwtError::Malformed("the header's `typ` is not a string")),
    };
    keys::b64url(signature).map_err(|_| JwtError::Malformed("the signature is not base64url"))?;
    let signing_input = &token[..header.len() + 1 + payload.len()];
    let payload =
        keys::b64url(payload).map_err(|_| JwtError::Malformed("the payload is not base64url"))?;
    Ok(Unverified {
        alg,
        kid,
        typ,
        signing_input,
        signature,
        payload,
    })
}

/// Checks the signature with the set's keys (layer 2). A token naming a `kid` is checked only
/// with keys of that kid; either way only with keys whose algorithms include the token's.
pub fn verify_signature(token: &Unverified<'_>, keys: &KeySet) -> Result<(), JwtError> {
    let mut tried = false;
    let mut kid_matched = false;
    for key in keys.candidates(token.kid.as_deref(), token.alg) {
        tried = true;
        kid_matched |= token.kid.is_some() && key.kid == token.kid;
        let verified = jsonwebtoken::crypto::verify(
            token.signature,
            token.signing_input.as_bytes(),
            &key.key,
            token.alg,
        );
        if verified.unwrap_or(false) {
            return Ok(());
        }
    }
    // A kid that no key carries, in a set whose keys do carry kids, is a key this gateway does
    // not know yet (worth a refetch), even when keys without a kid were tried and failed.
    let unknown_kid = token
        .kid
        .as_deref()
        .is_some_and(|kid| !kid_matched && !keys.has_kid(kid) && keys.any_kid());
    if tried && !unknown_kid {
        Err(JwtError::BadSignature)
    } else {
        Err(JwtError::UnknownKey)
    }
}

/// Whether a header's `typ` is `expected`: media types compare without case, and the
/// `application/` prefix may be left out (RFC 7515 §4.1.9).
pub fn typ_matches(typ: Option<&str>, expected: &str) -> bool {
    let bare = |t: &str| {
        let lower = t.to_ascii_lowercase();
        lower
            .strip_prefix("application/")
            .map_or(lower.clone(), str::to_string)
    };
    typ.is_some_and(|typ| bare(typ) == bare(expected))
}

/// What claims validation checks against: one issuer's rules.
#[derive(Debug, Clone)]
pub struct ClaimRules<'a> {
    /// Expected `iss`, byte for byte.
    pub issuer: &'a str,
    /// `aud` must contain one of these.
    pub audiences: &'a [String],
    /// The claim naming the caller (`sub` unless the issuer says otherwise).
    pub subject_claim: &'a str,
    /// Allowed clock skew, in seconds.
    pub leeway: i64,
    /// The current time, in seconds since the epoch.
    pub now: i64,
}

/// The claims a verified token vouches for.
#[derive(Debug, Clone, PartialEq)]
pub struct Claims {
    /// `sub`.
    pub subject: String,
    /// Scopes from `scope` (space-delimited) or `scp` (array or string).
    pub scopes: Vec<String>,
    /// `exp`, in seconds since the epoch.
    pub expires_at: i64,
    /// The whole claims set, for mapping claims to headers.
    pub all: Value,
}

/// Parses a payload as a claims set: strict JSON (no duplicate keys).
pub fn parse_claims(payload: &[u8]) -> Result<Value, JwtError> {
    strict_json::parse(payload).map_err(|_| JwtError::Malformed("the claims are not valid JSON"))
}

/// Checks a parsed claims set (layer 3).
pub fn validate_claims(all: Value, rules: &ClaimRules<'_>) -> Result<Claims, JwtError> {
    let claims = all
        .as_object()
        .ok_or(JwtError::Malformed("the claims are not a JSON object"))?;
    let expires_at =
        numeric_date(claims.get("exp"))?.ok_or(JwtError::InvalidClaims("`exp` is required"))?;
    if rules.now > expires_at.saturating_add(rules.leeway) {
        return Err(JwtError::Expired);
    }
    if let Some(not_before) = numeric_date(claims.get("nbf"))? {
        if not_before > rules.now.saturating_add(rules.leeway) {
            return Err(JwtError::NotYetValid);
        }
    }
    if let Some(issued_at) = numeric_date(claims.get("iat"))? {
        if issued_at > rules.now.saturating_add(rules.leeway) {
            return Err(JwtError::NotYetValid);
        }
    }
    match claims.get("iss") {
        Some(Value::String(iss)) if iss == rules.issuer => {}
        Some(Value::String(_)) | None => return Err(JwtError::WrongIssuer),
        Some(_) => return Err(JwtError::InvalidClaims("`iss` is not a string")),
    }
    let audience_ok = match claims.get("aud") {
        Some(Value::String(aud)) => rules.audiences.iter().any(|a| a == aud),
        Some(Value::Array(auds)) => {
            let mut found = false;
            for aud in auds {
                let aud = aud
                    .as_str()
                    .ok_or(JwtError::InvalidClaims("`aud` holds a non-string"))?;
                found |= rules.audiences.iter().any(|a| a == aud);
            }
            found
        }
        None => false,
        Some(_) => return Err(JwtError::InvalidClaims("`aud` is not a string or an array")),
    };
    if !audience_ok {
        return Err(JwtError::WrongAudience);
    }
    let own = rules.subject_claim == "sub";
    let subject = match claims.get(rules.subject_claim) {
        Some(Value::String(sub)) if !sub.is_empty() => sub.clone(),
        Some(Value::String(_)) | None if own => {
            return Err(JwtError::InvalidClaims("`sub` is required"))
        }
        Some(Value::String(_)) | None => {
            return Err(JwtError::InvalidClaims(
                "the issuer's `subject_claim` is missing",
            ))
        }
        Some(_) if own => return Err(JwtError::InvalidClaims("`sub` is not a string")),
        Some(_) => {
            return Err(JwtError::InvalidClaims(
                "the issuer's `subject_claim` is not a string",
            ))
        }
    };
    let mut scopes: Vec<String> = match claims.get("scope") {
        None => Vec::new(),
        Some(Value::String(scope)) => scope
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        Some(_) => {
            return Err(JwtError::InvalidClaims(
                "`scope` is not a space-delimited string",
            ))
        }
    };
    match claims.get("scp") {
        None => {}
        Some(Value::String(scp)) => {
            scopes.extend(scp.split(' ').filter(|s| !s.is_empty()).map(str::to_string))
        }
        Some(Value::Array(items)) => {
            for item in items {
                let scope = item
                    .as_str()
                    .ok_or(JwtError::InvalidClaims("`scp` holds a non-string"))?;
                scopes.push(scope.to_string());
            }
        }
        Some(_) => return Err(JwtError::InvalidClaims("`scp` is not an array of strings")),
    }
    scopes.sort_unstable();
    scopes.dedup();
    Ok(Claims {
        subject,
        scopes,
        expires_at,
        all,
    })
}

/// A NumericDate (RFC 7519 §2): a JSON number of seconds, possibly fractional. A string, or a
/// number beyond any sane date, is a wrongly typed claim.
fn numeric_date(value: Option<&Value>) -> Result<Option<i64>, JwtError> {
    match value {
        None => Ok(None),
        Some(Value::Number(n)) => {
            let seconds = n.as_i64().or_else(|| {
                n.as_f64()
                    .filter(|f| f.is_finite() && f.abs() < 1e15)
                    .map(|f| f.floor() as i64)
            });
            seconds
                .map(Some)
                .ok_or(JwtError::InvalidClaims("a date claim is out of range"))
        }
        Some(_) => Err(JwtError::InvalidClaims("a date claim is not a number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use serde_json::json;

    fn b64(value: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(value)
    }

    fn token(header: &str, payload: &str) -> String {
        format!(
            "{}.{}.c2ln",
            b64(header.as_bytes()),
            b64(payload.as_bytes())
        )
    }

    #[test]
    fn structure_is_checked_strictly() {
        assert!(parse(&token(r#"{"alg":"RS256"}"#, "{}")).is_ok());
        assert_eq!(
            parse("a.b").unwrap_err(),
            JwtError::Malformed("a token has exactly three dot-separated parts")
        );
        assert!(parse("a.b.c.d").is_err());
        assert!(matches!(
            parse(&token(r#"{"alg":"none"}"#, "{}")),
            Err(JwtError::UnsupportedAlgorithm)
        ));
        assert!(matches!(
            parse(&token(r#"{"alg":"nOnE"}"#, "{}")),
            Err(JwtError::UnsupportedAlgorithm)
        ));
        assert!(matches!(
            parse(&token(r#"{"alg":"ES512"}"#, "{}")),
            Err(JwtError::UnsupportedAlgorithm)
        ));
        assert!(parse(&token(r#"{"alg":"RS256","alg":"HS256"}"#, "{}")).is_err());
        assert!(parse(&token(r#"{"alg":"RS256","crit":["exp"]}"#, "{}")).is_err());
        assert!(parse(&token(r#"{"alg":"RS256","b64":false}"#, "{}")).is_err());
        assert!(parse(&token(r#"{"alg":"RS256","kid":7}"#, "{}")).is_err());
        let with_padding = format!("{}=.{}.c2ln", b64(br#"{"alg":"RS256"}"#), b64(b"{}"));
        assert!(parse(&with_padding).is_err());
        let empty_signature = format!("{}.{}.", b64(br#"{"alg":"RS256"}"#), b64(b"{}"));
        assert!(parse(&empty_signature).is_err());
    }

    #[test]
    fn the_signing_input_is_header_dot_payload() {
        let t = token(r#"{"alg":"HS256","kid":"k1"}"#, r#"{"a":1}"#);
        let parsed = parse(&t).unwrap();
        assert_eq!(parsed.signing_input, &t[..t.rfind('.').unwrap()]);
        assert_eq!(parsed.kid.as_deref(), Some("k1"));
        assert_eq!(parsed.payload, br#"{"a":1}"#);
    }

    fn validate(payload: &[u8]) -> Result<Claims, JwtError> {
        let audiences = ["api".to_string()];
        let rules = ClaimRules {
            issuer: "https://idp.test/",
            audiences: &audiences,
            subject_claim: "sub",
            leeway: 30,
            now: 1_000_000,
        };
        validate_claims(parse_claims(payload)?, &rules)
    }

    fn claims(value: serde_json::Value) -> Result<Claims, JwtError> {
        validate(value.to_string().as_bytes())
    }

    fn good() -> serde_json::Value {
        json!({"iss": "https://idp.test/", "aud": "api", "sub": "alice", "exp": 1_000_100, "iat": 999_000, "scope": "a b"})
    }

    #[test]
    fn good_claims_pass() {
        let c = claims(good()).unwrap();
        assert_eq!(c.subject, "alice");
        assert_eq!(c.scopes, ["a", "b"]);
        let mut with_scp = good();
        with_scp["scp"] = json!(["c", "a"]);
        assert_eq!(claims(with_scp).unwrap().scopes, ["a", "b", "c"]);
        let mut aud_list = good();
        aud_list["aud"] = json!(["other", "api"]);
        assert!(claims(aud_list).is_ok());
        let mut fractional = good();
        fractional["exp"] = json!(1_000_100.5);
        assert!(claims(fractional).is_ok());
    }

    #[test]
    fn each_claim_rule_holds() {
        let with = |key: &str, value: serde_json::Value| {
            let mut c = good();
            c[key] = value;
            claims(c)
        };
        let without = |key: &str| {
            let mut c = good();
            c.as_object_mut().unwrap().remove(key);
            claims(c)
        };
        assert_eq!(with("exp", json!(999_960)), Err(JwtError::Expired));
        assert!(with("exp", json!(999_980)).is_ok(), "within leeway");
        assert!(matches!(without("exp"), Err(JwtError::InvalidClaims(_))));
        assert!(matches!(
            with("exp", json!("1000100")),
            Err(JwtError::InvalidClaims(_))
        ));
        assert_eq!(with("nbf", json!(1_000_040)), Err(JwtError::NotYetValid));
        assert!(with("nbf", json!(1_000_020)).is_ok(), "within leeway");
        assert_eq!(with("iat", json!(1_000_100)), Err(JwtError::NotYetValid));
        assert_eq!(
            with("iss", json!("https://idp.test")),
            Err(JwtError::WrongIssuer)
        );
        assert_eq!(without("iss"), Err(JwtError::WrongIssuer));
        assert!(matches!(
            with("iss", json!(["https://idp.test/"])),
            Err(JwtError::InvalidClaims(_))
        ));
        assert_eq!(with("aud", json!("other")), Err(JwtError::WrongAudience));
        assert_eq!(without("aud"), Err(JwtError::WrongAudience));
        assert!(matches!(
            with("aud", json!(["api", 7])),
            Err(JwtError::InvalidClaims(_))
        ));
        assert!(matches!(without("sub"), Err(JwtError::InvalidClaims(_))));
        assert!(matches!(
            with("sub", json!(42)),
            Err(JwtError::InvalidClaims(_))
        ));
        assert!(matches!(
            with("scope", json!(["a"])),
            Err(JwtError::InvalidClaims(_))
        ));
        assert!(matches!(
            with("scp", json!([1])),
            Err(JwtError::InvalidClaims(_))
        ));
        let duplicate =
            br#"{"iss":"https://idp.test/","aud":"api","sub":"alice","sub":"admin","exp":1000100}"#;
        assert!(matches!(validate(duplicate), Err(JwtError::Malformed(_))));
    }
}
