//! Tokens built from structure (header fields, claims, a signature that is right or tampered),
//! signed with the verifier's HS256 key: a token verifies exactly when its `alg` is HS256 and
//! its signature is the true one, and its claims pass exactly when iss, aud and the times are
//! right.
#![no_main]

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use authgate::auth::jwt::{self, ClaimRules};
use authgate::auth::keys::{self, KeySet};
use base64::Engine;
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

const SECRET: [u8; 32] = [7u8; 32];
const NOW: i64 = 1_800_000_000;

fn keys() -> &'static KeySet {
    static KEYS: OnceLock<KeySet> = OnceLock::new();
    KEYS.get_or_init(|| {
        let key = keys::from_secret(&SECRET, Some("k".into()), None, &keys::SUPPORTED)
            .expect("a 32-byte secret is a valid HS256 key");
        KeySet::new(vec![key])
    })
}

#[derive(Debug, Arbitrary)]
enum Alg {
    Hs256,
    Hs384,
    None,
    Lower,
    Other(String),
}

#[derive(Debug, Arbitrary)]
enum Claim {
    Absent,
    Good,
    Int(i64),
    Text(String),
    Float(f64),
    List(Vec<String>),
}

#[derive(Debug, Arbitrary)]
struct Token {
    alg: Alg,
    kid: Option<String>,
    extra_header: Vec<(String, String)>,
    iss: Claim,
    aud: Claim,
    exp: Claim,
    nbf: Claim,
    sub: Claim,
    extra_claims: Vec<(String, String)>,
    /// A byte of the signature to flip, if any.
    tamper: Option<(u8, u8)>,
    /// Raw text appended to the payload JSON (duplicate keys, trailing garbage).
    payload_suffix: Option<String>,
}

fn claim(claim: &Claim, good: Value) -> Option<Value> {
    match claim {
        Claim::Absent => None,
        Claim::Good => Some(good),
        Claim::Int(n) => Some(json!(n)),
        Claim::Text(s) => Some(json!(s)),
        Claim::Float(f) => serde_json::Number::from_f64(*f).map(Value::Number),
        Claim::List(items) => Some(json!(items)),
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fuzz_target!(|token: Token| {
    let alg = match &token.alg {
        Alg::Hs256 => "HS256".to_string(),
        Alg::Hs384 => "HS384".to_string(),
        Alg::None => "none".to_string(),
        Alg::Lower => "hs256".to_string(),
        Alg::Other(s) => s.clone(),
    };
    let mut header = serde_json::Map::new();
    for (k, v) in &token.extra_header {
        header.insert(k.clone(), json!(v));
    }
    header.insert("alg".into(), json!(alg));
    if let Some(kid) = &token.kid {
        header.insert("kid".into(), json!(kid));
    }
    let mut claims = serde_json::Map::new();
    for (k, v) in &token.extra_claims {
        claims.insert(k.clone(), json!(v));
    }
    let fields = [
        ("iss", claim(&token.iss, json!("https://issuer.test/"))),
        ("aud", claim(&token.aud, json!("api"))),
        ("exp", claim(&token.exp, json!(NOW + 60))),
        ("nbf", claim(&token.nbf, json!(NOW - 60))),
        ("sub", claim(&token.sub, json!("alice"))),
    ];
    for (name, value) in &fields {
        match value {
            Some(value) => claims.insert((*name).into(), value.clone()),
            None => claims.remove(*name),
        };
    }
    let mut payload = Value::Object(claims).to_string();
    if let Some(suffix) = &token.payload_suffix {
        payload.push_str(suffix);
    }
    let signing_input = format!(
        "{}.{}",
        b64(Value::Object(header).to_string().as_bytes()),
        b64(payload.as_bytes())
    );
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &SECRET);
    let mut signature = aws_lc_rs::hmac::sign(&key, signing_input.as_bytes())
        .as_ref()
        .to_vec();
    let mut tampered = false;
    if let Some((at, mask)) = token.tamper {
        if mask != 0 {
            signature[usize::from(at) % 32] ^= mask;
            tampered = true;
        }
    }
    let text = format!("{signing_input}.{}", b64(&signature));

    let verified = jwt::parse(&text).and_then(|parsed| {
        jwt::verify_signature(&parsed, keys())?;
        Ok(parsed)
    });
    let kid_fits = token.kid.as_deref().is_none_or(|kid| kid == "k");
    let should_verify = alg == "HS256" && !tampered && kid_fits;
    if verified.is_ok() {
        assert!(
            alg == "HS256" && !tampered,
            "verified with alg {alg:?}, tampered {tampered}: {text}"
        );
    }
    let Ok(parsed) = verified else {
        // A right token is refused only for its kid or a header the parser refuses.
        assert!(!should_verify || !token.extra_header.is_empty(), "{text}");
        return;
    };
    let audiences = ["api".to_string()];
    let rules = ClaimRules {
        issuer: "https://issuer.test/",
        audiences: &audiences,
        subject_claim: "sub",
        leeway: 30,
        now: NOW,
    };
    let Ok(all) = jwt::parse_claims(&parsed.payload) else {
        assert!(token.payload_suffix.is_some() || !token.extra_claims.is_empty());
        return;
    };
    if let Ok(claims) = jwt::validate_claims(all, &rules) {
        // Whatever else it holds, an accepted token has the right issuer and audience.
        let value = &claims.all;
        assert_eq!(value["iss"], json!("https://issuer.test/"), "{text}");
        let aud = &value["aud"];
        assert!(
            aud == &json!("api") || aud.as_array().is_some_and(|a| a.contains(&json!("api"))),
            "{text}"
        );
        assert!(claims.expires_at + 30 >= NOW, "{text}");
    }
});
