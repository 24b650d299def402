//! Any bytes as a bearer token: parsing, signature verification against an HS256 key and claims
//! validation never panic, and a token the gateway did not sign never verifies.
#![no_main]

use std::sync::OnceLock;

use authgate::auth::jwt::{self, ClaimRules};
use authgate::auth::keys::{self, KeySet};
use libfuzzer_sys::fuzz_target;

fn keys() -> &'static KeySet {
    static KEYS: OnceLock<KeySet> = OnceLock::new();
    KEYS.get_or_init(|| {
        let key = keys::from_secret(&[7u8; 32], Some("k".into()), None, &keys::SUPPORTED)
            .expect("a 32-byte secret is a valid HS256 key");
        KeySet::new(vec![key])
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(token) = jwt::parse(text) else {
        return;
    };
    // Random bytes forging an HMAC-SHA256 over their own header and payload: never.
    assert!(
        jwt::verify_signature(&token, keys()).is_err(),
        "an unsigned input verified: {text:?}"
    );
    if let Ok(claims) = jwt::parse_claims(&token.payload) {
        let audiences = ["api".to_string()];
        let rules = ClaimRules {
            issuer: "https://issuer.test/",
            audiences: &audiences,
            subject_claim: "sub",
            leeway: 30,
            now: 1_800_000_000,
        };
        let _ = jwt::validate_claims(claims, &rules);
    }
});
